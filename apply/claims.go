package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// A commit is written by whoever may merge to the repository; cronsync runs
// with rights over the whole cluster. Two kinds of object are therefore
// refused before anything is written, with the object and its file named:
//
//   - What cronsync keeps for itself (the ApplySet parent and its
//     fingerprint shards, the Lease runs hold) and any ApplySet parent at
//     all. A commit that overwrote the parent would rewrite which objects
//     prune looks for (orphaning the rest); one that wrote the Lease with a
//     far renewTime would make every later run skip, including the run of
//     the commit that removes it. Recognised by identity and by what the
//     commit's object says it is, and again by what the live object is
//     (checkClaim), so that leaving out the label does not help.
//   - An object another set holds: its live part-of label names another
//     ApplySet. Applying it would relabel it into this set, two syncs would
//     then rewrite it on every run, and the one whose commit dropped it
//     would prune it while the other still declares it. It moves only when
//     the commit says so, with adoptFromAnn naming the set it leaves.
//
// The CronJob that runs cronsync and its ConfigMap are ordinary objects:
// a repository that manages its own sync is a feature.
const (
	// adoptFromAnn, on an object in the commit, lets this set take it over
	// from the set named: that set's ID (its members' part-of label) or,
	// for a cronsync set, its --applyset NAMESPACE/NAME.
	adoptFromAnn = "cronsync.dev/adopt-from"
	// The ApplySet specification's annotations of a parent.
	applySetGRsAnn = "applyset.kubernetes.io/contains-group-resources"
)

var leaseGK = schema.GroupKind{Group: "coordination.k8s.io", Kind: "Lease"}

// reservedErrs refuses the objects of p that cronsync keeps for itself or
// that are ApplySet parents, as the commit states them. It runs after
// makePlan, which gave every namespaced object its namespace, and before
// anything is read or written.
func (s *syncer) reservedErrs(p *plan) error {
	var errs []error
	for _, it := range slices.Concat(p.first, p.rest) {
		if why := s.reserved(it); why != "" {
			errs = append(errs, manifestErr(it.Object, fmt.Errorf("%s; a commit may not hold it, so it is refused and nothing is applied", why)))
		}
	}
	return errors.Join(errs...)
}

// reserved says why the commit's object it is cronsync's own, or an
// ApplySet parent; "" when it is neither.
func (s *syncer) reserved(it *item) string {
	o := it.Obj
	gk, ns, name := it.GroupKind(), o.GetNamespace(), o.GetName()
	a, l := s.opts.ApplySet, s.opts.Lease
	switch {
	case s.applySet() && gk == secretGK && ns == a.Namespace && name == a.Name:
		return fmt.Sprintf("it is this sync's ApplySet parent (--applyset %s/%s), the record of what cronsync applied", a.Namespace, a.Name)
	case s.applySet() && gk == secretGK && ns == a.Namespace && strings.HasPrefix(name, a.Name+shardInfix):
		return fmt.Sprintf("its name is that of a fingerprint shard of this sync's ApplySet parent %s", a)
	case gk == secretGK && secretType(it) == shardType:
		return "it is typed " + shardType + ", a fingerprint shard of an ApplySet parent"
	case l.Name != "" && gk == leaseGK && ns == l.Namespace && name == l.Name:
		return fmt.Sprintf("it is the Lease cronsync runs hold (--lease %s/%s)", l.Namespace, l.Name)
	}
	// Read in place: GetLabels and GetAnnotations copy, once per object.
	md := func(field string) func(string) (string, bool) {
		return func(k string) (string, bool) {
			v, ok, _ := unstructured.NestedFieldNoCopy(o.Object, "metadata", field, k)
			str, _ := v.(string)
			return str, ok
		}
	}
	return parentWhy(md("labels"), md("annotations"))
}

// parentWhy says why an object whose labels and annotations are looked up
// with label and ann is an ApplySet parent or a shard of one, as the
// specification (KEP-3659) and shards.go mark them; "" when it is not.
func parentWhy(label, ann func(string) (string, bool)) string {
	if id, _ := label(applySetIDLabel); id != "" {
		return fmt.Sprintf("it is an ApplySet parent (label %s=%s)", applySetIDLabel, id)
	}
	for _, k := range []string{applySetToolingAnn, applySetGKsAnn, applySetGRsAnn, applySetNamespacesAnn} {
		if _, ok := ann(k); ok {
			return fmt.Sprintf("it is an ApplySet parent (annotation %s)", k)
		}
	}
	if id, _ := label(shardOfLabel); id != "" {
		return fmt.Sprintf("it is a fingerprint shard of an ApplySet parent (label %s=%s)", shardOfLabel, id)
	}
	return ""
}

// lookup is parentWhy's view of a live object's labels or annotations.
func lookup(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := m[k]
		return v, ok
	}
}

func secretType(it *item) string {
	t, _ := it.Obj.Object["type"].(string)
	return t
}

// checkClaim refuses to write it over a live object that is an ApplySet
// parent or a shard of one, or that another set holds, unless the commit
// moves it here with adoptFromAnn. labels and annotations are the live
// object's, as the run already read them (a LIST or the check's GET): the
// check costs no request, but on the way to an error, which names the other
// set's parent when it can find it.
func (s *syncer) checkClaim(ctx context.Context, it *item, labels, annotations map[string]string) error {
	if why := parentWhy(lookup(labels), lookup(annotations)); why != "" {
		return manifestErr(it.Object, fmt.Errorf("the live object: %s; a commit may not write it, so it is refused and nothing is applied", why))
	}
	other := labels[applySetPartOfLabel]
	mine := ""
	if s.applySet() {
		mine = s.opts.ApplySet.id()
	}
	if other == "" || other == mine || s.adopts(it, other) {
		return nil
	}
	this := "this sync, which records no ApplySet (--applyset \"\")"
	if s.applySet() {
		this = fmt.Sprintf("this sync's ApplySet %s (%s)", s.opts.ApplySet, mine)
	}
	return manifestErr(it.Object, fmt.Errorf("it belongs to ApplySet %s, not to %s; it is left as it is. "+
		"If it is to move here, annotate it in this commit with %s: %s (or, to move every object of that set, run with --adopt-from); otherwise remove it from one of the two commits",
		s.setName(ctx, other), this, adoptFromAnn, s.adoptValue(ctx, other)))
}

// claimErr is checkClaim where a metadata LIST decides: it marks it
// failed, and says so.
func (s *syncer) claimErr(ctx context.Context, it *item, labels, annotations map[string]string) bool {
	err := s.checkClaim(ctx, it, labels, annotations)
	if err == nil {
		return false
	}
	it.action, it.err = ActionFailed, err
	return true
}

// adopts says whether the commit's object names set id in adoptFromAnn, or
// the run's configuration (Options.AdoptFrom) lets it take set id's members.
func (s *syncer) adopts(it *item, id string) bool {
	if v, ok := annotation(it.Obj, adoptFromAnn); ok && namesSet(v, id) {
		return true
	}
	return slices.ContainsFunc(s.opts.AdoptFrom, func(v string) bool { return namesSet(v, id) })
}

// namesSet says whether v, an ID or a cronsync set's NAMESPACE/NAME, names
// set id.
func namesSet(v, id string) bool {
	if v == "" {
		return false
	}
	if v == id {
		return true
	}
	ns, name, ok := strings.Cut(v, "/")
	return ok && ApplySet{Namespace: ns, Name: name}.id() == id
}

// parentOf finds the cronsync parent Secret of set id, for messages: a
// label-selected metadata LIST, only on the way to an error. nil when
// there is none, or it cannot be listed.
func (s *syncer) parentOf(ctx context.Context, id string) *ApplySet {
	found, _ := s.parents.LoadOrStore(id, sync.OnceValue(func() *ApplySet {
		list, err := s.meta.Resource(secretsGVR).List(ctx, metav1.ListOptions{LabelSelector: applySetIDLabel + "=" + id})
		if err != nil {
			return nil
		}
		for _, p := range list.Items {
			if a := (ApplySet{Namespace: p.Namespace, Name: p.Name}); a.id() == id {
				return &a
			}
		}
		return nil
	}))
	return found.(func() *ApplySet)()
}

// setName names set id for a message: its parent and ID, or the ID alone.
func (s *syncer) setName(ctx context.Context, id string) string {
	if a := s.parentOf(ctx, id); a != nil {
		return fmt.Sprintf("%s (%s)", a, id)
	}
	return id
}

// adoptValue is what adoptFromAnn should say to take an object from set
// id: its --applyset when known, else its ID.
func (s *syncer) adoptValue(ctx context.Context, id string) string {
	if a := s.parentOf(ctx, id); a != nil {
		return a.Namespace + "/" + a.Name
	}
	return id
}
