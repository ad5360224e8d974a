package apply

import (
	"encoding/base64"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A Secret's stringData is write-only: the API server merges it into data
// and never stores or returns it. A field manager that applies stringData
// owns f:stringData.f:KEY, a path no other writer can ever touch, while the
// value lives under data.KEY, which cronsync would then not own. A hand
// edit of the value (kubectl edit, a patch of data, or a patch of
// stringData, which the server records under data too) leaves cronsync's
// managedFields entry as it was, so the fast path's premise (any writer
// that changes what cronsync set changes that entry) fails for it, and the
// edit would be called unchanged on every run. Sending the commit's
// stringData as data, merged the way the server merges it, makes cronsync
// own what is stored; an edit of it then takes ownership away like any
// other, and the run repairs it. The stored Secret is the same either way.
//
// It is the one write-only field of the built-in kinds (the API's own
// documentation says so of no other). Aliases such as a pod's
// serviceAccount, and fields of another API version (autoscaling/v1's
// targetCPUUtilizationPercentage), are converted through the stored object,
// so a write to either side moves ownership of both.

// foldStringData moves a v1 Secret's stringData into its data. A document
// whose stringData or data is not of the shape the API takes (a value that
// is not a string, say) is left alone, for the server's dry run to refuse
// with its own message.
func foldStringData(u *unstructured.Unstructured) {
	if u.GetAPIVersion() != "v1" || u.GetKind() != "Secret" {
		return
	}
	raw, found := u.Object["stringData"]
	if !found {
		return
	}
	sd, ok := raw.(map[string]any)
	if raw != nil && !ok {
		return
	}
	data := map[string]any{}
	if d, found := u.Object["data"]; found && d != nil {
		dm, ok := d.(map[string]any)
		if !ok {
			return
		}
		for k, v := range dm {
			data[k] = v
		}
	}
	for k, v := range sd {
		s, ok := v.(string)
		if !ok {
			return
		}
		// stringData wins over data for the same key, as on the server.
		data[k] = base64.StdEncoding.EncodeToString([]byte(s))
	}
	delete(u.Object, "stringData")
	if len(data) > 0 {
		u.Object["data"] = data
	}
}
