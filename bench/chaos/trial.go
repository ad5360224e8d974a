package main

import (
	"context"
	"fmt"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// Fault kinds. api-* and git-* are the proxies' on one request (or a
// burst of them); the others are done to a process at the moment the run
// sends its Nth request to the API server.
const (
	apiReset     = "api-reset"
	apiStall     = "api-stall"
	apiCut       = "api-cut"
	api503       = "api-503"
	api429       = "api-429"
	gitReset     = "git-reset"
	gitStall     = "git-stall"
	gitCut       = "git-cut"
	git503       = "git-503"
	sigterm      = "sigterm"
	sigkill      = "sigkill"
	apiRestart   = "apiserver-restart"
	leaseStolen  = "lease-stolen"
	leaseExpired = "lease-expired"
	pause        = "pause"
)

// faultKinds are drawn from with equal weight; a dry run draws from the
// ones that do not need a Lease.
var (
	faultKinds = []string{apiReset, apiStall, apiCut, api503, api429, gitReset, gitStall, gitCut, git503,
		sigterm, sigkill, apiRestart, leaseStolen, leaseExpired, pause}
	dryRunFaults = []string{apiReset, apiStall, apiCut, api503, api429, gitReset, gitCut, git503, sigterm, sigkill, apiRestart}
)

// faultSpec is the one fault of a trial and its moment.
type faultSpec struct {
	Kind string
	// Nth is the request it lands on: the run's Nth to the Git server for
	// git-*, to the API server for the rest.
	Nth int
	// After: a reset or stall lands once the server has done the request.
	After bool
	// Frac is how much of a cut answer gets through.
	Frac float64
	// Count is how many requests in a row a 503 or 429 answers.
	Count int
	// Down is how long the API server stays dead.
	Down time.Duration
	// Slow is how late the run's requests are answered once its Lease
	// renewals stall (lease-expired).
	Slow time.Duration
	// At, when not zero, is the moment a fault done to a process lands:
	// this long after the run started, in place of its Nth request.
	At time.Duration
}

func (f faultSpec) String() string {
	s := fmt.Sprintf("%s at request %d", f.Kind, f.Nth)
	if f.At > 0 {
		s = fmt.Sprintf("%s at %s", f.Kind, f.At)
	}
	switch f.Kind {
	case apiReset, apiStall, gitReset, gitStall:
		if f.After {
			s += " (after the server answered)"
		} else {
			s += " (before the server saw it)"
		}
	case apiCut, gitCut:
		s += fmt.Sprintf(" (%.0f%% of the answer)", f.Frac*100)
	case api503, api429, git503:
		s += fmt.Sprintf(" (%d in a row)", f.Count)
	case apiRestart:
		s += fmt.Sprintf(" (down %s)", f.Down)
	case leaseExpired:
		how := "stall"
		if f.After {
			how = "are answered 503"
		}
		s += fmt.Sprintf(" (the Lease's requests %s, every other request %s late)", how, f.Slow)
	}
	return s
}

// plan is everything one trial does, derived from the seed and the
// trial's number alone, so that -seed S -trial K replays it.
type plan struct {
	Seed  uint64
	Trial int
	// Before is the commit the cluster holds when the trial starts,
	// After the one it syncs.
	Before, After *model
	// Left are members that runs without --prune left in the cluster
	// before the trial (not in Before).
	Left   map[key]item
	Prune  bool
	DryRun bool
	Fault  faultSpec
}

// expectedRequests is about how many requests a run that changes a
// commit like these sends to the API server; the fault's moment is drawn
// up to a little past it, so that some faults land after the last request.
const expectedRequests = 110

// chain is the sequence of commits trials go through: each trial's
// commit is the one before it, changed. Only the seed decides it.
type chain struct {
	seed uint64
	k    int
	m    *model
	left map[key]item
}

func newChain(seed uint64) *chain {
	return &chain{seed: seed, m: newModel(rand.New(rand.NewPCG(seed, 0))), left: map[key]item{}}
}

// next plans the next trial.
func (c *chain) next() *plan {
	c.k++
	rng := rand.New(rand.NewPCG(c.seed, uint64(2*c.k)))
	prune := rng.IntN(5) != 0
	next := c.m.mutate(rng)
	p := &plan{Seed: c.seed, Trial: c.k, Before: c.m, After: next, Left: maps.Clone(c.left), Prune: prune}
	objs, nextObjs := c.m.objects(), next.objects()
	if prune {
		clear(c.left)
	} else {
		maps.Copy(c.left, objs)
	}
	for k := range nextObjs {
		delete(c.left, k)
	}
	c.m = next
	p.Fault, p.DryRun = drawFault(c.seed, c.k)
	return p
}

// planTrial replays the commits from trial 1 to k (no cluster needed) to
// plan trial k alone.
func planTrial(seed uint64, k int) *plan {
	c := newChain(seed)
	var p *plan
	for range k {
		p = c.next()
	}
	return p
}

// forceKind, when set, replaces every fault's kind (-kind).
var forceKind string

// drawFault draws trial k's fault from a stream of its own, so that the
// commits do not depend on which faults are drawn.
func drawFault(seed uint64, k int) (faultSpec, bool) {
	rng := rand.New(rand.NewPCG(seed, uint64(2*k+1)))
	dryRun := rng.IntN(8) == 0
	kinds := faultKinds
	if dryRun {
		kinds = dryRunFaults
	}
	f := faultSpec{Kind: kinds[rng.IntN(len(kinds))]}
	if forceKind != "" {
		f.Kind = forceKind
	}
	f.Nth = 1 + rng.IntN(expectedRequests*5/4)
	f.After = rng.IntN(2) == 0
	f.Frac = rng.Float64()
	f.Count = 1
	switch f.Kind {
	case gitReset, gitStall, gitCut, git503:
		// A run asks the Git server for its refs, then for the commit.
		f.Nth = 1 + rng.IntN(2)
	case api503:
		f.Count = 1 + rng.IntN(4)
	case api429:
		// client-go retries a 429 with Retry-After up to 10 times.
		f.Count = 1 + rng.IntN(14)
	case apiRestart:
		f.Down = time.Duration(rng.IntN(3000)) * time.Millisecond
	case leaseExpired:
		f.Slow = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second}[rng.IntN(4)]
	}
	switch f.Kind {
	case sigterm, sigkill, apiRestart, leaseStolen, pause:
		if rng.IntN(2) == 0 {
			f.At = time.Duration(1+rng.IntN(3000)) * time.Millisecond
		}
	}
	return f, dryRun
}

// trialResult is what a trial found.
type trialResult struct {
	Trial int
	Fault faultSpec
	// Landed: the fault landed on a request (or a process) of the run;
	// Sent is how many API requests the faulted run sent in all.
	Landed bool
	Sent   int
	// Exit is how the faulted run ended: its status, or the signal.
	Exit       string
	Violations []string
	Took       time.Duration
}

func (r *trialResult) violate(format string, args ...any) {
	r.Violations = append(r.Violations, fmt.Sprintf(format, args...))
}

// setup brings a fresh lab to the state trial p starts from: Before and
// Left applied, as the chain of trials before it would have left it.
func (l *lab) setup(p *plan) error {
	var extra []item
	for _, k := range slices.SortedFunc(maps.Keys(p.Left), func(a, b key) int { return strings.Compare(a.String(), b.String()) }) {
		extra = append(extra, p.Left[k])
	}
	// Whatever the cluster held before is pruned: the state is the
	// plan's, whichever trial ran last.
	if err := l.commitModel(p.Before, extra, "setup with the members left behind"); err != nil {
		return err
	}
	if _, err := l.sync(runOpts{prune: true}); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	if err := l.commitModel(p.Before, nil, "setup"); err != nil {
		return err
	}
	if _, err := l.sync(runOpts{}); err != nil {
		return fmt.Errorf("setup: %w", err)
	}
	return nil
}

func (l *lab) commitModel(m *model, extra []item, msg string) error {
	files, err := m.files(l.encrypt, extra)
	if err != nil {
		return err
	}
	_, err = l.repo.commit(files, msg)
	return err
}

// trial runs p: the commit changes, one run with the fault, the next run
// without faults, and one more; then it checks the invariants. An error
// is the harness failing, not a violation.
func (l *lab) trial(p *plan) (*trialResult, error) {
	start := time.Now()
	res := &trialResult{Trial: p.Trial, Fault: p.Fault}
	defer func() { res.Took = time.Since(start) }()
	// The proxies' records of earlier trials are not needed any more.
	l.api.Forget(l.api.Seq())
	l.other.Forget(l.other.Seq())
	l.git.Forget(l.git.Seq())
	if err := l.commitModel(p.After, nil, fmt.Sprintf("trial %d", p.Trial)); err != nil {
		return nil, err
	}
	before, err := l.uids(p)
	if err != nil {
		return nil, err
	}
	if l.startMembers, err = l.members(p); err != nil {
		return nil, err
	}
	mark := l.cluster.AuditMark()
	apiSeq, otherSeq := l.api.Seq(), l.other.Seq()

	f, err := l.faulted(p, res)
	if err != nil {
		return nil, err
	}
	sent := 0
	for _, r := range l.api.Log(apiSeq) {
		if r.Tag == f.Tag {
			sent++
		}
	}
	res.Sent = sent
	res.Exit = fmt.Sprint(f.Code)
	if f.Signal != "" {
		res.Exit = f.Signal
	}

	// The Lease: released, or expiring within --lease-duration of the
	// run's end.
	if h, err := l.waitLease(time.Until(f.End.Add(leaseDuration + 3*time.Second))); err != nil {
		res.violate("(7) after the faulted run %s ended at %s the lease was still held by %s: %v", f.Tag, f.End.Format(time.RFC3339Nano), h, err)
		if _, err := l.waitLease(time.Minute); err != nil {
			return nil, err
		}
	}
	l.checkFaulted(p, f, res)
	if err := l.checkInventory(p, res, "after the faulted run "+f.Tag); err != nil {
		return nil, err
	}

	next, err := l.start(runOpts{prune: p.Prune})
	if err != nil {
		return nil, err
	}
	n1, err := next.wait(l.cleanRunTimeout + 30*time.Second)
	if err != nil {
		return nil, err
	}
	if n1.Code != 0 {
		res.violate("(5) the run %s after the faulted one exited %d, want 0: %s", n1.Tag, n1.Code, lastLines(n1.Stderr, 5))
	} else if n1.Summary != nil && n1.Summary.Result == "skipped" {
		res.violate("(7) the run %s after the faulted one was skipped: the lease was still held", n1.Tag)
	} else if err := l.checkEquals(p, res, "after run "+n1.Tag); err != nil {
		return nil, err
	}
	if err := l.checkInventory(p, res, "after run "+n1.Tag); err != nil {
		return nil, err
	}
	if _, err := l.waitLease(leaseDuration + 3*time.Second); err != nil {
		res.violate("(7) after run %s the lease was not released: %v", n1.Tag, err)
	}

	third, err := l.start(runOpts{prune: p.Prune})
	if err != nil {
		return nil, err
	}
	n2, err := third.wait(l.cleanRunTimeout + 30*time.Second)
	if err != nil {
		return nil, err
	}
	if n2.Code != 0 {
		res.violate("(5) the second run %s after the faulted one exited %d, want 0: %s", n2.Tag, n2.Code, lastLines(n2.Stderr, 5))
	}
	events, err := l.cluster.AuditSince(mark, "")
	if err != nil {
		return nil, err
	}
	l.noteDryDeletes(l.api.Log(apiSeq), l.other.Log(otherSeq))
	l.checkNoChange(p, n2, events, res)
	if err := l.checkInventory(p, res, "after run "+n2.Tag); err != nil {
		return nil, err
	}
	if _, err := l.waitLease(leaseDuration + 3*time.Second); err != nil {
		res.violate("(7) after run %s the lease was not released: %v", n2.Tag, err)
	}

	runs := []*run{f, n1, n2}
	if l.second != nil {
		runs = append(runs, l.second)
	}
	l.checkWrites(p, runs, events, res)
	l.checkFailedCheck(p, f, l.api.Log(apiSeq), events, res)
	if l.verbose {
		for tag, ws := range leaseWrites(l.api.Log(apiSeq), l.other.Log(otherSeq)) {
			for _, w := range ws {
				fmt.Fprintf(l.log, "lease %s %s-%s holder %q renewTime %s\n", tag, w.start.Format("15:04:05.000000"), w.end.Format("15:04:05.000000"), w.holder, w.renew.Format("15:04:05.000000"))
			}
		}
		for _, ev := range events {
			if tag := tagOf(ev); tag != "" && (l.isWrite(ev) || evKey(ev).Resource == "leases") {
				code := 0
				if ev.ResponseStatus != nil {
					code = ev.ResponseStatus.Code
				}
				fmt.Fprintf(l.log, "audit %s %s %s %s %d %s\n", tag, ev.Received.Format("15:04:05.000000"), ev.Completed.Format("15:04:05.000000"), ev.Verb, code, evKey(ev))
			}
		}
	}
	l.checkOverlap(events, res)
	l.checkFencing(runs, events, leaseWrites(l.api.Log(apiSeq), l.other.Log(otherSeq)), res)
	if err := l.checkUIDs(p, before, res); err != nil {
		return nil, err
	}
	if err := l.checkBystanders(res); err != nil {
		return nil, err
	}
	return res, nil
}

// faulted runs the trial's faulted run and, for the Lease faults, the run
// that competes with it (l.second).
func (l *lab) faulted(p *plan, res *trialResult) (*run, error) {
	l.second = nil
	o := runOpts{prune: p.Prune, dryRun: p.DryRun, timeout: l.faultedRunTimeout}
	f := p.Fault
	var proc *os.Process
	procReady := make(chan struct{})
	withProc := func(fn func(*os.Process)) func() {
		return func() {
			<-procReady
			fn(proc)
		}
	}
	var mu sync.Mutex
	var landed time.Time
	land := func() {
		mu.Lock()
		if landed.IsZero() {
			landed = time.Now()
		}
		mu.Unlock()
	}
	// What happens besides the run: restarting the API server, the other
	// run that takes the Lease.
	var aside sync.WaitGroup
	var asideErr error
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if asideErr == nil {
			asideErr = err
		}
	}
	restarted := make(chan struct{})

	var apiFault, gitFault *testenv.Fault
	switch f.Kind {
	case apiReset:
		apiFault = &testenv.Fault{Kind: testenv.FaultReset, Nth: f.Nth, AfterUpstream: f.After}
	case apiStall:
		apiFault = &testenv.Fault{Kind: testenv.FaultStall, Nth: f.Nth, AfterUpstream: f.After, Hold: 2 * l.faultedRunTimeout}
	case apiCut:
		apiFault = &testenv.Fault{Kind: testenv.FaultCut, Nth: f.Nth, CutFraction: f.Frac}
	case api503:
		apiFault = &testenv.Fault{Kind: testenv.FaultStatus, Nth: f.Nth, Count: f.Count, Status: http.StatusServiceUnavailable}
	case api429:
		apiFault = &testenv.Fault{Kind: testenv.FaultStatus, Nth: f.Nth, Count: f.Count, Status: http.StatusTooManyRequests, RetryAfter: "1"}
	case gitReset:
		gitFault = &testenv.Fault{Kind: testenv.FaultReset, Nth: f.Nth, AfterUpstream: f.After}
	case gitStall:
		gitFault = &testenv.Fault{Kind: testenv.FaultStall, Nth: f.Nth, AfterUpstream: f.After, Hold: time.Minute}
	case gitCut:
		gitFault = &testenv.Fault{Kind: testenv.FaultCut, Nth: f.Nth, CutFraction: f.Frac}
	case git503:
		gitFault = &testenv.Fault{Kind: testenv.FaultStatus, Nth: f.Nth, Status: http.StatusServiceUnavailable}
	case sigterm, sigkill:
		sig := syscall.SIGTERM
		if f.Kind == sigkill {
			sig = syscall.SIGKILL
		}
		apiFault = &testenv.Fault{Kind: testenv.FaultCall, Nth: f.Nth, Call: withProc(func(p *os.Process) {
			land()
			_ = p.Signal(sig)
		})}
	case apiRestart:
		apiFault = &testenv.Fault{Kind: testenv.FaultCall, Nth: f.Nth, Call: func() {
			land()
			args, err := l.cluster.KillAPIServer()
			if err != nil {
				fail(err)
				close(restarted)
				return
			}
			l.apiserverArgs = args
			aside.Go(func() {
				defer close(restarted)
				time.Sleep(f.Down)
				if err := l.cluster.RestartAPIServer(args); err != nil {
					fail(fmt.Errorf("restarting the API server: %w", err))
				}
			})
		}}
	case leaseStolen:
		apiFault = &testenv.Fault{Kind: testenv.FaultCall, Nth: f.Nth, Call: func() {
			land()
			if err := l.stealLease("intruder"); err != nil {
				fail(err)
			}
		}}
	case leaseExpired, pause:
		// The run stops renewing its Lease (its renewals stall, or the
		// whole process is stopped); once the Lease has expired another
		// run takes it and syncs; then the first goes on.
		cont := make(chan struct{})
		apiFault = &testenv.Fault{Kind: testenv.FaultCall, Nth: f.Nth, Call: withProc(func(proc *os.Process) {
			land()
			if f.Kind == pause {
				_ = proc.Signal(syscall.SIGSTOP)
			} else {
				// The Lease's requests stall until the connection is
				// reset (or, After, are answered 503), every other
				// request is slowed down, so that the run is still at
				// work when its Lease runs out.
				leaseFault := &testenv.Fault{Kind: testenv.FaultStall, Nth: 1, Count: 1 << 30, Match: isLeaseRequest, Hold: leaseDuration}
				if f.After {
					leaseFault = &testenv.Fault{Kind: testenv.FaultStatus, Status: http.StatusServiceUnavailable, Nth: 1, Count: 1 << 30, Match: isLeaseRequest}
				}
				l.api.Arm(leaseFault, &testenv.Fault{Kind: testenv.FaultDelay, Nth: 1, Count: 1 << 30, Hold: f.Slow})
			}
			close(cont)
		})}
		aside.Go(func() {
			select {
			case <-cont:
			case <-time.After(l.faultedRunTimeout + 30*time.Second):
				return // the fault never landed
			}
			// Whatever the run wrote to the Lease, it wrote by now.
			time.Sleep(leaseDuration)
			if _, err := l.waitLease(2 * time.Minute); err != nil {
				fail(err)
				return
			}
			s, err := l.start(runOpts{prune: p.Prune, other: true})
			if err != nil {
				fail(err)
				return
			}
			r, err := s.wait(l.cleanRunTimeout + 30*time.Second)
			if err != nil {
				fail(err)
				return
			}
			l.second = r
			if r.Code != 0 {
				res.violate("(5) the run %s that took the expired lease exited %d: %s", r.Tag, r.Code, lastLines(r.Stderr, 5))
			}
			if f.Kind == pause {
				_ = proc.Signal(syscall.SIGCONT)
			}
		})
	}
	var timed func()
	if f.At > 0 && apiFault != nil && apiFault.Kind == testenv.FaultCall {
		timed, apiFault = apiFault.Call, nil
	}
	l.api.Arm(apiFault)
	l.git.Arm(gitFault)
	defer l.api.Arm()
	defer l.git.Arm()

	s, err := l.start(o)
	if err != nil {
		return nil, err
	}
	proc = s.cmd.Process
	close(procReady)
	if timed != nil {
		t := time.AfterFunc(f.At, timed)
		go func() {
			<-s.done
			t.Stop() // a run that ended first takes no fault
		}()
	}
	r, err := s.wait(l.faultedRunTimeout + 2*time.Minute)
	if err != nil {
		res.violate("(1) the faulted run did not end: %v", err)
	}
	if f.Kind == pause && !landed.IsZero() {
		aside.Wait()
	}
	if f.Kind == leaseExpired && !landed.IsZero() {
		aside.Wait()
	}
	if f.Kind == apiRestart && !landed.IsZero() {
		<-restarted
	}
	if f.Kind == leaseStolen && !landed.IsZero() {
		// The other holder finishes and frees it.
		if err := l.stealLease(""); err != nil {
			return nil, err
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if asideErr != nil {
		return nil, asideErr
	}
	switch {
	case !landed.IsZero():
		res.Landed = true
	case apiFault != nil && apiFault.Kind != testenv.FaultCall:
		_, res.Landed = l.api.Fired()
	case gitFault != nil:
		_, res.Landed = l.git.Fired()
	}
	l.api.Arm()
	l.git.Arm()
	return r, err
}

func isLeaseRequest(r *http.Request) bool {
	return strings.Contains(r.URL.Path, "/leases/"+setName) || strings.HasSuffix(r.URL.Path, "/namespaces/"+ctlNamespace+"/leases")
}

// stealLease writes the Lease as another holder would that took it
// (holder set), or frees it (holder "").
func (l *lab) stealLease(holder string) error {
	ctx := context.Background()
	leases := l.cs.CoordinationV1().Leases(ctlNamespace)
	for range 10 {
		le, err := leases.Get(ctx, setName, metav1.GetOptions{})
		if err != nil {
			return fmt.Errorf("reading the lease to steal it: %w", err)
		}
		now := metav1.NewMicroTime(time.Now())
		secs := int32(leaseDuration / time.Second)
		if holder == "" {
			if le.Spec.HolderIdentity == nil || *le.Spec.HolderIdentity != "intruder" {
				return nil
			}
			le.Spec.HolderIdentity = nil
		} else {
			le.Spec.HolderIdentity = &holder
			le.Spec.RenewTime, le.Spec.AcquireTime, le.Spec.LeaseDurationSeconds = &now, &now, &secs
		}
		if _, err := leases.Update(ctx, le, metav1.UpdateOptions{}); err == nil {
			return nil
		}
	}
	return fmt.Errorf("could not write the lease")
}
