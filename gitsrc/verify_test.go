package gitsrc_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"golang.org/x/crypto/ssh"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

func pgpKey(t *testing.T, name string) (*openpgp.Entity, string) {
	t.Helper()
	e, err := openpgp.NewEntity(name, "", name+"@cronsync.invalid", nil)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	w, err := armor.Encode(&b, openpgp.PublicKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Serialize(w); err != nil {
		t.Fatal(err)
	}
	w.Close()
	return e, writeFile(t, name+".asc", b.String())
}

// commitSigned commits the work tree with go-git, signed by key (nil for
// unsigned), and returns the SHA.
func commitSigned(t *testing.T, r *testenv.Repo, msg string, key *openpgp.Entity) string {
	t.Helper()
	repo, err := git.PlainOpen(r.Dir)
	if err != nil {
		t.Fatal(err)
	}
	wt, err := repo.Worktree()
	if err != nil {
		t.Fatal(err)
	}
	if err := wt.AddGlob("."); err != nil {
		t.Fatal(err)
	}
	h, err := wt.Commit(msg, &git.CommitOptions{SignKey: key, Author: &object.Signature{Name: "t", Email: "t@cronsync.invalid", When: time.Now()}})
	if err != nil {
		t.Fatal(err)
	}
	return h.String()
}

// cloneVerified clones ref whole and partially (the server filters: the
// signature is in the commit or tag, fetched either way) and returns the
// error, which must be the same both ways.
func cloneVerified(t *testing.T, url, ref, keys string) error {
	t.Helper()
	var errs []error
	for _, partial := range []bool{false, true} {
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, Ref: ref, VerifyKeysFile: keys, WorkDir: t.TempDir(), Partial: partial})
		if err == nil {
			co.Close()
		}
		errs = append(errs, err)
	}
	if fmt.Sprint(errs[0]) != fmt.Sprint(errs[1]) {
		t.Errorf("%s: whole: %v; partial: %v", ref, errs[0], errs[1])
	}
	return errs[0]
}

func TestVerifyPGP(t *testing.T) {
	trusted, trustedRing := pgpKey(t, "trusted")
	stranger, _ := pgpKey(t, "stranger")
	r := testenv.NewRepo(t)
	r.Git("config", "uploadpack.allowFilter", "true")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	url := srv.URL + "/" + filepath.Base(r.Dir)

	r.Write("a.yaml", "v: 1\n")
	commitSigned(t, r, "signed", trusted)
	r.Git("branch", "signed")
	r.Write("a.yaml", "v: 2\n")
	commitSigned(t, r, "unsigned", nil)
	r.Git("branch", "unsigned")
	r.Write("a.yaml", "v: 3\n")
	commitSigned(t, r, "stranger", stranger)
	r.Git("branch", "stranger")

	// A signed annotated tag vouches for the unsigned commit it points at.
	repo, _ := git.PlainOpen(r.Dir)
	unsigned, _ := repo.ResolveRevision("unsigned")
	if _, err := repo.CreateTag("release", *unsigned, &git.CreateTagOptions{
		Message: "release", SignKey: trusted,
		Tagger: &object.Signature{Name: "t", Email: "t@cronsync.invalid", When: time.Now()},
	}); err != nil {
		t.Fatal(err)
	}

	if err := cloneVerified(t, url, "signed", trustedRing); err != nil {
		t.Errorf("commit signed by a trusted key: %v", err)
	}
	if err := cloneVerified(t, url, "release", trustedRing); err != nil {
		t.Errorf("tag signed by a trusted key: %v", err)
	}
	for ref, want := range map[string]string{
		"unsigned": "is not signed",
		"stranger": "not valid for any key",
	} {
		err := cloneVerified(t, url, ref, trustedRing)
		if !errors.Is(err, gitsrc.ErrUnverified) || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: err = %v, want ErrUnverified saying %q", ref, err, want)
		}
		// Which commit was refused is known, for the commit status.
		var ce *gitsrc.CommitError
		if sha, _ := repo.ResolveRevision(plumbing.Revision(ref)); !errors.As(err, &ce) || ce.Commit != sha.String() {
			t.Errorf("%s: err = %#v, want a CommitError naming %s", ref, err, sha)
		}
	}
}

func TestVerifySSH(t *testing.T) {
	r := testenv.NewRepo(t)
	signer, priv := testenv.NewEd25519(t)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := writeFile(t, "signing_key", string(pem.EncodeToMemory(block)))
	if err := os.Chmod(key, 0o600); err != nil {
		t.Fatal(err)
	}
	allowed := writeFile(t, "allowed_signers", "t@cronsync.invalid "+string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	other, _ := testenv.NewEd25519(t)
	otherAllowed := writeFile(t, "other_signers", "t@cronsync.invalid namespaces=\"git\" "+string(ssh.MarshalAuthorizedKey(other.PublicKey())))
	_, pgpRing := pgpKey(t, "pgp")

	r.Write("a.yaml", "v: 1\n")
	r.Git("add", "-A")
	r.Git("-c", "gpg.format=ssh", "-c", "user.signingkey="+key, "commit", "-q", "-S", "-m", "ssh signed")
	r.Git("config", "uploadpack.allowFilter", "true")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	url := srv.URL + "/" + filepath.Base(r.Dir)

	if err := cloneVerified(t, url, "main", allowed); err != nil {
		t.Errorf("SSH-signed commit with its key allowed: %v", err)
	}
	for name, tc := range map[string]struct{ keys, want string }{
		"other key":   {otherAllowed, "not in --verify-keys-file"},
		"pgp keyring": {pgpRing, "has an SSH signature, but --verify-keys-file is a PGP keyring"},
	} {
		err := cloneVerified(t, url, "main", tc.keys)
		if !errors.Is(err, gitsrc.ErrUnverified) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v, want ErrUnverified saying %q", name, err, tc.want)
		}
	}
	// A changed commit message breaks the signature.
	r.Git("-c", "gpg.format=ssh", "-c", "user.signingkey="+key, "commit", "-q", "-S", "--allow-empty", "-m", "second")
	raw := r.Git("cat-file", "commit", "HEAD")
	forged := strings.Replace(raw, "second", "forged", 1)
	sha := r.Git("hash-object", "-t", "commit", "-w", writeFile(t, "forged", forged+"\n"))
	r.Git("branch", "forged", sha)
	if err := cloneVerified(t, url, "forged", allowed); !errors.Is(err, gitsrc.ErrUnverified) || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("forged commit: err = %v, want ErrUnverified", err)
	}
}
