package apply

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
)

// Past about 12,000 objects the fingerprints and the commit record no
// longer fit in the parent Secret (1 MiB); without more room, every object
// past that would ask the server on every run. They are then kept in
// shards: further Secrets that belong to the parent.
//
//   - A shard is named after its content and never written again once
//     created. A run creates the shards it needs, then writes the parent's
//     index naming them with their hashes, then deletes the shards the
//     index no longer names. A run that dies before the index is written
//     leaves the last index naming shards that are still there as they
//     were written: the next run trusts what the last complete write said,
//     which (fingerprints being facts about the live objects) can only
//     send objects down the slow path, and a new shard nobody names is
//     trusted by nobody.
//   - Fingerprints are spread over shards by a hash of the object's key, so
//     a change to one object rewrites one shard; the record is cut into
//     pieces in order, and trusted only whole.
//   - A shard that is missing, whose content does not hash to what the
//     index says, or that is not this parent's (owner uid, the set's label)
//     counts as empty: its objects, and only those, take the slow path. A
//     record with a piece missing is no record.
//   - Shards are owned by the parent (deleted with it), labelled with the
//     set's ID and typed, so `kubectl get secrets` shows what they are.
//
// Below the size, everything stays in the parent as before: no shard, no
// request more.
const (
	// shardIndexKey is the parent's data key naming its shards: a line
	// "cronsync-shards-v1", then one "name kind sha256" line a shard.
	shardIndexKey    = "cronsync-shards"
	shardIndexFormat = "cronsync-shards-v1"
	// shardType is the shards' Secret type.
	shardType = "cronsync.dev/fast-data"
	// shardOfLabel holds the set's ID on each shard.
	shardOfLabel = "cronsync.dev/fast-data-of"
	// shardInfix follows the parent's name in its shards' names.
	shardInfix = "-fd-"
	// The data key a shard keeps its value under is its kind.
	shardFingerprints = "fingerprints"
	shardRecord       = "commit"
	// defaultFastDataBytes is the most one Secret holds of fingerprints and
	// record (base64, as stored), with room left under 1 MiB for the rest of
	// the Secret.
	defaultFastDataBytes = 900 << 10
)

// shardRef is one line of the index.
type shardRef struct {
	name, kind, sum string
}

func (s *syncer) fastDataBytes() int {
	if s.opts.FastDataBytes > 0 {
		return s.opts.FastDataBytes
	}
	return defaultFastDataBytes
}

func encodeShardIndex(refs []shardRef) string {
	var b strings.Builder
	b.WriteString(shardIndexFormat + "\n")
	for _, r := range refs {
		fmt.Fprintf(&b, "%s %s %s\n", r.name, r.kind, r.sum)
	}
	return base64.StdEncoding.EncodeToString([]byte(b.String()))
}

// decodeShardIndex reads the parent's index; false if there is none or it
// is not one as encodeShardIndex writes it, byte for byte (then no shard
// is trusted).
func decodeShardIndex(raw string) ([]shardRef, bool) {
	b, err := base64.StdEncoding.DecodeString(raw)
	text, whole := strings.CutSuffix(string(b), "\n")
	if raw == "" || err != nil || !whole {
		return nil, false
	}
	lines := strings.Split(text, "\n")
	if lines[0] != shardIndexFormat {
		return nil, false
	}
	var refs []shardRef
	for _, l := range lines[1:] {
		f := strings.Split(l, " ")
		if len(f) != 3 || f[0] == "" || f[2] == "" || (f[1] != shardFingerprints && f[1] != shardRecord) {
			return nil, false
		}
		refs = append(refs, shardRef{name: f[0], kind: f[1], sum: f[2]})
	}
	return refs, true
}

func sumOf(value string) string {
	h := sha256.Sum256([]byte(value))
	return hex.EncodeToString(h[:])
}

// readFastData reads what the parent holds for the fast path, in it or in
// the shards its index names (those side by side), into recordedFPs and
// recordedCommit.
func (s *syncer) readFastData(ctx context.Context, parent *unstructured.Unstructured) {
	refs, ok := decodeShardIndex(recordedData(parent, shardIndexKey))
	var values []string
	if ok {
		values = make([]string, len(refs))
		s.parallel(len(refs), func(i int) {
			values[i] = s.readShard(ctx, refs[i], parent.GetUID())
		})
	}
	s.assembleFastData(parent, refs, ok, values)
}

// assembleFastData is readFastData once the shards are read: values[i] is
// what refs[i] names, "" when it cannot be trusted.
func (s *syncer) assembleFastData(parent *unstructured.Unstructured, refs []shardRef, indexed bool, values []string) {
	s.recordedFPs = decodeFingerprints(recordedData(parent, fingerprintsKey))
	s.recordedCommit = recordedData(parent, commitRecordKey)
	if !indexed {
		return
	}
	s.recordedShards = refs
	s.trustedShards = map[string]bool{}
	var record strings.Builder
	whole := true
	for i, r := range refs {
		s.trustedShards[r.name] = values[i] != ""
		switch r.kind {
		case shardFingerprints:
			for k, v := range decodeFingerprints(values[i]) {
				s.recordedFPs[k] = v
			}
		case shardRecord:
			whole = whole && values[i] != ""
			record.WriteString(values[i])
		}
	}
	if whole && record.Len() > 0 {
		s.recordedCommit = record.String()
	}
}

// readShard returns the value of the shard r names, or "" when it cannot
// be trusted.
func (s *syncer) readShard(ctx context.Context, r shardRef, parentUID types.UID) string {
	a := s.opts.ApplySet
	u, err := s.dyn.Resource(secretsGVR).Namespace(a.Namespace).Get(ctx, r.name, metav1.GetOptions{})
	if err != nil {
		return ""
	}
	return s.shardValue(u, r, parentUID)
}

// shardValue is what the Secret u holds for r, or "" when it is not this
// parent's shard or its content is not what the index says.
func (s *syncer) shardValue(u *unstructured.Unstructured, r shardRef, parentUID types.UID) string {
	if !s.isShard(u, parentUID) {
		return ""
	}
	v := recordedData(u, r.kind)
	if sumOf(v) != r.sum {
		return ""
	}
	return v
}

// isShard says whether u is a shard of this set, owned by the parent with
// uid.
func (s *syncer) isShard(u metav1.Object, parentUID types.UID) bool {
	if u.GetLabels()[shardOfLabel] != s.opts.ApplySet.id() {
		return false
	}
	return slices.ContainsFunc(u.GetOwnerReferences(), func(o metav1.OwnerReference) bool {
		return o.UID == parentUID && o.Kind == "Secret" && o.APIVersion == "v1"
	})
}

// fastDataLayout is how a write stores fingerprints and record: in the
// parent's own data (inline), or in shards that index names.
type fastDataLayout struct {
	inline map[string]string
	shards []shard
}

// parentData is what the parent's data keys hold: the fingerprints and
// record themselves, or the index of the shards that hold them.
func (l fastDataLayout) parentData() map[string]string {
	if l.shards == nil {
		return l.inline
	}
	refs := make([]shardRef, len(l.shards))
	for i, sh := range l.shards {
		refs[i] = sh.shardRef
	}
	return map[string]string{shardIndexKey: encodeShardIndex(refs)}
}

// shard is one shard to be stored.
type shard struct {
	shardRef
	value string
}

// layoutFastData decides where fingerprints and record go. Within
// fastDataBytes together they stay in the parent. Past it, the fingerprints
// are spread over as many shards as keep each under it (at least as many
// as last time, while that is less than twice what is needed, so that a
// small change rewrites one shard) and the record is cut into pieces. With
// no parent uid to own shards, or a parent name too long to extend, the
// fingerprints that fit stay in the parent and the record is not kept.
func (s *syncer) layoutFastData(fps map[string]string, record string) (fastDataLayout, error) {
	limit := s.fastDataBytes()
	keys := slices.Sorted(maps.Keys(fps))
	all, err := encodeFingerprintLines(keys, fps)
	if err != nil {
		return fastDataLayout{}, err
	}
	if len(all)+len(record) <= limit {
		return fastDataLayout{inline: map[string]string{fingerprintsKey: all, commitRecordKey: record}}, nil
	}
	uid := s.parentUID
	if uid == "" || len(s.opts.ApplySet.Name)+len(shardSuffix("", "", 0, "")) > 253 {
		enc, err := encodeFingerprints(fps, limit)
		return fastDataLayout{inline: map[string]string{fingerprintsKey: enc}}, err
	}
	n := (len(all) + limit - 1) / limit
	if prev := s.recordedFPShards(); prev > n && prev < 2*n {
		n = prev
	}
	var out fastDataLayout
	for {
		buckets := make([][]string, n)
		for _, k := range keys {
			b := bucketOf(k, n)
			buckets[b] = append(buckets[b], k)
		}
		out.shards = out.shards[:0]
		fits := true
		for b, ks := range buckets {
			if len(ks) == 0 {
				continue
			}
			v, err := encodeFingerprintLines(ks, fps)
			if err != nil {
				return fastDataLayout{}, err
			}
			if len(v) > limit && len(ks) > 1 {
				fits = false
				break
			}
			out.shards = append(out.shards, s.newShard(shardFingerprints, b, n, v, uid))
		}
		if fits {
			break
		}
		n++
	}
	for i := 0; i*limit < len(record); i++ {
		out.shards = append(out.shards, s.newShard(shardRecord, i, 0, record[i*limit:min(len(record), (i+1)*limit)], uid))
	}
	return out, nil
}

// recordedFPShards is how many fingerprint shards the index names.
func (s *syncer) recordedFPShards() int {
	n := 0
	for _, r := range s.recordedShards {
		if r.kind == shardFingerprints {
			n++
		}
	}
	return n
}

func (s *syncer) newShard(kind string, i, n int, value string, uid types.UID) shard {
	return shard{shardRef{name: s.opts.ApplySet.Name + shardSuffix(kind, value, i*1000+n, uid), kind: kind, sum: sumOf(value)}, value}
}

// shardSuffix makes a shard's name from what it holds and where: the same
// content under the same parent has the same name, so a shard a run that
// died had created is found again, not made twice.
func shardSuffix(kind, value string, pos int, uid types.UID) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00%d\x00", uid, kind, pos)
	h.Write([]byte(value))
	return shardInfix + hex.EncodeToString(h.Sum(nil))[:12]
}

func bucketOf(key string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(key))
	return int(h.Sum32() % uint32(n))
}

// storeFastData writes fingerprints and record as layoutFastData lays them
// out: new shards first, then the parent, then the shards no longer named
// are deleted.
func (s *syncer) storeFastData(ctx context.Context, fps map[string]string, record string) error {
	l, err := s.layoutFastData(fps, record)
	if err != nil {
		return err
	}
	if l.shards != nil {
		if err := s.createShards(ctx, l.shards); err != nil {
			return err
		}
	}
	if err := s.patchFastData(ctx, l.parentData()); err != nil {
		return err
	}
	if l.shards == nil && s.recordedShards == nil {
		return nil
	}
	keep := map[string]bool{}
	for _, sh := range l.shards {
		keep[sh.name] = true
	}
	return s.deleteShards(ctx, keep)
}

// createShards creates those of shards this run did not read intact,
// side by side.
func (s *syncer) createShards(ctx context.Context, shards []shard) error {
	var todo []shard
	for _, sh := range shards {
		if !s.trustedShards[sh.name] {
			todo = append(todo, sh)
		}
	}
	errs := make([]error, len(todo))
	s.parallel(len(todo), func(i int) {
		errs[i] = s.createShard(ctx, todo[i])
	})
	return errors.Join(errs...)
}

// createShard creates sh. One already there under its name is taken if it
// holds the same content (a run that died made it), and written again if
// it is this set's with other content (edited by hand); a Secret of
// anyone else's is left alone, and an error.
func (s *syncer) createShard(ctx context.Context, sh shard) error {
	a := s.opts.ApplySet
	u := s.shardObject(sh)
	c := s.dyn.Resource(secretsGVR).Namespace(a.Namespace)
	_, err := c.Create(ctx, u, metav1.CreateOptions{FieldManager: fingerprintsManager})
	if apierrors.IsAlreadyExists(err) {
		var there *unstructured.Unstructured
		if there, err = c.Get(ctx, sh.name, metav1.GetOptions{}); err == nil {
			switch {
			case !s.isShard(there, s.parentUID):
				return fmt.Errorf("recording fingerprints: secret/%s -n %s exists and is not a shard of ApplySet parent %s", sh.name, a.Namespace, a)
			case recordedData(there, sh.kind) == sh.value:
				return nil
			}
			u.SetResourceVersion(there.GetResourceVersion())
			_, err = c.Update(ctx, u, metav1.UpdateOptions{FieldManager: fingerprintsManager})
		}
	}
	if err != nil {
		return fmt.Errorf("recording fingerprints in secret/%s -n %s: %w", sh.name, a.Namespace, err)
	}
	return nil
}

// shardObject is the Secret that stores sh.
func (s *syncer) shardObject(sh shard) *unstructured.Unstructured {
	a := s.opts.ApplySet
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Secret", "type": shardType,
		"data": map[string]any{sh.kind: sh.value},
	}}
	u.SetName(sh.name)
	u.SetNamespace(a.Namespace)
	u.SetLabels(map[string]string{shardOfLabel: a.id(), "app.kubernetes.io/managed-by": toolingName})
	u.SetAnnotations(map[string]string{"cronsync.dev/fast-data": fmt.Sprintf("%s of the ApplySet %s: what lets a run decide objects from the LISTs; kept by cronsync, deleted with the parent", sh.kind, a)})
	u.SetOwnerReferences([]metav1.OwnerReference{{APIVersion: "v1", Kind: "Secret", Name: a.Name, UID: s.parentUID}})
	return u
}

// deleteShards deletes this set's shards that are not in keep, found by
// their label (so those a run that died left unnamed go too).
func (s *syncer) deleteShards(ctx context.Context, keep map[string]bool) error {
	a := s.opts.ApplySet
	list, err := s.meta.Resource(secretsGVR).Namespace(a.Namespace).List(ctx, metav1.ListOptions{LabelSelector: shardOfLabel + "=" + a.id()})
	if err != nil {
		return fmt.Errorf("listing the fingerprint shards of ApplySet parent %s: %w", a, err)
	}
	var stale []metav1.Object
	for i := range list.Items {
		if sh := &list.Items[i]; !keep[sh.Name] && s.isShard(sh, s.parentUID) {
			stale = append(stale, sh)
		}
	}
	errs := make([]error, len(stale))
	s.parallel(len(stale), func(i int) {
		uid := stale[i].GetUID()
		err := s.meta.Resource(secretsGVR).Namespace(a.Namespace).Delete(ctx, stale[i].GetName(), metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
		if err != nil && !apierrors.IsNotFound(err) {
			errs[i] = fmt.Errorf("deleting fingerprint shard secret/%s -n %s: %w", stale[i].GetName(), a.Namespace, err)
		}
	})
	return errors.Join(errs...)
}
