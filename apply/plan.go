package apply

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/render"
)

var (
	crdGK       = schema.GroupKind{Group: "apiextensions.k8s.io", Kind: "CustomResourceDefinition"}
	namespaceGK = schema.GroupKind{Kind: "Namespace"}
	secretGK    = schema.GroupKind{Kind: "Secret"}
)

// item is an object with what the plan decided about it.
type item struct {
	*render.Object
	// mapping is how the object is addressed; nil for an object whose kind
	// is defined by a CRD of this commit until that CRD is Established.
	mapping *meta.RESTMapping
	// crd is the commit's CRD that defines this object's kind, if any.
	crd *crdInfo
	// skip says why the object must not be sent, found after planning (its
	// CRD failed, say).
	skip error

	// live is the object in the cluster before the run; nil if absent.
	live *unstructured.Unstructured
	// liveRead says live was already read (by a LIST).
	liveRead bool
	// staleDigest: the live object's digest annotation is not the desired
	// object's, so applying it changes the object whatever else it holds.
	// live is then its metadata alone, from the metadata LIST: its content
	// need not be downloaded to call it configured.
	staleDigest bool
	// merged is what the server's dry run says the object would become.
	merged *unstructured.Unstructured
	// deps are the objects its depends-on annotation names.
	deps []*dep
	// validated: its server dry run passed before the run's first write, so
	// a refusal of its real write is no verdict on the commit (see
	// WriteRefusedError).
	validated bool
	// deferCheck: its dry run failed for want of a dependency this commit
	// creates, so it is checked again right before it is written.
	deferCheck bool
	// recreateUID is the live object's uid when it is to be recreated: only
	// that object is deleted.
	recreateUID types.UID
	// fast: decided unchanged from the LIST, without a request of its own.
	fast bool
	// seen is what the run last saw of it in the cluster; see
	// ObjectResult.Live.
	seen *metav1.ObjectMeta
	// fp is the fingerprint of cronsync's managedFields entry that this run
	// confirmed (or, when fast, carried over); see fast.go.
	fp string
	// blocked is why its check could not be made: an admission webhook that
	// could not be called. It is set aside, not failed, and tried again
	// once the rest is written.
	blocked error

	// drift is what moved since cronsync applied it, when the commit did
	// not change it and it still needed a write.
	drift *Drift

	// action is what the run did or would do (an Action constant).
	action string
	// err is why the object's check or write failed.
	err error
}

// crdInfo is what the plan needs of a CRD that is part of the commit.
type crdInfo struct {
	obj        *render.Object
	namespaced bool
	served     []string
}

// plan is every object of the commit split into apply stages.
type plan struct {
	// first holds CRDs and Namespaces: everything else may depend on them.
	first []*item
	// rest holds everything else, in read order.
	rest []*item
}

// makePlan maps every object it can before anything is written, so that an
// unknown kind or a duplicate stops the run while the cluster is untouched.
// Objects of kinds defined by CRDs in the same commit are checked against the
// CRD's own spec instead, and mapped once it is Established.
//
// unavailable says why a kind that does not map may exist all the same.
func makePlan(ctx context.Context, mapper meta.RESTMapperWithContext, unavailable func(schema.GroupKind) error, objs []*render.Object, defaultNS string) (*plan, error) {
	crds := map[schema.GroupKind]*crdInfo{}
	for _, o := range objs {
		if o.GroupKind() != crdGK {
			continue
		}
		info, gk, err := parseCRD(o)
		if err != nil {
			return nil, manifestErr(o, err)
		}
		crds[gk] = info
	}

	p := &plan{}
	var errs []error
	seen := map[string]*render.Object{}
	// The mapper copies and searches its whole table per call; a commit
	// holds thousands of objects of a few dozen kinds.
	type mapped struct {
		m   *meta.RESTMapping
		err error
	}
	mappings := map[schema.GroupVersionKind]mapped{}
	for _, o := range objs {
		it := &item{Object: o}
		gvk := o.Obj.GroupVersionKind()
		namespaced := false
		if crd, ok := crds[gvk.GroupKind()]; ok {
			if !slices.Contains(crd.served, gvk.Version) {
				errs = append(errs, manifestErr(o, fmt.Errorf("version %q is not served by CustomResourceDefinition %s (%s)", gvk.Version, crd.obj.Obj.GetName(), crd.obj.Source)))
				continue
			}
			it.crd, namespaced = crd, crd.namespaced
		} else {
			mm, ok := mappings[gvk]
			if !ok {
				mm.m, mm.err = mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
				mappings[gvk] = mm
			}
			m, err := mm.m, mm.err
			if meta.IsNoMatchError(err) {
				if why := unavailable(gvk.GroupKind()); why != nil {
					errs = append(errs, objectErr(o, fmt.Errorf("%w, so no %s can be checked this run", why, gvk.Kind)))
					continue
				}
				errs = append(errs, manifestErr(o, fmt.Errorf("unknown kind: the cluster serves no %s in %s", gvk.Kind, gvk.GroupVersion())))
				continue
			}
			if err != nil {
				return nil, objectErr(o, fmt.Errorf("looking up %s %s in the cluster's API: %w", gvk.GroupVersion(), gvk.Kind, err))
			}
			it.mapping, namespaced = m, m.Scope.Name() == meta.RESTScopeNameNamespace
		}
		setNamespace(o.Obj, namespaced, defaultNS)
		foldStringData(o.Obj)

		key := memberKey(gvk.GroupKind(), o.Obj.GetNamespace(), o.Obj.GetName())
		if first, dup := seen[key]; dup {
			errs = append(errs, manifestErr(o, fmt.Errorf("defined twice: also in %s, document %d", first.Source, first.Doc)))
			continue
		}
		seen[key] = o

		if gk := gvk.GroupKind(); gk == crdGK || gk == namespaceGK {
			p.first = append(p.first, it)
		} else {
			p.rest = append(p.rest, it)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if err := linkDeps(append(slices.Clone(p.first), p.rest...)); err != nil {
		return nil, err
	}
	return p, nil
}

// setNamespace gives namespaced objects the default namespace and takes it
// off cluster-scoped ones (the API server would ignore it, but messages and
// duplicate detection must not).
func setNamespace(u *unstructured.Unstructured, namespaced bool, defaultNS string) {
	switch {
	case !namespaced:
		u.SetNamespace("")
	case u.GetNamespace() == "":
		u.SetNamespace(defaultNS)
	}
}

func parseCRD(o *render.Object) (*crdInfo, schema.GroupKind, error) {
	u := o.Obj.Object
	group, _, _ := unstructured.NestedString(u, "spec", "group")
	kind, _, _ := unstructured.NestedString(u, "spec", "names", "kind")
	scope, _, _ := unstructured.NestedString(u, "spec", "scope")
	if group == "" || kind == "" {
		return nil, schema.GroupKind{}, fmt.Errorf("spec.group and spec.names.kind are required")
	}
	info := &crdInfo{obj: o, namespaced: scope == "Namespaced"}
	versions, _, _ := unstructured.NestedSlice(u, "spec", "versions")
	for _, v := range versions {
		vm, _ := v.(map[string]any)
		name, _, _ := unstructured.NestedString(vm, "name")
		if served, _, _ := unstructured.NestedBool(vm, "served"); served && name != "" {
			info.served = append(info.served, name)
		}
	}
	return info, schema.GroupKind{Group: group, Kind: kind}, nil
}
