package e2e

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"
)

var (
	policies = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"}
	bindings = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"}
)

func recreatable(doc string) string {
	return strings.Replace(doc, "metadata:\n", "metadata:\n  annotations:\n    cronsync.dev/recreate: \"true\"\n", 1)
}

// withSelector adds a label to a Deployment's selector and pod template,
// which the API server refuses to change in place.
func withSelector(doc, name string) string {
	return strings.ReplaceAll(doc, "{app: "+name+"}", "{app: "+name+", tier: front}")
}

func TestImmutableSelectorIsRecreatedOnlyWhenAnnotated(t *testing.T) {
	ns := "r-selector"
	r := repoWith(t, map[string]string{
		"ns.yaml":    namespace(ns),
		"web.yaml":   recreatable(deployment(ns, "web", 1, "", "")),
		"plain.yaml": deployment(ns, "plain", 1, "", ""),
	})
	// Waited for, so that the deployment controller has finished writing
	// their status before the snapshot below compares resourceVersions.
	wantExit(t, cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m"), 0)
	oldWeb := live(t, deployments, ns, "web").GetUID()

	// Without the annotation: exit 3, the field and the way out named,
	// nothing changed.
	r.Write("plain.yaml", withSelector(deployment(ns, "plain", 1, "", ""), "plain"))
	r.Commit("plain selector")
	before := snapshot(t, ns)
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs")
	wantExit(t, out, 3)
	wantLine(t, out.stderr, "deployment.apps/plain -n "+ns+" (plain.yaml): ")
	wantLine(t, out.stderr, `spec.selector cannot change in place: annotate the object cronsync.dev/recreate: "true"`)
	wantUnchanged(t, before, snapshot(t, ns))

	// With it: deleted, created again, and waited for.
	r.Write("plain.yaml", deployment(ns, "plain", 1, "", ""))
	r.Write("web.yaml", withSelector(recreatable(deployment(ns, "web", 1, "", "")), "web"))
	r.Commit("web selector")
	out = cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "deployment.apps/web -n "+ns+" recreated")
	wantLine(t, out.stdout, "1 recreated")
	web := live(t, deployments, ns, "web")
	if web.GetUID() == oldWeb {
		t.Error("the Deployment has its old uid")
	}
	if sel, _, _ := unstructuredString(web.Object, "spec", "selector", "matchLabels", "tier"); sel != "front" {
		t.Errorf("selector not changed: tier=%q", sel)
	}
}

func TestJobTemplateChangeIsRecreated(t *testing.T) {
	ns := "r-job"
	r := repoWith(t, map[string]string{"ns.yaml": namespace(ns), "migrate.yaml": recreatable(job(ns, "migrate", "", ""))})
	wantExit(t, cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m"), 0)
	old := live(t, jobs, ns, "migrate").GetUID()
	r.Write("migrate.yaml", strings.Replace(recreatable(job(ns, "migrate", "", "")), "migrate:1", "migrate:2", 1))
	r.Commit("new migration image")
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m")
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "job.batch/migrate -n "+ns+" recreated")
	got := live(t, jobs, ns, "migrate")
	if got.GetUID() == old {
		t.Error("the Job has its old uid")
	}
	if s, _, _ := unstructuredInt(got.Object, "status", "succeeded"); s != 1 {
		t.Errorf("the recreated Job did not complete: succeeded=%d", s)
	}
}

// A replacement the server would refuse never costs the old object: here an
// admission policy (a change freeze an operator put in place) refuses new
// Deployments in the namespace but lets the old one be updated, so the
// dry-run create of the replacement fails before anything is deleted.
func TestRecreateWhoseReplacementIsRefusedKeepsTheOld(t *testing.T) {
	ns := "r-refused"
	r := repoWith(t, map[string]string{
		"ns.yaml":  namespace(ns),
		"web.yaml": recreatable(deployment(ns, "web", 1, "", "")),
	})
	wantExit(t, cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait-timeout", "2m"), 0)
	old := live(t, deployments, ns, "web").GetUID()
	freeze(t, ns)

	r.Write("web.yaml", withSelector(recreatable(deployment(ns, "web", 1, "", "")), "web"))
	r.Commit("selector change during the freeze")
	before := snapshot(t, ns)
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs")
	wantExit(t, out, 3)
	wantLine(t, out.stderr, "deployment.apps/web -n "+ns+" (web.yaml): its replacement would be refused, so the object is not recreated")
	wantLine(t, out.stderr, "no new Deployments during the freeze")
	wantUnchanged(t, before, snapshot(t, ns))
	if got := live(t, deployments, ns, "web"); got == nil || got.GetUID() != old {
		t.Error("the old Deployment is gone")
	}
}

// freeze refuses the creation of Deployments in ns with a
// ValidatingAdmissionPolicy, which needs no webhook server.
func freeze(t *testing.T, ns string) {
	t.Helper()
	policy := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata: {name: freeze-` + ns + `}
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - {apiGroups: [apps], apiVersions: [v1], operations: [CREATE], resources: [deployments]}
  validations:
  - expression: "false"
    message: no new Deployments during the freeze
`
	binding := `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata: {name: freeze-` + ns + `}
spec:
  policyName: freeze-` + ns + `
  validationActions: [Deny]
  matchResources:
    namespaceSelector:
      matchLabels: {kubernetes.io/metadata.name: ` + ns + `}
`
	for _, doc := range []struct {
		gvr schema.GroupVersionResource
		y   string
	}{{policies, policy}, {bindings, binding}} {
		u := &unstructured.Unstructured{}
		if err := yaml.Unmarshal([]byte(doc.y), &u.Object); err != nil {
			t.Fatal(err)
		}
		if _, err := kube.Resource(doc.gvr).Create(context.Background(), u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = kube.Resource(doc.gvr).Delete(context.Background(), u.GetName(), metav1.DeleteOptions{}) })
	}
	// The policy takes effect once the API server has loaded it: probe with
	// a dry-run create until it refuses.
	probe := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(deployment(ns, "probe", 1, "", "")), &probe.Object); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := kube.Resource(deployments).Namespace(ns).Create(context.Background(), probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil && strings.Contains(err.Error(), "freeze") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the freeze policy never took effect: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
