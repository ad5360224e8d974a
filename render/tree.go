package render

import (
	"context"
	"errors"
	"path"
	"slices"
	"strings"
)

// A new commit usually changes a few files. When the last complete run
// recorded, with options that shape objects the same way, which Git blob
// each plain manifest file was and what objects it held, a file whose blob
// is unchanged holds the same objects: the run takes them from the record
// (identity and digest, marked Object.Recorded) instead of writing the file
// out and parsing it, and reads only the other files, straight from Git.
//
// Only a directory of plain manifest files is read this way: no
// kustomization, no chart, no Jsonnet, no symlink and no submodule under
// it, so that nothing but the walk below reads a file, and nothing outside
// it is read at all. What the rest of the commit holds (code beside the
// manifests, say, or other paths' kustomizations) does not matter. An object taken from the record may only ever be
// decided unchanged from its LIST; if one is not, the run starts over and
// reads the whole commit (Commit.Read without Reuse), before anything is written.

// Tree is the commit as Git records it.
type Tree struct {
	// Files maps each regular file's path (from the repository root, with
	// forward slashes) to its blob hash.
	Files map[string]string
	// Others are the paths of symlinks and submodules.
	Others []string
	// Read returns a file's content by its blob hash.
	Read func(hash string) ([]byte, error)
	// Fetch, when set, is called with the blobs a read needs before any
	// is read, so that they come in one request (a partial checkout).
	Fetch func(ctx context.Context, hashes []string) error
}

// plain says whether t holds plain manifest files only under dir, which is
// all the tree walk understands.
func (t *Tree) plain(dir string) bool {
	under := func(p string) bool { return dir == "." || strings.HasPrefix(p, dir+"/") }
	for _, p := range t.Others {
		if under(p) {
			return false
		}
	}
	for p := range t.Files {
		if !under(p) {
			continue
		}
		// A Jsonnet file's objects depend on the files it imports, which
		// the blob of the file itself does not show.
		if base := path.Base(p); base == chartFile || slices.Contains(kustomizationNames, base) || path.Ext(p) == jsonnetExt {
			return false
		}
	}
	return true
}

// readTree reads dir (relative to the root, "." for the root) from t as
// Read would from disk: same files, same order, same sources. A file whose
// blob is known[source] yields recorded[source] without being read.
// ok is false when dir is not a directory of t, for the disk to say why.
func readTree(ctx context.Context, t *Tree, dir string, opts Options, known map[string]string, recorded map[string][]*Object) (objs []*Object, fromRecord int, ok bool, err error) {
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
	var hashes []string
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
				hashes = append(hashes, hash)
				r.pending = append(r.pending, pendingFile{source: source, objAt: len(r.objs), errAt: len(r.errs),
					read: func() ([]byte, error) { return t.Read(hash) }})
			}
		}
	}
	walk(dir)
	if t.Fetch != nil && len(hashes) > 0 {
		if err := t.Fetch(ctx, hashes); err != nil {
			return nil, 0, true, err
		}
	}
	if err := r.parsePending(); err != nil {
		return nil, 0, true, err
	}
	return r.objs, fromRecord, true, errors.Join(r.errs...)
}
