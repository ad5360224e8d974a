package gitsrc

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"os"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"
)

// ErrUnverified: the commit (or tag) is unsigned, or not signed by a
// trusted key. Nothing from it may be applied.
var ErrUnverified = errors.New("signature not verified")

// CommitError is a fault of one commit that the clone found after it
// knew which commit it was (an unsigned one): its caller can still say
// which commit it refused, on the forge too.
type CommitError struct {
	// Commit is the commit's SHA.
	Commit string
	Err    error
}

func (e *CommitError) Error() string { return e.Err.Error() }
func (e *CommitError) Unwrap() error { return e.Err }

func unverified(format string, args ...any) error {
	return &classed{class: ErrUnverified, msg: fmt.Sprintf(format, args...)}
}

const (
	pgpArmor = "-----BEGIN PGP SIGNATURE-----"
	sshArmor = "-----BEGIN SSH SIGNATURE-----"
)

// verify checks the signature of what ref names: the tag when it is a
// signed annotated tag, else the commit. keysFile is either an armored PGP
// public keyring or an SSH allowed_signers file; its content says which.
func verify(repo *git.Repository, target plumbing.Hash, commit *object.Commit, keysFile string) error {
	keys, err := os.ReadFile(keysFile)
	if err != nil {
		return authErr("reading --verify-keys-file: %v", err)
	}
	what, sig := "commit "+commit.Hash.String(), commit.PGPSignature
	var encode func(*bytes.Buffer) error = func(b *bytes.Buffer) error { return encodeUnsigned(commit, b) }
	var pgpVerify = func(ring string) error { _, err := commit.Verify(ring); return err }
	if tag, err := repo.TagObject(target); err == nil && tag.PGPSignature != "" {
		what, sig = "tag "+tag.Name, tag.PGPSignature
		encode = func(b *bytes.Buffer) error { return encodeUnsigned(tag, b) }
		pgpVerify = func(ring string) error { _, err := tag.Verify(ring); return err }
	}

	pgpRing := bytes.Contains(keys, []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
	switch {
	case sig == "":
		return unverified("%s is not signed", what)
	case strings.HasPrefix(sig, pgpArmor) && pgpRing:
		if err := pgpVerify(string(keys)); err != nil {
			return unverified("%s: PGP signature not valid for any key in --verify-keys-file: %v", what, err)
		}
		return nil
	case strings.HasPrefix(sig, sshArmor) && !pgpRing:
		var msg bytes.Buffer
		if err := encode(&msg); err != nil {
			return err
		}
		if err := verifySSH(sig, msg.Bytes(), keys); err != nil {
			return unverified("%s: SSH signature: %v", what, err)
		}
		return nil
	case pgpRing:
		return unverified("%s has an SSH signature, but --verify-keys-file is a PGP keyring", what)
	}
	return unverified("%s has a PGP signature, but --verify-keys-file is an SSH allowed-signers file", what)
}

type unsigned interface {
	EncodeWithoutSignature(plumbing.EncodedObject) error
}

func encodeUnsigned(o unsigned, b *bytes.Buffer) error {
	enc := &plumbing.MemoryObject{}
	if err := o.EncodeWithoutSignature(enc); err != nil {
		return err
	}
	return copyFrom(enc.Reader, b)
}

// verifySSH checks an SSH signature (the SSHSIG format that git and
// ssh-keygen -Y sign write) over msg, in the "git" namespace, against the
// keys of an allowed_signers file.
func verifySSH(armored string, msg, allowedSigners []byte) error {
	body := strings.TrimSpace(armored)
	body = strings.TrimPrefix(body, sshArmor)
	body = strings.TrimSuffix(body, "-----END SSH SIGNATURE-----")
	blob, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(body), ""))
	if err != nil {
		return fmt.Errorf("malformed: %v", err)
	}
	var sig struct {
		Magic     [6]byte
		Version   uint32
		PublicKey []byte
		Namespace string
		Reserved  string
		HashAlg   string
		Signature []byte
	}
	if err := ssh.Unmarshal(blob, &sig); err != nil || string(sig.Magic[:]) != "SSHSIG" || sig.Version != 1 {
		return fmt.Errorf("malformed (%v)", err)
	}
	if sig.Namespace != "git" {
		return fmt.Errorf("made for namespace %q, not git", sig.Namespace)
	}
	var h hash.Hash
	switch sig.HashAlg {
	case "sha256":
		h = sha256.New()
	case "sha512":
		h = sha512.New()
	default:
		return fmt.Errorf("unsupported hash %q", sig.HashAlg)
	}
	h.Write(msg)
	signed := ssh.Marshal(struct {
		Magic     [6]byte
		Namespace string
		Reserved  string
		HashAlg   string
		Hash      []byte
	}{sig.Magic, sig.Namespace, sig.Reserved, sig.HashAlg, h.Sum(nil)})

	pub, err := ssh.ParsePublicKey(sig.PublicKey)
	if err != nil {
		return fmt.Errorf("public key: %v", err)
	}
	var s ssh.Signature
	if err := ssh.Unmarshal(sig.Signature, &s); err != nil {
		return fmt.Errorf("malformed signature: %v", err)
	}
	if err := pub.Verify(signed, &s); err != nil {
		return fmt.Errorf("does not match the commit: %v", err)
	}
	if !allowed(pub, allowedSigners) {
		return fmt.Errorf("made with key %s, which is not in --verify-keys-file", ssh.FingerprintSHA256(pub))
	}
	return nil
}

// allowed reports whether pub is listed in an allowed_signers file
// ("principals [options] keytype key") for the git namespace.
func allowed(pub ssh.PublicKey, file []byte) bool {
	want := pub.Marshal()
	for line := range strings.SplitSeq(string(file), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		_, rest, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		key, _, options, _, err := ssh.ParseAuthorizedKey([]byte(rest))
		if err != nil || !bytes.Equal(key.Marshal(), want) {
			continue
		}
		if namespacesAllow(options) {
			return true
		}
	}
	return false
}

func namespacesAllow(options []string) bool {
	for _, o := range options {
		if v, ok := strings.CutPrefix(o, "namespaces="); ok {
			for ns := range strings.SplitSeq(strings.Trim(v, `"`), ",") {
				if ns == "git" {
					return true
				}
			}
			return false
		}
	}
	return true
}
