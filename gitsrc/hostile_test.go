package gitsrc_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

// hostileTree commits a tree made by makeTree (the repository's blobs at
// hand) and returns the repository, served over smart HTTP as well.
func hostileTree(t *testing.T, makeTree func(r *testenv.Repo) string) (local, http string) {
	t.Helper()
	r := testenv.NewRepo(t)
	r.CommitTree(makeTree(r), "hostile")
	r.Git("config", "uploadpack.allowFilter", "true")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	return r.Dir, srv.URL + "/" + filepath.Base(r.Dir)
}

// Trees git itself refuses to check out are refused before anything is
// written, and no write lands outside the checkout whatever the names say:
// the entry "lnk/PWNED.txt" beside a symlink lnk to a directory outside
// wrote PWNED.txt there once.
func TestHostileTreesWriteNothingOutside(t *testing.T) {
	outside := t.TempDir()
	manifest := "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n"
	cases := []struct {
		name string
		tree func(r *testenv.Repo) string
		want string
	}{
		{"slash in a name behind a symlink", func(r *testenv.Repo) string {
			return r.RawTree(
				testenv.RawEntry{Mode: "120000", Name: "lnk", Hash: r.Blob(outside)},
				testenv.RawEntry{Mode: "100644", Name: "lnk/PWNED.txt", Hash: r.Blob("pwned")},
			)
		}, `an entry name with a "/" in it`},
		{"a symlink and a directory of one name", func(r *testenv.Repo) string {
			sub := r.RawTree(testenv.RawEntry{Mode: "120000", Name: "planted", Hash: r.Blob("/etc")},
				testenv.RawEntry{Mode: "100644", Name: "PWNED.txt", Hash: r.Blob("pwned")})
			return r.RawTree(
				testenv.RawEntry{Mode: "120000", Name: "d", Hash: r.Blob(outside)},
				testenv.RawEntry{Mode: "40000", Name: "d", Hash: sub},
			)
		}, `two entries named "d"`},
		{"dot dot", func(r *testenv.Repo) string {
			return r.RawTree(testenv.RawEntry{Mode: "100644", Name: "..", Hash: r.Blob("x")})
		}, `an entry named ".."`},
		{".GIT deep down", func(r *testenv.Repo) string {
			git := r.RawTree(testenv.RawEntry{Mode: "100644", Name: "config", Hash: r.Blob("[core]\n")})
			deep := r.RawTree(testenv.RawEntry{Mode: "40000", Name: ".GIT", Hash: git})
			return r.RawTree(
				testenv.RawEntry{Mode: "100644", Name: "a.yaml", Hash: r.Blob(manifest)},
				testenv.RawEntry{Mode: "40000", Name: "deep", Hash: deep},
			)
		}, `an entry named ".GIT"`},
		{".git with an HFS-ignorable code point", func(r *testenv.Repo) string {
			return r.RawTree(testenv.RawEntry{Mode: "100644", Name: ".g\u200cit", Hash: r.Blob("x")})
		}, "git refuses such a tree"},
	}
	for _, tc := range cases {
		local, http := hostileTree(t, tc.tree)
		for _, src := range []struct {
			name, url string
			partial   bool
		}{{"path", local, false}, {"http", http, false}, {"http partial", http, true}} {
			t.Run(tc.name+"/"+src.name, func(t *testing.T) {
				work := t.TempDir()
				co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: src.url, WorkDir: work, Partial: src.partial})
				if err == nil {
					co.Close()
					t.Fatal("the clone succeeded")
				}
				if !errors.Is(err, gitsrc.ErrUnsafe) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("err = %v; want ErrUnsafe saying %q", err, tc.want)
				}
				entries, _ := os.ReadDir(outside)
				for _, e := range entries {
					t.Errorf("%s was written outside the checkout", e.Name())
				}
				// Nothing is left behind in the work directory either.
				if left, _ := os.ReadDir(work); len(left) > 0 {
					t.Errorf("the work directory holds %v", left)
				}
			})
		}
	}
}

// The lazy path (Entries, which a same-commit or reuse run lists) refuses
// the same trees.
func TestHostileTreeEntries(t *testing.T) {
	local, _ := hostileTree(t, func(r *testenv.Repo) string {
		return r.RawTree(
			testenv.RawEntry{Mode: "120000", Name: "lnk", Hash: r.Blob("/tmp")},
			testenv.RawEntry{Mode: "100644", Name: "lnk/x.yaml", Hash: r.Blob("x")},
		)
	})
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: local, WorkDir: t.TempDir(), Lazy: true})
	if err != nil {
		t.Fatal(err)
	}
	defer co.Close()
	if _, err := co.Entries(context.Background()); !errors.Is(err, gitsrc.ErrUnsafe) {
		t.Errorf("Entries: err = %v; want ErrUnsafe", err)
	}
}

// An object over Limits.ObjectBytes is refused from its header: from a
// server, before go-git indexes the pack; from a local repository, before
// it is read. Together, files over Limits.TreeBytes are refused as they
// are written. Both are ErrTooLarge and say which limit.
func TestObjectAndTreeLimits(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("deploy/a.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n")
	r.Write("assets/big.bin", strings.Repeat("\x00", 8<<20))
	r.Commit("big")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	url := srv.URL + "/" + filepath.Base(r.Dir)
	for _, src := range []struct{ name, url, want string }{
		{"http", url, "an object the server sent: 8388608 bytes, over the limit of 1048576 (--max-object-bytes)"},
		{"path", r.Dir, "assets/big.bin: 8388608 bytes, over the limit of 1048576 (--max-object-bytes)"},
	} {
		t.Run("object/"+src.name, func(t *testing.T) {
			_, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: src.url, WorkDir: t.TempDir(), Limits: gitsrc.Limits{ObjectBytes: 1 << 20}})
			if !errors.Is(err, gitsrc.ErrTooLarge) || !strings.Contains(err.Error(), src.want) {
				t.Errorf("err = %v; want ErrTooLarge saying %q", err, src.want)
			}
		})
	}
	t.Run("object/http partial", func(t *testing.T) {
		// Refused from the pack of blobs, and not fetched again whole.
		r.Git("config", "uploadpack.allowFilter", "true")
		defer r.Git("config", "uploadpack.allowFilter", "false")
		var log logLines
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Partial: true, Path: "assets", Log: log.log, Limits: gitsrc.Limits{ObjectBytes: 1 << 20}})
		if err == nil {
			co.Close()
		}
		if !errors.Is(err, gitsrc.ErrTooLarge) || !strings.Contains(err.Error(), "an object the server sent: 8388608 bytes") || strings.Contains(log.String(), "whole") {
			t.Errorf("err = %v; want ErrTooLarge from the pack of blobs\n%s", err, &log)
		}
		// The same commit read where the big file is not is no trouble.
		co, err = gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Partial: true, Path: "deploy", Limits: gitsrc.Limits{ObjectBytes: 1 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		co.Close()
	})
	t.Run("tree", func(t *testing.T) {
		_, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Limits: gitsrc.Limits{ObjectBytes: 16 << 20, TreeBytes: 4 << 20}})
		if !errors.Is(err, gitsrc.ErrTooLarge) || !strings.Contains(err.Error(), "assets/big.bin") || !strings.Contains(err.Error(), "--max-checkout-bytes") {
			t.Errorf("err = %v; want ErrTooLarge naming assets/big.bin and --max-checkout-bytes", err)
		}
	})
	t.Run("within", func(t *testing.T) {
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Limits: gitsrc.Limits{ObjectBytes: 16 << 20, TreeBytes: 16 << 20}})
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		if st, err := os.Stat(filepath.Join(co.Dir, "assets/big.bin")); err != nil || st.Size() != 8<<20 {
			t.Errorf("big.bin: %v %v", st, err)
		}
	})
}
