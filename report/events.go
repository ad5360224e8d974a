package report

import (
	"context"
	"errors"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	corev1client "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"
)

// Targets says which objects get a run's Events.
type Targets struct {
	// Parent is the ApplySet parent Secret; empty Name skips it.
	ParentNamespace, ParentName string
	// PodNamespace and PodName are this pod's (from the downward API);
	// the Job that owns the pod gets the Events too. Empty outside a pod.
	PodNamespace, PodName string
}

// Events emits one Event per outcome of the run (Synced, Unhealthy or
// SyncFailed; DriftRepaired when objects had drifted, Pruned when something
// was pruned) on the ApplySet parent and on the Job.
func Events(ctx context.Context, cfg *rest.Config, t Targets, s *Summary) error {
	cs, err := corev1client.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var objs []corev1.ObjectReference
	if t.ParentName != "" {
		objs = append(objs, corev1.ObjectReference{APIVersion: "v1", Kind: "Secret", Namespace: t.ParentNamespace, Name: t.ParentName})
	}
	if t.PodName != "" {
		pod, err := cs.Pods(t.PodNamespace).Get(ctx, t.PodName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("finding this run's Job: %w", err)
		}
		for _, o := range pod.OwnerReferences {
			if o.Kind == "Job" {
				objs = append(objs, corev1.ObjectReference{APIVersion: o.APIVersion, Kind: "Job", Namespace: t.PodNamespace, Name: o.Name, UID: o.UID})
			}
		}
	}

	type event struct{ kind, reason, msg string }
	var evs []event
	switch {
	case s.Result == "failed":
		msg := fmt.Sprintf("commit %s: %s", s.ShortCommit(), s.CountsLine())
		if len(s.Errors) > 0 {
			msg += "; " + firstLine(s.Errors[0])
		}
		evs = append(evs, event{corev1.EventTypeWarning, "SyncFailed", msg})
	case s.Result == "unhealthy":
		msg := fmt.Sprintf("commit %s: %s", s.ShortCommit(), s.CountsLine())
		if len(s.Errors) > 0 {
			msg += "; " + firstLine(s.Errors[0])
		}
		evs = append(evs, event{corev1.EventTypeWarning, "Unhealthy", msg})
	case s.Result == "synced":
		evs = append(evs, event{corev1.EventTypeNormal, "Synced", fmt.Sprintf("commit %s: %s", s.ShortCommit(), s.CountsLine())})
	}
	if s.Drifted > 0 && s.DryRun == "" {
		evs = append(evs, event{corev1.EventTypeWarning, "DriftRepaired", fmt.Sprintf("commit %s: %s", s.ShortCommit(), s.DriftLine())})
	}
	if n := s.Counts["pruned"]; n > 0 && s.DryRun == "" {
		evs = append(evs, event{corev1.EventTypeNormal, "Pruned", fmt.Sprintf("commit %s: %d objects no longer in Git deleted", s.ShortCommit(), n)})
	}

	var errs []error
	now := metav1.NewTime(time.Now())
	for _, o := range objs {
		for _, e := range evs {
			_, err := cs.Events(o.Namespace).Create(ctx, &corev1.Event{
				ObjectMeta:     metav1.ObjectMeta{GenerateName: o.Name + ".", Namespace: o.Namespace},
				InvolvedObject: o,
				Reason:         e.reason,
				Message:        e.msg,
				Type:           e.kind,
				Source:         corev1.EventSource{Component: "cronsync"},
				FirstTimestamp: now,
				LastTimestamp:  now,
				Count:          1,
			}, metav1.CreateOptions{})
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
