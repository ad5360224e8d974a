package apply

import (
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/cronsync/cronsync/internal/redact"
)

// An object has drifted when the commit did not change it (its digest is
// the one cronsync last applied) and it still needed a write: someone else
// changed what cronsync set. Repairing it is half of the promise; the other
// half is saying what moved and who moved it. Both come from what the slow
// path already holds, the live object it read and the server's dry-run
// answer, so naming drift costs no request.

// Drift is what moved in an object since cronsync applied it.
type Drift struct {
	// Fields are the paths the apply sets back, in path order.
	Fields []FieldDrift `json:"fields,omitempty"`
	// TakenBy, when no value moved, are the managers that had taken fields
	// cronsync set.
	TakenBy []Manager `json:"takenBy,omitempty"`
}

// FieldDrift is one path that moved.
type FieldDrift struct {
	// Path is dotted from the object's top ("spec.replicas",
	// "spec.template.spec.containers[0].image", `metadata.labels["app.kubernetes.io/name"]`).
	Path string `json:"path"`
	// Live is the value in the cluster before the run, Desired what Git
	// holds; a Secret's values are "***". Absent sides are nil, with
	// Removed (the live object had lost the field) or Added set.
	Live    any  `json:"live,omitempty"`
	Desired any  `json:"desired,omitempty"`
	Removed bool `json:"removed,omitempty"`
	Added   bool `json:"added,omitempty"`
	// Managers are the field managers other than cronsync that own the path
	// in the live object, with the time of their entry; none when the field
	// was removed, or when nobody else owns it (an object deleted and
	// created again by hand, say).
	Managers []Manager `json:"managers,omitempty"`
}

// Manager is one managedFields entry.
type Manager struct {
	Name      string    `json:"name"`
	Operation string    `json:"operation,omitempty"`
	Time      time.Time `json:"time,omitzero"`
}

// maxDriftValue is how much of a value a drift line shows.
const maxDriftValue = 40

// driftOf returns what moved from live to merged (the dry run's answer), or
// nil when nothing did but ownership. fieldManager is cronsync's.
func driftOf(it *item, live, merged *unstructured.Unstructured, fieldManager string) *Drift {
	a, b := forDiff(live), forDiff(merged)
	secret := it.GroupKind() == secretGK
	var owners owners
	var d Drift
	walkDrift(nil, a, b, true, true, func(path []string, l, w any, lok, wok bool) {
		f := FieldDrift{Path: showPath(path), Live: l, Desired: w, Removed: !lok, Added: !wok}
		if it.Decrypted && !isIdentity(path) || secret && len(path) > 0 && (path[0] == "data" || path[0] == "stringData") {
			f.Live, f.Desired = masked(l, lok), masked(w, wok)
		}
		if lok {
			if owners == nil {
				owners = fieldOwners(live, fieldManager)
			}
			f.Managers = owners.of(path)
		}
		d.Fields = append(d.Fields, f)
	})
	if len(d.Fields) == 0 {
		// No value moved, yet the write was needed: another manager took
		// fields cronsync set (an apply with --force-conflicts and the
		// same values, say).
		owners = fieldOwners(live, fieldManager)
		seen := map[string]bool{}
		desired := forDiff(it.Obj)
		leaves(nil, desired, func(path []string, _ any) {
			for _, m := range owners.of(path) {
				if !seen[m.Name] {
					seen[m.Name] = true
					d.TakenBy = append(d.TakenBy, m)
				}
			}
		})
		if len(d.TakenBy) == 0 {
			return nil
		}
		slices.SortFunc(d.TakenBy, func(a, b Manager) int { return strings.Compare(a.Name, b.Name) })
	}
	return &d
}

func masked(v any, ok bool) any {
	if !ok {
		return nil
	}
	return "***"
}

// walkDrift calls add for every leaf where a and b differ: maps key by key,
// lists of equal length element by element, anything else whole.
func walkDrift(path []string, a, b any, aok, bok bool, add func(path []string, a, b any, aok, bok bool)) {
	am, aIsMap := a.(map[string]any)
	bm, bIsMap := b.(map[string]any)
	if aok && bok && aIsMap && bIsMap {
		for _, k := range slices.Sorted(maps.Keys(mergeKeys(am, bm))) {
			av, aok := am[k]
			bv, bok := bm[k]
			walkDrift(append(slices.Clip(path), keySeg(k)), av, bv, aok, bok, add)
		}
		return
	}
	al, aIsList := a.([]any)
	bl, bIsList := b.([]any)
	if aok && bok && aIsList && bIsList && len(al) == len(bl) {
		for i := range al {
			walkDrift(append(slices.Clip(path), fmt.Sprintf("[%d]", i)), al[i], bl[i], true, true, add)
		}
		return
	}
	if aok != bok || !reflect.DeepEqual(a, b) {
		add(path, a, b, aok, bok)
	}
}

// leaves calls fn with the path and value of every leaf of v.
func leaves(path []string, v any, fn func([]string, any)) {
	switch v := v.(type) {
	case map[string]any:
		for k, e := range v {
			leaves(append(slices.Clip(path), keySeg(k)), e, fn)
		}
	case []any:
		for i, e := range v {
			leaves(append(slices.Clip(path), fmt.Sprintf("[%d]", i)), e, fn)
		}
	default:
		fn(path, v)
	}
}

func mergeKeys(a, b map[string]any) map[string]bool {
	keys := make(map[string]bool, len(a)+len(b))
	for k := range a {
		keys[k] = true
	}
	for k := range b {
		keys[k] = true
	}
	return keys
}

var plainKey = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_-]*$`)

// keySeg is a map key as a path segment. A list element's segment is
// "[N]" (or "[]" in managedFields); a key that starts as one would, a
// data key "[0]" say, is escaped with a backslash, so that it is never
// taken for an element.
func keySeg(k string) string {
	if strings.HasPrefix(k, "[") || strings.HasPrefix(k, `\`) {
		return `\` + k
	}
	return k
}

// showPath writes path segments as "a.b[0].c", quoting keys that are not
// plain words: `metadata.annotations["example.com/owner"]`.
func showPath(path []string) string {
	var b strings.Builder
	for _, seg := range path {
		switch {
		case strings.HasPrefix(seg, "["):
			b.WriteString(seg)
		case plainKey.MatchString(seg):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(seg)
		default:
			q, _ := json.Marshal(strings.TrimPrefix(seg, `\`))
			b.WriteString("[" + string(q) + "]")
		}
	}
	return b.String()
}

// owners maps each manager other than cronsync to the fields it owns.
type owners []struct {
	m      Manager
	fields []ownedField
}

// ownedField is one field of a managedFields entry: whole when the entry
// owns all of it (a leaf, or an atomic map or list), else only the field
// itself (the "." of a list element).
type ownedField struct {
	path  []string
	whole bool
}

// fieldOwners reads live's managedFields, leaving cronsync's own entry out.
func fieldOwners(live *unstructured.Unstructured, fieldManager string) owners {
	var out owners
	for _, e := range live.GetManagedFields() {
		if e.Manager == fieldManager || e.FieldsV1 == nil {
			continue
		}
		var tree map[string]any
		if json.Unmarshal(e.FieldsV1.Raw, &tree) != nil {
			continue
		}
		m := Manager{Name: e.Manager, Operation: string(e.Operation)}
		if e.Time != nil {
			m.Time = e.Time.UTC()
		}
		var fields []ownedField
		var walk func(prefix []string, t map[string]any)
		walk = func(prefix []string, t map[string]any) {
			for k, v := range t {
				if k == "." {
					fields = append(fields, ownedField{path: prefix})
					continue
				}
				seg := "[]" // k:{...}, v:..., i:N: a list element
				if strings.HasPrefix(k, "f:") {
					seg = keySeg(k[2:])
				}
				p := append(slices.Clip(prefix), seg)
				sub, _ := v.(map[string]any)
				if len(sub) == 0 {
					fields = append(fields, ownedField{path: p, whole: true})
					continue
				}
				walk(p, sub)
			}
		}
		walk(nil, tree)
		out = append(out, struct {
			m      Manager
			fields []ownedField
		}{m, fields})
	}
	return out
}

// of returns the managers owning path: the field itself, a field within it
// (a map or list that differs as a whole), or all of a field holding it (an
// atomic map or list). List elements match any element: managedFields name
// them by key, the path by index.
func (o owners) of(path []string) []Manager {
	path = slices.Clone(path)
	for i, seg := range path {
		if strings.HasPrefix(seg, "[") {
			path[i] = "[]"
		}
	}
	var ms []Manager
	for _, e := range o {
		if slices.ContainsFunc(e.fields, func(f ownedField) bool {
			return isPrefix(path, f.path) || (f.whole && isPrefix(f.path, path))
		}) {
			ms = append(ms, e.m)
		}
	}
	return ms
}

func isPrefix(p, of []string) bool { return len(p) <= len(of) && slices.Equal(p, of[:len(p)]) }

// Line is the drift as one line under the object's: at most three fields,
// each "path: live → desired", and who changed them.
func (d *Drift) Line() string {
	const shown = 3
	if len(d.Fields) == 0 {
		return "no value moved; fields cronsync set had been taken by " + managersLine(d.TakenBy)
	}
	var parts []string
	for i, f := range d.Fields {
		if i == shown {
			parts = append(parts, fmt.Sprintf("and %d more", len(d.Fields)-shown))
			break
		}
		live, desired := showValue(f.Live), showValue(f.Desired)
		if f.Removed {
			live = "removed"
		}
		if f.Added {
			desired = "removed"
		}
		part := fmt.Sprintf("%s: %s → %s", f.Path, live, desired)
		switch {
		case f.Removed:
		case len(f.Managers) == 0:
			part += " (no other field manager owns it)"
		default:
			part += " (changed by " + managersLine(f.Managers) + ")"
		}
		parts = append(parts, part)
	}
	return strings.Join(parts, "; ")
}

func managersLine(ms []Manager) string {
	var by []string
	for _, m := range ms {
		// A manager's name is whatever its client sent.
		s := redact.CleanLine(m.Name)
		if !m.Time.IsZero() {
			s += " at " + m.Time.Format(time.RFC3339)
		}
		by = append(by, s)
	}
	return strings.Join(by, ", ")
}

// showValue writes a value as JSON, cut to maxDriftValue.
func showValue(v any) string {
	if s, ok := v.(string); ok && s == "***" {
		return s
	}
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	if r := []rune(string(b)); len(r) > maxDriftValue {
		return string(r[:maxDriftValue-1]) + "…"
	}
	return string(b)
}
