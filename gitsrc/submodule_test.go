package gitsrc_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

// repoIn makes a repository named name under root.
func repoIn(t *testing.T, root, name string) *testenv.Repo {
	t.Helper()
	return testenv.NewRepoAt(t, filepath.Join(root, name))
}

func read(t *testing.T, co *gitsrc.Checkout, path string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(co.Dir, filepath.FromSlash(path)))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// family is a parent whose apps/lib is a submodule (a relative URL) pinned
// to lib's first commit, which is no longer its branch's tip, and lib's
// vendor/deep a submodule of its own.
func family(t *testing.T) (root string, parent *testenv.Repo) {
	t.Helper()
	root = t.TempDir()
	deep := repoIn(t, root, "deep")
	deep.Write("deep.yaml", "deep: 1\n")
	deepSHA := deep.Commit("deep")
	lib := repoIn(t, root, "lib")
	lib.Write("lib.yaml", "lib: pinned\n")
	lib.Submodule("vendor/deep", deepSHA, "../deep")
	pinned := lib.Commit("lib")
	lib.Write("lib.yaml", "lib: newer\n")
	lib.Commit("lib moves on")
	parent = repoIn(t, root, "parent")
	parent.Write("apps/app.yaml", "app: 1\n")
	parent.Submodule("apps/lib", pinned, "../lib")
	parent.Commit("parent")
	return root, parent
}

func TestSubmodulesAreFollowed(t *testing.T) {
	root, parent := family(t)
	var requests atomic.Int32
	srv := testenv.ServeHTTP(t, root, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/lib/") || strings.HasPrefix(r.URL.Path, "/deep/") {
				requests.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	for _, src := range []struct{ name, url string }{{"http", srv.URL + "/parent"}, {"path", parent.Dir}} {
		t.Run(src.name, func(t *testing.T) {
			requests.Store(0)
			co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: src.url, WorkDir: t.TempDir(), Lazy: true, Submodules: true})
			if err != nil {
				t.Fatal(err)
			}
			defer co.Close()
			if n := requests.Load(); n != 0 {
				t.Errorf("resolving the parent's commit made %d requests to its submodules", n)
			}
			if err := co.Write(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := read(t, co, "apps/lib/lib.yaml"); got != "lib: pinned\n" {
				t.Errorf("apps/lib/lib.yaml = %q: not the commit the gitlink pins", got)
			}
			if got := read(t, co, "apps/lib/vendor/deep/deep.yaml"); got != "deep: 1\n" {
				t.Errorf("the nested submodule holds %q", got)
			}
			if len(co.Skipped) != 0 {
				t.Errorf("skipped %v", co.Skipped)
			}
		})
	}
	t.Run("off", func(t *testing.T) {
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: srv.URL + "/parent", WorkDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		if _, err := os.Stat(filepath.Join(co.Dir, "apps/lib/lib.yaml")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("the submodule was written with Submodules off: %v", err)
		}
		if len(co.Skipped) != 1 || co.Skipped[0] != "apps/lib" {
			t.Errorf("skipped %v, want [apps/lib]", co.Skipped)
		}
	})
}

// The parent's token goes to a submodule on the same scheme, host and
// port, and to no other host, nor to another port of the same host (as
// git scopes credentials): the server there never sees it.
func TestSubmoduleCredentials(t *testing.T) {
	root := t.TempDir()
	lib := repoIn(t, root, "lib")
	lib.Write("lib.yaml", "lib: 1\n")
	libSHA := lib.Commit("lib")
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte("s3cret-token\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var otherPortSaw atomic.Bool
	auth := func(saw *atomic.Bool) func(h http.Handler) http.Handler {
		return func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if _, _, ok := r.BasicAuth(); ok && saw != nil {
					saw.Store(true)
				}
				if _, pw, ok := r.BasicAuth(); !ok || pw != "s3cret-token" {
					w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
					http.Error(w, "who are you", http.StatusUnauthorized)
					return
				}
				h.ServeHTTP(w, r)
			})
		}
	}
	srv := testenv.ServeHTTP(t, root, auth(nil))
	otherPort := testenv.ServeHTTP(t, root, auth(&otherPortSaw))
	for _, tc := range []struct {
		name, url string
		ok        bool
	}{
		{"same host", srv.URL + "/lib", true},
		{"other host", strings.Replace(srv.URL, "127.0.0.1", "localhost", 1) + "/lib", false},
		{"other port", otherPort.URL + "/lib", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := repoIn(t, root, "parent-"+strings.ReplaceAll(tc.name, " ", "-"))
			parent.Write("a.yaml", "a: 1\n")
			parent.Submodule("lib", libSHA, tc.url)
			parent.Commit("parent")
			co, err := gitsrc.Clone(context.Background(), gitsrc.Options{
				URL: srv.URL + "/" + filepath.Base(parent.Dir), WorkDir: t.TempDir(), Submodules: true,
				Credentials: gitsrc.Credentials{PasswordFile: token},
			})
			if tc.ok {
				if err != nil {
					t.Fatal(err)
				}
				defer co.Close()
				if got := read(t, co, "lib/lib.yaml"); got != "lib: 1\n" {
					t.Errorf("lib/lib.yaml = %q", got)
				}
				return
			}
			if !errors.Is(err, gitsrc.ErrAuth) || !strings.Contains(err.Error(), "submodule lib") {
				t.Errorf("err = %v, want an authentication error naming submodule lib", err)
			}
			if err != nil && strings.Contains(err.Error(), "s3cret-token") {
				t.Errorf("the token is in the error: %v", err)
			}
			if otherPortSaw.Load() {
				t.Error("the server on the other port received credentials")
			}
		})
	}
}

// Submodules that must not be followed fail the clone as unsafe content,
// naming the submodule.
func TestSubmodulesRefused(t *testing.T) {
	root := t.TempDir()
	lib := repoIn(t, root, "lib")
	lib.Write("lib.yaml", "lib: 1\n")
	libSHA := lib.Commit("lib")
	srv := testenv.ServeHTTP(t, root, nil)

	// A chain of nine repositories, each a submodule of the one before.
	chainSHA := ""
	for i := 9; i >= 1; i-- {
		r := repoIn(t, root, "chain"+string(rune('0'+i)))
		r.Write("x.yaml", "x: 1\n")
		if chainSHA != "" {
			r.Submodule("next", chainSHA, "../chain"+string(rune('0'+i+1)))
		}
		chainSHA = r.Commit("chain")
	}

	for _, tc := range []struct {
		name, path, url, sha, want string
	}{
		{"no .gitmodules entry", "lib", "", libSHA, "submodule lib: the commit pins " + libSHA + " here, but .gitmodules has no entry for this path"},
		{"a local path from a remote", "lib", filepath.Join(root, "lib"), libSHA, "is on this machine, and --repo is not"},
		{"file URL from a remote", "lib", "file://" + filepath.Join(root, "lib"), libSHA, "is on this machine, and --repo is not"},
		{"git protocol", "lib", "git://127.0.0.1/lib", libSHA, `scheme "git" is not followed`},
		{"option-like URL", "lib", "--upload-pack=touch /tmp/pwned", libSHA, "is not one git would accept"},
		{"option-like path", "-lib", "../lib", libSHA, `path "-lib"`},
		{"commit not on the server", "lib", "../lib", strings.Repeat("ab", 20), "commit " + strings.Repeat("ab", 20) + " is not in " + srv.URL + "/lib"},
		{"nested too deep", "next", "../chain1", chainSHA, "submodule next → next → next → next → next → next → next → next → next: nested more than 8 deep"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			parent := repoIn(t, root, "parent-"+strings.ReplaceAll(tc.name, " ", "-"))
			parent.Write("a.yaml", "a: 1\n")
			parent.Submodule(tc.path, tc.sha, tc.url)
			parent.Commit("parent")
			co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: srv.URL + "/" + filepath.Base(parent.Dir), WorkDir: t.TempDir(), Submodules: true})
			if err == nil {
				co.Close()
				t.Fatal("cloned")
			}
			if !errors.Is(err, gitsrc.ErrUnsafe) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v\nwant ErrUnsafe containing %q", err, tc.want)
			}
		})
	}
}

// Over SSH, relative submodule URLs resolve to the same server, which is
// offered the same key and checked against the same known_hosts.
func TestSubmodulesOverSSH(t *testing.T) {
	root, _ := family(t)
	client, clientPriv := testenv.NewEd25519(t)
	host, _ := testenv.NewEd25519(t)
	addr := testenv.ServeSSH(t, root, client.PublicKey(), host)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	creds := gitsrc.Credentials{
		SSHKeyFile:        writeFile(t, "id_ed25519", string(pem.EncodeToMemory(block))),
		SSHKnownHostsFile: writeFile(t, "known_hosts", knownhosts.Line([]string{knownhosts.Normalize(addr)}, host.PublicKey())+"\n"),
	}
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: "ssh://git@" + addr + "/parent", WorkDir: t.TempDir(), Credentials: creds, Submodules: true})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if got := read(t, co, "apps/lib/vendor/deep/deep.yaml"); got != "deep: 1\n" {
		t.Errorf("the nested submodule holds %q", got)
	}
}

// A password in a submodule's URL is never printed.
func TestSubmoduleURLRedacted(t *testing.T) {
	root := t.TempDir()
	srv := testenv.ServeHTTP(t, root, nil)
	parent := testenv.NewRepoAt(t, filepath.Join(root, "parent"))
	parent.Write("a.yaml", "a: 1\n")
	parent.Submodule("lib", strings.Repeat("ab", 20), strings.Replace(srv.URL, "://", "://bot:hunter2-secret@", 1)+"/missing")
	parent.Commit("parent")
	_, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: srv.URL + "/parent", WorkDir: t.TempDir(), Submodules: true})
	if err == nil {
		t.Fatal("cloned a submodule that does not exist")
	}
	t.Log(err)
	if strings.Contains(err.Error(), "hunter2-secret") || !strings.Contains(err.Error(), "submodule lib") {
		t.Errorf("err = %v: want the submodule named and no password", err)
	}
}
