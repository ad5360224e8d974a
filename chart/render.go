package chart

import (
	"fmt"
	"strings"
	"text/template"
)

// maxItems bounds what one call of until, untilStep or repeat may build.
// Each allocates its whole result at once, so a large argument would take
// the process's memory before any watchdog could look; no chart needs a
// million of anything.
const maxItems = 1_000_000

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
