package apiserver

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// shardBytes makes the fingerprints of a few hundred objects spread over
// several shards.
const shardBytes = "2048"

func parentOf(t *testing.T, ns, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := kube.Resource(secrets).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// shardsOf returns the ApplySet's shards in ns by name, found as kubectl
// would find them: by their label.
func shardsOf(t *testing.T, ns, parent string) map[string]*unstructured.Unstructured {
	t.Helper()
	p := parentOf(t, ns, parent)
	id := p.GetLabels()["applyset.kubernetes.io/id"]
	list, err := kube.Resource(secrets).Namespace(ns).List(context.Background(), metav1.ListOptions{LabelSelector: "cronsync.dev/fast-data-of=" + id})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]*unstructured.Unstructured{}
	for i := range list.Items {
		out[list.Items[i].GetName()] = &list.Items[i]
	}
	return out
}

// shardIndex is the parent's index: shard names in order, with their kind.
func shardIndex(t *testing.T, ns, parent string) (names []string, kinds map[string]string) {
	t.Helper()
	raw, _, _ := unstructured.NestedString(parentOf(t, ns, parent).Object, "data", "cronsync-shards")
	b, err := base64.StdEncoding.DecodeString(raw)
	if err != nil || raw == "" {
		t.Fatalf("the parent has no index of shards (%v)", err)
	}
	kinds = map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n")[1:] {
		f := strings.Fields(l)
		names = append(names, f[0])
		kinds[f[0]] = f[1]
	}
	return names, kinds
}

// refsInShard are the objects whose fingerprints a shard holds, as the
// run's output names them.
func refsInShard(t *testing.T, sh *unstructured.Unstructured) []string {
	t.Helper()
	raw, _, _ := unstructured.NestedString(sh.Object, "data", "fingerprints")
	gz, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var refs []string
	sc := bufio.NewScanner(bytes.NewReader(plain))
	for sc.Scan() {
		key, _, _ := strings.Cut(sc.Text(), "\t")
		// Kind/<namespace>/<name>; the repository holds no kind of a group.
		f := strings.Split(key, "/")
		ref := strings.ToLower(f[0]) + "/" + f[2]
		if f[1] != "" {
			ref += " -n " + f[1]
		}
		refs = append(refs, ref)
	}
	return refs
}

func shardRepo(t *testing.T, ns string, n int, value string) *testenv.Repo {
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	writeShardObjects(r, ns, n, value)
	r.Commit("generated")
	return r
}

func writeShardObjects(r *testenv.Repo, ns string, n int, value string) {
	for f := range n / 10 {
		var docs []string
		for i := f * 10; i < f*10+10; i++ {
			docs = append(docs, configMap(ns, fmt.Sprintf("cm-%04d", i), value))
		}
		r.Write(fmt.Sprintf("cm/%03d.yaml", f), strings.Join(docs, "---\n"))
	}
}

// Past the size one Secret holds, the fingerprints and the record are kept
// in shards owned by the parent, and a run at the same commit is decided
// from them alone. A shard deleted, corrupted, or replaced by another
// set's sends exactly its objects to the slow path, and is made again.
func TestShardsRoundTrip(t *testing.T) {
	ns := testenv.Unique("shards")
	const n = 300
	r := shardRepo(t, ns, n, "v")
	args := []string{"--repo", r.Dir, "--applyset", ns + "/cs", "--prune", "--fast-data-bytes", shardBytes}
	mustSync(t, args...)

	parent := parentOf(t, ns, "cs")
	for _, k := range []string{"cronsync-fingerprints", "cronsync-commit"} {
		if _, ok, _ := unstructured.NestedString(parent.Object, "data", k); ok {
			t.Errorf("the parent still holds %s beside its shards", k)
		}
	}
	names, kinds := shardIndex(t, ns, "cs")
	shards := shardsOf(t, ns, "cs")
	if len(shards) != len(names) {
		t.Errorf("%d shards labelled, %d in the index", len(shards), len(names))
	}
	fpShards, recordShards := 0, 0
	for _, name := range names {
		sh, ok := shards[name]
		if !ok {
			t.Fatalf("the index names %s, which is not there", name)
		}
		owners := sh.GetOwnerReferences()
		if len(owners) != 1 || owners[0].UID != parent.GetUID() || owners[0].Kind != "Secret" || owners[0].Name != "cs" {
			t.Errorf("%s: owners %+v, want the parent", name, owners)
		}
		if typ, _, _ := unstructured.NestedString(sh.Object, "type"); typ != "cronsync.dev/fast-data" {
			t.Errorf("%s: type %q", name, typ)
		}
		v, _, _ := unstructured.NestedString(sh.Object, "data", kinds[name])
		if len(v) == 0 || len(v) > 2048 {
			t.Errorf("%s: %d bytes of %s", name, len(v), kinds[name])
		}
		if kinds[name] == "fingerprints" {
			fpShards++
		} else {
			recordShards++
		}
	}
	if fpShards < 3 || recordShards < 1 {
		t.Fatalf("%d fingerprint shards and %d of the record; want several of each", fpShards, recordShards)
	}

	// check runs cronsync and wants every object unchanged, those in slow
	// decided with a request and the rest without, and the run to have
	// gone by the record or not.
	check := func(t *testing.T, slow []string, fromRecord bool) {
		t.Helper()
		got, out := syncJSON(t, args...)
		if len(got) != n+1 {
			t.Errorf("%d objects reported, want %d", len(got), n+1)
		}
		for ref, o := range got {
			if o.Action != "unchanged" {
				t.Errorf("%s: %s", ref, o.Action)
			}
			if want := !slices.Contains(slow, ref); o.WithoutRequest != want {
				t.Errorf("%s: decided without a request: %v, want %v", ref, o.WithoutRequest, want)
			}
		}
		if went := strings.Contains(out.stdout+out.stderr, "without reading its files"); went != fromRecord {
			t.Errorf("went by the record: %v, want %v", went, fromRecord)
		}
		if t.Failed() {
			t.Fatalf("stderr:\n%s", out.stderr)
		}
	}
	t.Run("same commit, from the shards alone", func(t *testing.T) { check(t, nil, true) })

	firstFP := func() *unstructured.Unstructured {
		names, kinds := shardIndex(t, ns, "cs")
		for _, name := range names {
			if sh := shardsOf(t, ns, "cs")[name]; sh != nil && kinds[name] == "fingerprints" {
				return sh
			}
		}
		t.Fatal("no fingerprint shard")
		return nil
	}
	ctx := context.Background()
	shardsClient := kube.Resource(secrets).Namespace(ns)

	// Another set beside this one, with shards of its own.
	other := shardRepo(t, ns+"-o", 100, "o")
	mustSync(t, "--repo", other.Dir, "--applyset", ns+"/other", "--fast-data-bytes", shardBytes)
	var foreign string
	for _, sh := range shardsOf(t, ns, "other") {
		if v, ok, _ := unstructured.NestedString(sh.Object, "data", "fingerprints"); ok {
			foreign = v
		}
	}
	if foreign == "" {
		t.Fatal("the other set has no fingerprint shard")
	}

	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, sh *unstructured.Unstructured)
	}{
		{"a shard deleted", func(t *testing.T, sh *unstructured.Unstructured) {
			if err := shardsClient.Delete(ctx, sh.GetName(), metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
		}},
		{"a shard corrupted", func(t *testing.T, sh *unstructured.Unstructured) {
			if _, err := shardsClient.Patch(ctx, sh.GetName(), types.MergePatchType, []byte(`{"data":{"fingerprints":"bm90IGd6aXA="}}`), metav1.PatchOptions{FieldManager: "vandal"}); err != nil {
				t.Fatal(err)
			}
		}},
		{"a shard of another set in its place", func(t *testing.T, sh *unstructured.Unstructured) {
			body := fmt.Sprintf(`{"data":{"fingerprints":%q}}`, foreign)
			if _, err := shardsClient.Patch(ctx, sh.GetName(), types.MergePatchType, []byte(body), metav1.PatchOptions{FieldManager: "vandal"}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sh := firstFP()
			slow := refsInShard(t, sh)
			if len(slow) == 0 || len(slow) >= n {
				t.Fatalf("the shard holds %d of %d objects", len(slow), n)
			}
			tc.damage(t, sh)
			check(t, slow, false)
			check(t, nil, true)
		})
	}

	t.Run("a piece of the record deleted", func(t *testing.T) {
		names, kinds := shardIndex(t, ns, "cs")
		for _, name := range names {
			if kinds[name] == "commit" {
				if err := shardsClient.Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		check(t, nil, false)
		check(t, nil, true)
	})

	t.Run("a dry run reads the shards and writes none", func(t *testing.T) {
		before := parentOf(t, ns, "cs").GetResourceVersion()
		names, _ := shardIndex(t, ns, "cs")
		out := cronsync(t, nil, append(slices.Clone(args), "--dry-run=server")...)
		if out.code != 0 {
			t.Fatalf("exit %d:\n%s", out.code, out.stderr)
		}
		after, _ := shardIndex(t, ns, "cs")
		if got := parentOf(t, ns, "cs").GetResourceVersion(); got != before || !slices.Equal(names, after) || len(shardsOf(t, ns, "cs")) != len(names) {
			t.Errorf("the dry run wrote: parent %s -> %s, shards %v -> %v", before, got, names, after)
		}
	})

	t.Run("fewer objects, fewer shards", func(t *testing.T) {
		for f := 1; f < n/10; f++ {
			r.Remove(fmt.Sprintf("cm/%03d.yaml", f))
		}
		r.Commit("most removed")
		out := mustSync(t, args...)
		if !strings.Contains(out.stdout, "290 pruned") {
			t.Errorf("want 290 pruned:\n%s", out.stdout)
		}
		if _, ok, _ := unstructured.NestedString(parentOf(t, ns, "cs").Object, "data", "cronsync-shards"); ok {
			t.Errorf("11 objects still kept in shards")
		}
		if left := shardsOf(t, ns, "cs"); len(left) != 0 {
			t.Errorf("%d shards left behind", len(left))
		}
		got, _ := syncJSON(t, args...)
		for ref, o := range got {
			if !o.WithoutRequest {
				t.Errorf("%s asked the server", ref)
			}
		}
	})
}

// denyRecordShards refuses the creation of the pieces of a record, so that
// a run writes its fingerprint shards and then fails, as one that dies
// between two shard writes leaves them.
const denyRecordShards = `apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: deny-record-shards
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      operations: [CREATE]
      resources: [secrets]
  validations:
  - expression: "!has(object.data) || !('commit' in object.data) || object.type != 'cronsync.dev/fast-data'"
    message: record shards refused by the test's policy
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: deny-record-shards
spec:
  policyName: deny-record-shards
  validationActions: [Deny]
`

// A run that dies after writing some shards and before the index leaves
// the last index as it was, naming shards that are all there: the next run
// trusts nothing wrongly (the objects that changed since take the slow
// path), and removes the shards nobody names.
func TestShardsRunDiesBetweenWrites(t *testing.T) {
	ns := testenv.Unique("shards-die")
	const n = 200
	r := shardRepo(t, ns, n, "v")
	args := []string{"--repo", r.Dir, "--applyset", ns + "/cs", "--prune", "--fast-data-bytes", shardBytes}
	mustSync(t, args...)
	before, _ := shardIndex(t, ns, "cs")

	// A new commit changes every tenth object.
	var changed []string
	for f := range n / 10 {
		file, name := fmt.Sprintf("cm/%03d.yaml", f), fmt.Sprintf("name: cm-%04d\n", f*10)
		r.Write(file, strings.Replace(r.Git("show", "HEAD:"+file), name, name+"  labels: {edited: \"yes\"}\n", 1))
		changed = append(changed, fmt.Sprintf("configmap/cm-%04d -n %s", f*10, ns))
	}
	r.Commit("every tenth labelled")

	ctx := context.Background()
	removePolicy := admissionPolicy(t, denyRecordShards)
	// The policy takes a moment to be enforced: a probe shard is refused
	// once it is.
	probe := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "type": "cronsync.dev/fast-data",
		"metadata": map[string]any{"name": "probe", "namespace": "default"}, "data": map[string]any{"commit": "eA=="}}}
	waitFor(t, "the policy to refuse record shards", func() bool {
		_, err := kube.Resource(secrets).Namespace("default").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err != nil
	})

	res := cronsync(t, nil, args...)
	if res.code == 0 || !strings.Contains(res.stderr, "record shards refused") {
		t.Fatalf("the run whose record shards were refused exited %d:\n%s", res.code, res.stderr)
	}
	for _, c := range changed {
		if !strings.Contains(res.stdout, c+" configured") {
			t.Errorf("%s not configured:\n%s", c, res.stdout)
		}
	}
	after, _ := shardIndex(t, ns, "cs")
	if !slices.Equal(before, after) {
		t.Fatalf("the index moved though a shard was refused:\n%v\n%v", before, after)
	}
	if len(shardsOf(t, ns, "cs")) <= len(before) {
		t.Fatalf("no shard was written before the refusal: the test does not test a run that died between two")
	}

	removePolicy()
	waitFor(t, "the policy to be gone", func() bool {
		_, err := kube.Resource(secrets).Namespace("default").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		return err == nil
	})
	got, _ := syncJSON(t, args...)
	for ref, o := range got {
		if o.Action != "unchanged" {
			t.Errorf("%s: %s", ref, o.Action)
		}
		if want := !slices.Contains(changed, ref); o.WithoutRequest != want {
			t.Errorf("%s: decided without a request: %v, want %v", ref, o.WithoutRequest, want)
		}
	}
	names, _ := shardIndex(t, ns, "cs")
	if left := shardsOf(t, ns, "cs"); len(left) != len(names) {
		t.Errorf("%d shards, %d named: the ones the refused run left are still there", len(left), len(names))
	}
	got, out := syncJSON(t, args...)
	for ref, o := range got {
		if !o.WithoutRequest {
			t.Errorf("%s asked the server", ref)
		}
	}
	if !strings.Contains(out.stdout+out.stderr, "without reading its files") {
		t.Errorf("the run after did not go by the record")
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited 30s for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
