package apiserver

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hangingGit is a Git server that never answers, so a run stays busy until
// something stops it.
func hangingGit(t *testing.T) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/repo.git"
}

func TestSIGTERMExitsRetryable(t *testing.T) {
	cmd := exec.Command(binary, "--kubeconfig", cluster.Kubeconfig, "--repo", hangingGit(t))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		cmd.Process.Kill()
		t.Fatal("cronsync did not stop within 10s of SIGTERM")
	}
	t.Logf("stopped %s after SIGTERM; stderr:\n%s", time.Since(start), stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != exitRetry {
		t.Errorf("exit %d after SIGTERM, want %d", code, exitRetry)
	}
}

func TestTimeoutExitsRetryable(t *testing.T) {
	start := time.Now()
	out := cronsync(t, nil, "--repo", hangingGit(t), "--timeout", "1s")
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
	out := cronsync(t, nil, "--repo", hangingGit(t), "--git-timeout", "1s", "--timeout", "1m")
	if out.code != exitRetry || !strings.Contains(out.stderr, "--git-timeout 1s exceeded") {
		t.Errorf("exit %d; want %d and the clone deadline named", out.code, exitRetry)
	}
	if elapsed := time.Since(start); elapsed > 10*time.Second {
		t.Errorf("took %s with --git-timeout 1s", elapsed)
	}
}
