package testenv

import (
	"bytes"
	"errors"
	"os/exec"
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
