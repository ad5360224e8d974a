package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/cronsync/cronsync/render"
)

// ActionPruned: the object was in the set, is no longer in Git, and was
// deleted (or, in a dry run, would be).
const ActionPruned = "pruned"

// pruneTarget is a live member of the set that the commit no longer has.
type pruneTarget struct {
	ref     string
	mapping *meta.RESTMapping
	obj     metav1.PartialObjectMetadata
	// last is true for Namespaces and CRDs, which go after everything else
	// (the reverse of apply order) and only with PruneNamespacesAndCRDs.
	last bool
}

// prune deletes the set's members that the commit no longer contains. It
// returns the members the parent must keep recording: the commit's, plus any
// whose deletion failed or was refused, so that the next run tries again.
func (s *syncer) prune(ctx context.Context, p *plan, recorded members, res *Result) (members, error) {
	keep := commitMembers(p)
	targets, err := s.pruneTargets(ctx, commitKeys(p), recorded.union(keep))
	if err != nil {
		return recorded.union(keep), err
	}
	s.unlisted.Range(func(k, v any) bool {
		gk := k.(schema.GroupKind)
		for ns := range recorded.namespaces {
			keep.add(gk, ns)
		}
		keep.add(gk, "")
		if s.opts.Warn != nil {
			s.opts.Warn(fmt.Sprintf("not pruning %s this run: %v; its members stay in ApplySet %s", gk, v, s.opts.ApplySet))
		}
		return true
	})
	if len(targets) > 0 && len(p.first)+len(p.rest) == 0 && !s.opts.PruneAllowEmpty {
		return recorded.union(keep), refused("the commit has no objects under its path, so pruning would delete all %d objects of ApplySet %s; "+
			"if that is what you want, pass --prune-allow-empty", len(targets), s.opts.ApplySet)
	}

	results := make([]ObjectResult, len(targets))
	// Namespaces and CRDs go last: deleting one deletes what is inside it.
	for _, last := range []bool{false, true} {
		s.parallel(len(targets), func(i int) {
			if targets[i].last == last {
				results[i] = s.pruneOne(ctx, targets[i])
			}
		})
	}

	kept := results[:0:0]
	var keptTargets []pruneTarget
	for i, r := range results {
		if r.Action != "" {
			kept, keptTargets = append(kept, r), append(keptTargets, targets[i])
		}
	}
	results, targets = kept, keptTargets
	s.printAll(results)
	var errs []error
	for i, r := range results {
		if r.Err != nil {
			errs = append(errs, r.Err)
			t := targets[i]
			keep.add(t.mapping.GroupVersionKind.GroupKind(), t.obj.Namespace)
		}
	}
	res.Objects = append(res.Objects, results...)
	return keep, errors.Join(errs...)
}

func (s *syncer) pruneOne(ctx context.Context, t pruneTarget) ObjectResult {
	r := ObjectResult{Ref: t.ref, Source: "not in the commit", Action: ActionPruned}
	if t.last && !s.opts.PruneNamespacesAndCRDs {
		r.Action = ActionFailed
		r.Err = &ObjectError{Ref: t.ref, Source: r.Source, Err: refused("not pruned: deleting a %s deletes everything in it; pass --prune-namespaces-and-crds to allow it",
			t.mapping.GroupVersionKind.Kind)}
		return r
	}
	if err := s.stop.Err(); err != nil {
		r.Action, r.Err = ActionSkipped, &ObjectError{Ref: t.ref, Source: r.Source, Err: context.Cause(s.stop)}
		return r
	}
	if s.opts.DryRun == DryRunClient {
		return r
	}
	err := s.deleteMember(ctx, t)
	var moved *movedError
	switch {
	case errors.As(err, &moved):
		r.Action = "" // not this set's any more: neither pruned nor kept
		if s.opts.Warn != nil {
			s.opts.Warn(fmt.Sprintf("%s not pruned: %v", t.ref, moved))
		}
	case err != nil:
		r.Action, r.Err = ActionFailed, &ObjectError{Ref: t.ref, Source: r.Source, Err: fmt.Errorf("pruning: %w", err)}
	}
	return r
}

// pruneTries bounds how often a member that changed since it was listed is
// read again before it is deleted: a controller writing its status moves
// its resourceVersion now and then, not all the time.
const pruneTries = 4

// movedError: the member was relabelled into another set (or out of every
// set) between the LIST that found it and its deletion.
type movedError struct{ partOf string }

func (e *movedError) Error() string {
	if e.partOf == "" {
		return "it no longer carries this set's label"
	}
	return "it now belongs to ApplySet " + e.partOf
}

// deleteMember deletes t only as it was seen, a member of this set: the
// preconditions hold the object's uid (not one recreated under its name
// since) and its resourceVersion (not relabelled into another set since,
// by another sync that took it over). When it changed, it is read again,
// and deleted only if it still carries this set's label.
func (s *syncer) deleteMember(ctx context.Context, t pruneTarget) error {
	client := s.meta.Resource(t.mapping.Resource).Namespace(t.obj.Namespace)
	uid, rv := t.obj.UID, t.obj.ResourceVersion
	for try := 1; ; try++ {
		opts := metav1.DeleteOptions{
			Preconditions:     &metav1.Preconditions{UID: &uid},
			PropagationPolicy: new(metav1.DeletePropagationBackground),
		}
		if rv != "" {
			opts.Preconditions.ResourceVersion = &rv
		}
		if s.opts.DryRun == DryRunServer {
			opts.DryRun = []string{metav1.DryRunAll}
		}
		err := client.Delete(ctx, t.obj.Name, opts)
		if err == nil || apierrors.IsNotFound(err) {
			return nil
		}
		if !apierrors.IsConflict(err) || try == pruneTries {
			return err
		}
		now, gerr := client.Get(ctx, t.obj.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(gerr):
			return nil
		case gerr != nil:
			return err
		case now.UID != uid:
			return err // another object under its name: the next run's LIST judges it
		case now.Labels[applySetPartOfLabel] != s.opts.ApplySet.id():
			return &movedError{partOf: now.Labels[applySetPartOfLabel]}
		}
		rv = now.ResourceVersion
	}
}

// pruneTargets lists, for every group-kind and namespace the set may cover,
// the objects labelled as members, and keeps the ones not in the commit.
// Only labelled objects are ever candidates: an object with the same name or
// labels but not in the set is never touched.
func (s *syncer) pruneTargets(ctx context.Context, inCommit map[string]bool, scope members) ([]pruneTarget, error) {
	var listings []*memberListing
	if pf := s.prefetch; pf != nil && pf.scope.equal(scope) {
		<-pf.done
		listings = pf.listings
	} else {
		var err error
		if listings, err = s.memberListings(ctx, scope); err != nil {
			return nil, err
		}
	}
	// Where the check already listed a resource and namespace whole, its
	// LIST said which members are there; the rest are listed here, unless
	// prefetchMembers already did.
	s.listMembers(ctx, listings, func(l *memberListing) bool {
		if l.listed {
			return true
		}
		s.listedMu.Lock()
		defer s.listedMu.Unlock()
		_, ok := s.listed[listedKey(l.m.Resource.GroupResource(), l.ns)]
		return ok
	})
	return s.targetsFrom(inCommit, listings)
}

// memberPrefetch lists members beside the checks (prefetchMembers).
type memberPrefetch struct {
	scope    members
	listings []*memberListing
	done     chan struct{}
}

// prefetchMembers starts listing, beside the checks, the members prune
// will look for in scope where no check LIST reads a resource and namespace
// whole (covered, by listedKey): those LISTs do not depend on what the run
// writes (the commit's own objects are never candidates), so prune need
// not wait for them after the writes.
func (s *syncer) prefetchMembers(ctx context.Context, scope members, covered map[string]bool) {
	listings, err := s.memberListings(ctx, scope)
	if err != nil {
		return // prune finds the error itself
	}
	pf := &memberPrefetch{scope: scope, listings: listings, done: make(chan struct{})}
	s.prefetch = pf
	go func() {
		defer close(pf.done)
		s.listMembers(ctx, listings, func(l *memberListing) bool {
			return covered[listedKey(l.m.Resource.GroupResource(), l.ns)]
		})
	}()
}

// listedWhole says which resources and namespaces the checks of items list
// whole: the batches big enough for a LIST.
func listedWhole(items []*item) map[string]bool {
	covered := map[string]bool{}
	for _, b := range batches(items) {
		if b.list {
			covered[listedKey(b.items[0].mapping.Resource.GroupResource(), b.items[0].Obj.GetNamespace())] = true
		}
	}
	return covered
}

// memberListing is one resource and namespace where members may be.
type memberListing struct {
	gk    schema.GroupKind
	m     *meta.RESTMapping
	ns    string
	found []metav1.PartialObjectMetadata
	err   error
	// listed: found holds this listing's own LIST.
	listed bool
}

// memberListings names every resource and namespace the set may cover, in
// a fixed order.
func (s *syncer) memberListings(ctx context.Context, scope members) ([]*memberListing, error) {
	gks := make([]schema.GroupKind, 0, len(scope.gks))
	for gk := range scope.gks {
		gks = append(gks, gk)
	}
	sort.Slice(gks, func(i, j int) bool { return gks[i].String() < gks[j].String() })
	namespaces := make([]string, 0, len(scope.namespaces))
	for ns := range scope.namespaces {
		namespaces = append(namespaces, ns)
	}
	sort.Strings(namespaces)
	var listings []*memberListing
	for _, gk := range gks {
		m, err := s.mapper.RESTMappingWithContext(ctx, gk)
		if meta.IsNoMatchError(err) {
			if why := s.groupUnavailable(gk); why != nil {
				// Its members are there, out of sight: not pruned, and
				// kept in the set for a run that can see them.
				s.unlisted.Store(gk, why)
			}
			continue // otherwise the kind is gone (its CRD was deleted), and so are its objects
		}
		if err != nil {
			return nil, fmt.Errorf("finding members of ApplySet %s: %w", s.opts.ApplySet, err)
		}
		nss := []string{""}
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			nss = namespaces
		}
		for _, ns := range nss {
			listings = append(listings, &memberListing{gk: gk, m: m, ns: ns})
		}
	}
	return listings, nil
}

// wideListFrom is how many namespaces of one resource make listMembers ask
// for that resource's members in every namespace at once. Each request has
// a fixed cost on the API server and the client (authentication, a
// response, a round trip), where a label-selected LIST served from the
// watch cache costs little per object it passes over; with few namespaces
// the scoped LISTs read less, and a team whose RBAC stops at its own
// namespace never makes a LIST it may not.
const wideListFrom = 4

// listMembers lists the members in each listing that skip does not leave to
// a check's LIST, up to --workers LISTs at once: one LIST per resource
// across namespaces where wideListFrom of its namespaces are to be listed,
// one per resource and namespace otherwise, and those also where RBAC
// refuses the wide one.
func (s *syncer) listMembers(ctx context.Context, listings []*memberListing, skip func(*memberListing) bool) {
	selector := metav1.ListOptions{LabelSelector: applySetPartOfLabel + "=" + s.opts.ApplySet.id()}
	byResource := map[schema.GroupVersionResource][]*memberListing{}
	var resources []schema.GroupVersionResource
	// A wide LIST leaves out the namespaces a check lists whole, so that it
	// returns no more than the scoped LISTs would.
	skipped := map[schema.GroupVersionResource][]string{}
	for _, l := range listings {
		if skip(l) {
			skipped[l.m.Resource] = append(skipped[l.m.Resource], l.ns)
			continue
		}
		if _, ok := byResource[l.m.Resource]; !ok {
			resources = append(resources, l.m.Resource)
		}
		byResource[l.m.Resource] = append(byResource[l.m.Resource], l)
	}
	record := func(ls []*memberListing, list *metav1.PartialObjectMetadataList, err error) {
		for _, l := range ls {
			if err != nil {
				l.err = fmt.Errorf("listing %s members of ApplySet %s: %w", l.m.Resource.GroupResource(), s.opts.ApplySet, err)
				continue
			}
			l.found, l.listed, l.err = nil, true, nil // an earlier try may have failed
			for _, obj := range list.Items {
				if obj.Namespace == l.ns {
					l.found = append(l.found, obj)
				}
			}
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(s.opts.Workers, 1))
	listEach := func(ls []*memberListing) {
		for _, l := range ls {
			wg.Go(func() {
				sem <- struct{}{}
				defer func() { <-sem }()
				list, err := s.meta.Resource(l.m.Resource).Namespace(l.ns).List(ctx, selector)
				record([]*memberListing{l}, list, err)
			})
		}
	}
	for _, r := range resources {
		ls := byResource[r]
		if len(ls) < wideListFrom || ls[0].ns == "" {
			listEach(ls)
			continue
		}
		wide := selector
		var others []fields.Selector
		for _, ns := range skipped[r] {
			others = append(others, fields.OneTermNotEqualSelector("metadata.namespace", ns))
		}
		if len(others) > 0 {
			wide.FieldSelector = fields.AndSelectors(others...).String()
		}
		wg.Go(func() {
			sem <- struct{}{}
			list, err := s.meta.Resource(r).List(ctx, wide)
			<-sem
			if apierrors.IsForbidden(err) {
				listEach(ls)
				return
			}
			record(ls, list, err)
		})
	}
	wg.Wait()
}

// targetsFrom turns listings, completed by the checks' LISTs, into the
// members the commit does not hold, in the listings' order.
func (s *syncer) targetsFrom(inCommit map[string]bool, listings []*memberListing) ([]pruneTarget, error) {
	var targets []pruneTarget
	for _, l := range listings {
		found := l.found
		if !l.listed {
			s.listedMu.Lock()
			checked, ok := s.listed[listedKey(l.m.Resource.GroupResource(), l.ns)]
			s.listedMu.Unlock()
			switch {
			case ok:
				found = checked
			case l.err != nil:
				return nil, l.err
			default:
				return nil, fmt.Errorf("listing %s members of ApplySet %s: not listed", l.m.Resource.GroupResource(), s.opts.ApplySet)
			}
		}
		for _, obj := range found {
			if inCommit[memberKey(l.gk, obj.Namespace, obj.Name)] {
				continue
			}
			if obj.DeletionTimestamp != nil {
				// Already on its way out (a Namespace being emptied, a
				// finalizer at work): deleting it again would change
				// nothing, yet say "pruned" and write on every run
				// until it is gone.
				continue
			}
			targets = append(targets, pruneTarget{
				ref:     render.Ref(l.gk, obj.Name, obj.Namespace),
				mapping: l.m,
				obj:     obj,
				last:    l.gk == namespaceGK || l.gk == crdGK,
			})
		}
	}
	return targets, nil
}

// commitKeys are the memberKeys of p's objects: what prune leaves alone.
func commitKeys(p *plan) map[string]bool {
	keys := map[string]bool{}
	for _, it := range slices.Concat(p.first, p.rest) {
		keys[memberKey(it.GroupKind(), it.Obj.GetNamespace(), it.Obj.GetName())] = true
	}
	return keys
}

func memberKey(gk schema.GroupKind, ns, name string) string {
	return gk.String() + "/" + ns + "/" + name
}
