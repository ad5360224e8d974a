package apply

import (
	"context"
	"errors"
	"fmt"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/cronsync/cronsync/render"
)

// dependsOnAnn is kpt's and cli-utils' annotation for ordering within one
// apply: the object is written only after the objects it names are written
// and ready. Its format is theirs, so manifests written for kpt or Config
// Sync work unchanged.
const dependsOnAnn = "config.kubernetes.io/depends-on"

// dep is one object an item depends on.
type dep struct {
	gk              schema.GroupKind
	namespace, name string
	// item is the commit's object, or nil when the dependency lives only in
	// the cluster.
	item *item
	// mapping addresses a dependency outside the commit.
	mapping *meta.RESTMapping
}

func (d *dep) ref() string { return render.Ref(d.gk, d.name, d.namespace) }

// parseDependsOn reads the annotation as
// <group>/namespaces/<namespace>/<kind>/<name> or <group>/<kind>/<name>,
// comma-separated; the core group is the empty string.
func parseDependsOn(v string) ([]*dep, error) {
	var out []*dep
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := strings.Split(part, "/")
		var d dep
		switch {
		case len(f) == 5 && f[1] == "namespaces":
			d = dep{gk: schema.GroupKind{Group: f[0], Kind: f[3]}, namespace: f[2], name: f[4]}
		case len(f) == 3:
			d = dep{gk: schema.GroupKind{Group: f[0], Kind: f[1]}, name: f[2]}
		default:
			return nil, fmt.Errorf("%s: %q is neither <group>/namespaces/<namespace>/<kind>/<name> nor <group>/<kind>/<name>", dependsOnAnn, part)
		}
		if d.gk.Kind == "" || d.name == "" || (len(f) == 5 && d.namespace == "") {
			return nil, fmt.Errorf("%s: %q leaves the kind, name or namespace empty", dependsOnAnn, part)
		}
		out = append(out, &d)
	}
	return out, nil
}

// linkDeps resolves every item's depends-on annotation against the commit
// and refuses cycles. Both are faults of the commit found before any write.
func linkDeps(items []*item) error {
	byKey := map[string]*item{}
	for _, it := range items {
		byKey[memberKey(it.GroupKind(), it.Obj.GetNamespace(), it.Obj.GetName())] = it
	}
	var errs []error
	for _, it := range items {
		v, ok := annotation(it.Obj, dependsOnAnn)
		if !ok {
			continue
		}
		deps, err := parseDependsOn(v)
		if err != nil {
			errs = append(errs, manifestErr(it.Object, err))
			continue
		}
		for _, d := range deps {
			d.item = byKey[memberKey(d.gk, d.namespace, d.name)]
			if d.item == it {
				errs = append(errs, manifestErr(it.Object, fmt.Errorf("%s: depends on itself", dependsOnAnn)))
			}
		}
		it.deps = deps
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Depth-first search; a grey item met again closes a cycle.
	const white, grey, black = 0, 1, 2
	color := map[*item]int{}
	var visit func(it *item, path []*item) error
	visit = func(it *item, path []*item) error {
		color[it] = grey
		path = append(path, it)
		for _, d := range it.deps {
			switch {
			case d.item == nil:
			case color[d.item] == grey:
				var names []string
				start := false
				for _, p := range path {
					start = start || p == d.item
					if start {
						names = append(names, p.Ref())
					}
				}
				names = append(names, d.item.Ref())
				return manifestErr(it.Object, fmt.Errorf("%s: dependency cycle: %s", dependsOnAnn, strings.Join(names, " -> ")))
			case color[d.item] == white:
				if err := visit(d.item, path); err != nil {
					return err
				}
			}
		}
		color[it] = black
		return nil
	}
	for _, it := range items {
		if color[it] == white {
			if err := visit(it, nil); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkExternalDeps finds, before any write, the dependencies that the
// commit does not hold: each must exist in the cluster already.
func (s *syncer) checkExternalDeps(ctx context.Context, items []*item) []error {
	var errs []error
	for _, it := range items {
		for _, d := range it.deps {
			if d.item != nil {
				continue
			}
			m, err := s.mapper.RESTMappingWithContext(ctx, d.gk)
			if meta.IsNoMatchError(err) {
				errs = append(errs, manifestErr(it.Object, fmt.Errorf("depends on %s, which the commit does not hold and the cluster does not serve", d.ref())))
				continue
			}
			if err != nil {
				errs = append(errs, objectErr(it.Object, fmt.Errorf("looking up its dependency %s: %w", d.ref(), err)))
				continue
			}
			d.mapping = m
			c := s.dyn.Resource(m.Resource)
			var getErr error
			if d.namespace != "" {
				_, getErr = c.Namespace(d.namespace).Get(ctx, d.name, metav1.GetOptions{})
			} else {
				_, getErr = c.Get(ctx, d.name, metav1.GetOptions{})
			}
			switch {
			case apierrors.IsNotFound(getErr):
				errs = append(errs, manifestErr(it.Object, fmt.Errorf("depends on %s, which the commit does not hold and the cluster does not have", d.ref())))
			case getErr != nil:
				errs = append(errs, objectErr(it.Object, fmt.Errorf("reading its dependency %s: %w", d.ref(), getErr)))
			}
		}
	}
	return errs
}

// depth is an item's place in write order within its stage: 0 for items
// that depend on nothing, 1 for items whose dependencies are all outside the
// stage (they still wait for them to be ready), else one more than its
// deepest dependency in the stage.
func depth(it *item, stage map[*item]bool, memo map[*item]int) int {
	if d, ok := memo[it]; ok {
		return d
	}
	n := 0
	for _, d := range it.deps {
		if d.item != nil && stage[d.item] {
			n = max(n, depth(d.item, stage, memo)+1)
		} else {
			n = max(n, 1)
		}
	}
	memo[it] = n
	return n
}

// waves splits a stage into groups written one after the other, so that
// every object comes after what it depends on.
func waves(items []*item) [][]*item {
	stage := map[*item]bool{}
	for _, it := range items {
		stage[it] = true
	}
	memo := map[*item]int{}
	var out [][]*item
	for _, it := range items {
		d := depth(it, stage, memo)
		for len(out) <= d {
			out = append(out, nil)
		}
		out[d] = append(out[d], it)
	}
	return out
}

// dependencyTargets are the objects the wave's items depend on, as the
// health wait wants them; an item whose dependency failed to be written is
// skipped here instead.
func (s *syncer) dependencyTargets(wave []*item) []ObjectResult {
	seen := map[string]bool{}
	var out []ObjectResult
	for _, it := range wave {
		for _, d := range it.deps {
			key := memberKey(d.gk, d.namespace, d.name)
			if d.item != nil && d.item.err != nil {
				if it.skip == nil {
					it.skip = fmt.Errorf("not written: it depends on %s, which failed", d.ref())
				}
				continue
			}
			if seen[key] {
				continue
			}
			seen[key] = true
			r := ObjectResult{Ref: d.ref(), Namespace: d.namespace, Name: d.name}
			switch {
			case d.item != nil && d.item.mapping != nil:
				r.Source, r.Resource = d.item.Source, d.item.mapping.Resource
			case d.mapping != nil:
				r.Resource = d.mapping.Resource
			default:
				continue // a CRD or Namespace of the first stage: written and established already
			}
			out = append(out, r)
		}
	}
	return out
}
