// Command clone measures cronsync's Git source against `git clone --depth 1
// --no-tags` on a generated repository with a long history and many files,
// and against `git clone --depth 1 --recurse-submodules
// --shallow-submodules` on a parent with three submodules (each a quarter of
// that size, pinned by relative URLs), all over smart HTTP from the same
// local git http-backend, each clone as a child process so that wall time
// and peak RSS are measured the same way.
//
//	go run ./bench/clone [-commits 5000] [-files 2000] [-runs 5]
//
// With -monorepo it measures instead a monorepo's deploy/ read partially
// and whole, against git's blobless sparse clone and a whole clone, and a
// fleet of reads at once (see monorepo.go):
//
//	go run ./bench/clone -monorepo [-mono-files 40000] [-fleet 50] [-runs 3]
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"maps"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/cronsync/cronsync/gitsrc"
)

func main() {
	if len(os.Args) == 4 && os.Args[1] == "-child" {
		// One clone with gitsrc, in its own process, submodules included.
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: os.Args[2], WorkDir: os.Args[3], Submodules: true})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		co.Close()
		return
	}
	if len(os.Args) == 6 && os.Args[1] == "-read" {
		// One run's read of a path, in its own process.
		if err := readPath(os.Args[2], os.Args[3], os.Args[4], os.Args[5] == "true"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) == 3 && os.Args[1] == "-serve" {
		if err := serve(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	commits := flag.Int("commits", 5000, "commits of history")
	files := flag.Int("files", 2000, "files in the tree")
	runs := flag.Int("runs", 5, "clones per tool; the median is reported")
	monorepo := flag.Bool("monorepo", false, "measure the monorepo and fleet cases instead")
	monoFiles := flag.Int("mono-files", 40000, "source files in the monorepo")
	monoSize := flag.Int("mono-size", 4<<10, "bytes of each source file")
	fleet := flag.Int("fleet", 50, "reads at once in the fleet case")
	flag.Parse()
	if *monorepo {
		self, err := os.Executable()
		if err == nil {
			err = monorepoBench(self, *monoFiles, *monoSize, *runs, *fleet)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := bench(*commits, *files, *runs); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func bench(commits, files, runs int) error {
	root, err := os.MkdirTemp("", "cronsync-clonebench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	repo := filepath.Join(root, "repo.git")
	start := time.Now()
	if err := generate(repo, commits, files, nil); err != nil {
		return err
	}
	size, _ := dirSize(repo)
	fmt.Printf("repository: %d commits, %d files, %.1f MiB packed (generated in %s)\n", commits, files, float64(size)/(1<<20), time.Since(start).Round(time.Millisecond))
	start = time.Now()
	links := map[string]string{}
	for i := range 3 {
		sub := filepath.Join(root, fmt.Sprintf("sub%d.git", i))
		if err := generate(sub, commits/4, files/4, nil); err != nil {
			return err
		}
		tip, err := exec.Command("git", "-C", sub, "rev-parse", "main").Output()
		if err != nil {
			return fmt.Errorf("git rev-parse: %w", err)
		}
		links[fmt.Sprintf("vendor/sub%d", i)] = strings.TrimSpace(string(tip))
	}
	if err := generate(filepath.Join(root, "super.git"), commits/4, files/4, links); err != nil {
		return err
	}
	fmt.Printf("parent with 3 submodules: each of the 4 repositories %d commits, %d files (generated in %s)\n", commits/4, files/4, time.Since(start).Round(time.Millisecond))

	execPath, err := exec.Command("git", "--exec-path").Output()
	if err != nil {
		return err
	}
	srv := httptest.NewServer(&cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(execPath)), "git-http-backend"),
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null"},
	})
	defer srv.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	url, super := srv.URL+"/repo.git", srv.URL+"/super.git"
	if err := compare(root, runs, "long history", []tool{
		{"cronsync gitsrc", func(dir string) *exec.Cmd { return exec.Command(self, "-child", url, dir) }},
		{"git clone --depth 1 --no-tags", func(dir string) *exec.Cmd {
			return exec.Command("git", "clone", "-q", "--depth", "1", "--no-tags", url, filepath.Join(dir, "c"))
		}},
	}); err != nil {
		return err
	}
	return compare(root, runs, "three submodules", []tool{
		{"cronsync gitsrc (submodules recursive)", func(dir string) *exec.Cmd { return exec.Command(self, "-child", super, dir) }},
		{"git clone --depth 1 --no-tags --recurse-submodules --shallow-submodules", func(dir string) *exec.Cmd {
			return exec.Command("git", "clone", "-q", "--depth", "1", "--no-tags", "--recurse-submodules", "--shallow-submodules", super, filepath.Join(dir, "c"))
		}},
	})
}

// tool is one way of cloning, as a command that writes into dir.
type tool struct {
	name string
	cmd  func(dir string) *exec.Cmd
}

// compare runs each tool runs times and prints the median wall time and
// the peak RSS of each, and their ratio.
func compare(root string, runs int, what string, tools []tool) error {
	type stat struct {
		wall time.Duration
		rss  int64
	}
	results := make([]stat, len(tools))
	for i, tool := range tools {
		var walls []time.Duration
		var rss int64
		for range runs {
			dir, err := os.MkdirTemp(root, "clone-")
			if err != nil {
				return err
			}
			cmd := tool.cmd(dir)
			cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null")
			cmd.Stderr = os.Stderr
			t0 := time.Now()
			if err := cmd.Run(); err != nil {
				return fmt.Errorf("%s: %w", tool.name, err)
			}
			walls = append(walls, time.Since(t0))
			if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
				rss = max(rss, ru.Maxrss<<10)
			}
			os.RemoveAll(dir)
		}
		slices.Sort(walls)
		results[i] = stat{walls[len(walls)/2], rss}
	}
	fmt.Printf("\n%s:\n\n| tool | median wall time (%d runs) | peak RSS |\n|---|---|---|\n", what, runs)
	for i, tool := range tools {
		fmt.Printf("| %s | %s | %.1f MiB |\n", tool.name, results[i].wall.Round(time.Millisecond), float64(results[i].rss)/(1<<20))
	}
	fmt.Printf("\ngitsrc / git: time %.2fx, peak RSS %.2fx\n",
		float64(results[0].wall)/float64(results[1].wall), float64(results[0].rss)/float64(results[1].rss))
	return nil
}

// generate writes a bare repository with commits commits, each changing a
// few of files files, through git fast-import (seconds, not minutes). The
// last commit also pins links (path to commit), with a .gitmodules whose
// URLs are relative (../<last element>.git), as submodules.
func generate(repo string, commits, files int, links map[string]string) error {
	if out, err := exec.Command("git", "init", "-q", "--bare", "-b", "main", repo).CombinedOutput(); err != nil {
		return fmt.Errorf("git init: %v: %s", err, out)
	}
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
	blob := func(n, rev int) string {
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cm-%d\n  namespace: bench\ndata:\n  revision: \"%d\"\n  payload: %q\n", n, rev, strings.Repeat(fmt.Sprint(n*rev), 40))
	}
	for c := range commits {
		fmt.Fprintf(w, "commit refs/heads/main\ncommitter bench <bench@cronsync.invalid> %d +0000\ndata 9\ncommit %02d\n", 1700000000+c, c%100)
		var changed []int
		if c == 0 {
			for f := range files {
				changed = append(changed, f)
			}
		} else {
			for k := range 5 {
				changed = append(changed, (c*7+k*131)%files)
			}
		}
		for _, f := range changed {
			data := blob(f, c)
			fmt.Fprintf(w, "M 100644 inline apps/%03d/cm-%d.yaml\ndata %d\n%s\n", f%100, f, len(data), data)
		}
		if c == commits-1 && len(links) > 0 {
			var modules strings.Builder
			for _, path := range slices.Sorted(maps.Keys(links)) {
				fmt.Fprintf(w, "M 160000 %s %s\n", links[path], path)
				fmt.Fprintf(&modules, "[submodule %q]\n\tpath = %s\n\turl = ../%s.git\n", path, path, filepath.Base(path))
			}
			fmt.Fprintf(w, "M 100644 inline .gitmodules\ndata %d\n%s\n", modules.Len(), modules.String())
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	in.Close()
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("git fast-import: %w", err)
	}
	if out, err := exec.Command("git", "-C", repo, "gc", "-q", "--aggressive").CombinedOutput(); err != nil {
		return fmt.Errorf("git gc: %v: %s", err, out)
	}
	return nil
}

func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.Walk(dir, func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return err
	})
	return n, err
}
