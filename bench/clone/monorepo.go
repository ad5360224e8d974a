package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/render"
)

// The monorepo case: application code (files of about 4 KiB that do not
// compress much, as source does not) beside deploy/, a kustomization whose
// base is ../base. A run reads deploy/ and what it reaches; everything
// else is the monorepo's business. It is read by cronsync as a run reads
// it (gitsrc and render, partial and whole), and cloned by git blobless
// and sparse, and whole, all from one git http-backend (with
// uploadpack.allowFilter) in a process of its own, which counts the bytes
// it sends and its CPU time, its CGI children's included.

// statsPath is where the server process answers with its counters.
const statsPath = "/_stats"

// serverStats is what the server process has done since it started.
type serverStats struct {
	Requests int64
	Bytes    int64
	// CPU is the server's user and system time, its git children's
	// included, in seconds.
	CPU float64
}

// serve is the server process: git http-backend over root, plus
// statsPath. It prints its URL and serves until its stdin closes.
func serve(root string) error {
	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return err
	}
	backend := &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	}
	var requests, sent atomic.Int64
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == statsPath {
			var self, children syscall.Rusage
			syscall.Getrusage(syscall.RUSAGE_SELF, &self)
			syscall.Getrusage(syscall.RUSAGE_CHILDREN, &children)
			cpu := 0.0
			for _, ru := range []syscall.Rusage{self, children} {
				cpu += float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
			}
			json.NewEncoder(w).Encode(serverStats{Requests: requests.Load(), Bytes: sent.Load(), CPU: cpu})
			return
		}
		requests.Add(1)
		backend.ServeHTTP(&countingWriter{ResponseWriter: w, n: &sent}, r)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	fmt.Printf("http://%s\n", ln.Addr())
	go func() {
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	return http.Serve(ln, h)
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

// server is the server process, seen from the benchmark.
type server struct {
	url  string
	cmd  *exec.Cmd
	stop io.Closer
}

func startServer(self, root string) (*server, error) {
	cmd := exec.Command(self, "-serve", root)
	cmd.Stderr = io.Discard // http-backend's complaints about clients that hang up
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return nil, fmt.Errorf("server: %w", err)
	}
	return &server{url: strings.TrimSpace(line), cmd: cmd, stop: stdin}, nil
}

func (s *server) stats() (serverStats, error) {
	var st serverStats
	resp, err := http.Get(s.url + statsPath)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (s *server) close() {
	s.stop.Close()
	s.cmd.Wait()
}

// readPath is a run's read of path, in this process: the commit fetched
// (partial or whole), path's files written and read by render, and what
// they reach. It prints how many objects it read.
func readPath(url, work, path string, partial bool) error {
	ctx := context.Background()
	co, err := gitsrc.Clone(ctx, gitsrc.Options{URL: url, WorkDir: work, Lazy: true, Partial: partial, Path: path,
		Log: func(s string) { fmt.Fprintln(os.Stderr, "cronsync:", s) }})
	if err != nil {
		return err
	}
	defer co.Close()
	commit := &render.Commit{Path: path, Options: render.DefaultOptions(),
		Files: func(ctx context.Context) (string, string, error) {
			if err := co.Write(ctx); err != nil {
				return "", "", err
			}
			dir, err := co.Sub(path)
			return co.Dir, dir, err
		},
		Need: co.Need,
	}
	objs, _, err := commit.Read(ctx, nil)
	if err != nil {
		return err
	}
	fmt.Println(len(objs))
	return nil
}

// noise is n bytes of hexadecimal lines, different for each seed: about
// as compressible as source.
func noise(seed, n int) []byte {
	b := make([]byte, 0, n+80)
	x := uint32(seed*2654435761 + 1)
	for len(b) < n {
		for range 9 {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			b = fmt.Appendf(b, "%08x", x)
		}
		b = append(b, '\n')
	}
	return b
}

// generateMonorepo writes a bare repository of one commit: files source
// files of size bytes in directories of 100, deploy/ and base/.
func generateMonorepo(repo string, files, size int) error {
	if out, err := exec.Command("git", "init", "-q", "--bare", "-b", "main", repo).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
	return fastImport(repo, "monorepo", false, func(file func(path string, data []byte)) {
		for i := range files {
			file(fmt.Sprintf("src/pkg%03d/file%05d.go", i/100, i), noise(i, size))
		}
		file("README.md", []byte("the monorepo\n"))
		var base, deploy strings.Builder
		base.WriteString("resources:\n")
		for i := range 10 {
			name := fmt.Sprintf("cm-%d.yaml", i)
			base.WriteString("- " + name + "\n")
			file("base/"+name, fmt.Appendf(nil, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: base-%d\n  namespace: bench\ndata:\n  value: %q\n", i, noise(i, 200)))
		}
		file("base/kustomization.yaml", []byte(base.String()))
		deploy.WriteString("namePrefix: prod-\nresources:\n- ../base\n")
		for i := range 9 {
			name := fmt.Sprintf("cm-%d.yaml", i)
			deploy.WriteString("- " + name + "\n")
			file("deploy/"+name, fmt.Appendf(nil, "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: deploy-%d\n  namespace: bench\ndata:\n  value: %q\n", i, noise(100+i, 200)))
		}
		file("deploy/kustomization.yaml", []byte(deploy.String()))
	})
}

// codeCommit adds a commit that changes one source file.
func codeCommit(repo string, n int) error {
	return fastImport(repo, fmt.Sprintf("code %d", n), true, func(file func(string, []byte)) {
		file(fmt.Sprintf("src/pkg%03d/file%05d.go", n%400, n), noise(1_000_000+n, 4<<10))
	})
}

func fastImport(repo, msg string, onTop bool, files func(file func(path string, data []byte))) error {
	cmd := exec.Command("git", "fast-import", "--quiet")
	cmd.Dir = repo
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	w := bufio.NewWriterSize(in, 1<<20)
	fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@cronsync.invalid> %d +0000\ndata %d\n%s\n", time.Now().Unix(), len(msg), msg)
	if onTop {
		fmt.Fprintf(w, "from refs/heads/main^0\n")
	}
	files(func(path string, data []byte) {
		fmt.Fprintf(w, "M 100644 inline %s\ndata %d\n", path, len(data))
		w.Write(data)
		w.WriteByte('\n')
	})
	if err := w.Flush(); err != nil {
		return err
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	return nil
}

// measured is one tool's run: wall time, peak RSS, what the server sent
// and the CPU it spent.
type measured struct {
	wall    time.Duration
	rss     int64
	bytes   int64
	cpu     float64
	objects string
}

// measure runs cmd through bench/rusage (a process started from here
// would be counted with the benchmark's own peak RSS) and reads the
// server's counters around it.
func measure(srv *server, rusage string, cmd *exec.Cmd) (measured, error) {
	var m measured
	before, err := srv.stats()
	if err != nil {
		return m, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return m, err
	}
	wrapped := exec.Command(rusage, append([]string{cmd.Path}, cmd.Args[1:]...)...)
	wrapped.Dir, wrapped.Env = cmd.Dir, append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
	wrapped.ExtraFiles = []*os.File{w}
	var out strings.Builder
	wrapped.Stdout, wrapped.Stderr = &out, os.Stderr
	err = wrapped.Run()
	w.Close()
	report, _ := io.ReadAll(r)
	r.Close()
	if err != nil {
		return m, fmt.Errorf("%s: %w", strings.Join(cmd.Args, " "), err)
	}
	after, err := srv.stats()
	if err != nil {
		return m, err
	}
	var wallNS, rssKiB, faults int64
	if _, err := fmt.Sscan(string(report), &wallNS, &rssKiB, &faults); err != nil {
		return m, fmt.Errorf("rusage report %q: %w", report, err)
	}
	return measured{wall: time.Duration(wallNS), rss: rssKiB << 10, bytes: after.Bytes - before.Bytes, cpu: after.CPU - before.CPU, objects: strings.TrimSpace(out.String())}, nil
}

// median of runs runs of one tool, each in a fresh directory.
func medianOf(srv *server, rusage, root string, runs int, cmd func(dir string) *exec.Cmd) (measured, error) {
	var all []measured
	for range runs {
		dir, err := os.MkdirTemp(root, "run-")
		if err != nil {
			return measured{}, err
		}
		m, err := measure(srv, rusage, cmd(dir))
		os.RemoveAll(dir)
		if err != nil {
			return measured{}, err
		}
		all = append(all, m)
	}
	slices.SortFunc(all, func(a, b measured) int { return int(a.wall - b.wall) })
	med := all[len(all)/2]
	for _, m := range all {
		med.rss = max(med.rss, m.rss)
	}
	return med, nil
}

func mib(n int64) string { return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20)) }

// monorepoBench is the monorepo case and the fleet case.
func monorepoBench(self string, files, size, runs, fleet int) error {
	root, err := os.MkdirTemp("", "cronsync-monobench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	rusage := filepath.Join(root, "rusage")
	if out, err := exec.Command("go", "build", "-o", rusage, "github.com/cronsync/cronsync/bench/rusage").CombinedOutput(); err != nil {
		return fmt.Errorf("building bench/rusage: %v: %s", err, out)
	}
	repo := filepath.Join(root, "mono.git")
	start := time.Now()
	if err := generateMonorepo(repo, files, size); err != nil {
		return err
	}
	if out, err := exec.Command("git", "-C", repo, "config", "uploadpack.allowFilter", "true").CombinedOutput(); err != nil {
		return fmt.Errorf("git config: %v: %s", err, out)
	}
	packed, _ := dirSize(repo)
	fmt.Printf("monorepo: %d source files of %d bytes, deploy/ (kustomization of 9 files and ../base) and base/ (10 files); %.1f MiB packed (generated in %s)\n",
		files, size, float64(packed)/(1<<20), time.Since(start).Round(time.Millisecond))
	srv, err := startServer(self, root)
	if err != nil {
		return err
	}
	defer srv.close()
	url := srv.url + "/mono.git"
	work := filepath.Join(root, "work")
	os.Mkdir(work, 0o755)
	read := func(partial bool) func(string) *exec.Cmd {
		return func(dir string) *exec.Cmd {
			return exec.Command(self, "-read", url, dir, "deploy", strconv.FormatBool(partial))
		}
	}
	type row struct {
		name string
		cmd  func(dir string) *exec.Cmd
	}
	gitSparse := func(dir string) *exec.Cmd {
		return exec.Command("sh", "-c", `set -e; git clone -q --depth 1 --no-tags --filter=blob:none --no-checkout "$1" "$2/c"; cd "$2/c"; git sparse-checkout set deploy base; git checkout -q main`, "sh", url, dir)
	}
	first := []row{
		{"cronsync, partial: read of deploy/ (trees, then deploy/ and base/)", read(true)},
		{"git clone --depth 1 --filter=blob:none --no-checkout + sparse-checkout set deploy base + checkout", gitSparse},
		{"cronsync, whole (as before): read of deploy/", read(false)},
		{"git clone --depth 1 --no-tags (whole)", func(dir string) *exec.Cmd {
			return exec.Command("git", "clone", "-q", "--depth", "1", "--no-tags", url, filepath.Join(dir, "c"))
		}},
	}
	results := map[string]measured{}
	table := func(title string, rows []row) error {
		fmt.Printf("\n%s (median of %d runs; peak RSS the largest):\n\n| run | wall time | bytes the server sent | server CPU | peak RSS | objects read |\n|---|---|---|---|---|---|\n", title, runs)
		for _, r := range rows {
			m, err := medianOf(srv, rusage, work, runs, r.cmd)
			if err != nil {
				return err
			}
			results[title+r.name] = m
			fmt.Printf("| %s | %s | %s | %.2f s | %s | %s |\n", r.name, m.wall.Round(time.Millisecond), mib(m.bytes), m.cpu, mib(m.rss), m.objects)
		}
		return nil
	}
	if err := table("first read", first); err != nil {
		return err
	}
	part, sparse, whole := results["first read"+first[0].name], results["first read"+first[1].name], results["first read"+first[3].name]
	fmt.Printf("\npartial / git sparse: bytes %.2fx, wall time %.2fx (target: within 1.2x)\n", float64(part.bytes)/float64(sparse.bytes), float64(part.wall)/float64(sparse.wall))

	if err := codeCommit(repo, 1); err != nil {
		return err
	}
	code := []row{first[0], first[2]}
	if err := table("a commit that changes one source file (a new run: no store kept between runs)", code); err != nil {
		return err
	}
	after := results["a commit that changes one source file (a new run: no store kept between runs)"+code[0].name]
	fmt.Printf("\ncode-only commit, partial: %s, %.2f%% of the whole clone's %s (target: under 5%%)\n", mib(after.bytes), 100*float64(after.bytes)/float64(whole.bytes), mib(whole.bytes))

	// The fleet: fleet clusters read one new commit at once.
	for i, partial := range []bool{true, false} {
		if err := codeCommit(repo, 2+i); err != nil {
			return err
		}
		before, err := srv.stats()
		if err != nil {
			return err
		}
		t0 := time.Now()
		var wg sync.WaitGroup
		errs := make([]error, fleet)
		for n := range fleet {
			wg.Go(func() {
				dir, err := os.MkdirTemp(work, "fleet-")
				if err != nil {
					errs[n] = err
					return
				}
				defer os.RemoveAll(dir)
				cmd := read(partial)(dir)
				if out, err := cmd.CombinedOutput(); err != nil {
					errs[n] = fmt.Errorf("%v: %s", err, out)
				}
			})
		}
		wg.Wait()
		wall := time.Since(t0)
		if err := errors.Join(errs...); err != nil {
			return err
		}
		after, err := srv.stats()
		if err != nil {
			return err
		}
		if i == 0 {
			fmt.Printf("\nfleet: %d reads of a new commit at once, against one http-backend:\n\n| fetch | bytes the server sent | server CPU | wall time for all |\n|---|---|---|---|\n", fleet)
		}
		name := map[bool]string{true: "partial", false: "whole"}[partial]
		fmt.Printf("| %s | %s | %.1f s | %s |\n", name, mib(after.Bytes-before.Bytes), after.CPU-before.CPU, wall.Round(time.Millisecond))
	}
	return nil
}
