package apply

import (
	"context"
	"reflect"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// checkAll reads every item's live object and, unless this is a client dry
// run, has the server dry-run the apply, which validates and admits the
// object exactly as the real request would. It returns the errors of the
// items that failed.
func (s *syncer) checkAll(ctx context.Context, items []*item) []error {
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
	live, err := s.client(it).Get(ctx, it.Obj.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		live = nil
	case err != nil:
		it.action, it.err = ActionFailed, objectErr(it.Object, err)
		return
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
	it.live, it.merged = live, merged
}

func (s *syncer) applyOptions(dryRun bool) metav1.ApplyOptions {
	opts := metav1.ApplyOptions{FieldManager: s.opts.FieldManager, Force: s.opts.ForceConflicts}
	if dryRun {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	return opts
}

// sameContent reports whether applying would leave the object as it is.
// Fields the server maintains on every write are left out: they differ in a
// dry-run answer without anything having changed.
func sameContent(live, merged *unstructured.Unstructured) bool {
	return reflect.DeepEqual(withoutServerFields(live), withoutServerFields(merged))
}

func withoutServerFields(u *unstructured.Unstructured) map[string]any {
	c := u.DeepCopy()
	unstructured.RemoveNestedField(c.Object, "metadata", "managedFields")
	unstructured.RemoveNestedField(c.Object, "metadata", "resourceVersion")
	unstructured.RemoveNestedField(c.Object, "metadata", "generation")
	return c.Object
}
