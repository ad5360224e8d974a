package gitsrc_test

import (
	"bytes"
	"context"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

// traffic counts what a smart HTTP server is asked and sends.
type traffic struct {
	adverts, packs atomic.Int32
	sent           atomic.Int64
}

func (tr *traffic) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			tr.packs.Add(1)
		} else {
			tr.adverts.Add(1)
		}
		h.ServeHTTP(&countingWriter{ResponseWriter: w, n: &tr.sent}, r)
	})
}

func (tr *traffic) reset() {
	tr.adverts.Store(0)
	tr.packs.Store(0)
	tr.sent.Store(0)
}

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// logLines collects what Options.Log receives.
type logLines struct {
	mu    sync.Mutex
	lines []string
}

func (l *logLines) log(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, s)
}

func (l *logLines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// monorepo is a repository with code beside deploy/, an overlay of base/,
// served over smart HTTP with uploadpack.allowFilter as allowFilter says.
func monorepo(t *testing.T, allowFilter bool) (*testenv.Repo, string, *traffic) {
	t.Helper()
	r := testenv.NewRepo(t)
	for i := range 50 {
		r.Write(filepath.Join("src", "pkg", string(rune('a'+i%26))+strings.Repeat("x", i/26), "main.go"), filler(i, 4<<10))
	}
	r.Write("deploy/kustomization.yaml", "resources: [../base, cm.yaml]\n")
	r.Write("deploy/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: deploy}\n")
	r.Write("base/kustomization.yaml", "resources: [a.yaml]\n")
	r.Write("base/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: base}\n")
	r.Write("README.md", "a monorepo\n")
	r.Commit("first")
	if allowFilter {
		r.Git("config", "uploadpack.allowFilter", "true")
	}
	tr := &traffic{}
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), tr.wrap)
	return r, srv.URL + "/" + filepath.Base(r.Dir), tr
}

// filler is n bytes of source that does not compress, different for
// each seed.
func filler(seed, n int) string {
	var b strings.Builder
	x := uint32(seed*2654435761 + 1)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		fmt.Fprintf(&b, "%08x", x)
		if b.Len()%72 == 0 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

func files(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, p)
			out = append(out, filepath.ToSlash(rel))
		}
		return nil
	})
	return out
}

// With a server that filters, a lazy Clone fetches the commit's trees,
// Write the files under Path in one more request, and Need a directory
// outside it in one more; nothing else is written.
func TestPartialFetch(t *testing.T) {
	_, url, tr := monorepo(t, true)
	var log logLines
	ctx := context.Background()
	co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: url, WorkDir: t.TempDir(), Lazy: true, Partial: true, Path: "deploy", Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if err := co.Write(ctx); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(files(t, co.Dir), " "); got != "deploy/cm.yaml deploy/kustomization.yaml" {
		t.Errorf("written: %s", got)
	}
	if err := co.Need(ctx, "deploy/../base", false); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(files(t, co.Dir), " "); got != "base/a.yaml base/kustomization.yaml deploy/cm.yaml deploy/kustomization.yaml" {
		t.Errorf("written: %s", got)
	}
	t.Logf("adverts %d packs %d sent %d; %s", tr.adverts.Load(), tr.packs.Load(), tr.sent.Load(), &log)
	if a, p := tr.adverts.Load(), tr.packs.Load(); a != 1 || p != 3 {
		t.Errorf("%d advertisements and %d packs; want 1 and 3", a, p)
	}
}

// fetchBytes is how many bytes a server sends for a lazy Clone with Path
// written, partial or not.
func fetchBytes(t *testing.T, url string, tr *traffic, partial bool, path string) int64 {
	t.Helper()
	tr.reset()
	ctx := context.Background()
	co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: url, WorkDir: t.TempDir(), Lazy: true, Partial: partial, Path: path})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if err := co.Write(ctx); err != nil {
		t.Fatal(err)
	}
	return tr.sent.Load()
}

// A plain path costs the advertisement, the trees, and one request for
// its files, a fraction of the whole commit's bytes.
func TestPartialPlainPath(t *testing.T) {
	r, url, tr := monorepo(t, true)
	r.Write("plain/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
	r.Write("plain/sub/b.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n")
	r.Commit("plain")
	whole := fetchBytes(t, url, tr, false, "plain")
	part := fetchBytes(t, url, tr, true, "plain")
	t.Logf("whole %d bytes, partial %d bytes in %d requests", whole, part, tr.adverts.Load()+tr.packs.Load())
	if a, p := tr.adverts.Load(), tr.packs.Load(); a != 1 || p != 2 {
		t.Errorf("%d advertisements and %d packs; want 1 and 2", a, p)
	}
	if part*4 > whole {
		t.Errorf("the partial fetch sent %d bytes, the whole one %d", part, whole)
	}
}

// sshServed serves r over SSH and returns its URL and the credentials to
// read it.
func sshServed(t *testing.T, r *testenv.Repo) (string, gitsrc.Credentials) {
	t.Helper()
	client, clientPriv := testenv.NewEd25519(t)
	host, _ := testenv.NewEd25519(t)
	addr := testenv.ServeSSH(t, filepath.Dir(r.Dir), client.PublicKey(), host)
	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	return "ssh://git@" + addr + "/" + filepath.Base(r.Dir), gitsrc.Credentials{
		SSHKeyFile:        writeFile(t, "id_ed25519", string(pem.EncodeToMemory(block))),
		SSHKnownHostsFile: writeFile(t, "known_hosts", knownhosts.Line([]string{knownhosts.Normalize(addr)}, host.PublicKey())+"\n"),
	}
}

// Each way to the whole commit is taken when it must be, says why, and
// gives the same files: a server without filter, one that will not hand
// out objects by id (SSH without uploadpack.allowAnySHA1InWant), and one
// that takes the trees and then refuses the blobs.
func TestPartialFallbacks(t *testing.T) {
	r, httpURL, _ := monorepo(t, false)
	sshURL, creds := sshServed(t, r)
	for _, tc := range []struct {
		name   string
		url    string
		config map[string]string
		want   []string
	}{
		{"http with filter", httpURL, map[string]string{"uploadpack.allowFilter": "true"},
			[]string{"with its trees and no files"}},
		{"http without filter", httpURL, nil,
			[]string{"fetching commit", "whole: the server does not offer filter (git: uploadpack.allowFilter)"}},
		{"ssh with allowAnySHA1InWant", sshURL, map[string]string{"uploadpack.allowFilter": "true", "uploadpack.allowAnySHA1InWant": "true"},
			[]string{"with its trees and no files"}},
		{"ssh without allowAnySHA1InWant", sshURL, map[string]string{"uploadpack.allowFilter": "true"},
			[]string{"whole: the server does not hand out objects by id over this protocol (git: uploadpack.allowAnySHA1InWant)"}},
		{"ssh that refuses blobs", sshURL, map[string]string{"uploadpack.allowFilter": "true", "uploadpack.allowTipSHA1InWant": "true"},
			[]string{"with its trees and no files", "whole: asking the server for 2 files by id failed", "not our ref"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, k := range []string{"uploadpack.allowFilter", "uploadpack.allowAnySHA1InWant", "uploadpack.allowTipSHA1InWant"} {
				v := tc.config[k]
				if v == "" {
					v = "false"
				}
				r.Git("config", k, v)
			}
			var log logLines
			ctx := context.Background()
			co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: tc.url, WorkDir: t.TempDir(), Lazy: true, Partial: true, Path: "deploy", Credentials: creds, Log: log.log})
			if err != nil {
				t.Fatal(err)
			}
			defer co.Close()
			if err := co.Write(ctx); err != nil {
				t.Fatal(err)
			}
			if err := co.Need(ctx, "base", false); err != nil {
				t.Fatal(err)
			}
			for _, w := range tc.want {
				if !strings.Contains(log.String(), w) {
					t.Errorf("the log does not say %q:\n%s", w, &log)
				}
			}
			t.Log(&log)
			if got, _ := os.ReadFile(filepath.Join(co.Dir, "base/a.yaml")); !strings.Contains(string(got), "name: base") {
				t.Errorf("base/a.yaml = %q", got)
			}
			if got, _ := os.ReadFile(filepath.Join(co.Dir, "deploy/cm.yaml")); !strings.Contains(string(got), "name: deploy") {
				t.Errorf("deploy/cm.yaml = %q", got)
			}
		})
	}
}

// A tree naming a blob the server does not have: the request for it is
// refused, and so is the whole commit; Write fails and writes nothing.
func TestPartialBlobMissingOnServer(t *testing.T) {
	r, url, _ := monorepo(t, true)
	blob := r.Git("rev-parse", "HEAD:deploy/cm.yaml")
	if err := os.Remove(filepath.Join(r.Dir, ".git", "objects", blob[:2], blob[2:])); err != nil {
		t.Fatal(err)
	}
	var log logLines
	ctx := context.Background()
	co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: url, WorkDir: t.TempDir(), Lazy: true, Partial: true, Path: "deploy", Log: log.log})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	err = co.Write(ctx)
	t.Logf("%v\n%s", err, &log)
	if err == nil {
		t.Fatal("Write succeeded")
	}
	if !strings.Contains(log.String(), "whole: asking the server for 2 files by id failed") {
		t.Errorf("the log does not say the blobs were refused:\n%s", &log)
	}
	if errors.Is(err, gitsrc.ErrNotFound) || errors.Is(err, gitsrc.ErrUnsafe) || errors.Is(err, gitsrc.ErrAuth) {
		t.Errorf("err = %v; want a failure to retry", err)
	}
	if got := files(t, co.Dir); len(got) > 0 {
		t.Errorf("written: %v", got)
	}
}

// wantsInjected is a proxy in front of a smart HTTP server that adds the
// wants extra to every request for objects that has no "deepen" line: the
// requests for blobs by id. The real server then sends objects that were
// not asked for.
func wantsInjected(extra []string) func(http.Handler) http.Handler {
	return func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodPost {
				body, _ := io.ReadAll(r.Body)
				if !bytes.Contains(body, []byte("deepen")) {
					var add bytes.Buffer
					for _, h := range extra {
						fmt.Fprintf(&add, "%04xwant %s\n", 4+len("want \n")+len(h), h)
					}
					first := 0
					if n, err := strconv.ParseUint(string(body[:4]), 16, 16); err == nil {
						first = int(n)
					}
					body = slices.Concat(body[:first], add.Bytes(), body[first:])
				}
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.ContentLength = int64(len(body))
				r.Header.Set("Content-Length", strconv.Itoa(len(body)))
			}
			h.ServeHTTP(w, r)
		})
	}
}

// A server that sends blobs nobody asked for: a few are ignored (never
// read, never written); more than a few past those asked for refuse the
// pack from its header, and the commit is fetched whole.
func TestPartialUnrequestedBlobs(t *testing.T) {
	r, _, _ := monorepo(t, true)
	var src []string
	for _, l := range strings.Split(r.Git("ls-tree", "-r", "HEAD", "src"), "\n") {
		src = append(src, strings.Fields(l)[2])
	}
	for _, tc := range []struct {
		name     string
		extra    int
		fallBack bool
	}{{"a few", 3, false}, {"many", 40, true}} {
		t.Run(tc.name, func(t *testing.T) {
			srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), wantsInjected(src[:tc.extra]))
			var log logLines
			ctx := context.Background()
			co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: srv.URL + "/" + filepath.Base(r.Dir), WorkDir: t.TempDir(), Lazy: true, Partial: true, Path: "deploy", Log: log.log})
			if err != nil {
				t.Fatal(err)
			}
			defer co.Close()
			if err := co.Write(ctx); err != nil {
				t.Fatal(err)
			}
			t.Log(&log)
			fellBack := strings.Contains(log.String(), "more than the 18 it may hold; refused before it was read")
			if fellBack != tc.fallBack {
				t.Errorf("fell back: %t, want %t:\n%s", fellBack, tc.fallBack, &log)
			}
			if got := strings.Join(files(t, co.Dir), " "); got != "deploy/cm.yaml deploy/kustomization.yaml" {
				t.Errorf("written: %s", got)
			}
		})
	}
}

// Symlinks that leave the repository are written as the commit has them
// (the reader refuses them) and never followed: Need writes nothing
// outside the checkout, through a link or a "..".
func TestPartialNeedStaysInside(t *testing.T) {
	outside := t.TempDir()
	r := testenv.NewRepo(t)
	r.Write("deploy/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
	r.Symlink("deploy/abs", outside)
	r.Symlink("deploy/up", "../../..")
	r.Symlink("deploy/loop", "loop")
	r.Commit("links")
	r.Git("config", "uploadpack.allowFilter", "true")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	ctx := context.Background()
	co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: srv.URL + "/" + filepath.Base(r.Dir), WorkDir: t.TempDir(), Lazy: true, Partial: true, Path: "deploy"})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if err := co.Write(ctx); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"deploy/abs/x", "deploy/abs", "deploy/up/etc", "deploy/loop/x", "../x", "deploy/../../x", "nope/x"} {
		for _, whole := range []bool{false, true} {
			if err := co.Need(ctx, p, whole); err != nil {
				t.Errorf("Need(%q, %t): %v", p, whole, err)
			}
		}
	}
	if entries, _ := os.ReadDir(outside); len(entries) > 0 {
		t.Errorf("written outside: %v", entries)
	}
	if got := strings.Join(files(t, co.Dir), " "); got != "deploy/a.yaml deploy/abs deploy/loop deploy/up" {
		t.Errorf("written: %s", got)
	}
}
