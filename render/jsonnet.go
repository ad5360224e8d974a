package render

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/google/go-jsonnet"

	"github.com/cronsync/cronsync/internal/budget"
)

// Jsonnet configures how .jsonnet files are evaluated. Every .jsonnet file
// under the path is evaluated with the same variables; .libsonnet files are
// only ever imported.
type Jsonnet struct {
	// LibPaths are repository-relative directories that imports are looked
	// up in after the importing file's own directory, the last first, as
	// the jsonnet CLI does with -J (jsonnet-bundler's vendor/).
	LibPaths []string
	// ExtStr and ExtCode are external variables (std.extVar): strings, and
	// Jsonnet code evaluated as the value.
	ExtStr, ExtCode map[string]string
	// TLAStr and TLACode are top-level arguments, passed to a file whose
	// value is a function; one that takes none ignores them, and parameters
	// not given take the defaults the file declares.
	TLAStr, TLACode map[string]string
	// Budget bounds each file's evaluation: a program that loops or
	// allocates without end is the commit's fault.
	Budget budget.Limits
	// Evaluate evaluates one file; nil is EvaluateJsonnet, in this process.
	Evaluate func(context.Context, JsonnetRequest) (string, error) `json:"-"`
}

// DefaultJsonnet holds the defaults the command line starts from: a file
// gets what a Helm chart gets.
func DefaultJsonnet() Jsonnet {
	return Jsonnet{Budget: budget.Limits{Time: 30 * time.Second, Heap: 256 << 20}}
}

// stamp identifies everything in j that shapes the objects.
func (j Jsonnet) stamp() string {
	var b strings.Builder
	b.WriteString(strings.Join(j.LibPaths, "\x01"))
	for _, m := range []map[string]string{j.ExtStr, j.ExtCode, j.TLAStr, j.TLACode} {
		b.WriteByte(0)
		for _, k := range slices.Sorted(maps.Keys(m)) {
			fmt.Fprintf(&b, "%s=%s\x01", k, m[k])
		}
	}
	return b.String()
}

const jsonnetExt = ".jsonnet"

// JsonnetRequest is one .jsonnet file to evaluate.
type JsonnetRequest struct {
	// Root is the repository's real path; nothing outside it is read.
	Root string
	// File is the file's path in the repository.
	File string
	// Jsonnet holds the variables, library paths and budget.
	Jsonnet Jsonnet
	// MaxFileBytes limits every file imported, as Options.MaxFileBytes.
	MaxFileBytes int64
	// Present, when not nil, lists the only paths the importer may look
	// at: the checkout is partial, and these were made present ahead of
	// the evaluation (see jsonnetahead.go). Looking at another fails the
	// evaluation, saying which, for the caller to fetch it and try again.
	Present []string `json:",omitempty"`
}

// jsonnet evaluates the file source and flattens its value into objects
// (see flattenJsonnet).
func (r *reader) jsonnet(source string) {
	if r.jsonnetAbandoned {
		// An earlier evaluation still runs in this process, abandoned past
		// its budget; the run fails on it and must not pile up more.
		return
	}
	req := JsonnetRequest{Root: r.root, File: source, Jsonnet: r.opts.Jsonnet, MaxFileBytes: r.opts.MaxFileBytes}
	if req.Jsonnet.Budget.Time <= 0 {
		req.Jsonnet.Budget = DefaultJsonnet().Budget
	}
	if dl, ok := r.ctx.Deadline(); ok {
		// Leave the run time to report the file as the fault, rather
		// than end on --timeout.
		req.Jsonnet.Budget.Time = min(req.Jsonnet.Budget.Time, time.Until(dl)/2)
	}
	evaluate := r.opts.Jsonnet.Evaluate
	if evaluate == nil {
		evaluate = EvaluateJsonnet
	}
	var ahead *jsonnetAhead
	if r.needFn != nil {
		ahead = r.newJsonnetAhead(source)
		ahead.scan("", source, true)
		if r.needFailed() != nil {
			return
		}
		req.Present = ahead.present
	}
	out, err := evaluate(r.ctx, req)
	for round := 0; err != nil && ahead != nil && round < maxJsonnetRounds; round++ {
		// An import the scan ahead did not see: scan from it, and
		// evaluate again.
		p, from, ok := missedImport(err)
		if !ok {
			break
		}
		before := len(ahead.present)
		ahead.scan(from, p, true)
		if r.needFailed() != nil {
			return
		}
		if len(ahead.present) == before {
			break
		}
		req.Present = ahead.present
		out, err = evaluate(r.ctx, req)
	}
	if err != nil {
		if _, ok := errors.AsType[*budget.ExceededError](err); ok || r.ctx.Err() != nil {
			r.jsonnetAbandoned = true
		}
		r.errs = append(r.errs, &ManifestError{Source: source, Err: err})
		return
	}
	if err := r.count(len(out)); err != nil {
		r.errs = append(r.errs, &ManifestError{Source: source, Err: err})
		return
	}
	var v any
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		r.errs = append(r.errs, &ManifestError{Source: source, Err: err})
		return
	}
	doc := 0
	err = flattenJsonnet(v, func(m map[string]any, at string) error {
		doc++
		us, err := fromValue(m)
		if err != nil {
			// The path, not a document number, is what finds it in the
			// program's output.
			where := "the file's value"
			if at != "" {
				where = at
			}
			r.errs = append(r.errs, &ManifestError{Source: source, Err: fmt.Errorf("%s: %w", where, err)})
			return nil
		}
		for _, u := range us {
			r.objs = append(r.objs, &Object{Source: source, Doc: doc, Obj: u})
		}
		return nil
	})
	if err != nil {
		r.errs = append(r.errs, &ManifestError{Source: source, Err: err})
	}
}

// EvaluateJsonnet evaluates req in this process and returns its value as
// JSON. Go cannot stop a goroutine: an evaluation past its budget is
// abandoned, still running, and a tailstrict recursion without end (which
// go-jsonnet's stack limit does not count) aborts the process when the Go
// stack reaches its limit. The command runs each file in a process of its
// own instead (JsonnetInChild), which ends with its evaluation.
func EvaluateJsonnet(ctx context.Context, req JsonnetRequest) (string, error) {
	out, err := budget.Run(ctx, req.Jsonnet.Budget, func() (string, error) { return evaluateJsonnet(req) })
	if exceeded, ok := errors.AsType[*budget.ExceededError](err); ok {
		return "", exceededJsonnet(exceeded)
	}
	if err != nil && ctx.Err() != nil {
		return "", err
	}
	return out, err
}

// evaluateJsonnet evaluates req with no budget of its own: the caller's
// holds it.
func evaluateJsonnet(req JsonnetRequest) (string, error) {
	vm := jsonnet.MakeVM()
	im := &confinedImporter{req: req, cache: map[string]*imported{}}
	if req.Present != nil {
		im.present = map[string]bool{}
		for _, p := range req.Present {
			im.present[p] = true
		}
	}
	vm.Importer(im)
	j := req.Jsonnet
	for k, v := range j.ExtStr {
		vm.ExtVar(k, v)
	}
	for k, v := range j.ExtCode {
		vm.ExtCode(k, v)
	}
	for k, v := range j.TLAStr {
		vm.TLAVar(k, v)
	}
	for k, v := range j.TLACode {
		vm.TLACode(k, v)
	}
	out, err := vm.EvaluateFile(req.File)
	if err != nil {
		return "", jsonnetError(err)
	}
	return out, nil
}

// flattenJsonnet walks a file's value as Tanka does: an object with
// apiVersion and kind is one manifest (a List is flattened later, as in a
// YAML file), an array is each of its elements, any other object each of
// its field values in key order; null renders nothing. emit gets each
// manifest with its path in the value.
func flattenJsonnet(v any, emit func(map[string]any, string) error) error {
	return flattenAt(v, nil, emit)
}

// valuePath is where a value is in a file's value, written out only when
// it is shown: a path string made at every level would cost a value nested
// n deep n² bytes (40 MB for 10 kB of "[[[...]]]").
type valuePath struct {
	parent *valuePath
	// field is the field's name, or index the element's, when isIndex.
	field   string
	index   int
	isIndex bool
}

// String writes the path as Jsonnet would: a.b["c-d"][0].
func (p *valuePath) String() string {
	var segs []*valuePath
	for q := p; q != nil; q = q.parent {
		segs = append(segs, q)
	}
	var b strings.Builder
	for _, s := range slices.Backward(segs) {
		switch {
		case s.isIndex:
			fmt.Fprintf(&b, "[%d]", s.index)
		case identifier.MatchString(s.field):
			if b.Len() > 0 {
				b.WriteByte('.')
			}
			b.WriteString(s.field)
		default:
			q, _ := json.Marshal(s.field)
			b.WriteString("[" + string(q) + "]")
		}
	}
	return b.String()
}

func flattenAt(v any, at *valuePath, emit func(map[string]any, string) error) error {
	switch v := v.(type) {
	case nil:
		return nil
	case map[string]any:
		_, api := v["apiVersion"]
		_, kind := v["kind"]
		if api && kind {
			return emit(v, at.String())
		}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			if err := flattenAt(v[k], &valuePath{parent: at, field: k}, emit); err != nil {
				return err
			}
		}
		return nil
	case []any:
		for i, e := range v {
			if err := flattenAt(e, &valuePath{parent: at, index: i, isIndex: true}, emit); err != nil {
				return err
			}
		}
		return nil
	}
	where := at.String()
	if where == "" {
		where = "the file's value"
	}
	return fmt.Errorf("%s is a %s, not an object or an array of objects", where, jsonType(v))
}

var identifier = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// jsonnetError keeps Jsonnet's message and where it happened
// (file:line:column, the file as the repository names it) on one line:
// the formatter's stack trace takes several.
func jsonnetError(err error) error {
	lines := strings.Split(strings.TrimSpace(err.Error()), "\n")
	msg := strings.TrimSpace(lines[0])
	if !strings.HasPrefix(msg, "RUNTIME ERROR") {
		// A static error starts with its place; the lines after it
		// quote the source.
		return fmt.Errorf("jsonnet: %s", msg)
	}
	for _, l := range lines[1:] {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "During ") {
			continue
		}
		loc, _, _ := strings.Cut(l, "\t")
		if loc != "" && !strings.Contains(msg, loc) {
			msg += " (at " + loc + ")"
		}
		break
	}
	return fmt.Errorf("jsonnet: %s", msg)
}

// confinedImporter resolves imports inside the repository only: relative
// to the importing file, then through the library paths. Paths are the
// repository's (forward slashes, from its root), so that Jsonnet's own
// messages name files as the repository does.
type confinedImporter struct {
	req   JsonnetRequest
	cache map[string]*imported
	// present, when not nil, holds the only paths that may be looked at
	// (JsonnetRequest.Present).
	present map[string]bool
	// need, when set, is called with each path before it is looked at.
	need func(string)
}

type imported struct {
	contents jsonnet.Contents
	found    bool
	err      error
}

func (im *confinedImporter) Import(importedFrom, importedPath string) (jsonnet.Contents, string, error) {
	if path.IsAbs(importedPath) || filepath.IsAbs(importedPath) {
		return jsonnet.Contents{}, "", fmt.Errorf("import %q is an absolute path: only files inside the repository can be imported", importedPath)
	}
	dirs := []string{path.Dir(importedFrom)}
	if importedFrom == "" {
		dirs = []string{"."}
	}
	for _, lib := range slices.Backward(im.req.Jsonnet.LibPaths) {
		dirs = append(dirs, lib)
	}
	for _, dir := range dirs {
		p := path.Join(dir, importedPath)
		if !filepath.IsLocal(p) {
			return jsonnet.Contents{}, "", fmt.Errorf("import %q leaves the repository", importedPath)
		}
		if im.present != nil && !im.present[p] {
			return jsonnet.Contents{}, "", missedError(importedPath, importedFrom)
		}
		got := im.load(p)
		if got.err != nil {
			return jsonnet.Contents{}, "", got.err
		}
		if got.found {
			return got.contents, p, nil
		}
	}
	return jsonnet.Contents{}, "", fmt.Errorf("import %q: no such file next to %s or in the --jsonnet-lib-path directories", importedPath, cmp.Or(importedFrom, "the file"))
}

// load reads the repository's file p once.
func (im *confinedImporter) load(p string) *imported {
	if got, ok := im.cache[p]; ok {
		return got
	}
	got := &imported{}
	im.cache[p] = got
	if im.need != nil {
		im.need(p)
	}
	full := filepath.Join(im.req.Root, filepath.FromSlash(p))
	real, err := filepath.EvalSymlinks(full)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return got
	case err != nil:
		got.err = err
		return got
	case !inside(im.req.Root, real):
		got.err = fmt.Errorf("import %q leaves the repository through a symlink", p)
		return got
	}
	st, err := os.Stat(real)
	switch {
	case err != nil:
		got.err = err
	case !st.Mode().IsRegular():
		got.err = fmt.Errorf("import %q is not a regular file", p)
	case checkSize(im.req.MaxFileBytes, st.Size()) != nil:
		got.err = fmt.Errorf("import %q: %w", p, checkSize(im.req.MaxFileBytes, st.Size()))
	default:
		data, err := os.ReadFile(real)
		got.contents, got.found, got.err = jsonnet.MakeContentsRaw(data), err == nil, err
		if err == nil && slices.Contains(manifestExts, strings.ToLower(path.Ext(p))) {
			// Most likely read by std.parseYaml or std.parseJson, which
			// keep the last of two equal keys; see dupkeys.go.
			got.err = duplicateIn(data, p)
		}
	}
	return got
}
