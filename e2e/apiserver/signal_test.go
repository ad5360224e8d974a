package apiserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/testenv"
)

// hangingGit is a Git server that never answers, so a run stays busy until
// something stops it. asked is closed once a request has come in: the run
// is then past its start, blocked on Git.
func hangingGit(t *testing.T) (url string, asked <-chan struct{}) {
	ch := make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() { close(ch) })
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git", ch
}

// TestSignalsExitRetryable: SIGTERM (the kubelet), SIGINT (Ctrl-C) and
// SIGHUP (an SSH session that drops) each stop a run cleanly, with the
// retryable status, where Go's default for SIGHUP would end the process on
// the spot.
func TestSignalsExitRetryable(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP} {
		t.Run(sig.String(), func(t *testing.T) {
			url, asked := hangingGit(t)
			// A Lease of its own: a run stopped while taking one may leave
			// it held until it expires, which must not stop the next.
			cmd := exec.Command(binary, "--kubeconfig", cluster.Kubeconfig, "--repo", url, "--lease", "default/"+testenv.Unique("signals"))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			// Signalled once it is waiting on Git, not after a guess.
			select {
			case <-asked:
			case <-time.After(30 * time.Second):
				cmd.Process.Kill()
				t.Fatal("the run never asked the Git server")
			}
			start := time.Now()
			if err := cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			done := make(chan struct{})
			go func() { cmd.Wait(); close(done) }()
			select {
			case <-done:
			case <-time.After(10 * time.Second):
				cmd.Process.Kill()
				t.Fatalf("cronsync did not stop within 10s of %s", sig)
			}
			t.Logf("stopped %s after %s; stderr:\n%s", time.Since(start), sig, stderr.String())
			if code := cmd.ProcessState.ExitCode(); code != exitRetry {
				t.Errorf("exit %d after %s, want %d", code, sig, exitRetry)
			}
			if want := sig.String() + " signal received"; !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr does not say %q", want)
			}
		})
	}
}

func TestTimeoutExitsRetryable(t *testing.T) {
	start := time.Now()
	url, _ := hangingGit(t)
	out := cronsync(t, nil, "--repo", url, "--timeout", "1s")
	if out.code != exitRetry {
		t.Errorf("exit %d, want %d", out.code, exitRetry)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("took %s with --timeout 1s", elapsed)
	}
	if !strings.Contains(out.stderr, "--timeout 1s exceeded") {
		t.Errorf("stderr does not say the timeout was reached")
	}
}

func TestGitTimeoutBoundsTheClone(t *testing.T) {
	start := time.Now()
	url, _ := hangingGit(t)
	out := cronsync(t, nil, "--repo", url, "--git-timeout", "1s", "--timeout", "1m")
	if out.code != exitRetry || !strings.Contains(out.stderr, "--git-timeout 1s exceeded") {
		t.Errorf("exit %d; want %d and the clone deadline named", out.code, exitRetry)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("took %s with --git-timeout 1s", elapsed)
	}
}

// TestClosedOutputDoesNotStopARun: a run whose output nobody reads any more
// (`cronsync | head`, a log reader that died) still syncs, records its outcome
// and releases its Lease. Go's default would end the process at its first
// write, halfway through a sync and with the Lease held until it expires.
func TestClosedOutputDoesNotStopARun(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "closed-output", "v"))
	r.Commit("first")
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	pr.Close() // nobody reads
	cmd := cronsyncCmd("--repo", r.Dir, "--lease", "default/closed-output", "--applyset", "default/closed-output")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = pw, &stderr
	err = cmd.Run()
	pw.Close()
	if err != nil {
		t.Fatalf("cronsync with its stdout closed: %v (exit %d)\n%s", err, cmd.ProcessState.ExitCode(), stderr.String())
	}
	if got := get(t, configMaps, "default", "closed-output", "data", "value"); got != "v" {
		t.Errorf("the ConfigMap holds %q, want \"v\"", got)
	}
	if h := leaseHolder(t, "default", "closed-output"); h != "" {
		t.Errorf("lease still held by %q after the run", h)
	}
}
