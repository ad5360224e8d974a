package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"github.com/cronsync/cronsync/internal/testenv"
)

func clientset() *kubernetes.Clientset { return kubernetes.NewForConfigOrDie(cluster.Config) }

// manyConfigMaps is a repository whose sync takes a while with one worker.
func manyConfigMaps(t *testing.T, ns string, n int) *testenv.Repo {
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	for i := range n {
		r.Write(fmt.Sprintf("cm/%03d.yaml", i), configMap(ns, fmt.Sprintf("cm-%03d", i), "v"))
	}
	r.Commit("many")
	return r
}

func holdLease(t *testing.T, ns, name, holder string, renewed time.Time, seconds int32) {
	t.Helper()
	now := metav1.NewMicroTime(renewed)
	l := &coordinationv1.Lease{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
		Spec:       coordinationv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &seconds, AcquireTime: &now, RenewTime: &now},
	}
	leases := clientset().CoordinationV1().Leases(ns)
	leases.Delete(context.Background(), name, metav1.DeleteOptions{})
	if _, err := leases.Create(context.Background(), l, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

func leaseHolder(t *testing.T, ns, name string) string {
	t.Helper()
	l, err := clientset().CoordinationV1().Leases(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity == nil {
		return ""
	}
	return *l.Spec.HolderIdentity
}

func TestLease(t *testing.T) {
	name := testenv.Unique("lease-test")
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", name, "v"))
	r.Commit("one")
	args := []string{"--repo", r.Dir, "--lease", "default/" + name, "--applyset", "default/" + name}

	t.Run("held by a live run", func(t *testing.T) {
		holdLease(t, "default", name, "other-pod", time.Now(), 60)
		before := snapshot(t)
		out := cronsync(t, nil, args...)
		if out.code != exitOK || !strings.Contains(out.stdout, "held by other-pod") {
			t.Errorf("exit %d; want 0 and the holder named", out.code)
		}
		if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
			t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
		}
	})
	t.Run("holder died", func(t *testing.T) {
		holdLease(t, "default", name, "dead-pod", time.Now().Add(-time.Minute), 30)
		out := mustSync(t, args...)
		if !strings.Contains(out.stdout, "configmap/"+name+" -n default created") {
			t.Errorf("the expired lease was not taken over")
		}
		if h := leaseHolder(t, "default", name); h != "" {
			t.Errorf("lease still held by %q after the run", h)
		}
	})
	t.Run("released by a run that fails", func(t *testing.T) {
		// The Lease is taken beside the clone, which fails here: the run
		// must still release it.
		out := cronsync(t, nil, append(args, "--ref", "no-such-branch")...)
		if out.code != exitConfig || !strings.Contains(out.stderr, `ref "no-such-branch"`) {
			t.Errorf("exit %d; want %d and the ref named", out.code, exitConfig)
		}
		if h := leaseHolder(t, "default", name); h != "" {
			t.Errorf("lease still held by %q after the run", h)
		}
	})
	t.Run("dry runs take no lease", func(t *testing.T) {
		holdLease(t, "default", name, "other-pod", time.Now(), 60)
		for _, mode := range []string{"--dry-run=client", "--dry-run=server"} {
			if out := mustSync(t, append(args, mode)...); strings.Contains(out.stdout, "held by") {
				t.Errorf("%s waited for the lease", mode)
			}
		}
	})
}

// The run's record on the ApplySet parent is written before the Lease is
// released, never beside it: a run waiting for the Lease must not start
// writing while this one still is. (The chaos harness found the record
// landing after the release: bench/chaos, seed 7.)
func TestRecordBeforeRelease(t *testing.T) {
	name := testenv.Unique("record-release")
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", name, "v"))
	r.Commit("one")
	for i := range 3 {
		mark := cluster.AuditMark()
		mustSync(t, "--repo", r.Dir, "--lease", "default/"+name, "--applyset", "default/"+name)
		events, err := cluster.AuditSince(mark, "admin")
		if err != nil {
			t.Fatal(err)
		}
		var record, release time.Time
		for _, ev := range events {
			switch {
			case ev.Verb == "patch" && strings.Contains(ev.RequestURI, "/secrets/"+name+"?") && strings.Contains(ev.RequestURI, "fieldManager=cronsync-status"):
				record = ev.Completed
			case ev.Verb == "update" && strings.Contains(ev.RequestURI, "/leases/"+name):
				release = ev.Received // the run's last write of the Lease
			}
		}
		if record.IsZero() || release.IsZero() {
			t.Fatalf("run %d: no record (%v) or no release (%v) in the audit log", i, record, release)
		}
		if !record.Before(release) {
			t.Errorf("run %d: the Lease was released at %s, before the record was written at %s", i, release.Format(time.StampMicro), record.Format(time.StampMicro))
		}
	}
}

// Two runs started together: one syncs, the other applies nothing and
// exits 0.
func TestTwoRunsAtOnce(t *testing.T) {
	name := testenv.Unique("together")
	r := manyConfigMaps(t, name, 150)
	var wg sync.WaitGroup
	outs := make([]result, 2)
	for i := range outs {
		wg.Go(func() {
			time.Sleep(time.Duration(i) * 300 * time.Millisecond)
			outs[i] = cronsync(t, nil, "--repo", r.Dir, "--workers", "1", "--lease", "default/"+name, "--applyset", "default/"+name)
		})
	}
	wg.Wait()
	if outs[0].code != 0 || outs[1].code != 0 {
		t.Fatalf("exits %d and %d, want 0 and 0", outs[0].code, outs[1].code)
	}
	synced, stoodBack := 0, 0
	for _, o := range outs {
		switch {
		case strings.Contains(o.stdout, "151 objects: 151 created"):
			synced++
		case strings.Contains(o.stdout, "held by") && !strings.Contains(o.stdout, " created\n"):
			stoodBack++
		}
	}
	if synced != 1 || stoodBack != 1 {
		t.Errorf("%d runs synced and %d stood back; want one each", synced, stoodBack)
	}
}

func TestSIGTERMDuringApply(t *testing.T) {
	name := testenv.Unique("sigterm")
	r := manyConfigMaps(t, name, 600)
	termLog := filepath.Join(t.TempDir(), "termination-log")
	cmd := exec.Command(binary, "--kubeconfig", cluster.Kubeconfig, "--repo", r.Dir, "--workers", "1",
		"--lease", "default/"+name, "--applyset", "default/"+name, "--termination-log", termLog)
	// SIGTERM is sent once the run has written its first object (its
	// output is read as it comes), not after a guess.
	var start time.Time
	out := testenv.RunBinaryWhen(t, cmd, func(line string) bool { return strings.HasSuffix(line, " created") }, func() {
		start = time.Now()
		cmd.Process.Signal(syscall.SIGTERM)
	})
	stopped := time.Since(start)
	if n := strings.Count(out.Stdout, " created\n"); n == 0 || n >= 600 {
		t.Errorf("%d of 600 objects created: SIGTERM did not land in the middle of the apply", n)
	}
	if code := out.Code; code != exitRetry {
		t.Errorf("exit %d, want %d", code, exitRetry)
	}
	if stopped > 15*time.Second {
		t.Errorf("took %s to stop", stopped)
	}
	msg, err := os.ReadFile(termLog)
	if err != nil || !strings.Contains(string(msg), "result: failed (exit 1)") {
		t.Errorf("termination log %q (%v)", msg, err)
	}
	if h := leaseHolder(t, "default", name); h != "" {
		t.Errorf("lease still held by %q", h)
	}
	if strings.Contains(out.Stdout, " pruned") {
		t.Errorf("pruned after an interrupted apply")
	}
}

// What a run leaves for operators: termination message, annotations on the
// ApplySet parent, Events on it, JSON on stdout, a webhook call.
func TestRunIsVisible(t *testing.T) {
	var mu sync.Mutex
	var posts []map[string]any
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var m map[string]any
		json.Unmarshal(body, &m)
		mu.Lock()
		posts = append(posts, m)
		mu.Unlock()
	}))
	defer hook.Close()

	name := testenv.Unique("visible")
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", name, "v"))
	good := r.Commit("good")
	termLog := filepath.Join(t.TempDir(), "termination-log")
	args := []string{"--repo", r.Dir, "--applyset", "default/" + name, "--lease", "default/" + name,
		"--termination-log", termLog, "--output", "json", "--notify-url", hook.URL}

	out := mustSync(t, args...)
	var doc map[string]any
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("stdout is not one JSON document: %v", err)
	}
	if doc["result"] != "synced" || doc["commit"] != good || !strings.Contains(fmt.Sprint(doc["objects"]), "configmap/"+name+" -n default") {
		t.Errorf("JSON summary: %v", doc)
	}
	secret, err := clientset().CoreV1().Secrets("default").Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if a := secret.Annotations; a["cronsync.dev/last-sync-commit"] != good || a["cronsync.dev/last-sync-result"] != "synced" {
		t.Errorf("parent annotations: %v", a)
	}
	if msg, _ := os.ReadFile(termLog); !strings.Contains(string(msg), "result: synced (exit 0)") || !strings.Contains(string(msg), good) {
		t.Errorf("termination log: %q", msg)
	}
	if len(posts) != 0 {
		t.Errorf("the webhook was called for a success without --notify-on=always")
	}

	r.Write("bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: default}\nspec: {ports: [{port: 0}]}\n")
	bad := r.Commit("bad")
	out = cronsync(t, nil, args...)
	if out.code != exitContent {
		t.Fatalf("exit %d, want %d", out.code, exitContent)
	}
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil || doc["result"] != "failed" || doc["exitCode"] != float64(exitContent) {
		t.Errorf("JSON summary after a failure: %v (%v)", doc, err)
	}
	secret, _ = clientset().CoreV1().Secrets("default").Get(context.Background(), name, metav1.GetOptions{})
	if a := secret.Annotations; a["cronsync.dev/last-sync-commit"] != bad || a["cronsync.dev/last-sync-result"] != "failed" ||
		!strings.Contains(a["cronsync.dev/last-sync-error"], "service/bad -n default (bad.yaml)") {
		t.Errorf("parent annotations after a failure: %v", a)
	}
	if msg, _ := os.ReadFile(termLog); !strings.Contains(string(msg), "result: failed (exit 3)") || !strings.Contains(string(msg), "first error: service/bad") {
		t.Errorf("termination log after a failure: %q", msg)
	}
	mu.Lock()
	if len(posts) != 1 || posts[0]["result"] != "failed" || !strings.Contains(fmt.Sprint(posts[0]["text"]), "sync failed") {
		t.Errorf("webhook posts: %v", posts)
	}
	mu.Unlock()

	events, err := clientset().CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, e := range events.Items {
		reasons[e.Reason]++
		if e.Reason == "SyncFailed" && (e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, bad[:12])) {
			t.Errorf("SyncFailed event: %s %q", e.Type, e.Message)
		}
	}
	if reasons["Synced"] != 1 || reasons["SyncFailed"] != 1 {
		t.Errorf("events on the parent: %v, want one Synced and one SyncFailed", reasons)
	}

	// A webhook that cannot be reached does not change the exit status.
	args[len(args)-1] = "http://127.0.0.1:1/hook"
	if out := cronsync(t, nil, args...); out.code != exitContent || !strings.Contains(out.stderr, "warning: notifying http://127.0.0.1:1/...") {
		t.Errorf("exit %d with an unreachable webhook, want %d and a warning", out.code, exitContent)
	}
}

// A run that never held its Lease (taking it failed: here its namespace
// does not exist) writes no record on the parent, nor anything else: the
// Lease may be another run's (found by bench/chaos, seed 2026 trial 192,
// with the first request cut).
func TestNoRecordWithoutTheLease(t *testing.T) {
	name := testenv.Unique("no-lease")
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", name, "v"))
	r.Commit("one")
	mark := cluster.AuditMark()
	out := cronsync(t, nil, "--repo", r.Dir, "--lease", "absent-"+name+"/"+name, "--applyset", "default/"+name)
	if out.code == 0 || !hasLineWith(out.stderr, "absent-"+name) {
		t.Fatalf("exit %d, want a failure naming the Lease:\n%s", out.code, out.stderr)
	}
	events, err := cluster.AuditSince(mark, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		switch ev.Verb {
		case "create", "update", "patch", "delete":
			if !strings.Contains(ev.RequestURI, "/leases") && !strings.Contains(ev.RequestURI, "/events") {
				t.Errorf("a run without its Lease wrote: %s %s", ev.Verb, ev.RequestURI)
			}
		}
	}
}
