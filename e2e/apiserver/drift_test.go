package apiserver

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// driftRun is one run's JSON, with each object's drift.
type driftRun struct {
	Summary struct {
		DriftRepaired int `json:"driftRepaired"`
		Objects       []struct {
			Ref    string `json:"ref"`
			Action string `json:"action"`
			Drift  *struct {
				Summary string `json:"summary"`
				Detail  struct {
					Fields []struct {
						Path     string `json:"path"`
						Live     any    `json:"live"`
						Desired  any    `json:"desired"`
						Removed  bool   `json:"removed"`
						Managers []struct {
							Name string `json:"name"`
							Time string `json:"time"`
						} `json:"managers"`
					} `json:"fields"`
				} `json:"detail"`
			} `json:"drift"`
		} `json:"objects"`
	}
	out result
}

// Each hand change made the way people and tools make them is repaired and
// named: the path, the value before and after, and the field manager that
// made it; a change from Git, and a writer of a field cronsync does not
// set, are not drift.
func TestDriftIsNamed(t *testing.T) {
	ns := testenv.Unique("drift")
	const password = "hunter2-plaintext"
	hook, posts := webhookRecorder(t)

	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("web.yaml", strings.Replace(deployment(ns, "web", 2), "  namespace: "+ns+"\n",
		"  namespace: "+ns+"\n  labels: {team: a}\n  annotations: {owner: team-a}\n", 1))
	// Its replicas are an autoscaler's: Git does not set them.
	r.Write("scaled.yaml", strings.Replace(deployment(ns, "scaled", 1), "  replicas: 1\n", "", 1))
	r.Write("cfg.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: "+ns+"\n  labels: {tier: backend}\ndata: {value: v1}\n")
	r.Write("creds.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: "+ns+"}\ndata: {password: "+base64.StdEncoding.EncodeToString([]byte(password))+"}\n")
	r.Commit("first")
	set := testenv.Unique("drift")
	args := []string{"--repo", r.Dir, "--applyset", "default/" + set, "--lease", "default/" + set, "--output", "json",
		"--notify-url", hook, "--notify-on", "drift"}
	mustSync(t, args...)

	run := func(t *testing.T) driftRun {
		t.Helper()
		var d driftRun
		d.out = cronsync(t, nil, args...)
		if d.out.code != 0 {
			t.Fatalf("exit %d", d.out.code)
		}
		if err := json.Unmarshal([]byte(d.out.stdout), &d.Summary); err != nil {
			t.Fatal(err)
		}
		return d
	}
	ctx := context.Background()
	patch := func(t *testing.T, kind, name string, pt types.PatchType, body, manager string, force bool, sub ...string) {
		t.Helper()
		gvr := map[string]schema.GroupVersionResource{"deployment": deployments, "configmap": configMaps, "secret": secrets}[kind]
		opts := metav1.PatchOptions{FieldManager: manager}
		if force {
			opts.Force = new(true)
		}
		if _, err := kube.Resource(gvr).Namespace(ns).Patch(ctx, name, pt, []byte(body), opts, sub...); err != nil {
			t.Fatal(err)
		}
	}
	// drifted asserts that the next run repairs exactly ref, naming path
	// with its values and manager.
	drifted := func(t *testing.T, ref, path, line string, live, desired any, manager string) driftRun {
		t.Helper()
		d := run(t)
		n := 0
		for _, o := range d.Summary.Objects {
			switch {
			case o.Ref != ref && (o.Action != "unchanged" || o.Drift != nil):
				t.Errorf("%s: %s, drift %v", o.Ref, o.Action, o.Drift)
			case o.Ref != ref:
			case o.Action != "configured" || o.Drift == nil:
				t.Errorf("%s: %s without drift", ref, o.Action)
			default:
				n++
				f := o.Drift.Detail.Fields[0]
				if len(o.Drift.Detail.Fields) != 1 || f.Path != path || fmt.Sprint(f.Live) != fmt.Sprint(live) || fmt.Sprint(f.Desired) != fmt.Sprint(desired) {
					t.Errorf("drift of %s: %+v, want %s: %v → %v", ref, o.Drift.Detail.Fields, path, live, desired)
				}
				var managers []string
				for _, m := range f.Managers {
					managers = append(managers, m.Name)
					// The API server times every entry but a scale
					// subresource's.
					if m.Time == "" && !strings.Contains(line, m.Name+")") {
						t.Errorf("manager %s without its time", m.Name)
					}
				}
				if want := strings.Fields(manager); strings.Join(managers, " ") != strings.Join(want, " ") {
					t.Errorf("drift of %s: managers %v, want %v", ref, managers, want)
				}
			}
		}
		if n != 1 || d.Summary.DriftRepaired != 1 {
			t.Errorf("%d objects drifted, summary counts %d", n, d.Summary.DriftRepaired)
		}
		if !strings.Contains(d.out.stderr, ref+" configured (drift repaired)\n  "+line) {
			t.Errorf("stderr lacks %q", ref+" configured (drift repaired)\n  "+line)
		}
		if !strings.Contains(d.out.stderr, "1 configured (1 drift repaired)") {
			t.Errorf("the summary line does not count the drift")
		}
		return d
	}
	web, cfg, creds := "deployment.apps/web -n "+ns, "configmap/cfg -n "+ns, "secret/creds -n "+ns

	t.Run("kubectl scale", func(t *testing.T) {
		patch(t, "deployment", "web", types.MergePatchType, `{"spec":{"replicas":5}}`, "kubectl-scale", false, "scale")
		drifted(t, web, "spec.replicas", "spec.replicas: 5 → 2 (changed by kubectl-scale)", 5, 2, "kubectl-scale")
		if got := get(t, deployments, ns, "web", "spec", "replicas"); got != "2" {
			t.Errorf("replicas %s after the run", got)
		}
	})
	t.Run("kubectl annotate --overwrite", func(t *testing.T) {
		patch(t, "deployment", "web", types.MergePatchType, `{"metadata":{"annotations":{"owner":"team-b"}}}`, "kubectl-annotate", false)
		drifted(t, web, "metadata.annotations.owner", `metadata.annotations.owner: "team-b" → "team-a" (changed by kubectl-annotate at `, "team-b", "team-a", "kubectl-annotate")
	})
	t.Run("merge patch by a named manager", func(t *testing.T) {
		patch(t, "configmap", "cfg", types.MergePatchType, `{"data":{"value":"hand"}}`, "incident-fix", false)
		drifted(t, cfg, "data.value", `data.value: "hand" → "v1" (changed by incident-fix at `, "hand", "v1", "incident-fix")
	})
	t.Run("JSON patch removing a label", func(t *testing.T) {
		patch(t, "configmap", "cfg", types.JSONPatchType, `[{"op":"remove","path":"/metadata/labels/tier"}]`, "kubectl-patch", false)
		drifted(t, cfg, "metadata.labels.tier", `metadata.labels.tier: removed → "backend"`, nil, "backend", "")
	})
	t.Run("forced apply by another manager", func(t *testing.T) {
		patch(t, "configmap", "cfg", types.ApplyPatchType, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"cfg"},"data":{"value":"theirs"}}`, "other-tool", true)
		drifted(t, cfg, "data.value", `data.value: "theirs" → "v1" (changed by other-tool at `, "theirs", "v1", "other-tool")
	})
	t.Run("a Secret's values stay masked", func(t *testing.T) {
		before := len(posts())
		patch(t, "secret", "creds", types.MergePatchType, `{"data":{"password":"`+base64.StdEncoding.EncodeToString([]byte("by-hand-plaintext"))+`"}}`, "kubectl-edit", false)
		d := drifted(t, creds, "data.password", "data.password: *** → *** (changed by kubectl-edit at ", "***", "***", "kubectl-edit")
		events, err := clientset().CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + set + ",reason=DriftRepaired"})
		if err != nil {
			t.Fatal(err)
		}
		seen := d.out.stdout + d.out.stderr + strings.Join(posts()[before:], "")
		for _, e := range events.Items {
			seen += e.Message
		}
		for _, secret := range []string{password, "by-hand-plaintext", base64.StdEncoding.EncodeToString([]byte(password)), base64.StdEncoding.EncodeToString([]byte("by-hand-plaintext"))} {
			if strings.Contains(seen, secret) {
				t.Errorf("%q is printed, posted or in an Event", secret)
			}
		}
	})
	t.Run("a change from Git is not drift", func(t *testing.T) {
		r.Write("cfg.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: "+ns+"\n  labels: {tier: backend}\ndata: {value: v2}\n")
		r.Commit("v2")
		d := run(t)
		for _, o := range d.Summary.Objects {
			if o.Drift != nil || (o.Ref == cfg) != (o.Action == "configured") {
				t.Errorf("%s: %s, drift %v", o.Ref, o.Action, o.Drift)
			}
		}
		if d.Summary.DriftRepaired != 0 || strings.Contains(d.out.stderr, "drift repaired") {
			t.Errorf("a commit's change reported as drift:\n%s", d.out.stderr)
		}
	})
	t.Run("a writer of a field Git does not set", func(t *testing.T) {
		patch(t, "deployment", "scaled", types.MergePatchType, `{"spec":{"replicas":4}}`, "horizontal-pod-autoscaler", false, "scale")
		d := run(t)
		for _, o := range d.Summary.Objects {
			if o.Action != "unchanged" || o.Drift != nil {
				t.Errorf("%s: %s, drift %v", o.Ref, o.Action, o.Drift)
			}
		}
	})

	// What the runs above left where operators look.
	events, err := clientset().CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + set + ",reason=DriftRepaired"})
	if err != nil {
		t.Fatal(err)
	}
	if len(events.Items) != 6 {
		t.Errorf("%d DriftRepaired Events, want one per run that repaired drift (6)", len(events.Items))
	}
	for _, e := range events.Items {
		if e.Type != corev1.EventTypeWarning || !strings.Contains(e.Message, "drift repaired: 1 objects: ") {
			t.Errorf("DriftRepaired Event: %s %q", e.Type, e.Message)
		}
	}
	// --notify-on=drift: each run that repaired drift posted, and the two
	// without drift did not.
	got := posts()
	if len(got) != 6 || !strings.Contains(got[5], `"driftRepaired":1`) || !strings.Contains(got[5], "drift repaired: 1 objects: secret/creds -n "+ns+" (data.password: *** → ***") {
		t.Errorf("webhook posts: %q", got)
	}
}
