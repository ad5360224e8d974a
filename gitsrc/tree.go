package gitsrc

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// A tree object is whatever its author wrote: `git hash-object --literally`
// makes entry names with a "/" in them, "..", ".git", and two entries of one
// name, and servers hand such trees out (fsck is off by default). A name
// with a "/" behind a symlink entry of the same tree made an earlier
// cronsync write through the link, outside the clone. So every name is
// checked as git checks paths before it is used, and everything is written
// through an os.Root of the checkout directory, which refuses to follow a
// link out of it whatever the names say: either one alone would have
// stopped that write.

// maxTreeDepth is how deeply trees may nest, as git's core.maxTreeDepth
// (2048 by default) bounds it.
const maxTreeDepth = 2048

// hfsIgnorable are the code points HFS+ ignores in names, which git strips
// before comparing a name with ".git" (is_hfs_dotgit).
var hfsIgnorable = strings.NewReplacer(
	"\u200c", "", "\u200d", "", "\u200e", "", "\u200f", "",
	"\u202a", "", "\u202b", "", "\u202c", "", "\u202d", "", "\u202e", "",
	"\u206a", "", "\u206b", "", "\u206c", "", "\u206d", "", "\u206e", "", "\u206f", "",
	"\ufeff", "")

// checkName says why git would refuse name as a tree entry's, if it would.
func checkName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("an empty entry name")
	case name == "." || name == "..":
		return fmt.Errorf("an entry named %q", name)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("an entry name with a %q in it", "/")
	}
	// .git in any case, and what Windows and macOS file systems read as it
	// (".git.", ".git ", "git~1", ".g\u200cit"), as git's verify_path.
	folded := strings.TrimRight(hfsIgnorable.Replace(name), ". ")
	if strings.EqualFold(folded, ".git") || strings.EqualFold(folded, "git~1") {
		return fmt.Errorf("an entry named %q", name)
	}
	return nil
}

// unsafeEntry is the error for a tree git itself would refuse to check out.
func unsafeEntry(p string, format string, args ...any) error {
	return &classed{class: ErrUnsafe, msg: fmt.Sprintf("tree %q holds %s; git refuses such a tree, and so does cronsync", p, fmt.Sprintf(format, args...))}
}

// walkTree calls fn for every entry under tree, parents before their
// children, with its path from the top (below prefix). It refuses the whole
// tree if any name in it is one git would not check out.
func walkTree(ctx context.Context, objects storer.EncodedObjectStorer, tree *object.Tree, prefix string, fn func(path string, e object.TreeEntry) error) error {
	return walkLevel(ctx, objects, tree, prefix, 0, fn)
}

func walkLevel(ctx context.Context, objects storer.EncodedObjectStorer, tree *object.Tree, prefix string, depth int, fn func(string, object.TreeEntry) error) error {
	here := prefix
	if here == "" {
		here = "."
	}
	if depth > maxTreeDepth {
		return unsafeEntry(here, "trees nested more than %d deep", maxTreeDepth)
	}
	// Names are checked for the whole level first, so that nothing of a
	// tree with a bad name in it is written.
	seen := make(map[string]bool, len(tree.Entries))
	for _, e := range tree.Entries {
		if err := checkName(e.Name); err != nil {
			return unsafeEntry(here, "%v", err)
		}
		if seen[e.Name] {
			return unsafeEntry(here, "two entries named %q", e.Name)
		}
		seen[e.Name] = true
	}
	for _, e := range tree.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		p := path.Join(prefix, e.Name)
		if err := fn(p, e); err != nil {
			return err
		}
		if e.Mode != filemode.Dir {
			continue
		}
		sub, err := object.GetTree(objects, e.Hash)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		if err := walkLevel(ctx, objects, sub, p, depth+1, fn); err != nil {
			return err
		}
	}
	return nil
}

// Limits bound what one commit may make a run store.
type Limits struct {
	// ObjectBytes is the largest object (a file, a tree) a fetch accepts
	// and a checkout writes; 0 means no limit. It is checked from the
	// object's header, before the object is inflated.
	ObjectBytes int64
	// TreeBytes is the most a checkout writes out, submodules included;
	// 0 means no limit.
	TreeBytes int64
}

// writer writes trees into one directory, within Limits.
type writer struct {
	root    *os.Root
	limits  Limits
	written int64
}

// writeTree writes the files of commit under dir, a path inside w.root
// ("." for the top). Symlinks are written as symlinks so that the reader,
// which knows the repository root, decides whether following one is
// allowed; submodules are returned, for the caller to follow or leave out.
func (w *writer) writeTree(ctx context.Context, objects storer.EncodedObjectStorer, commit *object.Commit, dir string) (links []gitlink, _ error) {
	tree, err := commit.Tree()
	if err != nil {
		return nil, err
	}
	if err := w.root.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	prefix := dir
	if dir == "." {
		prefix = ""
	}
	// The whole tree is walked, and every name in it checked, before the
	// first file is written.
	type entry struct {
		name string
		e    object.TreeEntry
	}
	var entries []entry
	err = walkTree(ctx, objects, tree, prefix, func(name string, e object.TreeEntry) error {
		entries = append(entries, entry{name, e})
		return nil
	})
	for _, it := range entries {
		if err != nil {
			break
		}
		if err = ctx.Err(); err != nil {
			break
		}
		name, e := it.name, it.e
		switch e.Mode {
		case filemode.Dir:
			err = w.root.Mkdir(name, 0o755)
		case filemode.Submodule:
			links = append(links, gitlink{path: strings.TrimPrefix(name, prefix+"/"), hash: e.Hash})
		case filemode.Symlink:
			var target strings.Builder
			if err = w.copyBlob(objects, name, e.Hash, &target); err == nil {
				err = w.root.Symlink(target.String(), name)
			}
		default:
			var out *os.File
			if out, err = w.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644); err != nil {
				break
			}
			err = w.copyBlob(objects, name, e.Hash, out)
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
	}
	return links, err
}

// copyBlob copies the blob h, the file name, into out, within the limits:
// its size is judged from its header before it is read.
func (w *writer) copyBlob(objects storer.EncodedObjectStorer, name string, h plumbing.Hash, out io.Writer) error {
	obj, err := objects.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	size := obj.Size()
	if w.limits.ObjectBytes > 0 && size > w.limits.ObjectBytes {
		return &TooLargeError{Path: name, Size: size, Limit: w.limits.ObjectBytes, What: "--max-object-bytes"}
	}
	if w.limits.TreeBytes > 0 && w.written+size > w.limits.TreeBytes {
		return &TooLargeError{Path: name, Size: w.written + size, Limit: w.limits.TreeBytes, What: "--max-checkout-bytes: the files written so far and this one"}
	}
	r, err := obj.Reader()
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	defer r.Close()
	// The header said size; a store that hands out more is not believed.
	n, err := io.Copy(out, io.LimitReader(r, size))
	w.written += n
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
