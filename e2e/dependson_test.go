package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/testenv"
)

func dependsOn(doc, value string) string {
	return strings.Replace(doc, "metadata:\n", "metadata:\n  annotations:\n    config.kubernetes.io/depends-on: "+value+"\n", 1)
}

func TestDependsOnWaitsForTheMigration(t *testing.T) {
	ns := testenv.Unique("d-order")
	r := repoWith(t, map[string]string{
		"ns.yaml":      namespace(ns),
		"migrate.yaml": job(ns, "migrate", "", ""),
		"web.yaml":     dependsOn(deployment(ns, "web", 1, "", ""), "batch/namespaces/"+ns+"/Job/migrate"),
	})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 0)
	job := strings.Index(out.stdout, "job.batch/migrate -n "+ns+" created")
	web := strings.Index(out.stdout, "deployment.apps/web -n "+ns+" created")
	if job < 0 || web < job {
		t.Errorf("the Deployment was not reported written after the Job")
	}
	m, w := live(t, jobs, ns, "migrate"), live(t, deployments, ns, "web")
	done, _, _ := unstructuredString(m.Object, "status", "completionTime")
	completed, err := time.Parse(time.RFC3339, done)
	if err != nil {
		t.Fatalf("the Job has no completionTime: %v", err)
	}
	if created := w.GetCreationTimestamp().Time; created.Before(completed) {
		t.Errorf("Deployment created at %s, before the Job completed at %s", created, completed)
	}
}

func TestDependsOnAFailedJobWritesNothingAfterIt(t *testing.T) {
	ns := "d-fail"
	r := repoWith(t, map[string]string{
		"ns.yaml":      namespace(ns),
		"migrate.yaml": job(ns, "migrate", "activeDeadlineSeconds: 2\n", unschedulable),
		"web.yaml":     dependsOn(deployment(ns, "web", 1, "", ""), "batch/namespaces/"+ns+"/Job/migrate"),
	})
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 6)
	wantLine(t, out.stdout, "deployment.apps/web -n "+ns+" skipped")
	wantLine(t, out.stderr, "DeadlineExceeded")
	if live(t, deployments, ns, "web") != nil {
		t.Error("the Deployment was written although the Job it depends on failed")
	}
}

func TestDependsOnBadInputChangesNothing(t *testing.T) {
	ns := "d-bad"
	base := repoWith(t, map[string]string{"ns.yaml": namespace(ns), "a.yaml": configMap(ns, "a", "1"), "b.yaml": configMap(ns, "b", "1")})
	wantExit(t, cronsync(t, "--repo", base.Dir, "--applyset", ns+"/cs"), 0)
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  string
	}{
		{"missing dependency", map[string]string{
			"a.yaml": dependsOn(configMap(ns, "a", "2"), "/namespaces/"+ns+"/ConfigMap/nope"),
		}, "configmap/a -n " + ns + " (a.yaml, document 1): depends on configmap/nope -n " + ns + ", which the commit does not hold and the cluster does not have"},
		{"cycle", map[string]string{
			"a.yaml": dependsOn(configMap(ns, "a", "2"), "/namespaces/"+ns+"/ConfigMap/b"),
			"b.yaml": dependsOn(configMap(ns, "b", "2"), "/namespaces/"+ns+"/ConfigMap/a"),
		}, "dependency cycle: configmap/a -n " + ns + " -> configmap/b -n " + ns + " -> configmap/a -n " + ns},
		{"malformed", map[string]string{
			"a.yaml": dependsOn(configMap(ns, "a", "2"), "ConfigMap/b"),
		}, `config.kubernetes.io/depends-on: "ConfigMap/b" is neither`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for p, c := range tc.files {
				base.Write(p, c)
			}
			base.Commit(tc.name)
			before := snapshot(t, ns)
			out := cronsync(t, "--repo", base.Dir, "--applyset", ns+"/cs")
			wantExit(t, out, 3)
			wantLine(t, out.stderr, tc.want)
			wantUnchanged(t, before, snapshot(t, ns))
			base.Git("revert", "--no-edit", "HEAD")
		})
	}
}

// A Pod's dry run needs its PriorityClass to exist (the Priority admission
// plugin looks it up). When the same commit creates both, the Pod is checked
// right before it is written, after the PriorityClass.
func TestDependentCheckedOnceItsDependencyExists(t *testing.T) {
	ns := testenv.Unique("d-deferred")
	r := repoWith(t, map[string]string{"ns.yaml": namespace(ns)})
	wantExit(t, cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs"), 0)
	r.Write("priority.yaml", "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: "+ns+"-high\nvalue: 1000\n")
	r.Write("pod.yaml", dependsOn(`apiVersion: v1
kind: Pod
metadata:
  name: app
  namespace: `+ns+`
spec:
  priorityClassName: `+ns+`-high
  containers:
  - name: app
    image: registry.invalid/app:1
`, "scheduling.k8s.io/PriorityClass/"+ns+"-high"))
	r.Commit("a pod and its priority class")

	dry := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--dry-run")
	wantExit(t, dry, 0)
	wantLine(t, dry.stdout, "pod/app -n "+ns+" not validated")

	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "pod/app -n "+ns+" created")
	wantLine(t, out.stdout, "3 ready, 0 not ready")
}
