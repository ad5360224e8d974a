package apiserver

import (
	"context"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"

	"github.com/cronsync/cronsync/internal/testenv"
)

// An aggregated API whose backend is down (metrics-server, say) is left out
// of discovery without a word. A kind of its group is unknown for now, not
// unknown: the run exits 1 naming the group and changes nothing; and prune
// keeps such a kind in the ApplySet, saying so, instead of dropping it and
// orphaning its members.
func TestAggregatedAPIDown(t *testing.T) {
	ctx := context.Background()
	apiServices := schema.GroupVersionResource{Group: "apiregistration.k8s.io", Version: "v1", Resource: "apiservices"}
	svc := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
		"metadata": map[string]any{"name": "v1beta1.metrics.example.dev"},
		"spec": map[string]any{
			"group": "metrics.example.dev", "version": "v1beta1", "groupPriorityMinimum": int64(100), "versionPriority": int64(100),
			"insecureSkipTLSVerify": true,
			"service":               map[string]any{"namespace": "default", "name": "no-such-backend", "port": int64(443)},
		},
	}}
	if _, err := kube.Resource(apiServices).Create(ctx, svc, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kube.Resource(apiServices).Delete(ctx, svc.GetName(), metav1.DeleteOptions{}) })
	// Wait until discovery reports the group as failed, as cronsync will see it.
	dc := discovery.NewDiscoveryClientForConfigOrDie(cluster.Config)
	deadline := time.Now().Add(time.Minute)
	for {
		_, _, err := dc.ServerGroupsAndResources()
		if f, ok := err.(*discovery.ErrGroupDiscoveryFailed); ok && f.Groups[schema.GroupVersion{Group: "metrics.example.dev", Version: "v1beta1"}] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("discovery never reported metrics.example.dev as failed: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}

	set := testenv.Unique("aggregated")
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "beside-widget", "1"))
	r.Write("widget.yaml", "apiVersion: metrics.example.dev/v1beta1\nkind: Widget\nmetadata: {name: w, namespace: default}\n")
	r.Commit("a widget of an API that is down")
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", r.Dir, "--applyset", "default/"+set, "--lease", "")
	if out.code != exitRetry {
		t.Errorf("exit %d, want %d", out.code, exitRetry)
	}
	if !hasLineWith(out.stderr, "error: widget.metrics.example.dev/w -n default (widget.yaml): the API group metrics.example.dev is unavailable for now", "so no Widget can be checked this run") {
		t.Error("no error line names the object and says its API group is unavailable")
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}

	// An ApplySet that recorded Widgets when the API was up.
	r.Remove("widget.yaml")
	r.Commit("without the widget")
	args := []string{"--repo", r.Dir, "--applyset", "default/" + set, "--lease", "", "--prune"}
	mustSync(t, args...)
	secrets := schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	const gksAnn = "applyset.kubernetes.io/contains-group-kinds"
	parent, err := kube.Resource(secrets).Namespace("default").Get(ctx, set, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	gks := parent.GetAnnotations()[gksAnn] + ",Widget.metrics.example.dev"
	patch := `{"metadata":{"annotations":{"` + gksAnn + `":"` + gks + `"}}}`
	if _, err := kube.Resource(secrets).Namespace("default").Patch(ctx, set, types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "cronsync"}); err != nil {
		t.Fatal(err)
	}
	r.Write("cm.yaml", configMap("default", "beside-widget", "2"))
	r.Commit("a new commit")
	out = mustSync(t, args...)
	if !hasLineWith(out.stderr, "warning: not pruning Widget.metrics.example.dev this run: the API group metrics.example.dev is unavailable for now") {
		t.Error("no warning says the unavailable kind is not pruned")
	}
	parent, err = kube.Resource(secrets).Namespace("default").Get(ctx, set, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(parent.GetAnnotations()[gksAnn], "Widget.metrics.example.dev") {
		t.Errorf("the ApplySet dropped the unavailable kind: %s=%q", gksAnn, parent.GetAnnotations()[gksAnn])
	}
}
