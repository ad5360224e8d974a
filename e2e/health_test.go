package e2e

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// repoWith commits files (path -> YAML) to a new repository.
func repoWith(t *testing.T, files map[string]string) *testenv.Repo {
	t.Helper()
	r := testenv.NewRepo(t)
	for p, c := range files {
		r.Write(p, c)
	}
	r.Commit("commit")
	return r
}

func TestDeploymentBecomesReady(t *testing.T) {
	ns := testenv.Unique("h-ready")
	r := repoWith(t, map[string]string{
		"ns.yaml":  namespace(ns),
		"web.yaml": deployment(ns, "web", 2, "", ""),
	})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "deployment.apps/web -n "+ns+" ready after")
	wantLine(t, out.stdout, "2 ready, 0 not ready")
	if got := live(t, deployments, ns, "web"); got == nil {
		t.Fatal("deployment missing")
	} else if n, _, _ := unstructuredInt(got.Object, "status", "availableReplicas"); n != 2 {
		t.Errorf("availableReplicas = %d after a run that said ready", n)
	}

	// Everything is ready now: the next run waits one round and prints no
	// line for any object.
	out = cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs")
	wantExit(t, out, 0)
	if strings.Contains(out.stdout, "ready after") || strings.Contains(out.stdout, "waiting up to") {
		t.Errorf("a run where everything was ready waited:\n%s", out.stdout)
	}
	wantLine(t, out.stdout, "2 ready, 0 not ready")
	// That run went by the first one's record, and still waited.
	if !tookShortcut(out) {
		t.Error("the second run at the same commit read the commit")
	}
}

func TestRolloutPastItsDeadlineExits6(t *testing.T) {
	ns := "h-deadline"
	r := repoWith(t, map[string]string{
		"ns.yaml":  namespace(ns),
		"api.yaml": deployment(ns, "api", 1, "progressDeadlineSeconds: 3\n", unschedulable),
	})
	termLog := filepath.Join(t.TempDir(), "termination-log")
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "3m", "--output", "json", "--termination-log", termLog)
	wantExit(t, out, 6)
	if out.elapsed > 90*time.Second {
		t.Errorf("took %s: a failed rollout must end the wait, not the timeout", out.elapsed)
	}
	wantLine(t, out.stderr, "deployment.apps/api -n "+ns+" failed: ProgressDeadlineExceeded")
	wantLine(t, out.stderr, "error: deployment.apps/api -n "+ns+" (api.yaml): not healthy: ProgressDeadlineExceeded")

	// Every place that shows a run's outcome says so.
	var doc struct {
		Result   string
		ExitCode int
		Health   struct {
			Ready, NotReady int
			Unhealthy       string
		}
	}
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("--output json: %v", err)
	}
	if doc.Result != "unhealthy" || doc.ExitCode != 6 || doc.Health.NotReady != 1 || !strings.Contains(doc.Health.Unhealthy, "ProgressDeadlineExceeded") {
		t.Errorf("JSON summary: %+v", doc)
	}
	msg, err := os.ReadFile(termLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(msg), "result: unhealthy (exit 6)") || !strings.Contains(string(msg), "ProgressDeadlineExceeded") {
		t.Errorf("termination message:\n%s", msg)
	}
	parent := live(t, secrets, ns, "cs")
	if got := parent.GetAnnotations()["cronsync.dev/last-sync-result"]; got != "unhealthy" {
		t.Errorf("parent's last-sync-result = %q", got)
	}
	if got := parent.GetAnnotations()["cronsync.dev/last-sync-error"]; !strings.Contains(got, "deployment.apps/api") {
		t.Errorf("parent's last-sync-error = %q", got)
	}
	if !eventWithReason(t, ns, "cs", "Unhealthy") {
		t.Error("no Unhealthy Event on the ApplySet parent")
	}
}

func TestSlowRolloutAtWaitTimeoutExits6(t *testing.T) {
	ns := "h-slow"
	r := repoWith(t, map[string]string{
		"ns.yaml":   namespace(ns),
		"slow.yaml": deployment(ns, "slow", 1, "", unschedulable),
	})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "6s")
	wantExit(t, out, 6)
	wantLine(t, out.stdout, "waiting up to 6s for 1 of 2 objects to be ready")
	wantLine(t, out.stdout, "deployment.apps/slow -n "+ns+" not ready after 6s: Available: 0/1")
	wantLine(t, out.stderr, "not ready after 6s")
	wantLine(t, out.stdout, "1 ready, 1 not ready")
}

func TestWaitFalseKeepsTodaysBehaviour(t *testing.T) {
	ns := "h-nowait"
	r := repoWith(t, map[string]string{
		"ns.yaml":   namespace(ns),
		"slow.yaml": deployment(ns, "slow", 1, "", unschedulable),
	})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait=false")
	wantExit(t, out, 0)
	if strings.Contains(out.stdout, "ready") {
		t.Errorf("--wait=false waited or reported readiness:\n%s", out.stdout)
	}
	if out.elapsed > 20*time.Second {
		t.Errorf("--wait=false took %s", out.elapsed)
	}
}

func TestJobMustComplete(t *testing.T) {
	ns := "h-job"
	r := repoWith(t, map[string]string{
		"ns.yaml":  namespace(ns),
		"ok.yaml":  job(ns, "ok", "", ""),
		"bad.yaml": job(ns, "bad", "activeDeadlineSeconds: 2\n", unschedulable),
	})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 6)
	wantLine(t, out.stderr, "job.batch/bad -n "+ns+" (bad.yaml): not healthy: DeadlineExceeded")

	good := repoWith(t, map[string]string{"ns.yaml": namespace(ns + "-ok"), "ok.yaml": job(ns+"-ok", "ok", "", "")})
	out = cronsync(t, "--repo", good.Dir, "--applyset", ns+"-ok/cs", "--wait-timeout", "2m")
	wantExit(t, out, 0)
	got := live(t, jobs, ns+"-ok", "ok")
	if s, _, _ := unstructuredInt(got.Object, "status", "succeeded"); s != 1 {
		t.Errorf("the Job was reported ready with status.succeeded = %d", s)
	}
}

func TestNotWaitedAnnotation(t *testing.T) {
	ns := "h-skip"
	d := deployment(ns, "bg", 1, "", unschedulable)
	d = strings.Replace(d, "  namespace: "+ns+"\n", "  namespace: "+ns+"\n  annotations: {cronsync.dev/wait: \"false\"}\n", 1)
	r := repoWith(t, map[string]string{"ns.yaml": namespace(ns), "bg.yaml": d})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "30s")
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "1 ready, 0 not ready")
}

func eventWithReason(t *testing.T, ns, name, reason string) bool {
	t.Helper()
	list, err := kube.Resource(eventsGVR).Namespace(ns).List(t.Context(), listAll)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		obj, _, _ := unstructuredString(e.Object, "involvedObject", "name")
		r, _, _ := unstructuredString(e.Object, "reason")
		if obj == name && r == reason {
			return true
		}
	}
	return false
}

// TestWaitReadsNoStatuslessObject: ConfigMaps, Secrets, ServiceAccounts and
// Roles have no status, so the wait judges them from what the run saw of
// them (the answer to its write, or the LIST it decided from) and lists
// only what kstatus needs whole, here the Deployment. One being deleted is
// still not ready.
func TestWaitReadsNoStatuslessObject(t *testing.T) {
	ns := "h-statusless"
	r := repoWith(t, map[string]string{
		"ns.yaml":  namespace(ns),
		"web.yaml": deployment(ns, "web", 1, "", ""),
		"cfg.yaml": configMap(ns, "settings", "1") + "---\n" +
			"apiVersion: v1\nkind: Secret\nmetadata: {name: token, namespace: " + ns + "}\nstringData: {token: x}\n---\n" +
			"apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: app, namespace: " + ns + "}\n---\n" +
			"apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: app, namespace: " + ns + "}\n" +
			"rules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get]}]\n",
	})
	lists := func(mark int64) map[string]int {
		t.Helper()
		events, err := cluster.AuditSince(mark, "admin")
		if err != nil {
			t.Fatal(err)
		}
		n := map[string]int{}
		for _, e := range events {
			if e.Verb != "list" {
				continue
			}
			path, _, _ := strings.Cut(e.RequestURI, "?")
			if _, res, ok := strings.Cut(path, "/namespaces/"+ns+"/"); ok {
				n[res]++
			}
		}
		return n
	}
	for _, run := range []string{"first", "unchanged"} {
		mark := cluster.AuditMark()
		out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
		wantExit(t, out, 0)
		wantLine(t, out.stdout, "6 ready, 0 not ready")
		n := lists(mark)
		// The unchanged run decides every object from one LIST of its
		// resource; only the Deployment is listed again, by the wait.
		for _, res := range []string{"configmaps", "secrets", "serviceaccounts", "roles"} {
			if run == "unchanged" && n[res] != 1 || n[res] > 1 {
				t.Errorf("%s run: %s listed %d times in %s, want the run's own LIST only", run, res, n[res], ns)
			}
		}
		if n["deployments"] < 1 || run == "unchanged" && n["deployments"] != 2 {
			t.Errorf("%s run: deployments listed %d times in %s, want the wait's LIST beside the run's", run, n["deployments"], ns)
		}
	}

	// A ConfigMap held by a finalizer while it is deleted is terminating:
	// nothing cronsync owns changed, so the run decides it from the LIST,
	// and the wait must still see the deletion there.
	cms := kube.Resource(configMaps).Namespace(ns)
	if _, err := cms.Patch(t.Context(), "settings", types.MergePatchType, []byte(`{"metadata":{"finalizers":["example.com/hold"]}}`), metav1.PatchOptions{FieldManager: "test"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cms.Patch(context.Background(), "settings", types.MergePatchType, []byte(`{"metadata":{"finalizers":null}}`), metav1.PatchOptions{FieldManager: "test"}) //nolint:errcheck // best effort
	})
	if err := cms.Delete(t.Context(), "settings", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "3s")
	wantExit(t, out, 6)
	wantLine(t, out.stderr, "configmap/settings -n "+ns+" (cfg.yaml): not ready after 3s: terminating")
}
