package render

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"path"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode"
	"unicode/utf8"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

// Substitute is post-build variable substitution as Flux's
// kustomize-controller does it (spec.postBuild), so that a repository
// written for Flux's fleet pattern (one path, a cluster-vars ConfigMap per
// cluster) works unchanged: each rendered object is written as YAML,
// ${var} references in the text are replaced, and the text is parsed again.
type Substitute struct {
	// Vars maps each variable to its value, newlines already stripped. nil
	// turns substitution off: a repository holding ${...} for its own
	// reasons (shell, nginx) is untouched unless a source was given. An
	// empty, non-nil map still substitutes (defaults, and strict errors).
	Vars map[string]string
	// Strict makes a ${var} with no value and no default an error naming
	// the object; otherwise it becomes "". A variable set to "" is set.
	Strict bool
}

// VarNameRE is what a variable's name must match, as Flux requires.
var VarNameRE = regexp.MustCompile(`^[_a-zA-Z][_a-zA-Z0-9]*$`)

// SubstituteDisabled is the label or annotation key (with value
// "disabled") that leaves an object alone; Flux's key works too.
const SubstituteDisabled = "cronsync.dev/substitute"

const fluxSubstituteDisabled = "kustomize.toolkit.fluxcd.io/substitute"

// On says whether any variable source was given.
func (s Substitute) On() bool { return s.Vars != nil }

// stamp identifies the variables without holding their values, which may
// come from a Secret: the stamp is stored in the cluster.
func (s Substitute) stamp() string {
	if !s.On() {
		return ""
	}
	h := sha256.New()
	fmt.Fprintf(h, "strict=%t\x00", s.Strict)
	keys := make([]string, 0, len(s.Vars))
	for k := range s.Vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00", k, len(s.Vars[k]), s.Vars[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// substituteAll substitutes every object read from files (not the stand-ins
// from the record, which were substituted when recorded), each on its own.
func substituteAll(objs []*Object, s Substitute) error {
	if !s.On() {
		return nil
	}
	// On every core, as parsing: the YAML round trip of an object holding
	// references is most of a changed-variables run's CPU. Errors keep
	// the objects' order.
	errs := make([]error, len(objs))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(objs)) {
		wg.Go(func() {
			for i := int(next.Add(1) - 1); i < len(objs); i = int(next.Add(1) - 1) {
				o := objs[i]
				if o.Recorded || o.Obj == nil || substituteDisabled(o.Obj) {
					continue
				}
				u, err := s.object(o.Obj)
				if err != nil {
					errs[i] = &ManifestError{Source: o.Source, Doc: o.Doc, Ref: o.Ref(), Err: err}
					continue
				}
				o.Obj = u
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func substituteDisabled(u *unstructured.Unstructured) bool {
	for _, m := range []map[string]string{u.GetLabels(), u.GetAnnotations()} {
		if m[SubstituteDisabled] == "disabled" || m[fluxSubstituteDisabled] == "disabled" {
			return true
		}
	}
	return false
}

// object substitutes one object's YAML text. YAML rather than JSON, as
// Flux: `replicas: ${REPLICAS}` becomes a number, and a value that must
// stay a string is quoted in the value itself ('"1234"').
func (s Substitute) object(u *unstructured.Unstructured) (*unstructured.Unstructured, error) {
	// Most objects hold no "$" at all: they skip the YAML round trip,
	// which is most of substitution's cost.
	if !holdsDollar(u.Object) {
		return u, nil
	}
	text, err := yaml.Marshal(u.Object)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(text), "${") && !strings.Contains(string(text), "$$") {
		return u, nil
	}
	out, err := s.Eval(string(text))
	if err != nil {
		return nil, err
	}
	if out == string(text) {
		// A "$" of the object's own (a shell script's $HOME): parsing it
		// again could only change how numbers are typed.
		return u, nil
	}
	js, err := yaml.YAMLToJSON([]byte(out))
	if err != nil {
		return nil, fmt.Errorf("after variable substitution the object no longer parses (a value holding YAML syntax needs quoting): %w", err)
	}
	res := &unstructured.Unstructured{}
	if err := res.UnmarshalJSON(js); err != nil {
		return nil, fmt.Errorf("after variable substitution: %w", err)
	}
	return res, nil
}

func holdsDollar(v any) bool {
	switch v := v.(type) {
	case string:
		return strings.Contains(v, "$")
	case map[string]any:
		for k, e := range v {
			if strings.Contains(k, "$") || holdsDollar(e) {
				return true
			}
		}
	case []any:
		for _, e := range v {
			if holdsDollar(e) {
				return true
			}
		}
	}
	return false
}

// UnsetError names the variables a strict substitution found no value for.
type UnsetError struct{ Names []string }

func (e *UnsetError) Error() string {
	q := make([]string, len(e.Names))
	for i, n := range e.Names {
		q[i] = "${" + n + "}"
	}
	return fmt.Sprintf("variable %s not set: no --substitute or --substitute-from source gives it a value and the reference has no default (${%s:=default}); --substitute-strict=false makes it empty", strings.Join(q, ", "), e.Names[0])
}

// maxSubstitutedGrowth is how much larger substitution may make a text.
// References nest, and ${A//x/${A//x/...}} multiplies at each level: a
// line of a commit could otherwise ask for gigabytes of a short variable.
// An object grown by more than this could not be applied anyway.
const maxSubstitutedGrowth = 4 << 20

var errSubstitutedTooLarge = fmt.Errorf("variable substitution makes the object more than %d MiB larger than it is written (references that repeat a value within each other?)", maxSubstitutedGrowth>>20)

// Eval substitutes text. ${var} and its bash-like forms are replaced;
// $${...} is a literal ${...}; a bare $var is left alone.
func (s Substitute) Eval(text string) (string, error) {
	e := &evaluator{s: s, src: text, limit: len(text) + maxSubstitutedGrowth}
	out, err := e.text(false)
	if err != nil {
		return "", err
	}
	if len(e.unset) > 0 {
		return "", &UnsetError{Names: e.unset}
	}
	return out, nil
}

type evaluator struct {
	s     Substitute
	src   string
	pos   int
	unset []string
	// limit bounds every string the evaluation makes.
	limit int
}

// text reads up to the end or, inside a reference's argument, up to one of
// stop, replacing references as it goes. inArg also turns on the escapes
// Flux reads in arguments (\\ and \/).
func (e *evaluator) text(inArg bool, stop ...byte) (string, error) {
	var b strings.Builder
	for e.pos < len(e.src) {
		c := e.src[e.pos]
		switch {
		case inArg && slices.Contains(stop, c):
			return b.String(), nil
		case c == '$' && e.pos+1 < len(e.src) && e.src[e.pos+1] == '$':
			b.WriteByte('$')
			e.pos += 2
		case c == '$' && e.pos+1 < len(e.src) && e.src[e.pos+1] == '{':
			start := e.pos
			e.pos += 2
			v, err := e.reference()
			if err != nil {
				if err == errSubstitutedTooLarge {
					return "", err
				}
				return "", fmt.Errorf("%s: %w", quoteRef(e.src[start:min(e.pos+1, len(e.src))]), err)
			}
			if b.Len()+len(v) > e.limit {
				return "", errSubstitutedTooLarge
			}
			b.WriteString(v)
		case inArg && c == '\\' && e.pos+1 < len(e.src) && (e.src[e.pos+1] == '\\' || e.src[e.pos+1] == '/'):
			b.WriteByte(e.src[e.pos+1])
			e.pos += 2
		default:
			b.WriteByte(c)
			e.pos++
		}
	}
	if inArg {
		return "", errors.New("missing closing brace")
	}
	return b.String(), nil
}

func quoteRef(s string) string {
	if len(s) > 60 {
		s = s[:60] + "..."
	}
	return strconv.Quote(s)
}

func (e *evaluator) name() string {
	start := e.pos
	for e.pos < len(e.src) {
		r, n := utf8.DecodeRuneInString(e.src[e.pos:])
		if !(unicode.IsLetter(r) || unicode.IsDigit(r) || r == '_') {
			break
		}
		e.pos += n
	}
	return e.src[start:e.pos]
}

func (e *evaluator) peek() byte {
	if e.pos < len(e.src) {
		return e.src[e.pos]
	}
	return 0
}

// lookup is a variable's value; in strict mode one that is not set is
// recorded unless op supplies a fallback.
func (e *evaluator) lookup(name string, defaultOp bool) string {
	v, ok := e.s.Vars[name]
	if !ok && e.s.Strict && !defaultOp && !slices.Contains(e.unset, name) {
		e.unset = append(e.unset, name)
	}
	return v
}

// reference reads what follows "${" up to and including its "}".
func (e *evaluator) reference() (string, error) {
	if e.peek() == '#' {
		e.pos++
		n := e.name()
		if err := e.validName(n); err != nil {
			return "", err
		}
		if err := e.close(); err != nil {
			return "", err
		}
		return strconv.Itoa(len(e.lookup(n, false))), nil
	}
	n := e.name()
	if err := e.validName(n); err != nil {
		return "", err
	}
	switch c := e.peek(); c {
	case '}':
		e.pos++
		return e.lookup(n, false), nil
	case ':':
		e.pos++
		switch op := e.peek(); op {
		case '=', '-', '?', '+':
			e.pos++
			return e.withDefault(n)
		default:
			return e.substring(n)
		}
	case '=':
		e.pos++
		return e.withDefault(n)
	case ',', '^':
		op := string(c)
		e.pos++
		if e.peek() == c {
			op += string(c)
			e.pos++
		}
		if err := e.close(); err != nil {
			return "", err
		}
		v := e.lookup(n, false)
		switch op {
		case ",":
			return firstRune(v, unicode.ToLower), nil
		case ",,":
			return strings.ToLower(v), nil
		case "^":
			return firstRune(v, unicode.ToUpper), nil
		}
		return strings.ToUpper(v), nil
	case '#', '%':
		e.pos++
		longest := e.peek() == c
		if longest {
			e.pos++
		}
		pattern, err := e.text(true, '}')
		if err != nil {
			return "", err
		}
		e.pos++
		return trimMatch(e.lookup(n, false), pattern, c == '#', longest), nil
	case '/':
		e.pos++
		op := byte(0)
		if p := e.peek(); p == '/' || p == '#' || p == '%' {
			op = p
			e.pos++
		}
		pattern, err := e.text(true, '/', '}')
		if err != nil {
			return "", err
		}
		repl := ""
		if e.peek() == '/' {
			e.pos++
			if repl, err = e.text(true, '}'); err != nil {
				return "", err
			}
		}
		e.pos++
		v := e.lookup(n, false)
		switch op {
		case '/':
			// Sized before it is made: an empty pattern matches
			// between every character.
			n := strings.Count(v, pattern)
			if len(v)+n*(len(repl)-len(pattern)) > e.limit {
				return "", errSubstitutedTooLarge
			}
			return strings.ReplaceAll(v, pattern, repl), nil
		case '#':
			if strings.HasPrefix(v, pattern) {
				return repl + v[len(pattern):], nil
			}
			return v, nil
		case '%':
			if strings.HasSuffix(v, pattern) {
				return v[:len(v)-len(pattern)] + repl, nil
			}
			return v, nil
		}
		return strings.Replace(v, pattern, repl, 1), nil
	}
	return "", fmt.Errorf("%q is not a variable name (it must match %s) or the reference is not closed", n+string(e.peek()), VarNameRE)
}

func (e *evaluator) validName(n string) error {
	if !VarNameRE.MatchString(n) {
		return fmt.Errorf("%q is not a variable name: it must match %s", n, VarNameRE)
	}
	return nil
}

func (e *evaluator) close() error {
	if e.peek() != '}' {
		return errors.New("missing closing brace")
	}
	e.pos++
	return nil
}

// withDefault: every default form (=, :=, :-, :+, :?) gives the value when
// it is not empty and the default otherwise, as Flux's envsubst does (its
// :+ and :? are not bash's), and none is an error when the variable is
// not set.
func (e *evaluator) withDefault(n string) (string, error) {
	def, err := e.text(true, '}')
	if err != nil {
		return "", err
	}
	e.pos++
	if v := e.lookup(n, true); v != "" {
		return v, nil
	}
	return def, nil
}

// substring is ${var:offset} and ${var:offset:length}, offsets from the
// end when negative, as bash.
func (e *evaluator) substring(n string) (string, error) {
	offText, err := e.text(true, ':', '}')
	if err != nil {
		return "", err
	}
	lenText, hasLen := "", false
	if e.peek() == ':' {
		e.pos++
		hasLen = true
		if lenText, err = e.text(true, '}'); err != nil {
			return "", err
		}
	}
	e.pos++
	v := e.lookup(n, false)
	off, err := strconv.Atoi(strings.TrimSpace(offText))
	if err != nil {
		return v, nil
	}
	if off < 0 {
		off = max(len(v)+off, 0)
	}
	if off >= len(v) {
		return "", nil
	}
	if !hasLen {
		return v[off:], nil
	}
	l, err := strconv.Atoi(strings.TrimSpace(lenText))
	if err != nil {
		return v, nil
	}
	end := off + l
	if l < 0 {
		end = len(v) + l
		if end < off {
			return "", nil
		}
	}
	return v[off:min(end, len(v))], nil
}

func firstRune(s string, f func(rune) rune) string {
	if s == "" {
		return s
	}
	r, n := utf8.DecodeRuneInString(s)
	return string(f(r)) + s[n:]
}

// trimMatch removes the shortest or longest prefix (or suffix) of s that
// matches the glob pattern.
func trimMatch(s, pattern string, prefix, longest bool) string {
	best := -1
	for i := 0; i <= len(s); i++ {
		cut := s[:i]
		if !prefix {
			cut = s[len(s)-i:]
		}
		if ok, err := path.Match(pattern, cut); err != nil {
			return s
		} else if ok {
			best = i
			if !longest {
				break
			}
		}
	}
	switch {
	case best < 0:
		return s
	case prefix:
		return s[best:]
	}
	return s[:len(s)-best]
}
