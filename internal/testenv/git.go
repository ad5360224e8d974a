package testenv

import (
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Repo is a Git repository in a test's temporary directory, driven by the
// git command (tests may run git; cronsync itself never does).
type Repo struct {
	// Dir is the work tree.
	Dir string
	t   testing.TB
}

// GitEnv keeps the developer's own git configuration out of what tests
// (and the demo) run git for, and names who commits.
var GitEnv = []string{
	"GIT_CONFIG_GLOBAL=/dev/null",
	"GIT_CONFIG_NOSYSTEM=1",
	"GIT_AUTHOR_NAME=cronsync test", "GIT_AUTHOR_EMAIL=test@cronsync.invalid",
	"GIT_COMMITTER_NAME=cronsync test", "GIT_COMMITTER_EMAIL=test@cronsync.invalid",
}

// NewRepo makes an empty repository whose default branch is main.
func NewRepo(t testing.TB) *Repo {
	t.Helper()
	return NewRepoAt(t, filepath.Join(t.TempDir(), "repo"))
}

// NewRepoAt is NewRepo in dir, for repositories served side by side (a
// parent and its submodules).
func NewRepoAt(t testing.TB, dir string) *Repo {
	t.Helper()
	r := &Repo{Dir: dir, t: t}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.Git("init", "-q", "-b", "main")
	return r
}

// Git runs git in the work tree and returns its trimmed output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), GitEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write creates or replaces a file, making its directories.
func (r *Repo) Write(path, content string) {
	r.t.Helper()
	full := filepath.Join(r.Dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// Symlink commits-to-be a symlink at path pointing at target, verbatim.
func (r *Repo) Symlink(path, target string) {
	r.t.Helper()
	full := filepath.Join(r.Dir, filepath.FromSlash(path))
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.Symlink(target, full); err != nil {
		r.t.Fatal(err)
	}
}

// Remove deletes a file or directory from the work tree.
func (r *Repo) Remove(path string) {
	r.t.Helper()
	if err := os.RemoveAll(filepath.Join(r.Dir, filepath.FromSlash(path))); err != nil {
		r.t.Fatal(err)
	}
}

// Submodule records a submodule at path pinned to commit sha, with a
// .gitmodules entry whose URL is url (none when url is empty), as `git
// submodule add` would, without fetching anything.
func (r *Repo) Submodule(path, sha, url string) {
	r.t.Helper()
	if url != "" {
		f, err := os.OpenFile(filepath.Join(r.Dir, ".gitmodules"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err != nil {
			r.t.Fatal(err)
		}
		fmt.Fprintf(f, "[submodule %q]\n\tpath = %s\n\turl = %s\n", path, path, url)
		if err := f.Close(); err != nil {
			r.t.Fatal(err)
		}
	}
	// An empty directory is what an uninitialised submodule looks like:
	// `git add -A` leaves its gitlink alone.
	if err := os.MkdirAll(filepath.Join(r.Dir, filepath.FromSlash(path)), 0o755); err != nil {
		r.t.Fatal(err)
	}
	r.Git("update-index", "--add", "--cacheinfo", "160000,"+sha+","+path)
}

// Commit commits everything in the work tree and returns the commit's SHA.
func (r *Repo) Commit(msg string) string {
	r.t.Helper()
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	return r.Git("rev-parse", "HEAD")
}

// ServeHTTP serves every repository under root over git's smart HTTP
// protocol (git http-backend behind net/http/cgi) until the test ends.
// URLs look like <server>/<dir relative to root>. wrap, if not nil, sits in
// front of the backend (to demand credentials, say).
func ServeHTTP(t testing.TB, root string, wrap func(http.Handler) http.Handler) *httptest.Server {
	t.Helper()
	h, err := GitHandler(root)
	if err != nil {
		t.Fatal(err)
	}
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// GitHandler serves every repository under root over git's smart HTTP
// protocol: git http-backend behind net/http/cgi.
func GitHandler(root string) (http.Handler, error) {
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return nil, fmt.Errorf("git --exec-path: %w", err)
	}
	return &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env: append([]string{
			"GIT_PROJECT_ROOT=" + root,
			"GIT_HTTP_EXPORT_ALL=1",
		}, GitEnv...),
	}, nil
}

// RawEntry is one entry of a tree written byte for byte, names unchecked.
type RawEntry struct {
	// Mode is git's octal mode: "100644", "120000" (symlink), "40000"
	// (tree), "160000" (gitlink).
	Mode string
	Name string
	// Hash is the blob's, tree's or commit's SHA, in hex.
	Hash string
}

// Blob stores content as a blob and returns its SHA.
func (r *Repo) Blob(content string) string {
	r.t.Helper()
	return r.gitIn(strings.NewReader(content), "hash-object", "-w", "--stdin")
}

// RawTree stores a tree holding entries exactly as given, as `git
// hash-object --literally` does: names git would refuse (with a "/", "..",
// ".git", twice the same) are kept, which is what a hostile repository
// does. It returns the tree's SHA.
func (r *Repo) RawTree(entries ...RawEntry) string {
	r.t.Helper()
	var b strings.Builder
	for _, e := range entries {
		raw, err := hex.DecodeString(e.Hash)
		if err != nil || len(raw) != 20 {
			r.t.Fatalf("entry %q: bad hash %q", e.Name, e.Hash)
		}
		b.WriteString(e.Mode + " " + e.Name + "\x00")
		b.Write(raw)
	}
	return r.gitIn(strings.NewReader(b.String()), "hash-object", "-w", "-t", "tree", "--literally", "--stdin")
}

// CommitTree makes a commit of tree on top of HEAD (if any), moves main to
// it and returns its SHA.
func (r *Repo) CommitTree(tree, msg string) string {
	r.t.Helper()
	args := []string{"commit-tree", tree, "-m", msg}
	if parent, err := r.try("rev-parse", "-q", "--verify", "HEAD"); err == nil && parent != "" {
		args = append(args, "-p", parent)
	}
	sha := r.Git(args...)
	r.Git("update-ref", "refs/heads/main", sha)
	return sha
}

func (r *Repo) try(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), GitEnv...)
	out, err := cmd.Output()
	return strings.TrimSpace(string(out)), err
}

// gitIn runs git with stdin and returns its trimmed output.
func (r *Repo) gitIn(stdin io.Reader, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	cmd.Env = append(os.Environ(), GitEnv...)
	cmd.Stdin = stdin
	out, err := cmd.Output()
	if err != nil {
		r.t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return strings.TrimSpace(string(out))
}
