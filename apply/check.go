package apply

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
)

// checkAll reads every item's live object and, unless this is a client dry
// run, has the server dry-run the apply, which validates and admits the
// object exactly as the real request would. It returns the errors of the
// items that failed.
func (s *syncer) checkAll(ctx context.Context, items []*item) []error {
	// Batches are checked in order while the LISTs of the next ones are
	// under way, up to --workers of them: on a busy API server a no-change
	// run is its LISTs' latency, so they must not queue behind each other.
	// Only that many batches' live objects are held at once.
	bs := batches(items)
	window := max(s.opts.Workers, 1)
	dones := make([]chan struct{}, len(bs))
	read := func(i int) {
		done := make(chan struct{})
		dones[i] = done
		go func() {
			defer close(done)
			if bs[i].list {
				s.readLive(ctx, bs[i].items)
			}
		}()
	}
	for i := range min(window, len(bs)) {
		read(i)
	}
	for i, b := range bs {
		<-dones[i]
		if j := i + window; j < len(bs) {
			read(j)
		}
		s.each(ctx, b.items, s.check)
	}
	var errs []error
	for _, it := range items {
		if it.err != nil {
			errs = append(errs, it.err)
		}
	}
	return errs
}

func (s *syncer) check(ctx context.Context, it *item) {
	if it.skip != nil {
		it.action, it.err = ActionSkipped, objectErr(it.Object, it.skip)
		return
	}
	if it.fast || it.err != nil {
		return // decided, or refused by checkClaim, from the metadata LIST
	}
	live := it.live
	if !it.liveRead {
		var err error
		live, err = s.client(it).Get(ctx, it.Obj.GetName(), metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			live = nil
		case err != nil:
			it.action, it.err = ActionFailed, objectErr(it.Object, err)
			return
		}
	}
	if live != nil {
		if err := s.checkClaim(ctx, it, live.GetLabels(), live.GetAnnotations()); err != nil {
			it.action, it.err, it.live = ActionFailed, err, nil
			return
		}
	}
	if live != nil && s.decideFast(it, &metav1.ObjectMeta{UID: live.GetUID(), Annotations: live.GetAnnotations(), ManagedFields: live.GetManagedFields()}) {
		it.live = nil
		return
	}
	if it.Recorded {
		return // a stand-in is never sent: the run reads the commit (mustReread)
	}
	if s.opts.DryRun == DryRunClient {
		it.action = ActionConfigured
		if live == nil {
			it.action = ActionCreated
		}
		return
	}
	merged, err := s.client(it).Apply(ctx, it.Obj.GetName(), it.Obj, s.applyOptions(true))
	if hook, ok := webhookUnreachable(err); ok {
		it.action, it.blocked = ActionSetAside, fmt.Errorf("admission webhook %q could not be called: %w", hook, err)
		return
	}
	if err != nil && live != nil && s.checkImmutable(ctx, it, live.GetUID(), err) {
		it.live = nil
		return
	}
	if err != nil {
		it.action, it.err = ActionFailed, objectErr(it.Object, err)
		return
	}
	switch {
	case live == nil:
		it.action = ActionCreated
	case it.staleDigest:
		it.action = ActionConfigured
	case sameContent(live, merged) && (!s.digests() || sameOwnership(live, merged, s.opts.FieldManager)):
		it.action = ActionUnchanged
		s.confirm(it, merged)
	default:
		it.action = ActionConfigured
		if s.digests() && sameDigest(it, &metav1.ObjectMeta{Annotations: live.GetAnnotations()}) {
			// The commit did not change it: someone else did.
			it.drift = driftOf(it, live, merged, s.opts.FieldManager)
		}
	}
	// Only a server dry run prints diffs; a real run lets both copies go,
	// which is most of its memory at ten thousand objects.
	it.live, it.merged = nil, nil
	if s.opts.DryRun == DryRunServer {
		it.live, it.merged = live, merged
	}
}

func (s *syncer) applyOptions(dryRun bool) metav1.ApplyOptions {
	opts := metav1.ApplyOptions{FieldManager: s.opts.FieldManager, Force: s.opts.ForceConflicts}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return opts
}

// serverFields are metadata the server maintains on every write: they differ
// in a dry-run answer without anything having changed.
var serverFields = map[string]bool{"managedFields": true, "resourceVersion": true, "generation": true}

// sameContent reports whether applying would leave the object as it is. It
// compares in place rather than on stripped copies: this runs once per
// object per run. status is left out: an apply does not change it, and a
// controller writing it between the LIST and the dry run is not a change to
// make.
func sameContent(live, merged *unstructured.Unstructured) bool {
	a, b := live.Object, merged.Object
	for k := range b {
		if _, ok := a[k]; !ok && k != "status" {
			return false
		}
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			if k == "status" {
				continue
			}
			return false
		}
		if k == "status" {
			continue
		}
		if k != "metadata" {
			if !reflect.DeepEqual(v, w) {
				return false
			}
			continue
		}
		am, _ := v.(map[string]any)
		bm, _ := w.(map[string]any)
		for mk, mv := range am {
			if !serverFields[mk] && !reflect.DeepEqual(mv, bm[mk]) {
				return false
			}
		}
		for mk := range bm {
			if _, ok := am[mk]; !ok && !serverFields[mk] {
				return false
			}
		}
	}
	return true
}

// listThreshold is how many objects of one resource in one namespace make a
// LIST cheaper than a GET each.
const listThreshold = 4

// batch is items checked together: either all of one resource in one
// namespace, read with one LIST, or a mix read with a GET each.
type batch struct {
	items []*item
	list  bool
}

// batches groups items by resource and namespace. On a run where nothing
// changed, reads would otherwise be half the requests.
func batches(items []*item) []batch {
	groups := map[string][]*item{}
	var keys []string
	var rest []*item
	for _, it := range items {
		if it.mapping == nil || it.skip != nil {
			rest = append(rest, it)
			continue
		}
		key := it.mapping.Resource.String() + "/" + it.Obj.GetNamespace()
		if _, ok := groups[key]; !ok {
			keys = append(keys, key)
		}
		groups[key] = append(groups[key], it)
	}
	var out []batch
	for _, k := range keys {
		if g := groups[k]; len(g) >= listThreshold {
			out = append(out, batch{items: g, list: true})
		} else {
			rest = append(rest, g...)
		}
	}
	if len(rest) > 0 {
		out = append(out, batch{items: rest})
	}
	return out
}

// readLive fetches the live objects of one group with a LIST. A group that
// cannot be listed (RBAC may allow get but not list) is left to check's GET.
//
// Where objects may be decided from the LIST, it first lists metadata only
// (annotations and managedFields are all the decision reads): a no-change
// run then never downloads a ConfigMap's data or a CRD's schema. Objects the
// commit changed need nothing more (see decideFromMetadata); those it cannot
// decide are read in full, with a LIST if there are enough of them.
func (s *syncer) readLive(ctx context.Context, group []*item) {
	batch := group
	if s.fastEnabled() && s.salts != nil {
		if group = s.decideFromMetadata(ctx, group); len(group) < listThreshold {
			return // check GETs the few left
		}
	}
	live, err := s.listAll(ctx, s.client(group[0]))
	if err != nil {
		return
	}
	if !s.wasListed(batch[0]) {
		others := make([]metav1.ObjectMeta, 0, len(live))
		for _, u := range live {
			others = append(others, metav1.ObjectMeta{Name: u.GetName(), Namespace: u.GetNamespace(), UID: u.GetUID(), ResourceVersion: u.GetResourceVersion(), Labels: u.GetLabels(), DeletionTimestamp: u.GetDeletionTimestamp()})
		}
		s.noteListed(batch, others)
	}
	for _, it := range group {
		it.live, it.liveRead = live[it.Obj.GetName()], true
	}
}

// decideFromMetadata decides what it can of group from a metadata-only
// LIST and returns the items still to be read in full. An object absent
// from the LIST is known absent, and one whose digest is not the desired
// one's is known to change.
func (s *syncer) decideFromMetadata(ctx context.Context, group []*item) []*item {
	m := group[0].mapping
	var c metadata.ResourceInterface = s.meta.Resource(m.Resource)
	if ns := group[0].Obj.GetNamespace(); ns != "" {
		c = s.meta.Resource(m.Resource).Namespace(ns)
	}
	// Each page is decided as it arrives and then let go: a group's whole
	// LIST, managedFields and all, held at once, was most of what a
	// no-change run over 50,000 objects kept.
	byName := make(map[string]*item, len(group))
	for _, it := range group {
		byName[it.Obj.GetName()] = it
	}
	found := make(map[string]bool, len(group))
	var others []metav1.ObjectMeta
	var rest []*item
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.List(ctx, opts)
		if err != nil {
			for _, it := range group {
				it.action, it.fast, it.fp, it.seen = "", false, "", nil
				it.live, it.liveRead, it.staleDigest = nil, false, false
			}
			return group
		}
		for i := range list.Items {
			pom := &list.Items[i]
			it, ok := byName[pom.Name]
			switch {
			case !ok:
				others = append(others, metav1.ObjectMeta{Name: pom.Name, Namespace: pom.Namespace, UID: pom.UID, ResourceVersion: pom.ResourceVersion, Labels: pom.Labels, DeletionTimestamp: pom.DeletionTimestamp})
				continue
			case found[pom.Name]:
				continue
			}
			found[pom.Name] = true
			switch {
			case s.claimErr(ctx, it, pom.Labels, pom.Annotations):
			case s.decideFast(it, &pom.ObjectMeta):
			case s.digests() && !sameDigest(it, &pom.ObjectMeta):
				// Changed in Git (or its digest by hand): the dry run and the
				// apply are all it needs; the live content would only be read
				// to be found different.
				it.live, it.liveRead, it.staleDigest = metadataOnly(it, pom), true, true
			default:
				rest = append(rest, it)
			}
		}
		if opts.Continue = list.Continue; opts.Continue == "" {
			break
		}
	}
	for _, it := range group {
		if !found[it.Obj.GetName()] {
			it.live, it.liveRead = nil, true
		}
	}
	s.noteListed(group, others)
	return rest
}

// metadataOnly is a live object as a metadata-only LIST returned it, for
// what check reads of a live object it does not compare: that it exists,
// and its uid.
func metadataOnly(it *item, pom *metav1.PartialObjectMetadata) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion(it.Obj.GetAPIVersion())
	u.SetKind(it.Obj.GetKind())
	u.SetName(pom.Name)
	u.SetNamespace(pom.Namespace)
	u.SetUID(pom.UID)
	u.SetLabels(pom.Labels)
	u.SetAnnotations(pom.Annotations)
	u.SetManagedFields(pom.ManagedFields)
	return u
}

// listedKey names a resource and namespace for syncer.listed.
func listedKey(gr schema.GroupResource, ns string) string { return gr.String() + "/" + ns }

func (s *syncer) wasListed(it *item) bool {
	s.listedMu.Lock()
	defer s.listedMu.Unlock()
	_, ok := s.listed[listedKey(it.mapping.Resource.GroupResource(), it.Obj.GetNamespace())]
	return ok
}

// noteListed records, from a LIST of every object of batch's resource and
// namespace, the members of the ApplySet that are not in batch, which holds
// every object of the commit there.
func (s *syncer) noteListed(batch []*item, listed []metav1.ObjectMeta) {
	if !s.applySet() {
		return
	}
	inBatch := make(map[string]bool, len(batch))
	for _, it := range batch {
		inBatch[it.Obj.GetName()] = true
	}
	others := []metav1.PartialObjectMetadata{}
	for _, m := range listed {
		if !inBatch[m.Name] && m.Labels[applySetPartOfLabel] == s.opts.ApplySet.id() {
			others = append(others, metav1.PartialObjectMetadata{ObjectMeta: metav1.ObjectMeta{Name: m.Name, Namespace: m.Namespace, UID: m.UID, ResourceVersion: m.ResourceVersion, Labels: m.Labels, DeletionTimestamp: m.DeletionTimestamp}})
		}
	}
	slices.SortFunc(others, func(a, b metav1.PartialObjectMetadata) int { return strings.Compare(a.Name, b.Name) })
	s.listedMu.Lock()
	defer s.listedMu.Unlock()
	if s.listed == nil {
		s.listed = map[string][]metav1.PartialObjectMetadata{}
	}
	s.listed[listedKey(batch[0].mapping.Resource.GroupResource(), batch[0].Obj.GetNamespace())] = others
}

func (s *syncer) listAll(ctx context.Context, c dynamic.ResourceInterface) (map[string]*unstructured.Unstructured, error) {
	out := map[string]*unstructured.Unstructured{}
	opts := metav1.ListOptions{Limit: 500}
	for {
		list, err := c.List(ctx, opts)
		if err != nil {
			return nil, err
		}
		for i := range list.Items {
			out[list.Items[i].GetName()] = &list.Items[i]
		}
		if opts.Continue = list.GetContinue(); opts.Continue == "" {
			return out, nil
		}
	}
}
