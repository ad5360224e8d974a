// Package lease holds a coordination.k8s.io Lease for the length of a sync,
// so that two cronsync runs against one cluster never apply at the same time:
// concurrencyPolicy: Forbid only covers the Jobs the CronJob controller
// makes, not `kubectl create job --from` or a run from a laptop.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	coordclient "k8s.io/client-go/kubernetes/typed/coordination/v1"
	"k8s.io/client-go/rest"
)

// Options names the Lease and who holds it.
type Options struct {
	// Namespace and Name of the Lease.
	Namespace, Name string
	// Holder identifies this run: the pod's name in a cluster.
	Holder string
	// Duration is how long the Lease stays held without renewal; it is
	// renewed every third of it. A holder that dies without releasing it
	// blocks others for at most this long.
	Duration time.Duration
}

// HeldError says another live run holds the Lease.
type HeldError struct {
	Lease  string
	Holder string
	// Until is when the holder's claim runs out unless renewed.
	Until time.Time
}

func (e *HeldError) Error() string {
	return fmt.Sprintf("lease %s is held by %s until %s", e.Lease, e.Holder, e.Until.Format(time.RFC3339))
}

// Lease is a held Lease, renewed in the background until Release.
type Lease struct {
	opts   Options
	client coordclient.LeaseInterface
	lost   chan struct{}
	stop   chan struct{}
	// done is closed when the renewing goroutine has returned, so that
	// Release never races a renewal in flight.
	done chan struct{}
	// held is the Lease as this run last wrote it: Release frees it without
	// reading it again, unless someone wrote it since.
	held *coordinationv1.Lease
}

// Acquire takes the Lease if it is free, released, or expired, and returns a
// *HeldError if a live run holds it.
func Acquire(ctx context.Context, cfg *rest.Config, opts Options) (*Lease, error) {
	cs, err := coordclient.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	l := &Lease{opts: opts, client: cs.Leases(opts.Namespace), lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	if err := l.take(ctx); err != nil {
		return nil, err
	}
	go l.renew()
	return l, nil
}

func (l *Lease) name() string { return l.opts.Namespace + "/" + l.opts.Name }

func (l *Lease) take(ctx context.Context) error {
	now := metav1.NewMicroTime(time.Now())
	seconds := int32(l.opts.Duration / time.Second)
	cur, err := l.client.Get(ctx, l.opts.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		created, err := l.client.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{Name: l.opts.Name, Namespace: l.opts.Namespace},
			Spec: coordinationv1.LeaseSpec{
				HolderIdentity: &l.opts.Holder, LeaseDurationSeconds: &seconds,
				AcquireTime: &now, RenewTime: &now,
			},
		}, metav1.CreateOptions{})
		if apierrors.IsAlreadyExists(err) {
			return l.take(ctx) // another run created it first: judge that one
		}
		if err != nil {
			return fmt.Errorf("creating lease %s: %w", l.name(), err)
		}
		l.held = created
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading lease %s: %w", l.name(), err)
	}
	if held := heldByOther(cur, l.opts.Holder); held != nil {
		held.Lease = l.name()
		return held
	}
	cur.Spec.HolderIdentity, cur.Spec.LeaseDurationSeconds = &l.opts.Holder, &seconds
	cur.Spec.AcquireTime, cur.Spec.RenewTime = &now, &now
	taken, err := l.client.Update(ctx, cur, metav1.UpdateOptions{})
	if apierrors.IsConflict(err) {
		return l.take(ctx) // someone took it between our read and write
	}
	if err != nil {
		return fmt.Errorf("taking lease %s: %w", l.name(), err)
	}
	l.held = taken
	return nil
}

// heldByOther reports who holds l, unless it is free, ours, or expired.
func heldByOther(l *coordinationv1.Lease, me string) *HeldError {
	s := l.Spec
	if s.HolderIdentity == nil || *s.HolderIdentity == "" || *s.HolderIdentity == me || s.RenewTime == nil || s.LeaseDurationSeconds == nil {
		return nil
	}
	until := s.RenewTime.Add(time.Duration(*s.LeaseDurationSeconds) * time.Second)
	if time.Now().After(until) {
		return nil
	}
	return &HeldError{Holder: *s.HolderIdentity, Until: until}
}

// Lost is closed when the Lease could not be renewed in time or was taken
// by another run: the sync must stop writing.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.opts.Duration / 3)
	defer t.Stop()
	lastRenewed := time.Now()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), l.opts.Duration/3)
		err := l.renewOnce(ctx)
		cancel()
		if err == nil {
			lastRenewed = time.Now()
			continue
		}
		var held *HeldError
		if errors.As(err, &held) || time.Since(lastRenewed) > l.opts.Duration {
			close(l.lost)
			return
		}
	}
}

func (l *Lease) renewOnce(ctx context.Context) error {
	cur, err := l.client.Get(ctx, l.opts.Name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	if cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != l.opts.Holder {
		return &HeldError{Lease: l.name(), Holder: fmt.Sprint(cur.Spec.HolderIdentity)}
	}
	now := metav1.NewMicroTime(time.Now())
	cur.Spec.RenewTime = &now
	renewed, err := l.client.Update(ctx, cur, metav1.UpdateOptions{})
	if err == nil {
		l.held = renewed
	}
	return err
}

// Release stops renewing and frees the Lease so the next run need not wait
// for it to expire. It is safe to call once, after the sync.
func (l *Lease) Release(ctx context.Context) error {
	close(l.stop)
	<-l.done
	// The write carries the resourceVersion this run last wrote, so it
	// fails if anyone has written the Lease since; only then is it read.
	if l.held != nil {
		free := l.held.DeepCopy()
		free.Spec.HolderIdentity = nil
		_, err := l.client.Update(ctx, free, metav1.UpdateOptions{})
		if err == nil {
			return nil
		}
		if !apierrors.IsConflict(err) {
			return fmt.Errorf("releasing lease %s: %w", l.name(), err)
		}
	}
	cur, err := l.client.Get(ctx, l.opts.Name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("releasing lease %s: %w", l.name(), err)
	}
	if cur.Spec.HolderIdentity == nil || *cur.Spec.HolderIdentity != l.opts.Holder {
		return nil // not ours any more
	}
	cur.Spec.HolderIdentity = nil
	if _, err := l.client.Update(ctx, cur, metav1.UpdateOptions{}); err != nil && !apierrors.IsConflict(err) {
		return fmt.Errorf("releasing lease %s: %w", l.name(), err)
	}
	return nil
}
