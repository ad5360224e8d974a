package chart

import (
	"context"
	"fmt"
	"runtime/metrics"
	"strings"
	"text/template"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/engine"
)

// maxItems bounds what one call of until, untilStep or repeat may build.
// Each allocates its whole result at once, so a large argument would take
// the process's memory before any watchdog could look; no chart needs a
// million of anything.
const maxItems = 1_000_000

// render runs Helm's engine within the render and memory budgets. Go
// cannot stop a goroutine, so a template past its budget is abandoned: the
// run ends with a manifest error soon after, and the process with it.
func (r *Renderer) render(ctx context.Context, ch *chartv2.Chart, vals common.Values) (map[string]string, error) {
	e := engine.Engine{CustomTemplateFuncs: cappedFuncs()}
	budget := r.opts.RenderBudget
	if dl, ok := ctx.Deadline(); ok {
		// Leave the run time to report the chart as the fault, rather than
		// end on --timeout.
		budget = min(budget, time.Until(dl)/2)
	}
	type result struct {
		files map[string]string
		err   error
	}
	done := make(chan result, 1)
	start := heapBytes()
	go func() {
		files, err := e.RenderWithContext(ctx, ch, vals)
		done <- result{files, err}
	}()
	timer := time.NewTimer(budget)
	defer timer.Stop()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case res := <-done:
			return res.files, res.err
		case <-ctx.Done():
			return nil, context.Cause(ctx)
		case <-timer.C:
			return nil, fmt.Errorf("rendering did not finish within %s: does a template loop or recurse without end?", budget.Round(100*time.Millisecond))
		case <-tick.C:
			if used := heapBytes(); used > start && used-start > r.opts.MemoryBudget {
				return nil, fmt.Errorf("rendering used over %d MiB and was stopped: does a template produce output without end?", r.opts.MemoryBudget>>20)
			}
		}
	}
}

func heapBytes() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// cappedFuncs replaces the sprig functions that allocate their whole
// result up front with ones that refuse more than maxItems.
func cappedFuncs() template.FuncMap {
	return template.FuncMap{
		"until": func(n int) ([]int, error) {
			if n < 0 {
				return untilStep(0, n, -1)
			}
			return untilStep(0, n, 1)
		},
		"untilStep": untilStep,
		"repeat": func(n int, s string) (string, error) {
			if n > 0 && len(s) > 0 && n > maxItems*64/len(s) {
				return "", fmt.Errorf("repeat %d of a %d-byte string: over %d bytes", n, len(s), maxItems*64)
			}
			return strings.Repeat(s, max(n, 0)), nil
		},
	}
}

// untilStep is sprig's, bounded.
func untilStep(start, stop, step int) ([]int, error) {
	var v []int
	if step == 0 || (stop < start && step > 0) || (stop > start && step < 0) {
		return v, nil
	}
	if n := (stop - start) / step; n > maxItems {
		return nil, fmt.Errorf("until %d: over %d items", n, maxItems)
	}
	if stop < start {
		for i := start; i > stop; i += step {
			v = append(v, i)
		}
		return v, nil
	}
	for i := start; i < stop; i += step {
		v = append(v, i)
	}
	return v, nil
}
