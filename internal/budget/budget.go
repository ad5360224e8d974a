// Package budget runs a computation cronsync cannot interrupt (a Helm
// template, a Jsonnet program) within a time and a heap budget, so that a
// commit that loops or grows without end is reported as the commit's fault
// rather than ending the run on --timeout or in the OOM killer. Run watches
// one in this process; InChild runs one in a process of its own, which
// holds it to its memory budget however it allocates, and is the way the
// command runs every evaluation of repository text (see child.go).
package budget

import (
	"context"
	"fmt"
	"runtime/metrics"
	"time"
)

// Limits bound one computation.
type Limits struct {
	// Time is the longest it may run. A context deadline shortens it to
	// half of what is left, so that the run still has time to report.
	Time time.Duration
	// Heap is how much the process's heap (objects and goroutine stacks)
	// may grow while it runs.
	Heap uint64
}

// ExceededError says which budget a computation ran past.
type ExceededError struct {
	// Time is set when it ran past its time budget, Heap when past its
	// heap budget.
	Time time.Duration
	Heap uint64
}

func (e *ExceededError) Error() string {
	if e.Heap > 0 {
		return fmt.Sprintf("exceeded its memory budget of %d MiB and was stopped", e.Heap>>20)
	}
	return fmt.Sprintf("did not finish within %s", e.Time.Round(100*time.Millisecond))
}

// Run runs fn within l. Go cannot stop a goroutine, so a computation past
// its budget is abandoned, still running: the caller ends the run with an
// error soon after, and the process with it. A done ctx returns its cause.
func Run[T any](ctx context.Context, l Limits, fn func() (T, error)) (T, error) {
	limit := l.Time
	if dl, ok := ctx.Deadline(); ok {
		limit = min(limit, time.Until(dl)/2)
	}
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	start := heapBytes()
	go func() {
		v, err := fn()
		done <- result{v, err}
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	var zero T
	for {
		select {
		case res := <-done:
			return res.v, res.err
		case <-ctx.Done():
			return zero, context.Cause(ctx)
		case <-timer.C:
			return zero, &ExceededError{Time: limit}
		case <-tick.C:
			if used := heapBytes(); l.Heap > 0 && used > start && used-start > l.Heap {
				return zero, &ExceededError{Heap: l.Heap}
			}
		}
	}
}

// heapBytes is the memory a computation grows: heap objects, and goroutine
// stacks, which a recursion grows without allocating an object.
func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	var n uint64
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			n += v.Value.Uint64()
		}
	}
	return n
}
