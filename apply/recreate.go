package apply

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
)

// recreateAnn set to "true" lets cronsync delete an object and create it
// again when Git changes a field the API server will not change in place
// (a Deployment's selector, a Job's template, a Service's clusterIP): Flux's
// force and Argo CD's Replace=true, per object.
const recreateAnn = "cronsync.dev/recreate"

// ActionRecreated: the object was deleted and created again because Git
// changed an immutable field.
const ActionRecreated = "recreated"

// immutableFields returns the fields an Invalid answer refused only because
// they cannot change, or nil if anything else was wrong too.
func immutableFields(err error) []string {
	var status apierrors.APIStatus
	if !errors.As(err, &status) || !apierrors.IsInvalid(err) {
		return nil
	}
	details := status.Status().Details
	if details == nil || len(details.Causes) == 0 {
		return nil
	}
	seen := map[string]bool{}
	var fields []string
	for _, c := range details.Causes {
		if !strings.Contains(c.Message, "immutable") && !strings.Contains(c.Message, "may not change once set") {
			return nil
		}
		if !seen[c.Field] {
			seen[c.Field] = true
			fields = append(fields, c.Field)
		}
	}
	sort.Strings(fields)
	return fields
}

// checkImmutable handles a dry run refused for immutable fields: with the
// annotation, the replacement is validated now, with the rest of the
// commit, by a dry-run create under a generated name (the old object still
// holds its own); without it, the error says what to do.
func (s *syncer) checkImmutable(ctx context.Context, it *item, uid types.UID, err error) bool {
	fields := immutableFields(err)
	if fields == nil {
		return false
	}
	if v, _ := annotation(it.Obj, recreateAnn); v != "true" {
		it.action, it.err = ActionFailed, objectErr(it.Object, fmt.Errorf(
			"%w (%s cannot change in place: annotate the object %s: \"true\" to have cronsync delete and create it again)",
			err, strings.Join(fields, ", "), recreateAnn))
		return true
	}
	replacement := it.Obj.DeepCopy()
	name := it.Obj.GetName()
	replacement.SetName("")
	replacement.SetGenerateName(name[:min(len(name), 40)] + "-")
	_, cerr := s.client(it).Create(ctx, replacement, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}, FieldManager: s.opts.FieldManager})
	if cerr != nil {
		it.action, it.err = ActionFailed, objectErr(it.Object, fmt.Errorf("its replacement would be refused, so the object is not recreated: %w", cerr))
		return true
	}
	it.action, it.recreateUID = ActionRecreated, uid
	return true
}

// recreate deletes the live object (only the one that was checked: a
// precondition on its uid), waits until it and what it owns are gone
// (foreground propagation), and creates it from Git.
func (s *syncer) recreate(ctx context.Context, it *item) error {
	c := s.client(it)
	name := it.Obj.GetName()
	fg := metav1.DeletePropagationForeground
	err := c.Delete(ctx, name, metav1.DeleteOptions{PropagationPolicy: &fg, Preconditions: &metav1.Preconditions{UID: &it.recreateUID}})
	if err != nil && !apierrors.IsNotFound(err) {
		return fmt.Errorf("deleting it to recreate it: %w", err)
	}
	err = wait.PollUntilContextCancel(ctx, 250*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		live, err := c.Get(ctx, name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
			return true, nil
		case err != nil:
			return false, err
		}
		return live.GetUID() != it.recreateUID, nil
	})
	if err != nil {
		return fmt.Errorf("waiting for it to be deleted before creating it again: %w", err)
	}
	applied, err := c.Apply(ctx, name, it.Obj, s.applyOptions(false))
	if err == nil {
		s.confirm(it, applied)
	}
	return err
}
