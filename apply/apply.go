// Package apply reads the manifests of one commit, orders them, and
// server-side-applies them through client-go's dynamic client and discovery,
// the same machinery kubectl apply --server-side uses.
//
// Everything that can be checked without writing (parsing, kinds, duplicates)
// is checked for the whole commit before the first write. Objects are then
// applied in two stages, CustomResourceDefinitions and Namespaces first, so
// that a commit holding a CRD and its resources, or a Namespace and its
// contents, converges in one run.
package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
)

// DryRun says how much of a run reaches the API server.
type DryRun string

const (
	// DryRunNone applies for real.
	DryRunNone DryRun = ""
	// DryRunClient reads (discovery, CRD state) but sends no write at all.
	DryRunClient DryRun = "client"
	// DryRunServer sends every write with dryRun=All: the server validates
	// and admits each object, and stores nothing.
	DryRunServer DryRun = "server"
)

// Options configures one run.
type Options struct {
	// Root is the repository checkout. No file outside it is read, even
	// through a symlink.
	Root string
	// Dir is the directory under Root whose manifests are applied,
	// recursively.
	Dir string
	// Namespace is set on namespaced objects that have none. It does not
	// come from the kubeconfig context on purpose: the same commit must land
	// in the same place whoever runs it.
	Namespace string
	// DryRun selects a dry run; see the DryRun constants.
	DryRun DryRun
	// FieldManager is the server-side-apply field manager name.
	FieldManager string
	// ForceConflicts takes ownership of fields another manager set, so Git
	// wins over hand edits.
	ForceConflicts bool
	// Workers is how many requests of one stage may be in flight at once.
	Workers int
	// MaxFileBytes refuses manifest files larger than this; 0 means no limit.
	MaxFileBytes int64
	// Out receives one line per object.
	Out io.Writer
}

// DefaultOptions holds the defaults the command line starts from.
func DefaultOptions() Options {
	return Options{
		Namespace:      "default",
		FieldManager:   "cronsync",
		ForceConflicts: true,
		Workers:        8,
		MaxFileBytes:   4 << 20,
		Out:            io.Discard,
	}
}

// ObjectResult is what happened to one object.
type ObjectResult struct {
	// Ref names the object as kubectl prints it.
	Ref string
	// Source is the file it came from, relative to the repository root.
	Source string
	// Action is what was done, in kubectl's words (serverside-applied), or
	// "failed" or "skipped".
	Action string
	// Err is set when Action is failed or skipped.
	Err error
}

// Result counts a run's outcome per object.
type Result struct {
	// Objects holds one entry per object, in apply order.
	Objects []ObjectResult
	// Applied, Failed and Skipped count Objects by outcome.
	Applied, Failed, Skipped int
}

// Run reads the manifests under opts.Dir and applies them to the cluster at
// cfg. The returned error joins one error per failed object (ObjectError) or
// per manifest fault (ManifestError); Result is valid even when err is not nil.
func Run(ctx context.Context, cfg *rest.Config, opts Options) (*Result, error) {
	if opts.FieldManager == "" {
		return nil, errors.New("field manager must not be empty")
	}
	objs, err := Read(opts.Root, opts.Dir, opts.MaxFileBytes)
	if err != nil {
		return nil, err
	}
	s, err := newSyncer(cfg, opts)
	if err != nil {
		return nil, err
	}
	p, err := makePlan(ctx, s.mapper, objs, opts.Namespace)
	if err != nil {
		return nil, err
	}

	res := &Result{}
	crdErrs := s.waitCRDs(ctx, p.first, s.stage(ctx, res, p.first))
	// Discovery changed if any CRD was created: map the commit's custom
	// resources only now.
	s.mapper.Reset()
	for _, it := range p.rest {
		if it.crd == nil {
			continue
		}
		if err := crdErrs[it.crd.obj]; err != nil {
			it.skip = err
			continue
		}
		gvk := it.Obj.GroupVersionKind()
		m, err := s.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
		switch {
		case err == nil:
			it.mapping = m
		case s.opts.DryRun == DryRunNone:
			it.skip = fmt.Errorf("its CustomResourceDefinition %s is not served yet: %w", it.crd.obj.Obj.GetName(), err)
		}
	}
	s.stage(ctx, res, p.rest)

	var errs []error
	for _, r := range res.Objects {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return res, errors.Join(errs...)
}

type syncer struct {
	opts   Options
	dyn    dynamic.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
}

func newSyncer(cfg *rest.Config, opts Options) (*syncer, error) {
	cfg = rest.CopyConfig(cfg)
	// client-go's default of 5 QPS is what makes kubectl apply slow on big
	// repos. The API server's priority and fairness already protects it
	// from a burst, so cronsync does not throttle itself.
	cfg.QPS, cfg.Burst = -1, 0
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapperWithContext(memory.NewMemCacheClientWithContext(dc))
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	return &syncer{opts: opts, dyn: dyn, mapper: mapper}, nil
}

// stage applies items with up to opts.Workers requests in flight, and prints
// each object's line in plan order as soon as all lines before it are known.
func (s *syncer) stage(ctx context.Context, res *Result, items []*item) []ObjectResult {
	out := make([]ObjectResult, len(items))
	done := make([]bool, len(items))
	next := 0
	var mu sync.Mutex
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(s.opts.Workers, len(items)) {
		wg.Go(func() {
			for i := range work {
				r := s.one(ctx, items[i])
				mu.Lock()
				out[i], done[i] = r, true
				for next < len(items) && done[next] {
					s.print(out[next])
					next++
				}
				mu.Unlock()
			}
		})
	}
	for i := range items {
		work <- i
	}
	close(work)
	wg.Wait()
	for _, r := range out {
		switch r.Action {
		case "failed":
			res.Failed++
		case "skipped":
			res.Skipped++
		default:
			res.Applied++
		}
	}
	res.Objects = append(res.Objects, out...)
	return out
}

func (s *syncer) print(r ObjectResult) {
	switch {
	case r.Action == "failed" || r.Action == "skipped":
		fmt.Fprintf(s.opts.Out, "%s %s\n", r.Ref, r.Action)
	case s.opts.DryRun == DryRunServer:
		fmt.Fprintf(s.opts.Out, "%s %s (server dry run)\n", r.Ref, r.Action)
	case s.opts.DryRun == DryRunClient:
		fmt.Fprintf(s.opts.Out, "%s %s (dry run)\n", r.Ref, r.Action)
	default:
		fmt.Fprintf(s.opts.Out, "%s %s\n", r.Ref, r.Action)
	}
}

// one applies a single object. A context that is already done stops new
// requests from starting; one in flight is left to finish or time out.
func (s *syncer) one(ctx context.Context, it *item) ObjectResult {
	r := ObjectResult{Ref: it.Ref(), Source: it.Source, Action: "serverside-applied"}
	switch {
	case it.skip != nil:
		r.Action, r.Err = "skipped", objectErr(it.Object, it.skip)
		return r
	case ctx.Err() != nil:
		r.Action, r.Err = "skipped", objectErr(it.Object, ctx.Err())
		return r
	case it.mapping == nil && s.opts.DryRun != DryRunNone:
		// A dry run does not create the CRD, so its resources cannot be
		// checked by the server in the same run.
		r.Action = "not validated: its CustomResourceDefinition is new in this commit"
		return r
	case s.opts.DryRun == DryRunClient:
		return r
	}
	opts := metav1.ApplyOptions{FieldManager: s.opts.FieldManager, Force: s.opts.ForceConflicts}
	if s.opts.DryRun == DryRunServer {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	var client dynamic.ResourceInterface = s.dyn.Resource(it.mapping.Resource)
	if ns := it.Obj.GetNamespace(); ns != "" {
		client = s.dyn.Resource(it.mapping.Resource).Namespace(ns)
	}
	if _, err := client.Apply(ctx, it.Obj.GetName(), it.Obj, opts); err != nil {
		r.Action, r.Err = "failed", objectErr(it.Object, err)
	}
	return r
}

// crdPoll is how often a new CRD's conditions are read while waiting, and
// crdWait bounds the wait: the API server establishes a valid CRD in well
// under a second.
const (
	crdPoll = 250 * time.Millisecond
	crdWait = 2 * time.Minute
)

// waitCRDs waits until every CRD applied in the first stage is Established,
// so that its resources can be mapped. It returns, per CRD, why its
// resources must be skipped (nil for the ones that are ready).
func (s *syncer) waitCRDs(ctx context.Context, first []*item, results []ObjectResult) map[*Object]error {
	out := map[*Object]error{}
	for i, it := range first {
		if it.GroupKind() != crdGK {
			continue
		}
		if results[i].Err != nil {
			out[it.Object] = fmt.Errorf("its CustomResourceDefinition %s failed to apply", it.Obj.GetName())
			continue
		}
		if s.opts.DryRun != DryRunNone {
			continue
		}
		client := s.dyn.Resource(it.mapping.Resource)
		err := wait.PollUntilContextTimeout(ctx, crdPoll, crdWait, true, func(ctx context.Context) (bool, error) {
			live, err := client.Get(ctx, it.Obj.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			return crdEstablished(live)
		})
		if err != nil {
			out[it.Object] = fmt.Errorf("waiting for CustomResourceDefinition %s to be established: %w", it.Obj.GetName(), err)
		}
	}
	return out
}

// crdEstablished reads a CRD's conditions. A CRD whose names were refused
// will never become Established, so that ends the wait with the reason.
func crdEstablished(crd *unstructured.Unstructured) (bool, error) {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		cm, _ := c.(map[string]any)
		typ, _, _ := unstructured.NestedString(cm, "type")
		status, _, _ := unstructured.NestedString(cm, "status")
		msg, _, _ := unstructured.NestedString(cm, "message")
		switch {
		case typ == "Established" && status == "True":
			return true, nil
		case typ == "NamesAccepted" && status == "False":
			return false, fmt.Errorf("names not accepted: %s", msg)
		}
	}
	return false, nil
}
