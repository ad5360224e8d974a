package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"
	"sync"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/ProtonMail/go-crypto/openpgp"
	pgparmor "github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	"github.com/getsops/sops/v3/config"
	"github.com/getsops/sops/v3/keyservice"
	"github.com/getsops/sops/v3/pgp"
	"github.com/getsops/sops/v3/stores/dotenv"
	sopsjson "github.com/getsops/sops/v3/stores/json"
	sopsyaml "github.com/getsops/sops/v3/stores/yaml"
	yamlv3 "go.yaml.in/yaml/v3"
	"google.golang.org/grpc"

	"github.com/cronsync/cronsync/internal/redact"
)

// Files encrypted with SOPS are decrypted in memory before they are read:
// the plaintext is never written to the work directory, and what comes of
// it is marked Object.Decrypted, so that nothing prints its values.

// Sops holds the keys that open SOPS-encrypted files. They are read when
// the first encrypted file is met, on every run: a rotated key needs no
// restart. A cloud KMS (AWS, GCP, Azure, Vault, HuaweiCloud) is asked only
// when KMS names it, with its SDK's own credential chain, the pod's
// workload identity (see sopskms.go).
type Sops struct {
	// AgeKeyFile holds age identities, one AGE-SECRET-KEY-... a line, as
	// age-keygen writes them.
	AgeKeyFile string
	// PGPKeyFile holds armored PGP private keys, without passphrase.
	PGPKeyFile string
	// KMS names the key services besides age and PGP that may be asked
	// to open a file's data key (SopsKMSNames); none by default, because
	// the file's metadata, which its MAC does not cover, names the
	// service and its address.
	KMS []string
	// VaultAddresses are the Vault servers, scheme://host:port, that may
	// be asked when KMS names vault; a Vault key at any other address is
	// never contacted. Check normalises them.
	VaultAddresses []string
}

// SopsKeyError: no key the run has opens an encrypted file. The Job lacks
// its key: a configuration fault, not the commit's.
type SopsKeyError struct {
	// Source is the file.
	Source string
	// Recipients are what it is encrypted for: age public keys, PGP
	// fingerprints, KMS key names; never a secret.
	Recipients []string
	// Err says why each key the run has did not open it.
	Err error
}

func (e *SopsKeyError) Error() string {
	// sops lists each key group's failure on a line of its own.
	why := strings.Join(strings.Fields(e.Err.Error()), " ")
	return fmt.Sprintf("%s: SOPS-encrypted for %s, and no key this run has opens it (--sops-age-key-file, --sops-pgp-key-file, or a key service enabled with --sops-kms): %s",
		e.Source, strings.Join(e.Recipients, ", "), why)
}

func (e *SopsKeyError) Unwrap() error { return e.Err }

// sopsFormat is how SOPS stores a file of this name: by extension, as the
// sops CLI decides it.
func sopsFormat(name string) string {
	switch strings.ToLower(path.Ext(name)) {
	case ".yaml", ".yml":
		return "yaml"
	case ".json":
		return "json"
	case ".env":
		return "dotenv"
	}
	return "binary"
}

// looksEncrypted says whether data may be a SOPS file of its format: the
// top-level key sops writes its metadata under, with a MAC. It is only a
// first look, cheap enough for every file; decryption decides.
func looksEncrypted(data []byte, format string) bool {
	switch format {
	case "dotenv":
		return bytes.Contains(data, []byte("sops_mac="))
	case "yaml":
		if !bytes.Contains(data, []byte("sops")) || !bytes.Contains(data, []byte("mac")) {
			return false
		}
		if (bytes.HasPrefix(data, []byte("sops:")) || bytes.Contains(data, []byte("\nsops:"))) && bytes.Contains(data, []byte("mac:")) {
			return true // as sops writes it
		}
		// Any other way YAML can say it, JSON among them: sops's store
		// reads those as encrypted too, and applied as they are they
		// would be Secrets of ENC[...] values.
		return yamlSopsKey(data)
	default: // json and binary, which sops stores as JSON
		if !bytes.Contains(data, []byte(`"sops"`)) || !bytes.Contains(data, []byte(`"mac"`)) {
			return false
		}
		// A JSON document may mention both words anywhere; SOPS's are
		// top-level.
		var top struct {
			Sops *struct {
				Mac string `json:"mac"`
			} `json:"sops"`
		}
		return json.Unmarshal(data, &top) == nil && top.Sops != nil && top.Sops.Mac != ""
	}
}

// yamlSopsKey says whether the first document of data (the one sops reads
// its metadata from) has a top-level sops mapping holding a mac key.
func yamlSopsKey(data []byte) bool {
	var doc yamlv3.Node
	if yamlv3.NewDecoder(bytes.NewReader(data)).Decode(&doc) != nil || len(doc.Content) == 0 {
		return false
	}
	mapping := func(n *yamlv3.Node) *yamlv3.Node {
		if n.Kind == yamlv3.AliasNode {
			n = n.Alias
		}
		if n == nil || n.Kind != yamlv3.MappingNode {
			return nil
		}
		return n
	}
	has := func(m *yamlv3.Node, key string) *yamlv3.Node {
		for i := 0; m != nil && i+1 < len(m.Content); i += 2 {
			if m.Content[i].Value == key {
				return m.Content[i+1]
			}
		}
		return nil
	}
	sops := has(mapping(doc.Content[0]), "sops")
	return sops != nil && has(mapping(sops), "mac") != nil
}

// decryptor opens SOPS files with the keys of one run.
type decryptor struct {
	opts Sops
	once sync.Once
	ids  []age.Identity
	pgp  openpgp.EntityList
	err  error
	// secrets receives every value decrypted.
	secrets *redact.Secrets
	// vault is the HTTP client of every Vault request.
	vault vaultGuard
}

// load reads the key files, once.
func (d *decryptor) load() error {
	d.once.Do(func() {
		if d.opts.AgeKeyFile != "" {
			f, err := os.ReadFile(d.opts.AgeKeyFile)
			if err != nil {
				d.err = &keyFileError{flag: "--sops-age-key-file", err: err}
				return
			}
			if d.ids, err = age.ParseIdentities(bytes.NewReader(f)); err != nil {
				d.err = &keyFileError{flag: "--sops-age-key-file", err: err}
				return
			}
		}
		if d.opts.PGPKeyFile != "" {
			f, err := os.Open(d.opts.PGPKeyFile)
			if err != nil {
				d.err = &keyFileError{flag: "--sops-pgp-key-file", err: err}
				return
			}
			defer f.Close()
			if d.pgp, err = openpgp.ReadArmoredKeyRing(f); err != nil {
				d.err = &keyFileError{flag: "--sops-pgp-key-file", err: err}
			}
		}
	})
	return d.err
}

// keyFileError: a key file that cannot be read or parsed. The message
// names the flag, never the key.
type keyFileError struct {
	flag string
	err  error
}

func (e *keyFileError) Error() string { return fmt.Sprintf("%s: %v", e.flag, e.err) }

func (e *keyFileError) Unwrap() error { return e.err }

// decrypt opens data, the SOPS file source of the given format, and
// returns its plaintext.
func (d *decryptor) decrypt(ctx context.Context, data []byte, source, format string) ([]byte, error) {
	return d.decryptAs(ctx, data, source, format, format)
}

// sopsStore is what decryption needs of a sops store; the fuzz tests ask
// the same stores for more, to encrypt their seeds.
type sopsStore interface {
	LoadEncryptedFile([]byte) (sops.Tree, error)
	EmitPlainFile(sops.TreeBranches) ([]byte, error)
}

// storeFor is the store of a format: binary files are stored as JSON
// documents whose one value is the data.
func storeFor(format string) sopsStore {
	switch format {
	case "yaml":
		return sopsyaml.NewStore(&config.YAMLStoreConfig{})
	case "json":
		return sopsjson.NewStore(&config.JSONStoreConfig{})
	case "dotenv":
		return dotenv.NewStore(&config.DotenvStoreConfig{})
	}
	return sopsjson.NewBinaryStore(&config.JSONBinaryStoreConfig{})
}

// decryptAs opens data, a SOPS document stored in form in, and writes its
// plaintext in form out: sops's trees are the same whatever the store.
func (d *decryptor) decryptAs(ctx context.Context, data []byte, source, in, out string) ([]byte, error) {
	store := storeFor(in)
	tree, err := store.LoadEncryptedFile(data)
	if err != nil {
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("SOPS metadata: %w", oneLine(err))}
	}
	var recipients []string
	for _, g := range tree.Metadata.KeyGroups {
		for _, k := range g {
			recipients = append(recipients, k.TypeToIdentifier()+" "+k.ToString())
		}
	}
	if err := d.load(); err != nil {
		return nil, &SopsKeyError{Source: source, Recipients: recipients, Err: err}
	}
	ks := &keyService{d: d, ctx: ctx}
	// The run's own keys first in each key group: a file that they open
	// asks no key service, whatever else its metadata names.
	key, err := tree.Metadata.GetDataKeyWithKeyServices([]keyservice.KeyServiceClient{ks}, []string{sopsage.KeyTypeIdentifier, pgp.KeyTypeIdentifier})
	if err != nil {
		// sops's own message counts key groups; what each key said is
		// what helps.
		if len(ks.errs) > 0 {
			err = errors.Join(ks.errs...)
		}
		return nil, &SopsKeyError{Source: source, Recipients: recipients, Err: err}
	}
	cipher := aes.NewCipher()
	mac, err := tree.Decrypt(key, recordingCipher{Cipher: cipher, secrets: d.secrets})
	if err != nil {
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("SOPS: %w", oneLine(err))}
	}
	stored, err := cipher.Decrypt(tree.Metadata.MessageAuthenticationCode, key, tree.Metadata.LastModified.Format(time.RFC3339))
	if err != nil {
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("SOPS metadata: the MAC cannot be read: %w", oneLine(err))}
	}
	if stored != mac {
		return nil, &ManifestError{Source: source, Err: errors.New("SOPS: the MAC does not verify: the file was changed after it was encrypted (edit it with sops, not by hand)")}
	}
	if out == in {
		plain, err := store.EmitPlainFile(tree.Branches)
		if err != nil {
			return nil, &ManifestError{Source: source, Err: fmt.Errorf("SOPS: %w", oneLine(err))}
		}
		return plain, nil
	}
	plain, err := storeFor(out).EmitPlainFile(tree.Branches)
	if err != nil {
		return nil, &ManifestError{Source: source, Err: fmt.Errorf("SOPS: the %s document's plaintext cannot be written as %s, the form the name says: %w", in, out, oneLine(err))}
	}
	return plain, nil
}

// oneLine folds a multi-line error (sops lists each key group's) into one.
func oneLine(err error) error {
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// keyService opens a data key with the run's own age and PGP keys, read
// from the key files, and with the key services the CronJob enabled,
// through sops's key sources and their SDKs' credential chains, each call
// bounded by the run's context. sops's own handling of age and PGP keys
// would read them from the environment and the home directory, or run
// gpg; its local key service would ask any KMS the file names, with a
// context of its own.
type keyService struct {
	d   *decryptor
	ctx context.Context
	// errs are what each key that did not open the file said.
	errs []error
}

func (k *keyService) Encrypt(context.Context, *keyservice.EncryptRequest, ...grpc.CallOption) (*keyservice.EncryptResponse, error) {
	return nil, errors.New("cronsync never encrypts")
}

func (k *keyService) Decrypt(_ context.Context, req *keyservice.DecryptRequest, opts ...grpc.CallOption) (*keyservice.DecryptResponse, error) {
	resp, err := k.decrypt(req, opts...)
	if err != nil {
		k.errs = append(k.errs, err)
	}
	return resp, err
}

func (k *keyService) decrypt(req *keyservice.DecryptRequest, opts ...grpc.CallOption) (*keyservice.DecryptResponse, error) {
	switch key := req.GetKey(); {
	case key.GetAgeKey() != nil:
		if len(k.d.ids) == 0 {
			return nil, fmt.Errorf("age %s: no age key given (--sops-age-key-file)", key.GetAgeKey().GetRecipient())
		}
		r, err := age.Decrypt(armor.NewReader(bytes.NewReader(req.GetCiphertext())), k.d.ids...)
		if err != nil {
			return nil, fmt.Errorf("age %s: %w", key.GetAgeKey().GetRecipient(), err)
		}
		b, err := io.ReadAll(r)
		if err != nil {
			return nil, err
		}
		return &keyservice.DecryptResponse{Plaintext: b}, nil
	case key.GetPgpKey() != nil:
		if len(k.d.pgp) == 0 {
			return nil, fmt.Errorf("pgp %s: no PGP key given (--sops-pgp-key-file)", key.GetPgpKey().GetFingerprint())
		}
		md, err := openpgp.ReadMessage(armoredOrRaw(req.GetCiphertext()), k.d.pgp, nil, nil)
		if err != nil {
			return nil, fmt.Errorf("pgp %s: %w", key.GetPgpKey().GetFingerprint(), err)
		}
		b, err := io.ReadAll(md.UnverifiedBody)
		if err != nil {
			return nil, err
		}
		return &keyservice.DecryptResponse{Plaintext: b}, nil
	}
	key := req.GetKey()
	vaultAddress, err := k.d.opts.allows(key)
	if err != nil {
		return nil, err
	}
	_, name := keyIdentifier(key)
	// The run's context, which --timeout and signals end, rather than the
	// background one sops passes.
	if k.ctx.Err() != nil {
		return nil, fmt.Errorf("%s: %w", name, context.Cause(k.ctx))
	}
	mk, err := kmsMasterKey(key, req.GetCiphertext(), vaultAddress, &k.d.vault, k.d.opts.VaultAddresses)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	plain, err := askKMS(k.ctx, mk)
	switch {
	case k.ctx.Err() != nil:
		return nil, fmt.Errorf("%s: %w", name, context.Cause(k.ctx))
	case err != nil:
		return nil, fmt.Errorf("%s: %w", name, kmsFailure(err))
	}
	return &keyservice.DecryptResponse{Plaintext: plain}, nil
}

// armoredOrRaw undoes the ASCII armor sops writes PGP data keys in.
func armoredOrRaw(b []byte) io.Reader {
	if blk, err := pgparmor.Decode(bytes.NewReader(b)); err == nil {
		return blk.Body
	}
	return bytes.NewReader(b)
}
