package apiserver

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/testenv"
)

// podMemory is the memory limit manifests/ gives the pod: a run, its
// children included, must stay under it whatever the commit holds.
const podMemory = 512 << 20

// budgetChart is a chart whose one template is tmpl.
func budgetChart(dir, tmpl string) map[string]string {
	return map[string]string{
		dir + "/Chart.yaml":        "apiVersion: v2\nname: web\nversion: 0.1.0\n",
		dir + "/values.yaml":       "{}\n",
		dir + "/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: web}\ndata:\n  x: " + tmpl + "\n",
	}
}

// nameTemplateRepo is a kustomization whose helmCharts entry names its
// release with nameTemplate, over a vendored chart.
func nameTemplateRepo(t *testing.T, nameTemplate string) *testenv.Repo {
	t.Helper()
	r := testenv.NewRepo(t)
	for p, c := range budgetChart("apps/charts/web", "y") {
		r.Write(p, c)
	}
	r.Write("apps/kustomization.yaml", fmt.Sprintf("namespace: default\nhelmCharts:\n- name: web\n  nameTemplate: %q\n", nameTemplate))
	r.Commit("nameTemplate")
	return r
}

// memorySampler follows the memory a process and its descendants hold, as
// the pod's cgroup counts it: each process's anonymous pages, and the
// binary's file pages once (parent and child share them).
type memorySampler struct {
	peak, children int64
	stop, done     chan struct{}
}

func sampleMemory(pid int) *memorySampler {
	s := &memorySampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			anon, file, n := treeMemory(pid)
			s.peak = max(s.peak, anon+file)
			s.children = max(s.children, int64(n-1))
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *memorySampler) finish() { close(s.stop); <-s.done }

// treeMemory sums RssAnon over pid and its descendants, adds the largest
// RssFile, and counts the processes.
func treeMemory(pid int) (anon, file int64, procs int) {
	parents := procParents()
	in := func(p int) bool {
		for ; p > 1; p = parents[p] {
			if p == pid {
				return true
			}
		}
		return false
	}
	for p := range parents {
		if !in(p) {
			continue
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p))
		if err != nil {
			continue
		}
		procs++
		for l := range strings.SplitSeq(string(status), "\n") {
			k, v, _ := strings.Cut(l, ":")
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "RssAnon", "RssShmem":
				anon += kb << 10
			case "RssFile":
				file = max(file, kb<<10)
			}
		}
	}
	return anon, file, procs
}

// runSampled runs the binary with args, following its memory, and kills it
// if it still runs after limit.
func runSampled(t *testing.T, limit time.Duration, args ...string) (result, *memorySampler) {
	t.Helper()
	cmd := cronsyncCmd(args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	s := sampleMemory(cmd.Process.Pid)
	killer := time.AfterFunc(limit, func() {
		t.Errorf("still running after %s: killed", limit)
		_ = cmd.Process.Kill()
	})
	_ = cmd.Wait()
	killer.Stop()
	s.finish()
	r := result{code: cmd.ProcessState.ExitCode(), stdout: stdout.String(), stderr: stderr.String()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss << 10
	}
	t.Logf("exit %d; peak %d MiB (largest process %d MiB), %d children\n--- stdout\n%s--- stderr\n%s", r.code, s.peak>>20, r.maxRSS>>20, s.children, r.stdout, r.stderr)
	return r, s
}

// TestTemplatesWithinTheirBudget: repository text that runs (a
// kustomization's nameTemplate, a chart template, a chart's archives) is
// stopped at its budgets, time and memory, and reported as the commit's
// fault, where it used to run past SIGTERM or into the OOM killer.
func TestTemplatesWithinTheirBudget(t *testing.T) {
	for _, tc := range []struct {
		name    string
		repo    func(t *testing.T) *testenv.Repo
		timeout time.Duration
		wantErr []string
	}{{
		name:    "nameTemplate that loops",
		repo:    func(t *testing.T) *testenv.Repo { return nameTemplateRepo(t, "{{range 100000000000000}}{{end}}x") },
		timeout: 16 * time.Second,
		wantErr: []string{"apps/kustomization.yaml: helmCharts[0] (web): rendering did not finish within ", "does nameTemplate or a template loop or recurse without end?"},
	}, {
		name: "nameTemplate that writes without end",
		repo: func(t *testing.T) *testenv.Repo {
			return nameTemplateRepo(t, "{{range 100000000000000}}xxxxxxxxxxxxxxxx{{end}}x")
		},
		timeout: time.Minute,
		wantErr: []string{"apps/kustomization.yaml: helmCharts[0] (web): rendering exceeded its memory budget of 256 MiB and was stopped"},
	}, {
		// One Sprig call that asks for 3 GB at once: no look every 10 ms
		// sees it coming.
		name: "one allocation of gigabytes in a chart template",
		repo: func(t *testing.T) *testenv.Repo {
			r := testenv.NewRepo(t)
			for p, c := range budgetChart("apps/web", `{{ indent 3000000000 "x" }}`) {
				r.Write(p, c)
			}
			r.Commit("indent")
			return r
		},
		timeout: time.Minute,
		wantErr: []string{"apps/web: Helm chart: rendering exceeded its memory budget of 256 MiB and was stopped"},
	}, {
		// 96 MiB each: under Helm's bound for one archive, which is
		// all Helm checks.
		name: "ten subchart archives of 100 MB each once inflated",
		repo: func(t *testing.T) *testenv.Repo {
			return archivesRepo(t, 24, 4<<20)
		},
		timeout: time.Minute,
		wantErr: []string{"apps/big: Helm chart: charts/sub1.tgz: files/", "the chart's files, its archives' inflated files included, come to over 100 MiB; refused"},
	}, {
		name: "ten subchart archives of one 100 MB file each",
		repo: func(t *testing.T) *testenv.Repo {
			return archivesRepo(t, 1, 100<<20)
		},
		timeout: time.Minute,
		wantErr: []string{"apps/big: Helm chart: charts/sub0.tgz: files/0 is 104857600 bytes, over the limit of 4194304 (--max-manifest-bytes)"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := tc.repo(t)
			before := snapshot(t)
			start := time.Now()
			// No Lease: a run killed past its time would hold it until
			// it expires, and the next would apply nothing.
			out, mem := runSampled(t, tc.timeout+10*time.Second, "--repo", r.Dir, "--path", "apps", "--timeout", tc.timeout.String(), "--lease", "")
			elapsed := time.Since(start)
			if out.code != exitContent {
				t.Errorf("exit %d, want %d", out.code, exitContent)
			}
			if !hasLineWith(out.stderr, tc.wantErr...) {
				t.Errorf("no stderr line contains all of %q", tc.wantErr)
			}
			if elapsed > tc.timeout {
				t.Errorf("took %s, past --timeout %s", elapsed, tc.timeout)
			}
			if mem.peak > podMemory || out.maxRSS > podMemory {
				t.Errorf("peak memory %d MiB (largest process %d MiB), over the pod's %d MiB", mem.peak>>20, out.maxRSS>>20, podMemory>>20)
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

// archivesRepo is a chart with ten subchart archives, each of files files
// of size bytes of zeros: a few hundred KB in Git.
func archivesRepo(t *testing.T, files, size int) *testenv.Repo {
	t.Helper()
	var buf bytes.Buffer
	gz, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	tw := tar.NewWriter(gz)
	add := func(name string, data []byte) {
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(data)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	add("sub/Chart.yaml", []byte("apiVersion: v2\nname: sub\nversion: 0.1.0\n"))
	zeros := make([]byte, size)
	for i := range files {
		add(fmt.Sprintf("sub/files/%d", i), zeros)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("apps/big/Chart.yaml", "apiVersion: v2\nname: big\nversion: 0.1.0\n")
	r.Write("apps/big/templates/cm.yaml", configMap("default", "big", "x"))
	for i := range 10 {
		r.Write(fmt.Sprintf("apps/big/charts/sub%d.tgz", i), buf.String())
	}
	r.Commit(fmt.Sprintf("10 archives of %d MB inflated", files*size>>20))
	return r
}

// TestSignalDuringEndlessTemplate: SIGTERM while a template loops ends the
// run within 10 s, the template's process with it.
func TestSignalDuringEndlessTemplate(t *testing.T) {
	r := nameTemplateRepo(t, "{{range 100000000000000}}{{end}}x")
	cmd := cronsyncCmd("--repo", r.Dir, "--path", "apps", "--timeout", "10m", "--lease", "default/"+testenv.Unique("budget-signal"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	// Signalled once the template runs in its process, not after a guess.
	child := 0
	for deadline := time.Now().Add(time.Minute); child == 0; {
		select {
		case <-done:
			t.Fatalf("the run ended before its template started:\n%s", stderr.String())
		case <-time.After(20 * time.Millisecond):
		}
		child = budgetChild(cmd.Process.Pid)
		if time.Now().After(deadline) {
			_ = cmd.Process.Kill()
			t.Fatal("no process rendering the chart came up")
		}
	}
	// The process is up; a second more and it is in the loop rather than
	// starting (either must end the same way).
	time.Sleep(time.Second)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Fatalf("cronsync did not stop within 10s of SIGTERM; stderr:\n%s", stderr.String())
	}
	t.Logf("stopped %s after SIGTERM; stderr:\n%s", time.Since(start), stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != exitRetry {
		t.Errorf("exit %d after SIGTERM, want %d", code, exitRetry)
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", child)); err == nil {
		_ = syscall.Kill(child, syscall.SIGKILL)
		t.Errorf("the template's process %d outlived the run", child)
	}
}

// budgetChild is the pid of a child of pid that runs a budgeted task, or 0.
func budgetChild(pid int) int {
	for p, parent := range procParents() {
		if parent != pid {
			continue
		}
		if cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", p)); bytes.Contains(cmdline, []byte("__cronsync-budgeted-task")) {
			return p
		}
	}
	return 0
}

// procParents maps every process of the machine to its parent.
func procParents() map[int]int {
	parents := map[int]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		p, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces.
		rest := string(stat[bytes.LastIndexByte(stat, ')')+1:])
		if f := strings.Fields(rest); len(f) > 1 {
			parents[p], _ = strconv.Atoi(f[1])
		}
	}
	return parents
}
