package apply

import (
	"context"
	"reflect"
	"sync"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
)

// checkAll reads every item's live object and, unless this is a client dry
// run, has the server dry-run the apply, which validates and admits the
// object exactly as the real request would. It returns the errors of the
// items that failed.
func (s *syncer) checkAll(ctx context.Context, items []*item) []error {
	s.readLive(ctx, items)
	s.each(ctx, items, s.check)
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
	if s.opts.DryRun == DryRunClient {
		it.action = ActionConfigured
		if live == nil {
			it.action = ActionCreated
		}
		return
	}
	merged, err := s.client(it).Apply(ctx, it.Obj.GetName(), it.Obj, s.applyOptions(true))
	if err != nil {
		it.action, it.err = ActionFailed, objectErr(it.Object, err)
		return
	}
	switch {
	case live == nil:
		it.action = ActionCreated
	case sameContent(live, merged):
		it.action = ActionUnchanged
	default:
		it.action = ActionConfigured
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
// object per run.
func sameContent(live, merged *unstructured.Unstructured) bool {
	a, b := live.Object, merged.Object
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok {
			return false
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

// readLive fetches live objects with one LIST per resource and namespace
// where the commit has several objects, instead of a GET per object: on a
// run where nothing changed, reads would otherwise be half the requests.
// Groups that cannot be listed (RBAC may allow get but not list) are left to
// check's GET.
func (s *syncer) readLive(ctx context.Context, items []*item) {
	type group struct {
		first *item
		items map[string]*item
	}
	groups := map[string]*group{}
	for _, it := range items {
		if it.mapping == nil || it.skip != nil {
			continue
		}
		key := it.mapping.Resource.String() + "/" + it.Obj.GetNamespace()
		g := groups[key]
		if g == nil {
			g = &group{first: it, items: map[string]*item{}}
			groups[key] = g
		}
		g.items[it.Obj.GetName()] = it
	}
	var lists []*group
	for _, g := range groups {
		if len(g.items) >= listThreshold {
			lists = append(lists, g)
		}
	}
	var wg sync.WaitGroup
	sem := make(chan struct{}, s.opts.Workers)
	for _, g := range lists {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			live, err := s.listAll(ctx, s.client(g.first))
			if err != nil {
				return
			}
			for name, it := range g.items {
				it.live, it.liveRead = live[name], true
			}
		})
	}
	wg.Wait()
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
