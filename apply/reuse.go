package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/cronsync/cronsync/render"
)

// A new commit usually changes a few files. The last complete run recorded
// which Git blob each plain file it read was, and what objects the file
// held; render.Commit takes an unchanged file's objects from that record
// (identity and digest only) instead of reading it. Such a stand-in may
// only ever be decided unchanged from its LIST: if one is not, the run
// starts over and reads the whole commit (errReread), before anything is
// written.

// errReread: an object taken from the record needs more than its LIST; the
// run reads the whole commit instead.
var errReread = errors.New("an object taken from the last run's record changed in the cluster")

// reuseOf builds the stand-ins of rec's files.
func reuseOf(rec commitRecord) (*render.Reuse, bool) {
	r := &render.Reuse{Files: rec.Files, Objects: map[string][]*render.Object{}}
	for _, o := range rec.Objects {
		if rec.Files[o[4]] == "" {
			continue
		}
		obj, err := standIn(o)
		if err != nil {
			return nil, false
		}
		obj.Plain, obj.Recorded = true, true
		r.Objects[o[4]] = append(r.Objects[o[4]], obj)
	}
	return r, true
}

// readCommit reads the commit's objects: from Git and the last run's record
// where it can, else from its files on disk.
func (s *syncer) readCommit(ctx context.Context) ([]*render.Object, error) {
	var reuse *render.Reuse
	if s.fastEnabled() && !s.opts.noTreeRead && s.cachedRecord != nil {
		if r, ok := reuseOf(*s.cachedRecord); ok {
			reuse = r
		}
	}
	objs, n, err := s.opts.Commit.Read(ctx, reuse)
	if n > 0 {
		fmt.Fprintf(s.opts.Out, "cronsync: %d manifest files are as the last complete run read them; reading the others from Git\n", n)
	}
	return objs, err
}

// mustReread says whether a stand-in from the record needs more than its
// LIST: then the run reads the whole commit instead.
func mustReread(p *plan) bool {
	for _, it := range slices.Concat(p.first, p.rest) {
		if it.Recorded && !it.fast {
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
	blobs := s.opts.Commit.Blobs(ctx)
	if blobs == nil {
		return nil
	}
	bad := map[string]bool{}
	for _, it := range items {
		if !it.Plain || it.GroupKind() == crdGK || it.crd != nil {
			bad[it.Source] = true
		}
	}
	files := map[string]string{}
	for _, it := range items {
		if h := blobs[it.Source]; h != "" && !bad[it.Source] {
			files[it.Source] = h
		}
	}
	return files
}
