package health

import (
	"encoding/json"
	"fmt"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utiljson "k8s.io/apimachinery/pkg/util/json"
)

// page is one page of a LIST decoded for kstatus. A rolled-out workload's
// JSON is mostly metadata.managedFields and spec.template, which kstatus
// never reads: decoding them into maps was most of a wait's CPU (60 ms at
// 1,000 objects, more than deciding the run took), so each item keeps
// everything but those two.
type page struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Metadata   struct {
		Continue string `json:"continue"`
	} `json:"metadata"`
	Items []statusView `json:"items"`
}

// objects returns the page's items with their kind, which the API server
// leaves out of the items of a built-in kind's list (a DeploymentList's
// items have none): kstatus chooses its rules by kind.
func (p *page) objects() []*unstructured.Unstructured {
	out := make([]*unstructured.Unstructured, len(p.Items))
	for i := range p.Items {
		u := &p.Items[i].Unstructured
		if u.GetKind() == "" {
			u.SetAPIVersion(p.APIVersion)
			u.SetKind(strings.TrimSuffix(p.Kind, "List"))
		}
		out[i] = u
	}
	return out
}

// statusView is an object as kstatus reads it.
type statusView struct{ unstructured.Unstructured }

// skipped names, per top-level field, the field below it left out.
var skipped = map[string]string{"metadata": "managedFields", "spec": "template"}

func (v *statusView) UnmarshalJSON(b []byte) error {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return err
	}
	v.Object = make(map[string]any, len(top))
	for k, raw := range top {
		val, err := decodeWithout(raw, skipped[k])
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
		v.Object[k] = val
	}
	return nil
}

// decodeWithout decodes raw as the dynamic client would (whole numbers as
// int64), leaving out field skip if raw is an object.
func decodeWithout(raw json.RawMessage, skip string) (any, error) {
	var fields map[string]json.RawMessage
	if skip == "" || json.Unmarshal(raw, &fields) != nil {
		var v any
		err := utiljson.Unmarshal(raw, &v)
		return v, err
	}
	delete(fields, skip)
	out := make(map[string]any, len(fields))
	for k, f := range fields {
		var v any
		if err := utiljson.Unmarshal(f, &v); err != nil {
			return nil, fmt.Errorf("%s: %w", k, err)
		}
		out[k] = v
	}
	return out, nil
}

// listPath is the URL path of a LIST of resource in namespace (all
// namespaces, or a cluster-scoped resource, when it is empty).
func listPath(r schema.GroupVersionResource, namespace string) string {
	p := "/apis/" + r.Group + "/" + r.Version
	if r.Group == "" {
		p = "/api/" + r.Version
	}
	if namespace != "" {
		p += "/namespaces/" + namespace
	}
	return p + "/" + r.Resource
}
