package chart

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/cronsync/cronsync/internal/budget"
)

// Task names the rendering of one chart among the tasks a child process
// serves (see budget.Serve).
const Task = "helm-chart"

// childJob is a job and the limits its renderer needs, as the parent
// sends it.
type childJob struct {
	Job                         *job
	MaxFileBytes, MaxChartBytes int64
}

// childResult is a chart's rendering, or the error that stopped it with
// its place, which a message alone would lose.
type childResult struct {
	Rendered *Rendered
	Err      string
	// Source and Line are the LocatedError's, when Err is one.
	Source string
	Line   int
}

// Serve is the child's side: one chart, loaded and rendered. The child's
// budget holds it.
func Serve(ctx context.Context, request []byte) ([]byte, error) {
	var cj childJob
	if err := gob.NewDecoder(bytes.NewReader(request)).Decode(&cj); err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	r := &Renderer{opts: Options{MaxFileBytes: cj.MaxFileBytes, MaxChartBytes: cj.MaxChartBytes}}
	var res childResult
	out, err := r.renderJob(ctx, cj.Job)
	res.Rendered = out
	if err != nil {
		res.Err = err.Error()
		if located, ok := errors.AsType[*LocatedError](err); ok {
			res.Err, res.Source, res.Line = located.Err.Error(), located.Source, located.Line
		}
	}
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(res); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// inChild renders j in a process of its own.
func (r *Renderer) inChild(ctx context.Context, j *job, l budget.Limits) (*Rendered, error) {
	var buf bytes.Buffer
	if err := gob.NewEncoder(&buf).Encode(childJob{Job: j, MaxFileBytes: r.opts.MaxFileBytes, MaxChartBytes: r.opts.MaxChartBytes}); err != nil {
		return nil, err
	}
	data, err := budget.InChild(ctx, r.opts.Child, Task, l, buf.Bytes())
	if err != nil {
		return nil, err
	}
	var res childResult
	if err := gob.NewDecoder(bytes.NewReader(data)).Decode(&res); err != nil {
		return nil, fmt.Errorf("reading the rendering: %w", err)
	}
	switch {
	case res.Source != "":
		return nil, &LocatedError{Source: res.Source, Line: res.Line, Err: errors.New(res.Err)}
	case res.Err != "":
		return nil, errors.New(res.Err)
	}
	if res.Rendered == nil {
		res.Rendered = &Rendered{}
	}
	for i := range res.Rendered.Docs {
		// gob sends an empty document as none at all.
		if res.Rendered.Docs[i].YAML == nil {
			res.Rendered.Docs[i].YAML = []byte{}
		}
	}
	return res.Rendered, nil
}

// value carries Helm values to the child as they are: gob sends an empty
// list as none, and JSON makes every number a float64, which a template
// prints differently (1e+06).
type value struct {
	// Kind is one of the kinds below.
	Kind  byte
	Str   string
	Int   int64
	Uint  uint64
	Float float64
	Bool  bool
	Map   map[string]*value
	List  []*value
}

const (
	kindNil byte = iota
	kindString
	kindInt
	kindInt64
	kindUint64
	kindFloat
	kindBool
	kindMap
	kindList
)

// toValue converts what YAML decoders give: maps with string keys,
// lists, strings, numbers, booleans and null.
func toValue(v any) (*value, error) {
	switch v := v.(type) {
	case nil:
		return &value{Kind: kindNil}, nil
	case string:
		return &value{Kind: kindString, Str: v}, nil
	case int:
		return &value{Kind: kindInt, Int: int64(v)}, nil
	case int64:
		return &value{Kind: kindInt64, Int: v}, nil
	case uint64:
		return &value{Kind: kindUint64, Uint: v}, nil
	case float64:
		return &value{Kind: kindFloat, Float: v}, nil
	case bool:
		return &value{Kind: kindBool, Bool: v}, nil
	case map[string]any:
		m := &value{Kind: kindMap, Map: make(map[string]*value, len(v))}
		for _, k := range slices.Sorted(maps.Keys(v)) {
			e, err := toValue(v[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			m.Map[k] = e
		}
		return m, nil
	case []any:
		l := &value{Kind: kindList, List: make([]*value, len(v))}
		for i, e := range v {
			var err error
			if l.List[i], err = toValue(e); err != nil {
				return nil, fmt.Errorf("[%d]: %w", i, err)
			}
		}
		return l, nil
	}
	return nil, fmt.Errorf("a %T cannot be passed to a chart", v)
}

// any is toValue undone.
func (v *value) any() any {
	if v == nil {
		return nil
	}
	switch v.Kind {
	case kindString:
		return v.Str
	case kindInt:
		return int(v.Int)
	case kindInt64:
		return v.Int
	case kindUint64:
		return v.Uint
	case kindFloat:
		return v.Float
	case kindBool:
		return v.Bool
	case kindMap:
		m := make(map[string]any, len(v.Map))
		for k, e := range v.Map {
			m[k] = e.any()
		}
		return m
	case kindList:
		l := make([]any, len(v.List))
		for i, e := range v.List {
			l[i] = e.any()
		}
		return l
	}
	return nil
}
