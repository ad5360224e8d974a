package apply

import (
	"encoding/base64"
	"fmt"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cronsync/cronsync/render"
)

// An object read from a SOPS-encrypted file holds secrets whatever its
// kind. Its values are masked in diffs and drift lines like a Secret's, and
// an error about it, the API server's included (a validation message echoes
// the value it refuses), has every value of it replaced before anything
// prints, records or posts it.

// minSecretLen: shorter values are left in messages; replacing every "a"
// would make them unreadable, and a secret that short protects nothing.
const minSecretLen = 3

// redacted is an error about a decrypted object, its values replaced.
type redacted struct {
	err    error
	values []string
}

func (e *redacted) Error() string {
	msg := e.err.Error()
	for _, v := range e.values {
		msg = strings.ReplaceAll(msg, v, "***")
	}
	return msg
}

// Unwrap keeps the cause for the exit status; its text is not printed.
func (e *redacted) Unwrap() error { return e.err }

// redact wraps err when o is decrypted.
func redact(o *render.Object, err error) error {
	if !o.Decrypted || err == nil {
		return err
	}
	return &redacted{err: err, values: secretValues(o.Obj)}
}

// secretValues are the values of u that may be secret: every leaf but its
// identity, as written and, for what looks like base64 (a Secret's data),
// decoded; longest first, so that a value containing another goes whole.
func secretValues(u *unstructured.Unstructured) []string {
	var out []string
	leaves(nil, u.Object, func(path []string, v any) {
		if isIdentity(path) {
			return
		}
		s := fmt.Sprint(v)
		if len(s) >= minSecretLen {
			out = append(out, s)
		}
		if b, err := base64.StdEncoding.DecodeString(s); err == nil && len(b) >= minSecretLen {
			out = append(out, string(b))
		}
	})
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return slices.Compact(out)
}

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
