package apply

import (
	"fmt"
	"slices"
)

// An object read from a SOPS-encrypted file holds secrets whatever its
// kind. Its values are masked in diffs and drift lines like a Secret's.
// Errors are not rewritten here: every value decrypted is registered with
// the run's redact.Secrets when it is decrypted, and every output masks
// them (see internal/redact); an object whose identity holds one is
// refused before anything is sent (see checkIdentity).

// isIdentity: what names the object, which every message must show.
func isIdentity(path []string) bool {
	switch {
	case len(path) == 1:
		return path[0] == "apiVersion" || path[0] == "kind"
	case len(path) == 2 && path[0] == "metadata":
		return path[1] == "name" || path[1] == "namespace"
	}
	return false
}

// maskAll replaces every value of live and merged but their identity with
// "***", saying only whether it changed, as maskSecret does for a Secret's
// data.
func maskAll(live, merged map[string]any) {
	var walk func(path []string, a, b any, aok, bok bool) (any, any)
	walk = func(path []string, a, b any, aok, bok bool) (any, any) {
		am, aIsMap := a.(map[string]any)
		bm, bIsMap := b.(map[string]any)
		if (aIsMap || !aok) && (bIsMap || !bok) && (aIsMap || bIsMap) {
			for k := range mergeKeys(am, bm) {
				av, aok := am[k]
				bv, bok := bm[k]
				na, nb := walk(append(slices.Clip(path), k), av, bv, aok, bok)
				if aok {
					am[k] = na
				}
				if bok {
					bm[k] = nb
				}
			}
			return a, b
		}
		if isIdentity(path) {
			return a, b
		}
		if aok && bok && fmt.Sprint(a) != fmt.Sprint(b) {
			return "*** (before)", "*** (after)"
		}
		return "***", "***"
	}
	walk(nil, live, merged, live != nil, merged != nil)
}
