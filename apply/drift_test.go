package apply

import (
	"reflect"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cronsync/cronsync/render"
)

func TestDriftOf(t *testing.T) {
	at := metav1.NewTime(time.Date(2026, 12, 5, 10, 42, 7, 0, time.UTC))
	obj := func(extra map[string]any, managers ...metav1.ManagedFieldsEntry) *unstructured.Unstructured {
		u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "web", "namespace": "shop", "labels": map[string]any{"team": "a"}}}}
		for k, v := range extra {
			u.Object[k] = v
		}
		u.SetManagedFields(managers)
		return u
	}
	spec := func(replicas int64, image string) map[string]any {
		return map[string]any{"replicas": replicas, "template": map[string]any{"spec": map[string]any{
			"containers": []any{map[string]any{"name": "app", "image": image}}}}}
	}
	live := obj(map[string]any{"spec": spec(5, "web:2")},
		metav1.ManagedFieldsEntry{Manager: "cronsync", Operation: "Apply", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{}}}`)}},
		metav1.ManagedFieldsEntry{Manager: "kubectl-scale", Operation: "Update", Subresource: "scale", FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}},
		metav1.ManagedFieldsEntry{Manager: "kubectl-set", Operation: "Update", Time: &at, FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{"f:image":{}}}}}}}`)}})
	unstructured.RemoveNestedField(live.Object, "metadata", "labels")
	merged := obj(map[string]any{"spec": spec(2, "web:1")})
	it := &item{Object: &render.Object{Obj: merged}}
	d := driftOf(it, live, merged, "cronsync")
	if d == nil {
		t.Fatal("no drift")
	}
	want := []FieldDrift{
		{Path: "metadata.labels", Desired: map[string]any{"team": "a"}, Removed: true},
		{Path: "spec.replicas", Live: int64(5), Desired: int64(2), Managers: []Manager{{Name: "kubectl-scale", Operation: "Update"}}},
		{Path: "spec.template.spec.containers[0].image", Live: "web:2", Desired: "web:1", Managers: []Manager{{Name: "kubectl-set", Operation: "Update", Time: at.Time}}},
	}
	if !reflect.DeepEqual(d.Fields, want) {
		t.Errorf("got %+v\nwant %+v", d.Fields, want)
	}
	if got, want := d.Line(), `metadata.labels: removed → {"team":"a"}; spec.replicas: 5 → 2 (changed by kubectl-scale); spec.template.spec.containers[0].image: "web:2" → "web:1" (changed by kubectl-set at 2026-12-05T10:42:07Z)`; got != want {
		t.Errorf("line\n%s\nwant\n%s", got, want)
	}

	// A Secret's values are masked; long values cut.
	secret := func(v string) *unstructured.Unstructured {
		return &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret",
			"metadata": map[string]any{"name": "s", "annotations": map[string]any{"example.com/note": "a very long note that goes on and on and on"}}, "data": map[string]any{"password": v}}}
	}
	sl, sm := secret("aGFuZA=="), secret("Z2l0")
	unstructured.SetNestedField(sm.Object, "short", "metadata", "annotations", "example.com/note")
	sit := &item{Object: &render.Object{Obj: sm}}
	if got, want := driftOf(sit, sl, sm, "cronsync").Line(), `data.password: *** → *** (no other field manager owns it); metadata.annotations["example.com/note"]: "a very long note that goes on and on a… → "short" (no other field manager owns it)`; got != want {
		t.Errorf("line\n%s\nwant\n%s", got, want)
	}

	// Nothing moved: no drift.
	if d := driftOf(it, merged, merged, "cronsync"); d != nil {
		t.Errorf("drift without a change: %+v", d)
	}
	// Nothing moved but ownership: another manager's forced apply of the
	// same value.
	taken := merged.DeepCopy()
	taken.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: "other-tool", Operation: "Apply", Time: &at,
		FieldsV1: &metav1.FieldsV1{Raw: []byte(`{"f:spec":{"f:replicas":{}}}`)}}})
	d = driftOf(it, taken, merged, "cronsync")
	if d == nil || len(d.Fields) != 0 || d.Line() != "no value moved; fields cronsync set had been taken by other-tool at 2026-12-05T10:42:07Z" {
		t.Errorf("ownership taken: %+v", d)
	}
}
