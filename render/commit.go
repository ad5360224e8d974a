package render

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
)

// Commit is one commit's files, read only when a run needs its objects: a
// run decided from the record of the last one never does.
type Commit struct {
	// Path is the directory whose manifests are read, relative to the
	// repository root, with forward slashes ("." for the root).
	Path string
	// Files writes the commit's files out and returns the repository root
	// and Path's directory on disk. No file outside the root is read, even
	// through a symlink.
	Files func(context.Context) (root, dir string, err error)
	// Need, when set, makes what is at a path of the commit (from the
	// repository root, with forward slashes) present under the root Files
	// returned before it is read: Files wrote only Path's files (a
	// partial checkout). whole: everything under a directory is read at
	// once, by a reader that does not ask again (a chart's, in another
	// process). nil: Files wrote every file.
	Need func(ctx context.Context, path string, whole bool) error
	// Tree lists the commit as Git records it and reads its files by blob
	// hash, so that a plain tree can be read without writing it out (see
	// tree.go). nil reads the files on disk.
	Tree func(context.Context) (*Tree, error)
	// Options shape what the files become.
	Options Options

	tree          *Tree
	renderedChart atomic.Bool
}

// Reuse is what the last complete run read of the commit's plain files,
// recorded when its options shaped objects the way this run's do.
type Reuse struct {
	// Files maps each file that may be taken from the record to its blob
	// hash then.
	Files map[string]string
	// Objects are each of those files' objects then, as stand-ins
	// (Object.Recorded).
	Objects map[string][]*Object
}

// Read returns the commit's objects. With reuse, a plain tree is read
// straight from Git, and each file whose blob is the one recorded yields
// reuse's stand-ins without being read; fromRecord counts those files.
// Without it, or when the tree is not plain, every file is written out and
// read.
func (c *Commit) Read(ctx context.Context, reuse *Reuse) (objs []*Object, fromRecord int, err error) {
	opts := c.Options
	if render := opts.RenderChart; render != nil {
		opts.RenderChart = func(ctx context.Context, req ChartRequest) (*ChartOutput, error) {
			c.renderedChart.Store(true)
			return render(ctx, req)
		}
	}
	if reuse != nil {
		t, err := c.listTree(ctx)
		if err == nil && t.plain(c.Path) {
			objs, n, ok, err := readTree(ctx, t, c.Path, opts, reuse.Files, reuse.Objects)
			if ok {
				return objs, n, errors.Join(err, c.finish(ctx, objs, opts))
			}
		}
	}
	if c.Files == nil {
		return nil, 0, errors.New("no files to read")
	}
	root, dir, err := c.Files(ctx)
	if err != nil {
		return nil, 0, err
	}
	objs, err = read(ctx, root, dir, opts, c.Need)
	return objs, 0, errors.Join(err, c.finish(ctx, objs, opts))
}

// finish does what follows every render path, in Flux's order: SOPS
// documents inside Secrets' data are opened, then variables substituted.
func (c *Commit) finish(ctx context.Context, objs []*Object, opts Options) error {
	var d *decryptor
	keys := func() *decryptor {
		if d == nil {
			d = &decryptor{opts: opts.Sops, secrets: opts.Secrets}
		}
		return d
	}
	return errors.Join(decryptSecretData(ctx, objs, keys), substituteAll(objs, opts.Substitute))
}

// FromFilesAlone says whether what Read returned depends on the commit's
// files and Options alone: no Helm chart was rendered (lookup and
// .Capabilities read the cluster) and kustomize could not load anything
// over the network.
func (c *Commit) FromFilesAlone() bool {
	return !c.Options.KustomizeAllowRemote && !c.renderedChart.Load()
}

// Blobs maps every regular file of the commit to its blob hash; nil when
// the tree cannot be listed.
func (c *Commit) Blobs(ctx context.Context) map[string]string {
	t, err := c.listTree(ctx)
	if err != nil {
		return nil
	}
	return t.Files
}

// Stamp identifies what, besides the files, shapes the objects Read
// returns: equal stamps, the same file gives the same objects.
func (c *Commit) Stamp() string {
	return fmt.Sprintf("%s\x00%d\x00%s\x00%s", c.Path, c.Options.MaxFileBytes, c.Options.Jsonnet.stamp(), c.Options.Substitute.stamp())
}

// listTree lists the commit's tree once.
func (c *Commit) listTree(ctx context.Context) (*Tree, error) {
	if c.tree == nil && c.Tree != nil {
		t, err := c.Tree(ctx)
		if err != nil {
			return nil, err
		}
		c.tree = t
	}
	if c.tree == nil {
		return nil, errors.New("no tree")
	}
	return c.tree, nil
}
