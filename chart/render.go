package chart

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"text/template"

	"helm.sh/helm/v4/pkg/chart/common"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/engine"

	"github.com/cronsync/cronsync/internal/budget"
)

// maxItems bounds what one call of until, untilStep or repeat may build.
// Each allocates its whole result at once, so a large argument would take
// the process's memory before any watchdog could look; no chart needs a
// million of anything.
const maxItems = 1_000_000

// render runs Helm's engine within the render and memory budgets.
func (r *Renderer) render(ctx context.Context, ch *chartv2.Chart, vals common.Values) (map[string]string, error) {
	e := engine.Engine{CustomTemplateFuncs: cappedFuncs()}
	files, err := budget.Run(ctx, budget.Limits{Time: r.opts.RenderBudget, Heap: r.opts.MemoryBudget}, func() (map[string]string, error) {
		return e.RenderWithContext(ctx, ch, vals)
	})
	if exceeded, ok := errors.AsType[*budget.ExceededError](err); ok {
		if exceeded.Heap > 0 {
			return nil, fmt.Errorf("rendering %v: does a template produce output without end?", exceeded)
		}
		return nil, fmt.Errorf("rendering %v: does a template loop or recurse without end?", exceeded)
	}
	return files, err
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
