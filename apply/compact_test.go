package apply

import (
	"encoding/json"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cronsync/cronsync/render"
)

// An object kept as JSON between its check and its write is sent exactly as
// it was read, large integers included, and keeps its identity and
// metadata readable meanwhile.
func TestCompactRoundTrip(t *testing.T) {
	const doc = `{"apiVersion":"example.com/v1","kind":"Gizmo","metadata":{"name":"g","namespace":"ns","labels":{"a":"b"},"annotations":{"cronsync.dev/applied-digest":"d"}},"spec":{"big":9007199254740993,"ratio":0.5,"list":[1,"x",{"y":null}],"flag":true}}`
	var o map[string]any
	if err := json.Unmarshal([]byte(doc), &o); err != nil {
		t.Fatal(err)
	}
	// As kustomize and Helm hand them over: integers as int64.
	o["spec"].(map[string]any)["big"] = int64(9007199254740993)
	it := &item{Object: &render.Object{Obj: &unstructured.Unstructured{Object: o}}}
	want, _ := json.Marshal(it.Obj.Object)
	it.compact()
	if it.body == nil || it.Obj.Object["spec"] != nil {
		t.Fatalf("not compacted: %v", it.Obj.Object)
	}
	if it.Obj.GetName() != "g" || it.Obj.GetNamespace() != "ns" || it.Obj.GetLabels()["a"] != "b" || it.Obj.GetKind() != "Gizmo" {
		t.Errorf("identity while compact: %v", it.Obj.Object)
	}
	if v, _ := annotation(it.Obj, digestAnn); v != "d" {
		t.Errorf("digest while compact: %q", v)
	}
	if err := it.expand(); err != nil {
		t.Fatal(err)
	}
	got, _ := json.Marshal(it.Obj.Object)
	if string(got) != string(want) {
		t.Errorf("after expand:\n%s\nwant\n%s", got, want)
	}
	if it.body != nil {
		t.Error("body kept after expand")
	}
}
