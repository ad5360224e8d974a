package gitsrc_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
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

// A URL that does not parse is printed in the very error that says so:
// neither Redact nor the clone's error keeps its password.
func TestUnparsableURLCredentialsNeverPrinted(t *testing.T) {
	for _, u := range []string{
		"http://alice:pa%zzSECRET@127.0.0.1:1/x.git",
		"http://alice:SECRET@127.0.0.1:bad/x.git",
		"http://alice:SECRET@[::1/x.git",
	} {
		if got := gitsrc.Redact(u); strings.Contains(got, "SECRET") {
			t.Errorf("Redact(%q) = %q", u, got)
		}
		_, err := clone(t, u, "main")
		if err == nil || strings.Contains(err.Error(), "SECRET") {
			t.Errorf("clone %q: %v", u, err)
		}
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

// fetches counts the requests for objects (git-upload-pack POSTs) that a
// smart HTTP server answers, as apart from its ref advertisements.
type fetches struct{ n atomic.Int32 }

func (f *fetches) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/git-upload-pack") {
			f.n.Add(1)
		}
		h.ServeHTTP(w, r)
	})
}

// A lazy Clone of a remote resolves the commit from the ref advertisement
// alone; its objects are fetched by the first Entries or Write, once, and
// its files written only when asked for.
func TestLazy(t *testing.T) {
	var f fetches
	_, url, first, second, _ := served(t, f.wrap)
	for _, tc := range []struct{ ref, wantRef, wantSHA, want string }{
		{"", "refs/heads/main", second, "v: 2\n"},
		{"light", "refs/tags/light", first, "v: 1\n"},
		{"annotated", "refs/tags/annotated", first, "v: 1\n"},
		{second, "refs/heads/main", second, "v: 2\n"},
	} {
		t.Run(tc.ref, func(t *testing.T) {
			f.n.Store(0)
			co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, Ref: tc.ref, WorkDir: t.TempDir(), Lazy: true})
			if err != nil {
				t.Fatal(err)
			}
			defer co.Close()
			if co.Commit != tc.wantSHA || co.Ref != tc.wantRef {
				t.Errorf("commit %s at %s, want %s at %s", co.Commit, co.Ref, tc.wantSHA, tc.wantRef)
			}
			if n := f.n.Load(); n != 0 {
				t.Errorf("Clone fetched objects %d times; the advertisement names the commit", n)
			}
			if _, err := os.Stat(co.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("the files are there before Write: %v", err)
			}
			if _, err := co.Sub("."); err == nil {
				t.Error("Sub before Write found a directory")
			}
			if _, err := co.ReadBlob(first); err == nil {
				t.Error("ReadBlob before the fetch read something")
			}
			// The tree and its blobs are read from Git's objects alone.
			entries, err := co.Entries(context.Background())
			if err != nil || len(entries) != 1 || entries[0].Path != "a.yaml" || !entries[0].File {
				t.Fatalf("entries %+v, %v", entries, err)
			}
			if b, err := co.ReadBlob(entries[0].Hash); err != nil || string(b) != tc.want {
				t.Errorf("blob %q, %v", b, err)
			}
			for range 2 {
				if err := co.Write(context.Background()); err != nil {
					t.Fatal(err)
				}
			}
			if got := content(t, co); got != tc.want {
				t.Errorf("a.yaml = %q", got)
			}
			if _, err := co.Sub("."); err != nil {
				t.Error(err)
			}
			if n := f.n.Load(); n != 1 {
				t.Errorf("objects fetched %d times, want once", n)
			}
		})
	}
	t.Run("local", func(t *testing.T) {
		r := testenv.NewRepo(t)
		r.Write("a.yaml", "v: 1\n")
		sha := r.Commit("first")
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: r.Dir, WorkDir: t.TempDir(), Lazy: true})
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		if _, err := os.Stat(co.Dir); co.Commit != sha || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("commit %s (want %s), files: %v", co.Commit, sha, err)
		}
		if err := co.Write(context.Background()); err != nil || content(t, co) != "v: 1\n" {
			t.Fatalf("write: %v", err)
		}
	})
}

// A branch that moves between the advertisement and the fetch must not be
// applied under the SHA the run has already reported: the reported commit
// is fetched by its SHA where the server allows it, and otherwise the run
// fails.
func TestLazyRefMoved(t *testing.T) {
	for _, allow := range []bool{true, false} {
		t.Run(fmt.Sprint("allowReachableSHA1InWant=", allow), func(t *testing.T) {
			r, url, _, second, _ := served(t, nil)
			r.Git("config", "uploadpack.allowReachableSHA1InWant", fmt.Sprint(allow))
			co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Lazy: true})
			if err != nil {
				t.Fatal(err)
			}
			defer co.Close()
			r.Write("a.yaml", "v: 3\n")
			third := r.Commit("third")
			err = co.Write(context.Background())
			if allow {
				if err != nil {
					t.Fatal(err)
				}
				if got := content(t, co); co.Commit != second || got != "v: 2\n" {
					t.Errorf("commit %s with %q; want the reported %s with v: 2", co.Commit, got, second)
				}
				return
			}
			want := "ref refs/heads/main moved from commit " + second + " to " + third + " while this run read it, and the server does not hand out " + second + " by its SHA; the next run applies the new one"
			if err == nil || err.Error() != want {
				t.Fatalf("got %v, want %q", err, want)
			}
			if _, err := co.Entries(context.Background()); err == nil {
				t.Error("Entries after a failed fetch listed a commit")
			}
			if _, err := os.Stat(co.Dir); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("files written after the ref moved: %v", err)
			}
		})
	}
}

// What is not named by the advertisement is fetched by Clone itself: a
// commit no ref points at (so that a wrong SHA fails there), and, under
// --verify-keys-file, every commit, since the signature is in its objects.
func TestLazyFetchesWhenItMust(t *testing.T) {
	var f fetches
	r, url, first, second, _ := served(t, f.wrap)
	r.Git("config", "uploadpack.allowReachableSHA1InWant", "true")
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, Ref: first, WorkDir: t.TempDir(), Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	co.Close()
	if n := f.n.Load(); n != 1 || co.Commit != first {
		t.Errorf("commit %s after %d fetches; want %s after one", co.Commit, n, first)
	}
	_, err = gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, Ref: strings.Repeat("ab", 20), WorkDir: t.TempDir(), Lazy: true})
	if err == nil {
		t.Error("a SHA the remote does not have was taken")
	}

	f.n.Store(0)
	_, keys := pgpKey(t, "nobody")
	_, err = gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Lazy: true, VerifyKeysFile: keys})
	if !errors.Is(err, gitsrc.ErrUnverified) || f.n.Load() != 1 {
		t.Errorf("unsigned %s: %v after %d fetches; want ErrUnverified after one", second, err, f.n.Load())
	}
}
