package apiserver

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/cronsync/cronsync/internal/testenv"
)

// The rule that decides objects from the LIST may only err towards asking
// the server. On a generated repository of 2,000 objects, rounds of commits
// and hand edits are followed by a server dry run of every object (the slow
// path, which asks the server about each) and a run with the fast path:
// every object the fast path calls unchanged, the server must call
// unchanged too. Each round is checked again at the same commit after few
// hand edits or none, where a run may go by the last run's record instead
// of reading the commit. The fingerprints and the record are kept in
// shards. Secrets are written with stringData, which the server stores
// under data, and edited there; HorizontalPodAutoscalers are written in
// autoscaling/v1 and edited in v2 too. CRONSYNC_EQUIVALENCE_SEED replays a
// failure.
func TestFastPathAgreesWithTheServer(t *testing.T) {
	seed := uint64(20261123)
	if s := os.Getenv("CRONSYNC_EQUIVALENCE_SEED"); s != "" {
		seed, _ = strconv.ParseUint(s, 10, 64)
	}
	rng := rand.New(rand.NewPCG(seed, seed))
	const (
		namespaces   = 4
		nConfigMaps  = 1900
		nDeployments = 100
		nSecrets     = 100
		nHPAs        = 50
		rounds       = 4
	)
	type obj struct {
		ns, name string
		deploy   bool
		secret   bool
		hpa      bool
		value    int
	}
	var objs []*obj
	for i := range nConfigMaps {
		objs = append(objs, &obj{ns: fmt.Sprintf("eq-%d", i%namespaces), name: fmt.Sprintf("cm-%04d", i)})
	}
	for i := range nDeployments {
		objs = append(objs, &obj{ns: fmt.Sprintf("eq-%d", i%namespaces), name: fmt.Sprintf("web-%03d", i), deploy: true, value: 1})
	}
	for i := range nSecrets {
		objs = append(objs, &obj{ns: fmt.Sprintf("eq-%d", i%namespaces), name: fmt.Sprintf("sec-%03d", i), secret: true})
	}
	for i := range nHPAs {
		objs = append(objs, &obj{ns: fmt.Sprintf("eq-%d", i%namespaces), name: fmt.Sprintf("hpa-%03d", i), hpa: true, value: 50})
	}
	manifest := func(o *obj) string {
		meta := fmt.Sprintf("metadata:\n  name: %s\n  namespace: %s\n  labels: {gen: eq}\n  annotations: {note: a}\n", o.name, o.ns)
		if o.hpa {
			return fmt.Sprintf("apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\n%sspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web-000}\n  maxReplicas: 5\n  targetCPUUtilizationPercentage: %d\n", meta, o.value)
		}
		if o.secret {
			return fmt.Sprintf("apiVersion: v1\nkind: Secret\n%sdata: {user: YWRtaW4=}\nstringData: {password: \"%d\"}\n", meta, o.value)
		}
		if o.deploy {
			return fmt.Sprintf("apiVersion: apps/v1\nkind: Deployment\n%sspec:\n  replicas: %d\n  selector: {matchLabels: {app: %s}}\n  template:\n    metadata: {labels: {app: %s}}\n    spec: {containers: [{name: app, image: registry.invalid/app:1}]}\n", meta, o.value, o.name, o.name)
		}
		return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\n%sdata: {value: \"%d\"}\n", meta, o.value)
	}
	r := testenv.NewRepo(t)
	write := func() {
		files := map[string][]string{}
		for i, o := range objs {
			f := fmt.Sprintf("%s/%03d.yaml", o.ns, i/10)
			files[f] = append(files[f], manifest(o))
		}
		for f, docs := range files {
			r.Write(f, strings.Join(docs, "---\n"))
		}
	}
	for i := range namespaces {
		r.Write(fmt.Sprintf("ns-%d.yaml", i), namespace(fmt.Sprintf("eq-%d", i)))
	}
	write()
	r.Commit("generated")
	// The fingerprints and the record are spread over shards, as at 20,000
	// objects and more with the default size.
	args := []string{"--repo", r.Dir, "--applyset", "default/equivalence", "--prune", "--fast-data-bytes", "16384"}
	mustSync(t, args...)
	if names, _ := shardIndex(t, "default", "equivalence"); len(names) < 4 {
		t.Fatalf("%d shards; the test means to run with several", len(names))
	}

	ctx := context.Background()
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	hpas := schema.GroupVersionResource{Group: "autoscaling", Version: "v1", Resource: "horizontalpodautoscalers"}
	client := func(o *obj) dynamic.ResourceInterface {
		if o.hpa {
			return kube.Resource(hpas).Namespace(o.ns)
		}
		if o.secret {
			return kube.Resource(secrets).Namespace(o.ns)
		}
		if o.deploy {
			return kube.Resource(deployments).Namespace(o.ns)
		}
		return kube.Resource(configMaps).Namespace(o.ns)
	}
	kind := func(o *obj) string {
		if o.hpa {
			return `"apiVersion":"autoscaling/v1","kind":"HorizontalPodAutoscaler"`
		}
		if o.secret {
			return `"apiVersion":"v1","kind":"Secret"`
		}
		if o.deploy {
			return `"apiVersion":"apps/v1","kind":"Deployment"`
		}
		return `"apiVersion":"v1","kind":"ConfigMap"`
	}
	field := func(o *obj, v int) string {
		if o.hpa {
			return fmt.Sprintf(`"spec":{"targetCPUUtilizationPercentage":%d}`, 50+v)
		}
		if o.secret {
			// As kubectl patch -p '{"stringData":...}' does: the server
			// stores it under data.
			return fmt.Sprintf(`"stringData":{"password":"%d"}`, v)
		}
		if o.deploy {
			return fmt.Sprintf(`"spec":{"replicas":%d}`, v)
		}
		return fmt.Sprintf(`"data":{"value":"%d"}`, v)
	}
	type edit struct {
		name string
		do   func(o *obj) error
	}
	edits := []edit{
		{"merge patch", func(o *obj) error {
			_, err := client(o).Patch(ctx, o.name, types.MergePatchType, []byte("{"+field(o, 7)+"}"), metav1.PatchOptions{FieldManager: "hand"})
			return err
		}},
		{"JSON patch removing a label", func(o *obj) error {
			_, err := client(o).Patch(ctx, o.name, types.JSONPatchType, []byte(`[{"op":"remove","path":"/metadata/labels/gen"}]`), metav1.PatchOptions{FieldManager: "hand"})
			return err
		}},
		{"forced apply", func(o *obj) error {
			_, err := client(o).Patch(ctx, o.name, types.ApplyPatchType, []byte(fmt.Sprintf(`{%s,"metadata":{"name":%q},%s}`, kind(o), o.name, field(o, 9))), metav1.PatchOptions{FieldManager: "other", Force: new(true)})
			return err
		}},
		{"deleted and created again", func(o *obj) error {
			u, err := client(o).Get(ctx, o.name, metav1.GetOptions{})
			if err != nil {
				return err
			}
			if err := client(o).Delete(ctx, o.name, metav1.DeleteOptions{}); err != nil {
				return err
			}
			for _, f := range []string{"uid", "resourceVersion", "creationTimestamp", "managedFields", "generation"} {
				unstructured.RemoveNestedField(u.Object, "metadata", f)
			}
			delete(u.Object, "status")
			_, err = client(o).Create(ctx, u, metav1.CreateOptions{FieldManager: "hand"})
			return err
		}},
		{"annotate --overwrite", func(o *obj) error {
			_, err := client(o).Patch(ctx, o.name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"note":"b"}}}`), metav1.PatchOptions{FieldManager: "kubectl-annotate"})
			return err
		}},
		{"digest edited", func(o *obj) error {
			_, err := client(o).Patch(ctx, o.name, types.MergePatchType, []byte(`{"metadata":{"annotations":{"cronsync.dev/applied-digest":"x"}}}`), metav1.PatchOptions{FieldManager: "hand"})
			return err
		}},
		{"another tool's own field", func(o *obj) error {
			_, err := client(o).Patch(ctx, o.name, types.ApplyPatchType, []byte(fmt.Sprintf(`{%s,"metadata":{"name":%q,"annotations":{"other/seen":"%d"}}}`, kind(o), o.name, rng.IntN(1000))), metav1.PatchOptions{FieldManager: "other-tool"})
			return err
		}},
		{"stored value patched", func(o *obj) error {
			if !o.secret {
				return nil
			}
			_, err := client(o).Patch(ctx, o.name, types.MergePatchType, []byte(`{"data":{"password":"aGFuZC1zZXQ="}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"})
			return err
		}},
		{"edited in another version", func(o *obj) error {
			if !o.hpa {
				return nil
			}
			v2 := schema.GroupVersionResource{Group: "autoscaling", Version: "v2", Resource: "horizontalpodautoscalers"}
			_, err := kube.Resource(v2).Namespace(o.ns).Patch(ctx, o.name, types.MergePatchType,
				[]byte(`{"spec":{"metrics":[{"type":"Resource","resource":{"name":"cpu","target":{"type":"Utilization","averageUtilization":77}}}]}}`),
				metav1.PatchOptions{FieldManager: "kubectl-edit"})
			return err
		}},
		{"scale", func(o *obj) error {
			if !o.deploy {
				return nil
			}
			_, err := client(o).Patch(ctx, o.name, types.MergePatchType, []byte(`{"spec":{"replicas":4}}`), metav1.PatchOptions{FieldManager: "kubectl"}, "scale")
			return err
		}},
	}

	// Secrets and HPAs are few among the objects, so every round with
	// edits also edits the value of a Secret in each way there is (an
	// update of stringData, of data, and another manager's forced apply of
	// stringData), and an HPA in the other version.
	named := func(name string) int { return slices.IndexFunc(edits, func(e edit) bool { return e.name == name }) }
	secretObjs, hpaObjs := [2]int{nConfigMaps + nDeployments, nSecrets}, [2]int{nConfigMaps + nDeployments + nSecrets, nHPAs}
	few := [][2]int{secretObjs, secretObjs, secretObjs, hpaObjs}
	fewEdits := []int{named("merge patch"), named("stored value patched"), named("forced apply"), named("edited in another version")}
	handEdits := func(round, n int) {
		t.Helper()
		var picks [][2]int
		for range n {
			picks = append(picks, [2]int{rng.IntN(len(objs)), rng.IntN(len(edits))})
		}
		if n > 0 {
			for i, e := range fewEdits {
				picks = append(picks, [2]int{few[i][0] + rng.IntN(few[i][1]), e})
			}
		}
		for _, p := range picks {
			o, e := objs[p[0]], edits[p[1]]
			if err := e.do(o); err != nil {
				t.Fatalf("seed %d round %d: %s of %s/%s: %v", seed, round, e.name, o.ns, o.name, err)
			}
		}
	}
	// compare runs a server dry run and a real run, and says whether the
	// real one went by the last run's record without reading the commit.
	compare := func(round int, when string) bool {
		t.Helper()
		server, _ := syncJSON(t, append(args, "--dry-run=server")...)
		fast, out := syncJSON(t, args...)
		decided := 0
		for ref, o := range fast {
			if !o.WithoutRequest {
				continue
			}
			decided++
			if server[ref].Action != "unchanged" {
				t.Errorf("seed %d round %d, %s: %s decided unchanged without a request; the server says %s", seed, round, when, ref, server[ref].Action)
			}
		}
		shortcut := strings.Contains(out.stderr, "without reading its files")
		t.Logf("round %d, %s: %d of %d objects decided without a request (from the record: %v)", round, when, decided, len(fast), shortcut)
		if decided < len(fast)/2 {
			t.Errorf("seed %d round %d, %s: only %d of %d decided without a request: the fast path is not being exercised", seed, round, when, decided, len(fast))
		}
		return shortcut
	}
	for round := range rounds {
		// Commits: some values change in Git.
		for range 20 {
			objs[rng.IntN(len(objs))].value++
		}
		write()
		r.Commit(fmt.Sprintf("round %d", round))
		handEdits(round, 30)
		compare(round, "after a commit")
		// The same commit again, with few hand edits or none: this run may
		// go by the last run's record, and must agree with the server too.
		handEdits(round, round%3)
		if shortcut := compare(round, "at the same commit"); round%3 == 0 && !shortcut {
			t.Errorf("seed %d round %d: no hand edit since a complete run at this commit, and the run read the commit", seed, round)
		}
	}
}
