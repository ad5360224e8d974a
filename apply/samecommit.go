package apply

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/cronsync/cronsync/render"
)

// Most scheduled runs meet the commit the last run applied. When that run
// was complete, its desired objects are known without reading a file: the
// same commit, path and options give the same objects with the same
// digests. It records, next to the fingerprints, a stamp of what it read
// (Revision, every option that shapes the desired objects, the digest key,
// cronsync's version) and the identity of each object in apply order.
//
// A later run with the same stamp lists each resource and namespace, as
// any no-change run does, and needs every recorded object decided from its
// LIST by the fingerprint rule of fast.go. A fingerprint that matches means
// nobody has touched what cronsync owns since that run applied it, digest
// annotation included, so the object is what this commit wants. Anything
// else (an object absent, a fingerprint that differs, a member to prune, a
// membership to rewrite, a kind that no longer maps) makes the run read the
// commit and take the ordinary path: this one only ever concludes "nothing
// to do", and it never sends an object, so the stand-ins it builds from the
// record cannot reach a write.
//
// What the files alone do not decide is never recorded: a run that rendered
// a Helm chart (lookup and capabilities read the cluster), that let
// kustomize load remote resources, or whose objects name dependencies (on
// objects outside the commit, whose absence the ordinary path reports).
const (
	// commitRecordKey is the parent's data key holding the record, when it
	// fits there beside the fingerprints (else see shards.go).
	commitRecordKey = "cronsync-commit"
)

// commitRecord is what a complete run records of the commit it applied.
type commitRecord struct {
	// Stamp hashes the revision and options it was applied with; Config
	// the options alone (see tree.go).
	Stamp  string
	Config string
	// Files maps the plain files a later run may take from the record to
	// their blob hashes.
	Files map[string]string
	// Objects are [apiVersion, kind, namespace, name, source, doc, digest
	// annotation], in the order the run reported them.
	Objects [][7]string
}

// configStamp hashes what decides the desired objects besides the commit:
// equal stamps, the same file gives the same objects.
func (s *syncer) configStamp(digestKey []byte) string {
	o := s.opts
	h := sha256.New()
	fmt.Fprintf(h, "v1\x00%s\x00%s\x00%s\x00%s\x00%s\x00%t\x00%s\x00%t\x00%t\x00%t\x00",
		o.Commit.Stamp(), o.Version, o.Build, o.Namespace, o.FieldManager, o.ForceConflicts,
		o.ApplySet.id(), o.Prune, o.PruneAllowEmpty, o.PruneNamespacesAndCRDs)
	// A commit holding the Lease is refused only when runs hold it.
	fmt.Fprintf(h, "%s\x00", o.Lease)
	h.Write(digestKey)
	return hex.EncodeToString(h.Sum(nil))
}

// stamp adds the revision to configStamp: equal stamps, equal objects.
func (s *syncer) stamp(digestKey []byte) string {
	h := sha256.Sum256([]byte(s.configStamp(digestKey) + "\x00" + s.opts.Revision))
	return hex.EncodeToString(h[:])
}

// standIn is the object a record entry stands for: its identity and
// digest annotation, nothing that may be sent.
func standIn(o [7]string) (*render.Object, error) {
	doc, err := strconv.Atoi(o[5])
	if err != nil {
		return nil, err
	}
	// Built whole rather than field by field: a run over a recorded commit
	// makes one for each of its objects before its first LIST.
	// Equal digests are the first fact of fast.go's rule, as on any run.
	md := map[string]any{"name": o[3], "annotations": map[string]any{digestAnn: o[6]}}
	if o[2] != "" {
		md["namespace"] = o[2]
	}
	u := &unstructured.Unstructured{Object: map[string]any{"apiVersion": o[0], "kind": o[1], "metadata": md}}
	return &render.Object{Source: o[4], Doc: doc, Obj: u}, nil
}

// recordable says whether a run over items may leave a record: only the
// files, read locally, made them.
func (s *syncer) recordable(items []*item) bool {
	if s.opts.Revision == "" || !s.opts.Commit.FromFilesAlone() {
		return false
	}
	for _, it := range items {
		if _, ok := annotation(it.Obj, dependsOnAnn); ok {
			return false
		}
	}
	return true
}

// startRecord encodes, beside the checks, the record a complete run over
// items would leave: their identities and digests are final once digestAll
// has run, and compressing them is the costliest part of a run that
// changes little. It reads items now, so that no write can race it.
func (s *syncer) startRecord(ctx context.Context, items []*item) {
	if !s.recordable(items) {
		return
	}
	rec := s.commitRecordOf(ctx, items)
	r := &recordEncoding{done: make(chan struct{})}
	s.record = r
	go func() {
		defer close(r.done)
		r.enc, r.err = encodeCommitRecord(rec)
	}()
}

// recordEncoding is startRecord's work.
type recordEncoding struct {
	enc  string
	err  error
	done chan struct{}
}

// encodedRecord returns the record of a complete run over items, encoded,
// or "" when the run may leave none.
func (s *syncer) encodedRecord(ctx context.Context, items []*item) (string, error) {
	if s.record == nil {
		s.startRecord(ctx, items)
	}
	if s.record == nil {
		return "", nil
	}
	<-s.record.done
	return s.record.enc, s.record.err
}

// commitRecordOf is the record of a complete run over items.
func (s *syncer) commitRecordOf(ctx context.Context, items []*item) commitRecord {
	rec := commitRecord{Stamp: s.stamp(s.digestKey), Config: s.configStamp(s.digestKey), Files: s.cacheableFiles(ctx, items)}
	for _, it := range items {
		o := it.Obj
		digest, _ := annotation(o, digestAnn)
		rec.Objects = append(rec.Objects, [7]string{o.GetAPIVersion(), o.GetKind(), o.GetNamespace(), o.GetName(), it.Source, strconv.Itoa(it.Doc), digest})
	}
	return rec
}

// recordFormat opens an encoded record. The fields that follow are
// separated by NUL, which no Kubernetes name, kind, namespace or API
// version, no Git path and no digest can hold: stamp, config, the number of
// files, each file and its blob hash, then seven fields for each object.
// A separated list decodes in a tenth of the time JSON takes, and every
// scheduled run at an applied commit decodes it before its first LIST.
const recordFormat = "cronsync-record-v2"

func encodeCommitRecord(rec commitRecord) (string, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := bufio.NewWriter(zw)
	var bad error
	field := func(v string) {
		if strings.IndexByte(v, 0) >= 0 {
			bad = fmt.Errorf("record field %q holds a NUL", v)
		}
		w.WriteString(v)
		w.WriteByte(0)
	}
	field(recordFormat)
	field(rec.Stamp)
	field(rec.Config)
	field(strconv.Itoa(len(rec.Files)))
	for _, f := range slices.Sorted(maps.Keys(rec.Files)) {
		field(f)
		field(rec.Files[f])
	}
	for _, o := range rec.Objects {
		for _, v := range o {
			field(v)
		}
	}
	if bad != nil {
		return "", bad
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// decodeCommitRecord reads a record as stored; false if there is none or
// it is not one as encodeCommitRecord writes it, byte for byte (files in
// order, the count as written): a record damaged into another that still
// reads is no record.
func decodeCommitRecord(raw string) (commitRecord, bool) {
	var rec commitRecord
	gz, err := base64.StdEncoding.DecodeString(raw)
	if raw == "" || err != nil {
		return rec, false
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return rec, false
	}
	plain, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil || len(plain) == 0 || plain[len(plain)-1] != 0 {
		return rec, false
	}
	fields := strings.Split(string(plain[:len(plain)-1]), "\x00")
	if len(fields) < 4 || fields[0] != recordFormat {
		return rec, false
	}
	rec.Stamp, rec.Config = fields[1], fields[2]
	count := fields[3]
	n, err := strconv.Atoi(count)
	fields = fields[4:]
	if err != nil || n < 0 || count != strconv.Itoa(n) || 2*n > len(fields) || (len(fields)-2*n)%7 != 0 || rec.Stamp == "" {
		return commitRecord{}, false
	}
	if n > 0 {
		rec.Files = make(map[string]string, n)
		for i := range n {
			if i > 0 && fields[2*i] <= fields[2*i-2] {
				return commitRecord{}, false
			}
			rec.Files[fields[2*i]] = fields[2*i+1]
		}
	}
	fields = fields[2*n:]
	rec.Objects = make([][7]string, len(fields)/7)
	for i := range rec.Objects {
		rec.Objects[i] = [7]string(fields[7*i : 7*i+7])
	}
	return rec, true
}

// sameCommit decides the whole run from the LISTs when the parent's record
// says the last run applied this revision completely with these options,
// and the cluster shows nothing has moved since. It reports each object
// into res and returns true; false means the run must read the commit and
// take the ordinary path, and res is untouched.
func (s *syncer) sameCommit(ctx context.Context, res *Result) bool {
	if !s.fastEnabled() || s.opts.Revision == "" {
		return false
	}
	recorded, err := s.readParent(ctx)
	if err != nil {
		return false
	}
	s.parentRead = &recorded
	if s.parent == nil {
		return false
	}
	key, isNew := digestKeyFrom(s.parent)
	rec, ok := decodeCommitRecord(s.recordedCommit)
	if isNew || !ok {
		return false
	}
	if rec.Config == s.configStamp(key) && s.opts.Commit.Path != "" {
		s.cachedRecord = &rec // its stand-ins are made only if the commit is read
	}
	if rec.Stamp != s.stamp(key) {
		return false
	}
	s.digestKey = key

	// Each recorded object's mapping, and the resource and namespace it is
	// listed with. Stand-ins are made a group at a time, beside its LIST,
	// and only their results kept: at 50,000 objects, stand-ins for all at
	// once were most of the run's memory.
	mapped := make([]*meta.RESTMapping, len(rec.Objects))
	mappings := map[[2]string]*meta.RESTMapping{}
	want := newMembers()
	var inCommit map[string]bool
	if s.opts.Prune {
		inCommit = make(map[string]bool, len(rec.Objects))
	}
	groups := map[string][]int{}
	var keys []string
	for i, o := range rec.Objects {
		m, ok := mappings[[2]string{o[0], o[1]}]
		if !ok {
			gv, err := schema.ParseGroupVersion(o[0])
			if err != nil {
				return false
			}
			if m, err = s.mapper.RESTMappingWithContext(ctx, gv.WithKind(o[1]).GroupKind(), gv.Version); err != nil {
				return false
			}
			mappings[[2]string{o[0], o[1]}] = m
		}
		if namespaced := m.Scope.Name() == meta.RESTScopeNameNamespace; namespaced != (o[2] != "") {
			return false
		}
		mapped[i] = m
		gk := m.GroupVersionKind.GroupKind()
		want.add(gk, o[2])
		if inCommit != nil {
			inCommit[memberKey(gk, o[2], o[3])] = true
		}
		k := listedKey(m.Resource.GroupResource(), o[2])
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	// The ordinary path would rewrite a membership other than this: the
	// commit's after a prune, else the commit's added to what was recorded.
	if !s.opts.Prune {
		want = recorded.union(want)
	}
	if !subset(s.membershipAnnotations(want, s.opts.Version), s.parentAnnotations) {
		return false
	}
	if s.salts, err = s.firstSalts(ctx); err != nil {
		return false
	}

	// With --prune, the set's other resources and namespaces are listed by
	// label beside them: every resource and namespace of the commit is
	// listed whole here.
	if s.opts.Prune {
		covered := map[string]bool{}
		for _, k := range keys {
			covered[k] = true
		}
		s.prefetchMembers(ctx, recorded, covered)
	}
	// One metadata LIST per resource and namespace, up to --workers at once.
	rs := make([]ObjectResult, len(rec.Objects))
	var undecided atomic.Bool
	s.parallel(len(keys), func(g int) {
		if s.stop.Err() != nil || undecided.Load() {
			undecided.Store(true)
			return
		}
		idx := groups[keys[g]]
		items := make([]*item, len(idx))
		for j, i := range idx {
			obj, err := standIn(rec.Objects[i])
			if err != nil {
				undecided.Store(true)
				return
			}
			items[j] = &item{Object: obj, mapping: mapped[i]}
		}
		s.decideFromMetadata(ctx, items)
		for _, it := range items {
			if !it.fast {
				undecided.Store(true)
				return
			}
		}
		for j, r := range s.results(items) {
			rs[idx[j]] = r
		}
	})
	if undecided.Load() {
		return false
	}
	if s.opts.Prune {
		if targets, err := s.pruneTargets(ctx, inCommit, recorded); err != nil || len(targets) > 0 {
			return false
		}
	}
	if s.stop.Err() != nil {
		return false
	}
	fmt.Fprintln(s.opts.Out, "cronsync: the last run applied this commit and path completely with these options; deciding from the LISTs, without reading its files")
	s.printAll(rs)
	res.Objects = append(res.Objects, rs...)
	return true
}

// forgetShortcut drops what a sameCommit that returned false learnt of the
// cluster, so that the ordinary path reads it for itself.
func (s *syncer) forgetShortcut() {
	s.salts, s.listed, s.prefetch = nil, nil, nil
}

// recordedData is one of the parent Secret's data values, base64 as stored.
func recordedData(parent *unstructured.Unstructured, key string) string {
	v, _, _ := unstructured.NestedString(parent.Object, "data", key)
	return v
}
