// Package lease holds a coordination.k8s.io Lease for the length of a sync,
// so that two cronsync runs against one cluster never apply at the same time:
// concurrencyPolicy: Forbid only covers the Jobs the CronJob controller
// makes, not `kubectl create job --from` or a run from a laptop.
package lease

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
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
	// Duration is how long the Lease stays held without renewal, in the
	// eyes of other runs; it is renewed every sixth of it. A holder that
	// dies without releasing it blocks others for at most this long. The
	// holder itself counts on it for less (see Fence).
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

	mu sync.Mutex
	// renewed is the renewTime this run last wrote and the server took:
	// other runs count the Lease held until it plus Duration.
	renewed  time.Time
	loseOnce sync.Once
	why      error
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
		l.setRenewed(now.Time)
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
	l.setRenewed(now.Time)
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

// Lost is closed when the Lease was taken by another run, or could not be
// renewed while it was surely still held (see Fence): the sync must stop
// writing.
func (l *Lease) Lost() <-chan struct{} { return l.lost }

// lose closes Lost, saying why (the first time only).
func (l *Lease) lose(why string) {
	l.loseOnce.Do(func() {
		l.mu.Lock()
		l.why = &lostError{lease: l.name(), why: why}
		l.mu.Unlock()
		close(l.lost)
	})
}

// Why says why the Lease was lost, once Lost is closed.
func (l *Lease) Why() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.why
}

func (l *Lease) setRenewed(t time.Time) {
	l.mu.Lock()
	l.renewed = t
	l.mu.Unlock()
}

// bounds are what the holder counts on, from the renewTime it last wrote:
// it starts writes until valid (two thirds of Duration on), and cuts off
// a write still unanswered at deadline (five sixths on), so that every
// write is over before another run may take the Lease (all of Duration
// on), with a sixth of it to spare for clocks and the server's own delay.
func (l *Lease) bounds() (valid, deadline time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.renewed.Add(l.opts.Duration * 2 / 3), l.renewed.Add(l.opts.Duration * 5 / 6)
}

// renew renews the Lease every sixth of Duration, so that a renewal or
// two may fail before valid, and declares it lost at valid if none came
// through. A timer, not the next tick, notices that: a process that was
// stopped (a paused VM, a starved node) finds it lost the moment it goes
// on, before it writes again (Fence checks too).
func (l *Lease) renew() {
	defer close(l.done)
	t := time.NewTicker(l.opts.Duration / 6)
	defer t.Stop()
	for {
		valid, _ := l.bounds()
		expire := time.NewTimer(time.Until(valid))
		select {
		case <-l.stop:
			expire.Stop()
			return
		case <-expire.C:
			l.lose("could not be renewed in time")
			return
		case <-t.C:
			expire.Stop()
		}
		// A renewal answered after valid would come too late to count.
		ctx, cancel := context.WithDeadline(context.Background(), valid)
		err := l.renewOnce(ctx)
		cancel()
		var held *HeldError
		if errors.As(err, &held) {
			l.lose("was taken by " + held.Holder)
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
		l.setRenewed(now.Time)
	}
	return err
}

// ErrLost is what Fence answers a write with once the Lease is lost, or
// may be: another run may be writing by then.
var ErrLost = errors.New("lost")

// lostError names the Lease.
type lostError struct{ lease, why string }

func (e *lostError) Error() string        { return "lease " + e.lease + " " + e.why }
func (e *lostError) Is(target error) bool { return target == ErrLost }

// Fence wraps the transport of what writes while the Lease is held (the
// apply, the record of the run): a write (any request but GET, HEAD and a
// server dry run) is sent only while the Lease is surely held, and is cut
// off if still unanswered shortly before another run could take it. A
// run's context is cancelled when Lost is closed, but a worker may be
// about to send when that happens, and a write in flight is not called
// back; this check sits right before the write, on every write.
func (l *Lease) Fence(next http.RoundTripper) http.RoundTripper {
	return &fence{l: l, next: next}
}

type fence struct {
	l    *Lease
	next http.RoundTripper
}

func (f *fence) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method == http.MethodGet || req.Method == http.MethodHead || req.URL.Query().Get("dryRun") == metav1.DryRunAll {
		return f.next.RoundTrip(req)
	}
	select {
	case <-f.l.lost:
		return nil, f.l.Why()
	default:
	}
	valid, deadline := f.l.bounds()
	if !time.Now().Before(valid) {
		f.l.lose("could not be renewed in time")
		return nil, f.l.Why()
	}
	ctx, cancel := context.WithDeadlineCause(req.Context(), deadline,
		&lostError{lease: f.l.name(), why: "was about to run out with this write unanswered"})
	resp, err := f.next.RoundTrip(req.WithContext(ctx))
	if err != nil {
		cancel()
		return nil, err
	}
	resp.Body = &cancelOnClose{ReadCloser: resp.Body, cancel: cancel}
	return resp, nil
}

// cancelOnClose ends a write's deadline once its answer is read.
type cancelOnClose struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (c *cancelOnClose) Close() error {
	err := c.ReadCloser.Close()
	c.cancel()
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
