package apply

import (
	"context"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
)

// A new commit usually changes a few files. When the last complete run
// recorded, with options that shape objects the same way, which Git blob
// each plain manifest file was and what objects it held, a file whose blob
// is unchanged holds the same objects: the run takes them from the record
// (identity and digest, marked Object.recorded) instead of writing the file
// out and parsing it, and reads only the other files, straight from Git.
//
// Only a tree of plain manifest files is read this way: no kustomization,
// no chart, no symlink anywhere in the commit, so that nothing but the walk
// below reads a file. An object taken from the record may only ever be
// decided unchanged from its LIST; if one is not, the run starts over and
// reads the whole commit (errReread), before anything is written.

// Tree is the commit as Git records it.
type Tree struct {
	// Files maps each regular file's path (from the repository root, with
	// forward slashes) to its blob hash.
	Files map[string]string
	// Others are the paths of symlinks and submodules.
	Others []string
	// Read returns a file's content by its blob hash.
	Read func(hash string) ([]byte, error)
}

// errReread: an object taken from the record needs more than its LIST; the
// run reads the whole commit instead.
var errReread = errors.New("an object taken from the last run's record changed in the cluster")

// plain says whether t holds plain manifest files only, which is all the
// tree walk understands.
func (t *Tree) plain() bool {
	if len(t.Others) > 0 {
		return false
	}
	for p := range t.Files {
		if base := path.Base(p); base == chartFile || slices.Contains(kustomizationNames, base) {
			return false
		}
	}
	return true
}

// readTree reads dir (relative to the root, "." for the root) from t as
// Read would from disk: same files, same order, same sources. A file whose
// blob is known[source] yields recorded[source] without being read.
// ok is false when dir is not a directory of t, for the disk to say why.
func readTree(ctx context.Context, t *Tree, dir string, opts ReadOptions, known map[string]string, recorded map[string][]*Object) (objs []*Object, fromRecord int, ok bool, err error) {
	children := map[string][]string{}
	isDir := map[string]bool{}
	for p := range t.Files {
		if dir != "." && !strings.HasPrefix(p, dir+"/") {
			continue
		}
		for p != dir && p != "." {
			parent := path.Dir(p)
			if _, seen := isDir[p]; seen {
				break
			}
			isDir[p] = false
			children[parent] = append(children[parent], path.Base(p))
			p = parent
		}
	}
	if len(children) == 0 {
		return nil, 0, false, nil
	}
	// A path that leads to a file was recorded first as not a directory.
	for d := range children {
		isDir[d] = true
	}
	r := &reader{ctx: ctx, opts: opts}
	var walk func(dir string)
	walk = func(dir string) {
		names := children[dir]
		slices.Sort(names) // as os.ReadDir
		for _, name := range names {
			if strings.HasPrefix(name, ".") {
				continue
			}
			source := pathJoin(dir, name)
			switch {
			case isDir[source]:
				walk(source)
			case !slices.Contains(manifestExts, strings.ToLower(path.Ext(name))):
			case known[source] != "" && known[source] == t.Files[source]:
				r.objs = append(r.objs, recorded[source]...)
				fromRecord++
			default:
				hash := t.Files[source]
				r.pending = append(r.pending, pendingFile{source: source, objAt: len(r.objs), errAt: len(r.errs),
					read: func() ([]byte, error) { return t.Read(hash) }})
			}
		}
	}
	walk(dir)
	if err := r.parsePending(); err != nil {
		return nil, 0, true, err
	}
	return r.objs, fromRecord, true, errors.Join(r.errs...)
}

// recordedCache is what the last complete run recorded of its plain files,
// usable when this run's options shape objects the same way.
type recordedCache struct {
	// files maps a source to its blob hash then.
	files map[string]string
	// objects are each source's objects then, as stand-ins.
	objects map[string][]*Object
}

// newRecordedCache builds the stand-ins of rec's files.
func newRecordedCache(rec commitRecord) (*recordedCache, bool) {
	c := &recordedCache{files: rec.Files, objects: map[string][]*Object{}}
	for _, o := range rec.Objects {
		if rec.Files[o[4]] == "" {
			continue
		}
		obj, err := standIn(o)
		if err != nil {
			return nil, false
		}
		obj.plain, obj.recorded = true, true
		c.objects[o[4]] = append(c.objects[o[4]], obj)
	}
	return c, true
}

// readCommit reads the commit's objects: from Git and the last run's record
// where it can, else from its files on disk.
func (s *syncer) readCommit(ctx context.Context, ro ReadOptions) ([]*Object, error) {
	if s.fastEnabled() && !s.opts.noTreeRead && s.cachedRecord != nil {
		t, err := s.tree(ctx)
		cache, ok := newRecordedCache(*s.cachedRecord)
		if err == nil && ok && t.plain() {
			objs, n, ok, err := readTree(ctx, t, s.opts.Path, ro, cache.files, cache.objects)
			if ok {
				if n > 0 {
					fmt.Fprintf(s.opts.Out, "cronsync: %d manifest files are as the last complete run read them; reading the others from Git\n", n)
				}
				return objs, err
			}
		}
	}
	root, dir := s.opts.Root, s.opts.Dir
	if s.opts.Files != nil {
		var err error
		if root, dir, err = s.opts.Files(ctx); err != nil {
			return nil, err
		}
	}
	return Read(ctx, root, dir, ro)
}

// tree lists the commit's tree once.
func (s *syncer) tree(ctx context.Context) (*Tree, error) {
	if s.treeList == nil && s.opts.Tree != nil {
		t, err := s.opts.Tree(ctx)
		if err != nil {
			return nil, err
		}
		s.treeList = t
	}
	if s.treeList == nil {
		return nil, errors.New("no tree")
	}
	return s.treeList, nil
}

// mustReread says whether a stand-in from the record needs more than its
// LIST: then the run reads the whole commit instead.
func mustReread(p *plan) bool {
	for _, it := range slices.Concat(p.first, p.rest) {
		if it.recorded && !it.fast {
			return true
		}
	}
	return false
}

// cacheableFiles maps the sources of items that a later run may take from
// the record to their blob hashes: plain files holding no CRD and no
// resource of a CRD of the commit (those wait for their CRD, after the
// first writes, where a run can no longer start over).
func (s *syncer) cacheableFiles(ctx context.Context, items []*item) map[string]string {
	t, err := s.tree(ctx)
	if err != nil {
		return nil
	}
	bad := map[string]bool{}
	for _, it := range items {
		if !it.plain || it.GroupKind() == crdGK || it.crd != nil {
			bad[it.Source] = true
		}
	}
	files := map[string]string{}
	for _, it := range items {
		if h := t.Files[it.Source]; h != "" && !bad[it.Source] {
			files[it.Source] = h
		}
	}
	return files
}
