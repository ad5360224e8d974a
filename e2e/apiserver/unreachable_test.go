package apiserver

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// The API server dies halfway through a sync: the run says so once, counts
// what it did not attempt, prunes nothing and exits 1; once the server is
// back, the next run converges.
func TestAPIServerGoneMidRun(t *testing.T) {
	const n = 600
	ns := testenv.Unique("gone")
	r := manyConfigMaps(t, ns, n)
	cmd := cronsyncCmd("--repo", r.Dir, "--workers", "1", "--prune", "--applyset", "default/"+ns, "--lease", "")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Kill it once writing is well under way.
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		list, err := kube.Resource(configMaps).Namespace(ns).List(context.Background(), metav1.ListOptions{})
		if err == nil && len(list.Items) >= 50 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	args, err := cluster.KillAPIServer()
	if err != nil {
		t.Fatal(err)
	}
	restarted := false
	defer func() {
		if !restarted {
			if err := cluster.RestartAPIServer(args); err != nil {
				t.Fatal(err)
			}
		}
	}()
	_ = cmd.Wait()
	t.Logf("exit %d\n--- stdout\n%s--- stderr\n%s", cmd.ProcessState.ExitCode(), stdout.String(), stderr.String())
	if code := cmd.ProcessState.ExitCode(); code != exitRetry {
		t.Errorf("exit %d, want %d", code, exitRetry)
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if len(lines) > 10 {
		t.Errorf("%d lines on stderr, want at most 10", len(lines))
	}
	cause := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "error: the API server is unreachable: ") })
	if cause < 0 || cause+1 >= len(lines) || !strings.HasSuffix(lines[cause+1], " objects not attempted; nothing was pruned") {
		t.Errorf("stderr lacks the cause followed by the count:\n%s", stderr.String())
	}
	// stdout says what was written before the server went, and the
	// summary; nothing per object that was not attempted.
	for line := range strings.SplitSeq(stdout.String(), "\n") {
		if strings.HasSuffix(line, " skipped") || strings.HasSuffix(line, " failed") {
			t.Errorf("a line per object not attempted: %q", line)
		}
	}
	if !strings.Contains(stdout.String(), "cronsync: sync failed") {
		t.Errorf("no summary line:\n%s", stdout.String())
	}

	if err := cluster.RestartAPIServer(args); err != nil {
		t.Fatal(err)
	}
	restarted = true
	mustSync(t, "--repo", r.Dir, "--prune", "--applyset", "default/"+ns, "--lease", "")
	list, err := kube.Resource(configMaps).Namespace(ns).List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := 0
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.GetName(), "cm-") {
			got++
		}
	}
	if got != n {
		t.Errorf("%d ConfigMaps after the run that followed the restart, want %d", got, n)
	}
}
