package apiserver

import (
	"context"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/internal/testenv"
)

// denyRealWrites is a ValidatingAdmissionPolicy that lets dry runs of
// labelled ConfigMaps through and refuses their real writes with 422
// (Invalid, the default reason), as a dying API server or a policy that
// only judges real requests does.
const denyRealWrites = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: deny-real-writes
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE, UPDATE]
      resources: [configmaps]
    objectSelector:
      matchLabels: {deny-real-writes: "true"}
  validations:
  - expression: request.dryRun == true
    message: real writes refused by the test's policy
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: deny-real-writes
spec:
  policyName: deny-real-writes
  validationActions: [Deny]
`

// admissionPolicy creates a ValidatingAdmissionPolicy and its binding
// (two YAML documents), and returns what removes them; the test's cleanup
// removes them too.
func admissionPolicy(t *testing.T, docs string) (remove func()) {
	t.Helper()
	ctx := context.Background()
	policies := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicies"}
	bindings := schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingadmissionpolicybindings"}
	var removes []func()
	for i, doc := range strings.Split(docs, "---\n") {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(doc), &u.Object); err != nil {
			t.Fatal(err)
		}
		gvr := []schema.GroupVersionResource{policies, bindings}[i]
		if _, err := kube.Resource(gvr).Create(ctx, &u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r := func() { _ = kube.Resource(gvr).Delete(ctx, u.GetName(), metav1.DeleteOptions{}) }
		t.Cleanup(r)
		removes = append(removes, r)
	}
	return func() {
		for _, r := range removes {
			r()
		}
	}
}

// A 422 on the real write of an object whose server dry run passed before
// the run's first write is no verdict on the commit: the commit was judged
// valid by the same server a moment ago, so the run exits 1 (retry), with
// the server's message. An object whose dry run had to wait for the
// Namespace the commit creates is judged by its write: exit 3.
func TestWriteRefusedAfterPassingDryRun(t *testing.T) {
	ctx := context.Background()
	admissionPolicy(t, denyRealWrites)
	oldNS, newNS := testenv.Unique("wr-old"), testenv.Unique("wr-new")
	setup := testenv.NewRepo(t)
	setup.Write("ns.yaml", namespace(oldNS))
	setup.Commit("namespace")
	mustSync(t, "--repo", setup.Dir, "--applyset", "", "--lease", "")

	// The policy takes effect once the API server has loaded it.
	probe := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "ConfigMap",
		"metadata": map[string]any{"name": "probe", "labels": map[string]any{"deny-real-writes": "true"}},
	}}
	err := wait.PollUntilContextTimeout(ctx, 200*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		_, err := kube.Resource(configMaps).Namespace(oldNS).Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		if err != nil {
			t.Fatalf("a dry run of a labelled ConfigMap was refused: %v", err)
		}
		_, err = kube.Resource(configMaps).Namespace(oldNS).Create(ctx, probe, metav1.CreateOptions{})
		if err == nil {
			_ = kube.Resource(configMaps).Namespace(oldNS).Delete(ctx, "probe", metav1.DeleteOptions{})
		}
		return apierrors.IsInvalid(err), nil
	})
	if err != nil {
		t.Fatalf("the policy never refused a real write: %v", err)
	}

	denied := func(ns string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: denied\n  namespace: " + ns + "\n  labels: {deny-real-writes: \"true\"}\ndata: {a: b}\n"
	}
	t.Run("dry run passed before the first write: retry", func(t *testing.T) {
		r := testenv.NewRepo(t)
		r.Write("ok.yaml", configMap(oldNS, "ok", "1"))
		r.Write("denied.yaml", denied(oldNS))
		r.Commit("one object the policy refuses when written")
		out := cronsync(t, nil, "--repo", r.Dir, "--applyset", "", "--lease", "")
		if out.code != exitRetry {
			t.Errorf("exit %d, want %d", out.code, exitRetry)
		}
		if !hasLineWith(out.stderr, "error: configmap/denied -n "+oldNS+" (denied.yaml): refused when written, although its dry run passed in this run: ", "real writes refused by the test's policy") {
			t.Error("no error line names the ConfigMap, says its dry run passed, and gives the server's message")
		}
		if got := get(t, configMaps, oldNS, "ok", "data", "value"); got != "1" {
			t.Errorf("configmap ok: value %s, want 1: the rest of the stage is applied", got)
		}
	})
	t.Run("dry run deferred to the write: content", func(t *testing.T) {
		r := testenv.NewRepo(t)
		r.Write("ns.yaml", namespace(newNS))
		r.Write("denied.yaml", denied(newNS))
		r.Commit("the same in a new Namespace")
		out := cronsync(t, nil, "--repo", r.Dir, "--applyset", "", "--lease", "")
		if out.code != exitContent {
			t.Errorf("exit %d, want %d", out.code, exitContent)
		}
		if !hasLineWith(out.stderr, "error: configmap/denied -n "+newNS+" (denied.yaml): ", "real writes refused by the test's policy") {
			t.Error("no error line names the ConfigMap and gives the server's message")
		}
		if strings.Contains(out.stderr, "although its dry run passed") {
			t.Error("a write that was the object's first check is reported as refused after a passing dry run")
		}
	})
}
