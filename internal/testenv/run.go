package testenv

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"os/exec"
	"runtime/debug"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Run is how one run of the cronsync binary ended.
type Run struct {
	Code           int
	Stdout, Stderr string
	Elapsed        time.Duration
	// MaxRSS is the process's peak resident memory in bytes.
	MaxRSS int64
}

// RunBinary runs cmd (the binary and its arguments, with Stdout and Stderr
// unset), logs what it printed, and fails t only if it could not run: an
// exit status other than 0 is the test's to judge.
func RunBinary(t testing.TB, cmd *exec.Cmd) Run {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	resetPeak()
	start := time.Now()
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		t.Fatalf("running %s: %v", cmd.Path, err)
	}
	r := Run{Code: cmd.ProcessState.ExitCode(), Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.MaxRSS = ru.Maxrss << 10 // Linux reports KiB
	}
	t.Logf("%s\nexit %d in %s\n--- stdout\n%s--- stderr\n%s", strings.Join(cmd.Args, " "), r.Code, r.Elapsed.Round(time.Millisecond), r.Stdout, r.Stderr)
	return r
}

// resetPeak lowers this process's peak RSS to what it holds now. Go starts
// a child with vfork, and Linux folds the peak of the address space the
// child leaves at exec, this test process's, into the child's maxrss: one
// test that once held 270 MiB made every later run's peak read 274 MiB.
// What is left is the test process's resident memory now, freed first.
func resetPeak() {
	debug.FreeOSMemory()
	_ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
}

// RunBinaryWhen runs cmd like RunBinary, reading its stdout line by line
// as it comes, and calls then (from the test's goroutine) once a line
// satisfies match: what a test does to the run or the cluster then happens
// at a point of the run it has seen, not after a guessed sleep. It fails t
// if no line matches within two minutes, or before the run ends.
func RunBinaryWhen(t testing.TB, cmd *exec.Cmd, match func(line string) bool, then func()) Run {
	t.Helper()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = pw, &stderr
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatalf("running %s: %v", cmd.Path, err)
	}
	pw.Close()
	seen, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		sc := bufio.NewScanner(pr)
		matched := false
		for sc.Scan() {
			stdout.WriteString(sc.Text() + "\n")
			if !matched && match(sc.Text()) {
				matched = true
				close(seen)
			}
		}
	}()
	matched := false
	select {
	case <-seen:
		matched = true
		then()
	case <-done:
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
	}
	<-done
	_ = cmd.Wait()
	r := Run{Code: cmd.ProcessState.ExitCode(), Stdout: stdout.String(), Stderr: stderr.String(), Elapsed: time.Since(start)}
	t.Logf("%s\nexit %d in %s\n--- stdout\n%s--- stderr\n%s", strings.Join(cmd.Args, " "), r.Code, r.Elapsed.Round(time.Millisecond), r.Stdout, r.Stderr)
	if !matched {
		t.Fatal("no line of the run's output was the one waited for")
	}
	return r
}
