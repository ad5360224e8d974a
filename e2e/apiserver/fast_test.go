package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/internal/testenv"
)

// runJSON syncs with --output json and returns each object's action, and
// which were decided from the LIST without a request.
type objectOutcome struct {
	Ref            string `json:"ref"`
	Action         string `json:"action"`
	WithoutRequest bool   `json:"withoutRequest"`
}

func syncJSON(t *testing.T, args ...string) (map[string]objectOutcome, result) {
	t.Helper()
	out := cronsync(t, nil, append([]string{"--output", "json"}, args...)...)
	if out.code != 0 {
		t.Fatalf("exit %d", out.code)
	}
	var doc struct{ Objects []objectOutcome }
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("--output json: %v", err)
	}
	m := map[string]objectOutcome{}
	for _, o := range doc.Objects {
		m[o.Ref] = o
	}
	return m, out
}

var scaleGVR = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}

// Each hand change is made through the real API server the way people and
// controllers make them. After each, the next run must restore Git's state
// and report the object configured, while every object nobody touched is
// still decided without a request.
func TestFastUnchangedSeesEveryHandChange(t *testing.T) {
	const ns = "fast"
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("web.yaml", fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: %s
  labels: {app: web, team: a}
  annotations: {owner: team-a}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: registry.invalid/app:1
        ports: [{containerPort: 8080, name: http}, {containerPort: 9090, name: metrics}]
`, ns))
	r.Write("cfg.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: "+ns+"\n  labels: {tier: backend}\n  annotations: {owner: team-a}\ndata: {value: v1}\n")
	for i := range 5 {
		r.Write(fmt.Sprintf("more/cm-%d.yaml", i), configMap(ns, fmt.Sprintf("more-%d", i), "v"))
	}
	r.Commit("first")
	args := []string{"--repo", r.Dir, "--applyset", "default/fast"}
	mustSync(t, args...)
	const total = 8

	// Every run ends with everything decided without a request: the test's
	// own baseline between cases.
	settled := func(t *testing.T) {
		t.Helper()
		got, out := syncJSON(t, args...)
		n := 0
		for _, o := range got {
			if o.WithoutRequest {
				n++
			}
		}
		if n != total {
			t.Fatalf("%d of %d objects decided without a request on a settled run:\n%s", n, total, out.stderr)
		}
		// The last run applied this commit completely: this one goes by
		// its record and reads no file.
		if !strings.Contains(out.stderr, "without reading its files") {
			t.Errorf("a settled run at the same commit read the commit")
		}
	}
	// changed asserts that the next run repairs exactly ref.
	changed := func(t *testing.T, ref string) {
		t.Helper()
		got, out := syncJSON(t, args...)
		for r, o := range got {
			switch {
			case r == ref && o.Action != "configured":
				t.Errorf("%s: %s after a hand change, want configured", r, o.Action)
			case r == ref && o.WithoutRequest:
				t.Errorf("%s decided without a request after a hand change", r)
			case r != ref && !o.WithoutRequest:
				t.Errorf("%s (untouched) took the slow path", r)
			}
		}
		if strings.Contains(out.stderr, "without reading its files") {
			t.Errorf("the run after a hand change went by the last run's record")
		}
		if t.Failed() {
			t.Log(out.stderr)
		}
	}
	settled(t)

	dyn := kube
	deps := dyn.Resource(scaleGVR).Namespace(ns)
	cms := dyn.Resource(configMaps).Namespace(ns)
	ctx := context.Background()
	patch := func(t *testing.T, c interface {
		Patch(context.Context, string, types.PatchType, []byte, metav1.PatchOptions, ...string) (*unstructured.Unstructured, error)
	}, name string, pt types.PatchType, body string, opts metav1.PatchOptions, sub ...string) {
		t.Helper()
		if _, err := c.Patch(ctx, name, pt, []byte(body), opts, sub...); err != nil {
			t.Fatal(err)
		}
	}
	web, cfg := "deployment.apps/web -n "+ns, "configmap/cfg -n "+ns

	t.Run("scale subresource", func(t *testing.T) {
		patch(t, deps, "web", types.MergePatchType, `{"spec":{"replicas":5}}`, metav1.PatchOptions{FieldManager: "kubectl"}, "scale")
		changed(t, web)
		if got := get(t, deployments, ns, "web", "spec", "replicas"); got != "2" {
			t.Errorf("replicas %s after the run", got)
		}
		settled(t)
	})
	t.Run("merge patch of a value", func(t *testing.T) {
		patch(t, cms, "cfg", types.MergePatchType, `{"data":{"value":"hand"}}`, metav1.PatchOptions{FieldManager: "kubectl-edit"})
		changed(t, cfg)
		if got := get(t, configMaps, ns, "cfg", "data", "value"); got != "v1" {
			t.Errorf("value %s after the run", got)
		}
		settled(t)
	})
	t.Run("JSON patch removing a label", func(t *testing.T) {
		patch(t, cms, "cfg", types.JSONPatchType, `[{"op":"remove","path":"/metadata/labels/tier"}]`, metav1.PatchOptions{FieldManager: "kubectl-patch"})
		changed(t, cfg)
		if got := get(t, configMaps, ns, "cfg", "metadata", "labels", "tier"); got != "backend" {
			t.Errorf("label %s after the run", got)
		}
		settled(t)
	})
	t.Run("JSON patch removing a list item", func(t *testing.T) {
		patch(t, deps, "web", types.JSONPatchType, `[{"op":"remove","path":"/spec/template/spec/containers/0/ports/1"}]`, metav1.PatchOptions{FieldManager: "kubectl-patch"})
		changed(t, web)
		u, err := deps.Get(ctx, "web", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		containers, _, _ := unstructured.NestedSlice(u.Object, "spec", "template", "spec", "containers")
		if ports, _ := containers[0].(map[string]any)["ports"].([]any); len(ports) != 2 {
			t.Errorf("%d ports after the run", len(ports))
		}
		settled(t)
	})
	t.Run("forced apply by another manager", func(t *testing.T) {
		patch(t, cms, "cfg", types.ApplyPatchType, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"value":"theirs"}}`,
			metav1.PatchOptions{FieldManager: "other-tool", Force: new(true)})
		changed(t, cfg)
		settled(t)
	})
	t.Run("deleted and created again by hand", func(t *testing.T) {
		u, err := cms.Get(ctx, "cfg", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if err := cms.Delete(ctx, "cfg", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields"} {
			unstructured.RemoveNestedField(u.Object, "metadata", f)
		}
		if _, err := cms.Create(ctx, u, metav1.CreateOptions{FieldManager: "kubectl-create"}); err != nil {
			t.Fatal(err)
		}
		changed(t, cfg)
		settled(t)
	})
	t.Run("annotate --overwrite", func(t *testing.T) {
		patch(t, deps, "web", types.MergePatchType, `{"metadata":{"annotations":{"owner":"team-b"}}}`, metav1.PatchOptions{FieldManager: "kubectl-annotate"})
		changed(t, web)
		if got := get(t, deployments, ns, "web", "metadata", "annotations", "owner"); got != "team-a" {
			t.Errorf("annotation %s after the run", got)
		}
		settled(t)
	})
	t.Run("digest edited", func(t *testing.T) {
		patch(t, cms, "cfg", types.MergePatchType, `{"metadata":{"annotations":{"cronsync.dev/applied-digest":"forged"}}}`, metav1.PatchOptions{FieldManager: "kubectl-annotate"})
		changed(t, cfg)
		settled(t)
	})
	t.Run("digest removed", func(t *testing.T) {
		patch(t, cms, "cfg", types.JSONPatchType, `[{"op":"remove","path":"/metadata/annotations/cronsync.dev~1applied-digest"}]`, metav1.PatchOptions{FieldManager: "kubectl-patch"})
		changed(t, cfg)
		settled(t)
	})
	t.Run("another tool sets fields cronsync does not own", func(t *testing.T) {
		patch(t, cms, "cfg", types.ApplyPatchType, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg","annotations":{"other-tool/seen":"yes"}}}`,
			metav1.PatchOptions{FieldManager: "other-tool"})
		// Nothing cronsync owns changed: still decided without a request.
		settled(t)
		if got := get(t, configMaps, ns, "cfg", "metadata", "annotations", "other-tool/seen"); got != "yes" {
			t.Errorf("the other tool's annotation is %s", got)
		}
	})
	t.Run("turned off and on again", func(t *testing.T) {
		got, _ := syncJSON(t, append(args, "--fast-unchanged=false")...)
		for r, o := range got {
			if o.WithoutRequest || o.Action != "unchanged" {
				t.Errorf("%s: %s (without a request: %v) with --fast-unchanged=false; want unchanged, from a dry run", r, o.Action, o.WithoutRequest)
			}
		}
		settled(t)
	})
	for _, tc := range []struct{ name, data string }{
		{"fingerprints deleted", `{"data":{"cronsync-fingerprints":null}}`},
		{"fingerprints corrupted", `{"data":{"cronsync-fingerprints":"bm90IGd6aXA="}}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patch(t, kube.Resource(secrets).Namespace("default"), "fast", types.MergePatchType, tc.data, metav1.PatchOptions{FieldManager: "vandal"})
			got, _ := syncJSON(t, args...)
			for r, o := range got {
				if o.WithoutRequest || o.Action != "unchanged" {
					t.Errorf("%s: %s (without a request: %v); want unchanged, from a dry run", r, o.Action, o.WithoutRequest)
				}
			}
			settled(t)
		})
	}
}

var secrets = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// A CRD whose schema changes between runs: its custom resources take the
// slow path until they are confirmed against the new schema, and a schema
// that no longer accepts what Git holds is found, not hidden.
func TestFastUnchangedFollowsCRDSchema(t *testing.T) {
	const ns = "fast-crd"
	base := testenv.CRD("Gizmo")
	withColor := strings.Replace(base, "size: {type: integer, minimum: 0}", "size: {type: integer, minimum: 0}\n              color: {type: string}", 1)
	if err := applyYAML(withColor); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("gizmo.yaml", "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: g, namespace: "+ns+"}\nspec: {size: 1, color: red}\n")
	r.Commit("gizmo")
	args := []string{"--repo", r.Dir, "--applyset", "default/fast-crd"}
	mustSync(t, args...)
	ref := "gizmo.example.com/g -n " + ns
	if got, _ := syncJSON(t, args...); !got[ref].WithoutRequest {
		t.Fatalf("settled custom resource took the slow path")
	}

	// A new defaulted field: the server says unchanged, but only after
	// being asked.
	withShape := strings.Replace(withColor, "color: {type: string}", "color: {type: string}\n              shape: {type: string, default: round}", 1)
	if err := applyYAML(withShape); err != nil {
		t.Fatal(err)
	}
	got, _ := syncJSON(t, args...)
	if got[ref].WithoutRequest {
		t.Errorf("decided without a request after its CRD's schema changed")
	}
	if got, _ = syncJSON(t, args...); !got[ref].WithoutRequest {
		t.Errorf("not decided without a request once confirmed against the new schema")
	}

	// A schema that drops a field Git sets: the fast path would have called
	// it unchanged; the server refuses it.
	if err := applyYAML(base); err != nil {
		t.Fatal(err)
	}
	out := cronsync(t, nil, args...)
	if out.code == 0 || !strings.Contains(out.stderr, ".spec.color: field not declared in schema") {
		t.Errorf("exit %d; the CR that no longer fits its schema was not sent to the server", out.code)
	}
}

// applyYAML server-side-applies one object as the test ("kubectl").
func applyYAML(y string) error {
	u := &unstructured.Unstructured{}
	if err := yamlToObject(y, u); err != nil {
		return err
	}
	m, err := restMapper().RESTMapping(u.GroupVersionKind().GroupKind(), u.GroupVersionKind().Version)
	if err != nil {
		return err
	}
	_, err = kube.Resource(m.Resource).Apply(context.Background(), u.GetName(), u, metav1.ApplyOptions{FieldManager: "kubectl", Force: true})
	return err
}

func restMapper() *restmapper.DeferredDiscoveryRESTMapper {
	return restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cluster.Config)))
}

func yamlToObject(y string, u *unstructured.Unstructured) error {
	j, err := yaml.YAMLToJSON([]byte(y))
	if err != nil {
		return err
	}
	return u.UnmarshalJSON(j)
}

// A record of what a commit renders to is trusted only by the build that
// wrote it: another build, even one that also calls itself devel, may
// render the same commit differently, so it reads the commit once.
func TestRecordIsPerBuild(t *testing.T) {
	other := filepath.Join(t.TempDir(), "cronsync-other")
	// -X of a variable the program does not have changes only the link, as
	// a rebuild from a changed tree would; both builds say devel.
	if b, err := exec.Command("go", "build", "-ldflags=-X main.notAVariable=other", "-o", other, testenv.ModuleRoot()).CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "per-build", "1"))
	r.Commit("one")
	args := []string{"--kubeconfig", cluster.Kubeconfig, "--repo", r.Dir, "--applyset", "default/per-build", "--lease", "", "--wait=false"}
	run := func(bin string) string {
		t.Helper()
		out := testenv.RunBinary(t, exec.Command(bin, args...))
		if out.Code != 0 {
			t.Fatalf("%s exited %d", bin, out.Code)
		}
		return out.Stdout
	}
	const shortcut = "without reading its files"
	run(binary)
	if !strings.Contains(run(binary), shortcut) {
		t.Fatal("the same build did not trust its own record")
	}
	if strings.Contains(run(other), shortcut) {
		t.Error("another build trusted the first one's record")
	}
	if !strings.Contains(run(other), shortcut) {
		t.Error("the other build did not trust the record it wrote itself")
	}
}
