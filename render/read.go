// Package render turns one commit's files into Kubernetes objects, each
// with the file it came from: plain YAML and JSON manifests, kustomizations
// (built with kustomize's API) and Helm charts (through a renderer the
// caller supplies). It reads only inside the repository and never talks to
// the cluster itself; making the cluster match the objects is package
// apply's job.
package render

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"

	"github.com/cronsync/cronsync/internal/redact"
)

// Object is one Kubernetes object read from the repository, with where it
// came from so that every message can name the file.
type Object struct {
	// Source is the file's path relative to the repository root, with
	// forward slashes.
	Source string
	// Doc is the 1-based index of the YAML document within Source.
	Doc int
	// Obj is the object as written in Git, plus the namespace default.
	Obj *unstructured.Unstructured

	// Plain: read from a plain manifest file, not built by kustomize or
	// rendered from a chart: the same blob always holds the same objects.
	Plain bool
	// Recorded: taken from the last complete run's record of an unchanged
	// file (Reuse). Obj holds the identity and the digest annotation only,
	// so it must never be sent.
	Recorded bool
	// Decrypted: read from a SOPS-encrypted file. Its values are secret,
	// whatever its kind: nothing may print them.
	Decrypted bool
}

// GroupKind is the object's group and kind as written.
func (o *Object) GroupKind() schema.GroupKind { return o.Obj.GroupVersionKind().GroupKind() }

// Ref names the object the way kubectl prints it, with the namespace as a
// flag so that the line can be pasted after "kubectl get".
func (o *Object) Ref() string { return Ref(o.GroupKind(), o.Obj.GetName(), o.Obj.GetNamespace()) }

// Ref names any object as Object.Ref does. A name from the commit may hold
// anything until the API server refuses it, and every message shows it:
// control characters and newlines are escaped, so that it cannot rewrite
// or start a line.
func Ref(gk schema.GroupKind, name, namespace string) string {
	r := strings.ToLower(gk.Kind)
	if gk.Group != "" {
		r += "." + gk.Group
	}
	r += "/" + name
	if namespace != "" {
		r += " -n " + namespace
	}
	return redact.CleanLine(r)
}

var manifestExts = []string{".yaml", ".yml", ".json"}

// Options limits what Read accepts.
type Options struct {
	// MaxFileBytes refuses manifest files larger than this; 0 means no limit.
	MaxFileBytes int64
	// MaxTotalBytes refuses a commit whose manifests, as parsed (files,
	// and what kustomize, Helm and Jsonnet made of them), add up to more
	// than this: its objects are all in memory at once. 0 means no limit.
	MaxTotalBytes int64
	// KustomizeAllowRemote lets kustomizations load files over HTTP(S).
	KustomizeAllowRemote bool
	// Namespace is the release namespace of a chart that names none.
	Namespace string
	// RenderChart renders a Helm chart: a directory holding Chart.yaml, or
	// an entry of a kustomization's helmCharts. nil makes either an error.
	RenderChart func(context.Context, ChartRequest) (*ChartOutput, error)
	// Warn receives what a run should say but that fails nothing, such as
	// the Helm hooks left out of a chart.
	Warn func(string)
	// Jsonnet is how .jsonnet files are evaluated.
	Jsonnet Jsonnet
	// Sops holds the keys that open SOPS-encrypted files.
	Sops Sops
	// Secrets receives every value decrypted from a SOPS-encrypted file,
	// so that no output shows it; nil registers nothing.
	Secrets *redact.Secrets
	// Substitute replaces ${var} references in every object read, after
	// kustomize, Helm, Jsonnet and SOPS (see substitute.go).
	Substitute Substitute
}

// DefaultOptions holds the defaults the command line starts from.
func DefaultOptions() Options {
	return Options{MaxFileBytes: 4 << 20, MaxTotalBytes: 64 << 20, Jsonnet: DefaultJsonnet(), Substitute: Substitute{Strict: true}}
}

// Read returns the objects of every manifest file under dir, a directory
// inside root, in a deterministic order (lexical by path, then document).
// A directory holding a kustomization is built with kustomize as one unit
// instead, and one holding a Helm chart is rendered as one. Files and
// directories whose names start with "." are skipped. Symlinks are followed
// only while they stay inside root.
func Read(ctx context.Context, root, dir string, opts Options) ([]*Object, error) {
	return read(ctx, root, dir, opts, nil)
}

// read is Read of a checkout whose files outside dir are written as need
// (see Commit.Need) is told they are read; nil: all are there.
func read(ctx context.Context, root, dir string, opts Options, need func(context.Context, string, bool) error) ([]*Object, error) {
	root, err := filepath.EvalSymlinks(root)
	if err != nil {
		return nil, err
	}
	r := &reader{ctx: ctx, root: root, opts: opts, seen: map[string]bool{}, needFn: need}
	realDir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return nil, err
	}
	err = r.walk(realDir, r.rel(realDir))
	if err == nil {
		err = r.parsePending()
	}
	// A file that could not be fetched is the run's failure, not the
	// commit's: what it made fail says nothing.
	if needErr := r.needFailed(); needErr != nil {
		return nil, needErr
	}
	if err != nil {
		return nil, err
	}
	return r.objs, errors.Join(r.errs...)
}

// pendingFile is a plain manifest file found by walk, parsed after it on
// every core: parsing YAML is most of a no-change run's CPU. objAt and errAt
// are where its results go among what walk found itself (kustomize builds,
// charts), so that the order is the same as read one by one.
type pendingFile struct {
	path, source string
	objAt, errAt int
	// read, when set, returns the content instead of reading path.
	read func() ([]byte, error)
}

func (r *reader) parsePending() error {
	type parsed struct {
		objs []*Object
		errs []error
		err  error
	}
	results := make([]parsed, len(r.pending))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(r.pending)) {
		wg.Go(func() {
			for i := range next {
				p := r.pending[i]
				read := p.read
				if read == nil {
					read = func() ([]byte, error) { return os.ReadFile(p.path) }
				}
				data, err := read()
				if err != nil {
					results[i].err = err
					continue
				}
				if err := r.checkSize(int64(len(data))); err != nil {
					results[i].errs = []error{&ManifestError{Source: p.source, Err: err}}
					continue
				}
				if err := r.count(len(data)); err != nil {
					results[i].errs = []error{&ManifestError{Source: p.source, Err: err}}
					continue
				}
				decrypted := false
				if format := sopsFormat(p.source); looksEncrypted(data, format) {
					if data, err = r.decrypt(data, p.source, format); err != nil {
						results[i].errs = []error{err}
						continue
					}
					decrypted = true
				}
				results[i].objs, results[i].errs = parseDocs(data, p.source, 1)
				for _, o := range results[i].objs {
					o.Plain, o.Decrypted = true, decrypted
				}
			}
		})
	}
	for i := range r.pending {
		next <- i
	}
	close(next)
	wg.Wait()
	var objs []*Object
	var errs []error
	oi, ei := 0, 0
	for i, p := range r.pending {
		if results[i].err != nil {
			return results[i].err
		}
		objs, errs = append(objs, r.objs[oi:p.objAt]...), append(errs, r.errs[ei:p.errAt]...)
		oi, ei = p.objAt, p.errAt
		objs, errs = append(objs, results[i].objs...), append(errs, results[i].errs...)
	}
	r.objs, r.errs = append(objs, r.objs[oi:]...), append(errs, r.errs[ei:]...)
	return nil
}

type reader struct {
	ctx  context.Context
	root string
	opts Options
	// seen holds the real paths of directories already walked, so that a
	// symlink loop inside the repository ends.
	seen map[string]bool
	objs []*Object
	errs []error
	// pending are the plain files, parsed once the walk is done.
	pending []pendingFile
	// jsonnetAbandoned: a Jsonnet evaluation ran past its budget and
	// still runs; no other starts.
	jsonnetAbandoned bool
	// sops opens encrypted files, once its keys are read.
	sopsOnce sync.Once
	sops     *decryptor
	// total is how many bytes of manifests were parsed, for MaxTotalBytes.
	total atomic.Int64
	// needFn makes a path of the commit present on disk (Commit.Need);
	// needErr is its first failure.
	needFn  func(context.Context, string, bool) error
	needMu  sync.Mutex
	needErr error
}

// need makes what is at the real path p present on disk before it is
// looked at (see Commit.Need); whole: everything under it, for a reader
// that does not ask again. Every look at a path of the commit outside the
// walk of --path goes through it: a directory on disk whose entries were
// never asked for may lack some.
func (r *reader) need(p string, whole bool) {
	if r.needFn == nil {
		return
	}
	rel, err := filepath.Rel(r.root, p)
	if err != nil || rel != "." && !filepath.IsLocal(rel) {
		return // outside: the caller refuses it
	}
	r.needMu.Lock()
	defer r.needMu.Unlock()
	if r.needErr != nil {
		return
	}
	r.needErr = r.needFn(r.ctx, filepath.ToSlash(rel), whole)
}

// needLink is need of the target of a symlink in the real directory
// dir, as written: the kernel resolves a ".." after the symlinks before it,
// which cleaning the path first would not.
func (r *reader) needLink(dir, link string) {
	if r.needFn == nil {
		return
	}
	rel, err := filepath.Rel(r.root, dir)
	if err != nil || rel != "." && !filepath.IsLocal(rel) {
		return
	}
	r.needMu.Lock()
	defer r.needMu.Unlock()
	if r.needErr == nil {
		r.needErr = r.needFn(r.ctx, filepath.ToSlash(rel)+"/"+filepath.ToSlash(link), false)
	}
}

func (r *reader) needFailed() error {
	r.needMu.Lock()
	defer r.needMu.Unlock()
	return r.needErr
}

// count adds n bytes to what the run parsed, refusing what goes past
// Options.MaxTotalBytes before it is parsed.
func (r *reader) count(n int) error {
	total := r.total.Add(int64(n))
	if max := r.opts.MaxTotalBytes; max > 0 && total > max {
		return fmt.Errorf("the manifests parsed so far and this one are %d bytes, over the limit of %d for the whole commit (--max-manifest-total-bytes)", total, max)
	}
	return nil
}

// decrypt opens a SOPS-encrypted file with the run's keys.
func (r *reader) decrypt(data []byte, source, format string) ([]byte, error) {
	r.sopsOnce.Do(func() { r.sops = &decryptor{opts: r.opts.Sops, secrets: r.opts.Secrets} })
	return r.sops.decrypt(r.ctx, data, source, format)
}

func (r *reader) rel(real string) string {
	rel, _ := filepath.Rel(r.root, real)
	return filepath.ToSlash(rel)
}

// walk reads the directory at real path dir; shown is the path users see,
// which differs from dir when it was reached through a symlink.
func (r *reader) walk(dir, shown string) error {
	if r.seen[dir] {
		return nil
	}
	r.seen[dir] = true
	r.need(dir, false)
	if name := kustomizationIn(dir); name != "" {
		r.kustomize(dir, shown, name)
		return nil
	}
	if isChart(dir) {
		r.chart(dir, shown)
		return nil
	}
	entries, err := os.ReadDir(dir) // sorted by name
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		path := filepath.Join(dir, name)
		source := pathJoin(shown, name)
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Mode()&os.ModeSymlink != 0 {
			target, err := r.follow(path)
			if err != nil {
				r.errs = append(r.errs, &ManifestError{Source: source, Err: err})
				continue
			}
			path = target
			if info, err = os.Stat(target); err != nil {
				return err
			}
		}
		switch {
		case info.IsDir():
			if err := r.walk(path, source); err != nil {
				return err
			}
		case !slices.Contains(manifestExts, strings.ToLower(filepath.Ext(name))) && filepath.Ext(name) != jsonnetExt:
			continue
		case !info.Mode().IsRegular():
			r.errs = append(r.errs, &ManifestError{Source: source, Err: fmt.Errorf("not a regular file (%s)", info.Mode().Type())})
		case r.checkSize(info.Size()) != nil:
			r.errs = append(r.errs, &ManifestError{Source: source, Err: r.checkSize(info.Size())})
		case filepath.Ext(name) == jsonnetExt:
			r.jsonnet(source)
		default:
			r.pending = append(r.pending, pendingFile{path: path, source: source, objAt: len(r.objs), errAt: len(r.errs)})
		}
	}
	return nil
}

// checkSize refuses a file over MaxFileBytes.
func (r *reader) checkSize(n int64) error { return checkSize(r.opts.MaxFileBytes, n) }

// checkSize refuses a file of n bytes over max, unless max is 0.
func checkSize(max, n int64) error {
	if max > 0 && n > max {
		return fmt.Errorf("file is %d bytes, over the limit of %d", n, max)
	}
	return nil
}

// follow resolves a symlink and refuses targets outside the repository: a
// committed link to /var/run/secrets/... must never be read.
func (r *reader) follow(path string) (string, error) {
	link, err := os.Readlink(path)
	if err != nil {
		return "", err
	}
	escapes := fmt.Errorf("symlink to %q leaves the repository; refused", link)
	// Judge the link text before touching its target, so that nothing
	// outside the repository is even looked at.
	if filepath.IsAbs(link) || !r.inside(filepath.Join(filepath.Dir(path), link)) {
		return "", escapes
	}
	r.needLink(filepath.Dir(path), link)
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("broken symlink to %q", link)
	}
	if !r.inside(target) { // through a chain of links
		return "", escapes
	}
	return target, nil
}

func (r *reader) inside(path string) bool { return inside(r.root, path) }

// inside says whether path is root or under it.
func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && filepath.IsLocal(rel)
}

func pathJoin(dir, name string) string {
	if dir == "." || dir == "" {
		return name
	}
	return dir + "/" + name
}

// readDocs decodes every document of data, read from source.
func (r *reader) readDocs(data []byte, source string, first int) {
	if err := r.count(len(data)); err != nil {
		r.errs = append(r.errs, &ManifestError{Source: source, Err: err})
		return
	}
	objs, errs := parseDocs(data, source, first)
	r.objs, r.errs = append(r.objs, objs...), append(r.errs, errs...)
}

// parseDocs decodes every document of one file, numbering them from first
// (1, but for a document that a chart template rendered among others).
// Parse errors are collected rather than returned, so that one run reports
// every broken file.
func parseDocs(data []byte, source string, first int) (objs []*Object, errs []error) {
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	for doc := first; ; doc++ {
		raw, err := docs.Read()
		if err == io.EOF {
			return objs, errs
		}
		if err != nil {
			return objs, append(errs, &ManifestError{Source: source, Doc: doc, Err: err})
		}
		us, err := decode(raw)
		if err != nil {
			errs = append(errs, &ManifestError{Source: source, Doc: doc, Err: inFile(err, data, doc-first+1)})
			continue
		}
		for _, o := range us {
			objs = append(objs, &Object{Source: source, Doc: doc, Obj: o})
		}
	}
}

// decodeAll decodes a stream of documents, stopping at the first fault.
func decodeAll(data []byte) ([]*unstructured.Unstructured, error) {
	docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
	var all []*unstructured.Unstructured
	for doc := 1; ; doc++ {
		raw, err := docs.Read()
		if err == io.EOF {
			return all, nil
		}
		if err == nil {
			var objs []*unstructured.Unstructured
			objs, err = decode(raw)
			all = append(all, objs...)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d: %w", doc, err)
		}
	}
}

// decode turns one YAML or JSON document into objects: none for an empty
// document, the items of a List, or the object itself.
func decode(raw []byte) ([]*unstructured.Unstructured, error) {
	j, err := toJSON(raw)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(j, &v); err != nil {
		return nil, err
	}
	return fromValue(v)
}

// fromValue turns one decoded document into objects: none for null, the
// items of a List, or the object itself.
func fromValue(v any) ([]*unstructured.Unstructured, error) {
	if v == nil {
		return nil, nil
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("not a Kubernetes object: the document is a %s, not a mapping", jsonType(v))
	}
	u := &unstructured.Unstructured{Object: m}
	if err := checkObject(u); err != nil {
		return nil, err
	}
	if !u.IsList() {
		return []*unstructured.Unstructured{u}, nil
	}
	list, err := u.ToList()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", u.GetKind(), err)
	}
	out := make([]*unstructured.Unstructured, 0, len(list.Items))
	for i := range list.Items {
		item := &list.Items[i]
		if err := checkObject(item); err != nil {
			return nil, fmt.Errorf("%s item %d: %w", u.GetKind(), i, err)
		}
		out = append(out, item)
	}
	return out, nil
}

func checkObject(u *unstructured.Unstructured) error {
	var missing []string
	if u.GetAPIVersion() == "" {
		missing = append(missing, "apiVersion")
	}
	if u.GetKind() == "" {
		missing = append(missing, "kind")
	}
	if len(missing) > 0 {
		return fmt.Errorf("not a Kubernetes object: %s missing", strings.Join(missing, " and "))
	}
	if _, err := schema.ParseGroupVersion(u.GetAPIVersion()); err != nil {
		return fmt.Errorf("apiVersion %q: %w", u.GetAPIVersion(), err)
	}
	if u.IsList() {
		return nil
	}
	if u.GetName() == "" {
		if u.GetGenerateName() != "" {
			return fmt.Errorf("%s: metadata.generateName cannot be applied; set metadata.name", u.GetKind())
		}
		return fmt.Errorf("%s: metadata.name is missing", u.GetKind())
	}
	return nil
}

func jsonType(v any) string {
	switch v.(type) {
	case []any:
		return "list"
	case string:
		return "string"
	case float64:
		return "number"
	case bool:
		return "boolean"
	}
	return fmt.Sprintf("%T", v)
}
