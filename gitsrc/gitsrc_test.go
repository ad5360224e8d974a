package gitsrc_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

// served makes a repository with two branches, a lightweight and an annotated
// tag, and serves it over smart HTTP. It returns the repo, its URL and the
// SHAs of the commits on main (first, second) and on the branch "other".
func served(t *testing.T, wrap func(http.Handler) http.Handler) (r *testenv.Repo, url, first, second, other string) {
	t.Helper()
	r = testenv.NewRepo(t)
	r.Write("a.yaml", "v: 1\n")
	first = r.Commit("first")
	r.Git("tag", "light")
	r.Git("tag", "-a", "-m", "annotated", "annotated")
	r.Write("a.yaml", "v: 2\n")
	second = r.Commit("second")
	r.Git("checkout", "-q", "-b", "other")
	r.Write("a.yaml", "v: other\n")
	other = r.Commit("other")
	r.Git("checkout", "-q", "main")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), wrap)
	return r, srv.URL + "/" + filepath.Base(r.Dir), first, second, other
}

func clone(t *testing.T, url, ref string) (*gitsrc.Checkout, error) {
	t.Helper()
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, Ref: ref, WorkDir: t.TempDir()})
	if err == nil {
		t.Cleanup(func() { co.Close() })
	}
	return co, err
}

func content(t *testing.T, co *gitsrc.Checkout) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(co.Dir, "a.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestCloneRefs(t *testing.T) {
	r, url, first, second, other := served(t, nil)
	for _, src := range []struct{ name, url string }{{"http", url}, {"path", r.Dir}, {"file", "file://" + r.Dir}} {
		for _, tc := range []struct {
			ref, wantRef, wantSHA, want string
		}{
			{"", "refs/heads/main", second, "v: 2\n"},
			{"main", "refs/heads/main", second, "v: 2\n"},
			{"other", "refs/heads/other", other, "v: other\n"},
			{"refs/heads/other", "refs/heads/other", other, "v: other\n"},
			{"light", "refs/tags/light", first, "v: 1\n"},
			{"annotated", "refs/tags/annotated", first, "v: 1\n"},
			{other, "", other, "v: other\n"},
		} {
			t.Run(src.name+"/"+tc.ref, func(t *testing.T) {
				co, err := clone(t, src.url, tc.ref)
				if err != nil {
					t.Fatal(err)
				}
				if co.Commit != tc.wantSHA {
					t.Errorf("commit = %s, want %s", co.Commit, tc.wantSHA)
				}
				if tc.wantRef != "" && co.Ref != tc.wantRef {
					t.Errorf("ref = %s, want %s", co.Ref, tc.wantRef)
				}
				if got := content(t, co); got != tc.want {
					t.Errorf("a.yaml = %q, want %q", got, tc.want)
				}
				if _, err := os.Stat(filepath.Join(co.Dir, ".git")); !os.IsNotExist(err) {
					t.Errorf("checkout has a .git entry (err %v): only the commit's files belong there", err)
				}
			})
		}
	}
}

// A commit that is no ref's tip needs the server to allow fetching it by
// SHA; git http-backend does not by default, so gitsrc falls back to a full
// fetch. Both paths must land on the right tree.
func TestCloneUnadvertisedSHA(t *testing.T) {
	r, url, first, _, _ := served(t, nil)
	for _, allow := range []string{"false", "true"} {
		t.Run("allowReachableSHA1InWant="+allow, func(t *testing.T) {
			r.Git("config", "uploadpack.allowReachableSHA1InWant", allow)
			co, err := clone(t, url, first)
			if err != nil {
				t.Fatal(err)
			}
			if co.Commit != first || content(t, co) != "v: 1\n" {
				t.Errorf("got commit %s with %q, want %s with v: 1", co.Commit, content(t, co), first)
			}
		})
	}
}

func TestCloneNotFound(t *testing.T) {
	r, url, _, _, _ := served(t, nil)
	for _, tc := range []struct{ name, url, ref, want string }{
		{"unknown branch over http", url, "nope", `"nope"`},
		{"unknown branch in path", r.Dir, "nope", `"nope"`},
		{"unknown sha", url, strings.Repeat("ab", 20), "abab"},
		{"unknown sha in path", r.Dir, strings.Repeat("ab", 20), "abab"},
		{"missing repository over http", url + "-missing", "", "-missing"},
		{"missing local repository", r.Dir + "-missing", "", "-missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := clone(t, tc.url, tc.ref)
			if !errors.Is(err, gitsrc.ErrNotFound) {
				t.Fatalf("err = %v, want ErrNotFound", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not name %q", err, tc.want)
			}
		})
	}
}

func TestCloneCredentialsNeverPrinted(t *testing.T) {
	const user, token = "bot", "s3cr3t-t0ken"
	_, url, _, _, _ := served(t, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if u, p, ok := req.BasicAuth(); !ok || u != user || p != token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	withCreds := strings.Replace(url, "http://", "http://"+user+":"+token+"@", 1)
	if _, err := clone(t, withCreds, "main"); err != nil {
		t.Fatalf("clone with the right token: %v", err)
	}
	wrong := strings.Replace(url, "http://", "http://"+user+":wrong-"+token+"@", 1)
	_, err := clone(t, wrong, "main")
	if !errors.Is(err, gitsrc.ErrAuth) {
		t.Fatalf("err = %v, want ErrAuth", err)
	}
	if strings.Contains(err.Error(), token) {
		t.Errorf("error shows the token: %v", err)
	}
	if got := gitsrc.Redact(wrong); strings.Contains(got, token) {
		t.Errorf("Redact(%q) = %q", wrong, got)
	}
}

func TestSub(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("apps/web/a.yaml", "v: 1\n")
	r.Write("file.yaml", "v: 1\n")
	r.Symlink("inside", "apps")
	r.Symlink("outside", "/etc")
	r.Commit("tree")
	co, err := clone(t, r.Dir, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		path    string
		want    string
		wantErr error
	}{
		{".", "", nil},
		{"apps/web", "apps/web", nil},
		{"./apps/../apps", "apps", nil},
		{"inside/web", "apps/web", nil},
		{"missing", "", gitsrc.ErrNotFound},
		{"file.yaml", "", gitsrc.ErrNotFound},
		{"../", "", gitsrc.ErrNotFound},
		{"/etc", "", gitsrc.ErrNotFound},
		{"outside", "", gitsrc.ErrUnsafe},
	} {
		got, err := co.Sub(tc.path)
		if tc.wantErr != nil {
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("Sub(%q) error = %v, want %v", tc.path, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("Sub(%q): %v", tc.path, err)
			continue
		}
		root, _ := filepath.EvalSymlinks(co.Dir)
		if want := filepath.Join(root, tc.want); got != want {
			t.Errorf("Sub(%q) = %s, want %s", tc.path, got, want)
		}
	}
	// The symlinks are written as symlinks, for the reader to judge.
	if target, err := os.Readlink(filepath.Join(co.Dir, "outside")); err != nil || target != "/etc" {
		t.Errorf("outside -> %q (%v), want a symlink to /etc", target, err)
	}
	// Entries says which are not regular files.
	entries, err := co.Entries(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Path == "outside" && e.File {
			t.Error("a symlink is listed as a file")
		}
	}
}

func TestCloseRemovesEverything(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("a.yaml", "v: 1\n")
	r.Commit("one")
	work := t.TempDir()
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: r.Dir, WorkDir: work})
	if err != nil {
		t.Fatal(err)
	}
	if err := co.Close(); err != nil {
		t.Fatal(err)
	}
	if left, _ := os.ReadDir(work); len(left) != 0 {
		t.Errorf("work dir still holds %v", left)
	}
}

// With DeferWrite the commit is resolved, fetched and verified, and its
// files are written only when asked for, once.
func TestDeferWrite(t *testing.T) {
	_, url, _, second, _ := served(t, nil)
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), DeferWrite: true})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if co.Commit != second {
		t.Errorf("commit %s, want %s", co.Commit, second)
	}
	if _, err := os.Stat(co.Dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the files are there before Write: %v", err)
	}
	if _, err := co.Sub("."); err == nil {
		t.Error("Sub before Write found a directory")
	}
	// The tree and its blobs are read from Git's objects alone.
	entries, err := co.Entries(context.Background())
	if err != nil || len(entries) != 1 || entries[0].Path != "a.yaml" || !entries[0].File {
		t.Fatalf("entries %+v, %v", entries, err)
	}
	if b, err := co.ReadBlob(entries[0].Hash); err != nil || string(b) != "v: 2\n" {
		t.Errorf("blob %q, %v", b, err)
	}
	for range 2 {
		if err := co.Write(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if got := content(t, co); got != "v: 2\n" {
		t.Errorf("a.yaml = %q", got)
	}
	if _, err := co.Sub("."); err != nil {
		t.Error(err)
	}
}
