package apiserver

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A tree with the entry "lnk/PWNED.txt" beside a symlink lnk to a directory
// outside the clone once made a client dry run, on a laptop, write
// PWNED.txt there before it refused the symlink. Now the tree is refused
// before anything is written, locally and from a server: exit 3 naming the
// tree, nothing outside, nothing in the cluster.
func TestHostileTreeWritesNothingOutside(t *testing.T) {
	outside := t.TempDir()
	r := testenv.NewRepo(t)
	apps := r.RawTree(testenv.RawEntry{Mode: "100644", Name: "cm.yaml", Hash: r.Blob(configMap("default", "hostile-tree", "1"))})
	r.CommitTree(r.RawTree(
		testenv.RawEntry{Mode: "40000", Name: "apps", Hash: apps},
		testenv.RawEntry{Mode: "120000", Name: "lnk", Hash: r.Blob(outside)},
		testenv.RawEntry{Mode: "100644", Name: "lnk/PWNED.txt", Hash: r.Blob("pwned")},
		testenv.RawEntry{Mode: "120000", Name: "d", Hash: r.Blob(outside)},
		testenv.RawEntry{Mode: "40000", Name: "d", Hash: apps},
	), "hostile")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	for _, src := range []struct{ name, url string }{{"path", r.Dir}, {"http", srv.URL + "/" + filepath.Base(r.Dir)}} {
		for _, mode := range []string{"--dry-run=client", "--dry-run=server", "--dry-run=none"} {
			t.Run(src.name+mode, func(t *testing.T) {
				refused(t, `tree "." holds an entry name with a "/" in it`, 0, "--repo", src.url, "--path", "apps", mode)
				if left, _ := os.ReadDir(outside); len(left) > 0 {
					t.Errorf("written outside the clone: %v", left)
				}
			})
		}
	}
}

// A 2 GB file of zeros anywhere in a commit is 2 MB of pack, and indexing
// it took a run past 6 GB of memory. Its header is read first now: 300 MB
// of zeros over smart HTTP, outside --path, is refused before it is
// inflated (exit 3 naming the limit), in a small fraction of the shipped
// pod's 512 MiB.
func TestHugeBlobRefusedFromItsHeader(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("apps/cm.yaml", configMap("default", "huge-blob", "1"))
	r.Commit("apps")
	zeros := exec.Command("sh", "-c", "head -c 314572800 /dev/zero | git hash-object -w --stdin")
	zeros.Dir = r.Dir
	zeros.Env = append(os.Environ(), testenv.GitEnv...)
	blob, err := zeros.Output()
	if err != nil {
		t.Fatal(err)
	}
	r.Git("update-index", "--add", "--cacheinfo", "100644,"+strings.TrimSpace(string(blob))+",assets/zeros.bin")
	r.Git("commit", "-q", "-m", "zeros")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	refused(t, "314572800 bytes, over the limit of 104857600 (--max-object-bytes)", 192<<20, "--repo", srv.URL+"/"+filepath.Base(r.Dir), "--path", "apps")
}

// Many manifests each under --max-manifest-bytes add up past what one
// run holds in memory: 30 files of 3 MB are refused by
// --max-manifest-total-bytes before they are all parsed.
func TestManifestsOverTheTotalBudget(t *testing.T) {
	r := testenv.NewRepo(t)
	// Data of 3 MB in one document: each file is under the 4 MiB limit.
	for i := range 30 {
		r.Write(filepath.Join("apps", "cm"+string(rune('a'+i/26))+string(rune('a'+i%26))+".yaml"),
			configMap("default", "total-"+string(rune('a'+i%26)), strings.Repeat("x", 3<<20)))
	}
	r.Commit("big")
	refused(t, "over the limit of 67108864 for the whole commit (--max-manifest-total-bytes)", 512<<20, "--repo", r.Dir, "--path", "apps")
}

// refused runs cronsync with args and a work directory of its own, and
// checks that it exited 3 with a line holding want, changed nothing in the
// cluster, and, when maxRSS is set, peaked below it.
func refused(t *testing.T, want string, maxRSS int64, args ...string) {
	t.Helper()
	before := snapshot(t)
	out := cronsync(t, nil, append(args, "--work-dir", t.TempDir())...)
	if out.code != exitContent || !hasLineWith(out.stderr, want) {
		t.Errorf("exit %d; want %d and a line with %q", out.code, exitContent, want)
	}
	t.Logf("peak memory %d MiB", out.maxRSS>>20)
	if maxRSS > 0 && out.maxRSS > maxRSS {
		t.Errorf("peak memory %d MiB, over %d MiB", out.maxRSS>>20, maxRSS>>20)
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
}
