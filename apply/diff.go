package apply

import (
	"fmt"
	"strings"

	"github.com/pmezard/go-difflib/difflib"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// diff renders what applying it would change as a unified diff of YAML, from
// the live object to what the server's dry run returned. Fields the server
// maintains are left out so that only the commit's effect shows, and Secret
// values are masked: a dry run must not print credentials into a CI log.
func (it *item) diff() (string, error) {
	var live, merged map[string]any
	if it.live != nil {
		live = forDiff(it.live)
	}
	if it.merged != nil {
		merged = forDiff(it.merged)
	}
	switch {
	case it.Decrypted:
		maskAll(live, merged)
	case it.GroupKind() == secretGK:
		maskSecret(live, merged)
	}
	a, err := toYAML(live)
	if err != nil {
		return "", err
	}
	b, err := toYAML(merged)
	if err != nil {
		return "", err
	}
	return difflib.GetUnifiedDiffString(difflib.UnifiedDiff{
		A:        difflib.SplitLines(a),
		B:        difflib.SplitLines(b),
		FromFile: it.Ref() + " (live)",
		ToFile:   it.Ref() + " (" + it.Source + ")",
		Context:  3,
	})
}

func toYAML(m map[string]any) (string, error) {
	if m == nil {
		return "", nil
	}
	b, err := yaml.Marshal(m)
	return string(b), err
}

func forDiff(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy().Object
	for f := range serverFields {
		unstructured.RemoveNestedField(c, "metadata", f)
	}
	for _, f := range []string{"uid", "creationTimestamp"} {
		unstructured.RemoveNestedField(c, "metadata", f)
	}
	// cronsync's own bookkeeping: it changes whenever anything else does.
	unstructured.RemoveNestedField(c, "metadata", "annotations", digestAnn)
	if anns, _, _ := unstructured.NestedMap(c, "metadata", "annotations"); len(anns) == 0 {
		unstructured.RemoveNestedField(c, "metadata", "annotations")
	}
	delete(c, "status")
	return c
}

// maskSecret replaces every value under data and stringData, saying only
// whether it changed, the way kubectl diff does.
func maskSecret(live, merged map[string]any) {
	for _, field := range []string{"data", "stringData"} {
		before, _, _ := unstructured.NestedMap(live, field)
		after, _, _ := unstructured.NestedMap(merged, field)
		for k, v := range before {
			if w, ok := after[k]; ok && fmt.Sprint(v) != fmt.Sprint(w) {
				before[k], after[k] = "*** (before)", "*** (after)"
			} else {
				before[k] = "***"
			}
		}
		for k := range after {
			if s, _ := after[k].(string); !strings.HasPrefix(s, "*** (") {
				after[k] = "***"
			}
		}
		if live != nil && before != nil {
			_ = unstructured.SetNestedMap(live, before, field)
		}
		if merged != nil && after != nil {
			_ = unstructured.SetNestedMap(merged, after, field)
		}
	}
}
