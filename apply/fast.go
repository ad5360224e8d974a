package apply

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// A no-change run decides "unchanged" from the LIST it already makes,
// without a dry run, when two facts the server itself wrote prove that
// nothing has touched what cronsync owns since it last applied the same
// desired object:
//
//  1. the object carries digestAnn, the digest of the desired object
//     cronsync applied, and it equals the digest of today's desired object;
//  2. cronsync's own managedFields entry (its field manager, operation
//     Apply, the object's apiVersion) is what it was right after that apply,
//     recorded as a fingerprint in the ApplySet parent. Any other writer that
//     changes or removes a field cronsync owns changes that entry (an Update
//     takes the field over, a forced Apply takes it, a removal drops it),
//     and the server moves its time when the same manager changes a value.
//
// The fingerprint also covers the object's uid (deleted and created again by
// hand) and, for custom resources, their CRD's generation (a schema change
// can change what the same apply stores). Anything else takes the slow path;
// the rule may only err towards it.
//
// The digest is an HMAC under a random key kept in the parent Secret: a
// plain hash of a Secret's manifest, in an annotation anyone allowed to
// list metadata can read, would let a weak password be guessed offline.
const (
	digestAnn = "cronsync.dev/applied-digest"
	// fingerprintsKey is the parent Secret's data key holding the
	// fingerprints, gzip-compressed lines of "key<TAB>fingerprint", when
	// they fit there (else see shards.go).
	fingerprintsKey = "cronsync-fingerprints"
	// fingerprintsManager owns that key on the parent, apart from the
	// membership annotations, so that neither apply drops the other.
	fingerprintsManager = "cronsync-fingerprints"
	// digestKeyKey is the parent's data key holding the HMAC key.
	digestKeyKey = "cronsync-digest-key"
)

// setDigest records the desired object's digest on it, computed over its
// canonical JSON (encoding/json sorts map keys) after cronsync's own
// additions and without the annotation itself. It edits the object's own
// annotations map: a copy for each of 50,000 objects was a tenth of a run's
// memory.
func setDigest(u *unstructured.Unstructured, key []byte) error {
	md, _ := u.Object["metadata"].(map[string]any)
	if md == nil {
		md = map[string]any{}
		u.Object["metadata"] = md
	}
	anns, _ := md["annotations"].(map[string]any)
	delete(anns, digestAnn)
	if len(anns) == 0 {
		delete(md, "annotations")
	}
	b, err := json.Marshal(u.Object)
	if err != nil {
		return err
	}
	mac := hmac.New(sha256.New, key)
	mac.Write(b)
	sum := mac.Sum(nil)
	if anns == nil {
		anns = map[string]any{}
	}
	anns[digestAnn] = base64.RawURLEncoding.EncodeToString(sum[:18])
	md["annotations"] = anns
	return nil
}

// annotation is one of u's annotations, read without copying them all
// (GetAnnotations copies), as runs over many objects ask for them often.
func annotation(u *unstructured.Unstructured, key string) (string, bool) {
	v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "metadata", "annotations", key)
	s, isString := v.(string)
	return s, ok && isString
}

// fingerprint hashes cronsync's managedFields entry on a live object, with
// its uid and salt (a CRD's generation for custom resources). ok is false
// when cronsync owns nothing there.
func fingerprint(live *unstructured.Unstructured, manager, salt string) (string, bool) {
	return fingerprintOf(live.GetUID(), live.GetAPIVersion(), live.GetManagedFields(), manager, salt)
}

// fingerprintOf is fingerprint on an object's metadata, as a metadata-only
// LIST returns it.
func fingerprintOf(uid types.UID, apiVersion string, fields []metav1.ManagedFieldsEntry, manager, salt string) (string, bool) {
	e := findApplyEntry(fields, apiVersion, manager)
	if e == nil {
		return "", false
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00", uid, salt)
	if e.Time != nil {
		fmt.Fprint(h, e.Time.UTC().Format("2006-01-02T15:04:05Z"))
	}
	h.Write([]byte{0})
	if e.FieldsV1 != nil {
		h.Write(e.FieldsV1.Raw)
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:16]), true
}

// applyEntry is manager's Apply entry for the object's own apiVersion on
// the main resource (not a subresource), or nil.
func applyEntry(u *unstructured.Unstructured, manager string) *metav1.ManagedFieldsEntry {
	return findApplyEntry(u.GetManagedFields(), u.GetAPIVersion(), manager)
}

func findApplyEntry(fields []metav1.ManagedFieldsEntry, apiVersion, manager string) *metav1.ManagedFieldsEntry {
	for i, e := range fields {
		if e.Manager == manager && e.Operation == metav1.ManagedFieldsOperationApply && e.APIVersion == apiVersion && e.Subresource == "" {
			return &fields[i]
		}
	}
	return nil
}

// ownedFields returns the fieldsV1 of manager's Apply entry, nil if none.
func ownedFields(u *unstructured.Unstructured, manager string) []byte {
	if e := applyEntry(u, manager); e != nil && e.FieldsV1 != nil {
		return e.FieldsV1.Raw
	}
	return nil
}

// sameOwnership: applying would leave cronsync owning what it owns now. An
// object whose content is right but whose fields another writer took, or
// that was deleted and created again by hand with the same content, is
// configured, so that the fingerprint the next run compares is cronsync's
// own again.
func sameOwnership(live, merged *unstructured.Unstructured, manager string) bool {
	return bytes.Equal(ownedFields(live, manager), ownedFields(merged, manager))
}

// digests says whether objects carry the digest annotation in this run:
// whenever there is an ApplySet to keep its key, in real and dry runs alike
// and whether or not this run decides anything from it, so that neither a
// dry run nor --fast-unchanged=false shows or makes a change of its own.
func (s *syncer) digests() bool { return s.applySet() }

// fastKey identifies an object in the fingerprints.
func fastKey(it *item) string {
	return memberKey(it.GroupKind(), it.Obj.GetNamespace(), it.Obj.GetName())
}

// decodeFingerprints reads fingerprints as stored (base64 of their gzip).
// Anything it cannot read counts as none: those objects take the slow path.
func decodeFingerprints(raw string) map[string]string {
	out := map[string]string{}
	if raw == "" {
		return out
	}
	gz, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		return out
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		return out
	}
	plain, err := io.ReadAll(io.LimitReader(zr, 64<<20))
	if err != nil {
		return map[string]string{}
	}
	sc := bufio.NewScanner(bytes.NewReader(plain))
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), "\t")
		if !ok || k == "" || v == "" {
			return map[string]string{}
		}
		out[k] = v
	}
	if sc.Err() != nil {
		// A line longer than any cronsync writes: damaged, so none.
		return map[string]string{}
	}
	return out
}

// encodeFingerprintLines is decodeFingerprints' inverse for the keys given,
// in their order.
func encodeFingerprintLines(keys []string, fps map[string]string) (string, error) {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	w := bufio.NewWriter(zw)
	for _, k := range keys {
		w.WriteString(k)
		w.WriteByte('\t')
		w.WriteString(fps[k])
		w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		return "", err
	}
	if err := zw.Close(); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// encodeFingerprints encodes as many of fps as fit in limit bytes, for a
// parent that cannot have shards: the rest take the slow path next time.
func encodeFingerprints(fps map[string]string, limit int) (string, error) {
	keys := slices.Sorted(maps.Keys(fps))
	for {
		enc, err := encodeFingerprintLines(keys, fps)
		if err != nil || len(enc) <= limit || len(keys) == 0 {
			return enc, err
		}
		keys = keys[:len(keys)*9/10]
	}
}

// fastEnabled says whether this run may decide objects from the LIST: not
// in a dry run (which always asks the server), not without an ApplySet
// (nowhere to keep fingerprints), not when turned off.
func (s *syncer) fastEnabled() bool {
	return s.opts.FastUnchanged && s.applySet() && s.opts.DryRun == DryRunNone
}

// startSalts reads the CRDs' generations in the background, beside the
// parent's read when the run begins; firstSalts waits for them. The record
// check and the ordinary path after it decide from the same read, which
// comes before every LIST they decide from. A CRD that changes after it is
// seen by the next run, as one that changes after the LISTs would be.
func (s *syncer) startSalts(ctx context.Context) {
	r := &saltsRead{done: make(chan struct{})}
	s.early = r
	go func() {
		defer close(r.done)
		r.salts, r.err = s.crdSalts(ctx)
	}()
}

// saltsRead is startSalts's read.
type saltsRead struct {
	salts map[schema.GroupResource]string
	err   error
	done  chan struct{}
}

func (s *syncer) firstSalts(ctx context.Context) (map[schema.GroupResource]string, error) {
	if s.early == nil {
		return s.crdSalts(ctx)
	}
	<-s.early.done
	return s.early.salts, s.early.err
}

// crdSalts reads, with one metadata-only LIST, the generation of every CRD,
// for the fingerprints of custom resources.
func (s *syncer) crdSalts(ctx context.Context) (map[schema.GroupResource]string, error) {
	list, err := s.meta.Resource(schema.GroupVersionResource{Group: crdGK.Group, Version: "v1", Resource: "customresourcedefinitions"}).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[schema.GroupResource]string{}
	for _, crd := range list.Items {
		// A CRD is named <plural>.<group>.
		plural, group, ok := strings.Cut(crd.GetName(), ".")
		if ok {
			out[schema.GroupResource{Group: group, Resource: plural}] = fmt.Sprint(crd.GetUID(), "/", crd.GetGeneration())
		}
	}
	return out, nil
}

// salt is what an item's fingerprint is bound to besides its own entry.
func (s *syncer) salt(it *item) string {
	if it.mapping == nil {
		return ""
	}
	return s.salts[it.mapping.Resource.GroupResource()]
}

// decideFast marks it unchanged if its live metadata, as a metadata-only
// LIST returns it, proves it, and says so.
func (s *syncer) decideFast(it *item, live *metav1.ObjectMeta) bool {
	if !s.fastEnabled() || live == nil || s.salts == nil {
		return false
	}
	want, ok := s.recordedFPs[fastKey(it)]
	if !ok || !sameDigest(it, live) {
		return false
	}
	got, ok := fingerprintOf(live.UID, it.Obj.GetAPIVersion(), live.ManagedFields, s.opts.FieldManager, s.salt(it))
	if !ok || got != want {
		return false
	}
	it.action, it.fast, it.fp = ActionUnchanged, true, want
	it.seen = seenOf(live)
	return true
}

// sameDigest says whether live carries the digest of it as the commit has
// it: if not, applying it changes the object.
func sameDigest(it *item, live *metav1.ObjectMeta) bool {
	want, _ := annotation(it.Obj, digestAnn)
	return live.Annotations[digestAnn] == want
}

// seenOf keeps of a live object what ObjectResult.Live promises, so that a
// run over thousands of objects holds no more of them than that. cronsync's
// own digest is left out: it is on every object and tells a reader nothing,
// and most objects then keep no annotations at all.
func seenOf(live metav1.Object) *metav1.ObjectMeta {
	var anns map[string]string
	for k, v := range live.GetAnnotations() {
		if k == digestAnn {
			continue
		}
		if anns == nil {
			anns = map[string]string{}
		}
		anns[k] = v
	}
	return &metav1.ObjectMeta{Annotations: anns, DeletionTimestamp: live.GetDeletionTimestamp()}
}

// confirm records the fingerprint of what the server returned for it after
// an apply, or after a dry run that found nothing to change.
func (s *syncer) confirm(it *item, answer *unstructured.Unstructured) {
	if answer == nil {
		return
	}
	it.seen = seenOf(answer)
	if !s.fastEnabled() {
		return
	}
	if fp, ok := fingerprint(answer, s.opts.FieldManager, s.salt(it)); ok {
		it.fp = fp
	}
}

// writeFingerprints stores the fingerprints the run confirmed, and only
// those: an object the run did not confirm (failed, skipped, not reached)
// has none, so the next run takes the slow path for it. A complete run
// (every object confirmed, nothing failed) whose objects the files alone
// decide also records its commit, for samecommit.go.
func (s *syncer) writeFingerprints(ctx context.Context, items []*item, complete bool) error {
	fps := map[string]string{}
	for _, it := range items {
		if it.fp != "" && it.err == nil && it.blocked == nil {
			fps[fastKey(it)] = it.fp
		} else {
			complete = false
		}
	}
	record := ""
	if complete {
		var err error
		if record, err = s.encodedRecord(ctx, items); err != nil {
			return err
		}
	}
	if maps.Equal(fps, s.recordedFPs) && record == s.recordedCommit && !s.newDigestKey {
		return nil // a run that changes nothing writes nothing
	}
	return s.storeFastData(ctx, fps, record)
}

// patchFastData writes the digest key and data (fingerprints, record or
// the shards' index; see shards.go) to the parent, with a field manager of
// their own. What it leaves out, that manager's earlier write loses.
func (s *syncer) patchFastData(ctx context.Context, data map[string]string) error {
	a := s.opts.ApplySet
	all := map[string]string{digestKeyKey: base64.StdEncoding.EncodeToString(s.digestKey)}
	for k, v := range data {
		if v != "" {
			all[k] = v
		}
	}
	patch, err := json.Marshal(map[string]any{
		"apiVersion": "v1", "kind": "Secret",
		"metadata": map[string]any{"name": a.Name, "namespace": a.Namespace},
		"data":     all,
	})
	if err != nil {
		return err
	}
	answer, err := s.meta.Resource(secretsGVR).Namespace(a.Namespace).Patch(ctx, a.Name, types.ApplyPatchType, patch,
		metav1.PatchOptions{FieldManager: fingerprintsManager, Force: new(true)})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("recording fingerprints on ApplySet parent %s: %w", a, err)
	}
	if err == nil {
		s.parentUID = answer.GetUID()
	}
	return nil
}

// digestKeyFrom returns the parent's digest key, or a new one (and true)
// when it has none.
func digestKeyFrom(parent *unstructured.Unstructured) ([]byte, bool) {
	if parent != nil {
		raw, _, _ := unstructured.NestedString(parent.Object, "data", digestKeyKey)
		if key, err := base64.StdEncoding.DecodeString(raw); err == nil && len(key) == 32 {
			return key, false
		}
	}
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	return key, true
}

// digestAll keys the digests of every object of the commit. A new key is
// stored before the first write (storeNewDigestKey), so that a run that
// dies halfway does not make the next one see every digest change.
func (s *syncer) digestAll(items []*item, parent *unstructured.Unstructured) error {
	s.digestKey, s.newDigestKey = digestKeyFrom(parent)
	for _, it := range items {
		if it.Recorded {
			continue // carries the digest it was recorded with
		}
		if err := setDigest(it.Obj, s.digestKey); err != nil {
			return manifestErr(it.Object, err)
		}
	}
	return nil
}

// storeNewDigestKey writes a key this run made, once the commit has passed
// its checks. A parent whose namespace the commit creates gets it with the
// fingerprints at the end.
func (s *syncer) storeNewDigestKey(ctx context.Context) error {
	if !s.newDigestKey || !s.digests() || s.opts.DryRun != DryRunNone {
		return nil
	}
	return s.patchFastData(ctx, nil)
}
