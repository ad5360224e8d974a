package apply

import (
	"encoding/base64"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// A Secret's stringData is write-only: the API server merges it into data
// and never stores or returns it. A field manager that applies only
// stringData owns f:stringData.f:KEY, while the value lives under data.KEY,
// which it then does not own. A hand edit of the value by update (kubectl
// edit, or kubectl patch of data or of stringData, which the server
// records under data) leaves that manager's entry as it was, so the fast
// path's premise (any writer that changes what cronsync set changes its
// entry) fails, and the edit would be called unchanged on every run.
//
// cronsync therefore sends both: data, with stringData merged in the way
// the server merges it, and stringData as the commit has it. Owning data,
// it loses the value to any update that changes it. Owning stringData, it
// conflicts with another manager's apply of stringData, which server-side
// apply merges before the server moves it into data and which would
// otherwise change the value without touching data's ownership: forced,
// that apply takes f:stringData from cronsync's entry; not forced, it is
// refused. The stored Secret is the same either way.
//
// It is the one write-only field of the built-in kinds (the API's own
// documentation says so of no other). Aliases such as a pod's
// serviceAccount, and fields of another API version (autoscaling/v1's
// targetCPUUtilizationPercentage), are converted through the stored object,
// so a write to either side moves ownership of both.

// foldStringData merges a v1 Secret's stringData into its data, keeping
// stringData. A document whose stringData or data is not of the shape the
// API takes (a value that is not a string, say) is left alone, for the
// server's dry run to refuse with its own message.
func foldStringData(u *unstructured.Unstructured) {
	if u.GetAPIVersion() != "v1" || u.GetKind() != "Secret" {
		return
	}
	sd, ok := u.Object["stringData"].(map[string]any)
	if !ok || len(sd) == 0 {
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
	u.Object["data"] = data
}
