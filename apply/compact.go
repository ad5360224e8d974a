package apply

import (
	"encoding/json"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// Every object of a commit is checked before the first is written, so each
// object to be written is held from its check until its write. As maps
// (unstructured), a desired object costs a few hundred bytes for every
// mapping it holds: at 50,000 objects, over 100 MiB held through the whole
// check stage. Between its check and its write an object is kept instead as
// its JSON, with only its identity and metadata as maps (what prune,
// depends-on, the record and the report read of it), and decoded again
// right before it is written.

// compact keeps it as its JSON until expand.
func (it *item) compact() {
	if it.body != nil {
		return
	}
	b, err := json.Marshal(it.Obj.Object)
	if err != nil {
		return // kept whole: the write reports what cannot be encoded
	}
	o := it.Obj.Object
	it.body = b
	it.Obj = &unstructured.Unstructured{Object: map[string]any{"apiVersion": o["apiVersion"], "kind": o["kind"], "metadata": o["metadata"]}}
}

// expand makes it whole again. Integers come back as int64, as the API
// machinery decodes them, so that none past 2^53 loses a digit.
func (it *item) expand() error {
	if it.body == nil {
		return nil
	}
	var o map[string]any
	if err := utiljson.Unmarshal(it.body, &o); err != nil {
		return err
	}
	it.Obj = &unstructured.Unstructured{Object: o}
	it.body = nil
	return nil
}
