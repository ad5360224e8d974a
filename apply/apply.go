// Package apply makes the cluster match one commit's objects, as package
// render reads them: it orders them and server-side-applies them through
// client-go's dynamic client and discovery, the same machinery kubectl
// apply --server-side uses.
//
// Everything that can be checked without writing (parsing, kinds, duplicates)
// is checked for the whole commit before the first write. Objects are then
// applied in two stages, CustomResourceDefinitions and Namespaces first, so
// that a commit holding a CRD and its resources, or a Namespace and its
// contents, converges in one run.
package apply

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"

	"github.com/cronsync/cronsync/internal/redact"
	"github.com/cronsync/cronsync/render"
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
	// Commit is what the run applies, read only if the run needs its
	// objects.
	Commit *render.Commit
	// noTreeRead makes a run that started over read the files on disk.
	noTreeRead bool
	// Revision names exactly what Commit holds: the commit's SHA and the path
	// within it. With FastUnchanged, a run at the Revision the last
	// complete run applied, with the same options, is decided from the
	// LISTs without reading a file when the cluster shows nothing moved
	// (see samecommit.go). Empty turns that off.
	Revision string
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
	// Warn receives what the run should say but that fails nothing, such
	// as the hooks left out of a chart.
	Warn func(string)
	// Lease is the coordination.k8s.io Lease runs hold (--lease): a commit
	// holding it is refused (see claims.go). Zero: none.
	Lease types.NamespacedName
	// Fence, when set, wraps the transport of every request the run sends,
	// outside the watch for an unreachable server: the Lease's, which
	// refuses writes once the Lease may be another run's (a refusal is no
	// sign of the server's health).
	Fence func(http.RoundTripper) http.RoundTripper
	// AdoptFrom names sets (an ID, or a cronsync set's NAMESPACE/NAME)
	// whose members this run may take over, as the commit's
	// cronsync.dev/adopt-from annotation does for one object: for a set
	// renamed (a new --applyset) or membership turned off.
	AdoptFrom []string
	// ApplySet is the parent that records which objects cronsync applied;
	// every object applied is labelled as its member. The zero value turns
	// membership (and so pruning) off.
	ApplySet ApplySet
	// Prune deletes members of the ApplySet that the commit no longer has,
	// after every object applied without error.
	Prune bool
	// PruneAllowEmpty lets a commit with no objects prune the whole set. A
	// wrong path must not empty a cluster, so this is off by default.
	PruneAllowEmpty bool
	// PruneNamespacesAndCRDs lets prune delete Namespaces and CRDs, whose
	// deletion takes everything inside them along.
	PruneNamespacesAndCRDs bool
	// Version is cronsync's version, recorded on the ApplySet parent.
	Version string
	// ParentRead, if set, is given the ApplySet parent's annotations once
	// the run has read the parent and found it cronsync's (empty when
	// there is none yet): what the last run recorded there is then known
	// without another request. It is not called when the run never reads
	// the parent.
	ParentRead func(ctx context.Context, annotations map[string]string)
	// Build identifies the executable (its Go build ID): the record of a
	// commit's objects that one build wrote is not trusted by another,
	// which may render the same commit differently.
	Build string
	// Grace is how long requests already in flight may run on after the
	// run's context is done (SIGTERM, --timeout): no new request starts,
	// but one half-sent is not cut off.
	Grace time.Duration
	// Ready waits until the objects given are ready. It orders objects
	// annotated config.kubernetes.io/depends-on after what they name; nil
	// writes them after it without waiting.
	Ready func(ctx context.Context, objs []ObjectResult) error
	// BlockedRetry is how long objects are tried again, after the rest is
	// written, whose check failed only because an admission webhook could
	// not be called (its own Deployment may be in this commit). 0 tries
	// them once more.
	BlockedRetry time.Duration
	// FastUnchanged lets a run decide from the LIST alone that an object is
	// unchanged, when the object's digest annotation and cronsync's field
	// ownership prove it (see fast.go). It needs an ApplySet, and a dry run
	// never uses it. The digests are recorded either way.
	FastUnchanged bool
	// FastDataBytes is the most one Secret holds of what FastUnchanged
	// keeps (fingerprints and the commit record, as stored); past it they
	// are spread over shards (see shards.go). 0 means 900 KiB, under the
	// 1 MiB Secret limit. Tests set it small to shard a few hundred objects.
	FastDataBytes int
	// Out receives one line per object the run created, configured,
	// recreated, pruned, failed on or skipped, and the run's other
	// progress lines.
	Out io.Writer
	// ShowUnchanged gives unchanged objects a line on Out too. Without it
	// a no-change run prints nothing per object: at thousands of objects
	// on a five-minute schedule those lines were most of a cluster's log,
	// and the summary already counts them.
	ShowUnchanged bool
	// Secrets holds the values decrypted while the commit was read; an
	// object whose name, namespace or label or annotation key holds one is
	// refused before anything is sent. nil holds none.
	Secrets *redact.Secrets
}

// DefaultOptions holds the defaults the command line starts from.
func DefaultOptions() Options {
	return Options{
		Namespace:      "default",
		FieldManager:   "cronsync",
		ForceConflicts: true,
		Workers:        8,
		FastUnchanged:  true,
		Out:            io.Discard,
	}
}

// Actions an object can end a run with. The first three are kubectl's words.
const (
	ActionCreated    = "created"
	ActionConfigured = "configured"
	ActionUnchanged  = "unchanged"
	// ActionFailed: the object's request failed; ObjectResult.Err says why.
	ActionFailed = "failed"
	// ActionSkipped: not sent, because something it depends on failed or
	// the run was stopped.
	ActionSkipped = "skipped"
	// ActionNotValidated: a dry run could not check the object, because its
	// CRD or Namespace is new in this commit and a dry run creates neither.
	ActionNotValidated = "not validated"
	// ActionSetAside: an admission webhook could not be called for the
	// object; it is tried again once the rest is written. A run never ends
	// with it: the object ends failed or written.
	ActionSetAside = "set aside"
)

// ObjectResult is what happened to one object.
type ObjectResult struct {
	// Ref names the object as kubectl prints it.
	Ref string
	// Source is the file it came from, relative to the repository root.
	Source string
	// Action is one of the Action constants.
	Action string
	// WithoutRequest: unchanged, decided from the LIST without a dry run.
	WithoutRequest bool
	// Resource, Namespace and Name address the object; Resource is empty
	// for an object whose kind could not be mapped.
	Resource  schema.GroupVersionResource
	Namespace string
	Name      string
	// Err is set when Action is failed or skipped.
	Err error
	// Drift is what moved in the object since cronsync applied it, when
	// the commit did not change it and it was configured all the same;
	// nil otherwise.
	Drift *Drift
	// Live is what the run last saw of the object in the cluster (the LIST
	// it was decided from, or the answer to its write or to a dry run that
	// changed nothing), kept to its annotations (but cronsync's digest) and
	// deletion timestamp; nil when the run saw nothing of it. What follows
	// the run may judge from it rather than read the object again: the
	// health wait does, for kinds without a status.
	Live *metav1.ObjectMeta
}

// Result is a run's outcome per object.
type Result struct {
	// Objects holds one entry per object, in apply order.
	Objects []ObjectResult
	// ParentChecked says the run read the ApplySet parent and found it
	// cronsync's, or absent: RecordRun need not read it again.
	ParentChecked bool
	// ParentAnnotations are the parent's annotations as the run read them
	// (nil when it did not, or found none): what RecordRun carries over.
	ParentAnnotations map[string]string
}

// Count returns how many objects ended with action.
func (r *Result) Count(action string) int {
	n := 0
	for _, o := range r.Objects {
		if o.Action == action {
			n++
		}
	}
	return n
}

// Run reads opts.Commit and makes the cluster at cfg match
// them. Nothing is written unless every object passes a server-side dry run
// first; see syncer.run for the one exception. The returned error joins one
// error per failed object (ObjectError) or manifest fault (render.ManifestError);
// Result is valid whenever it is not nil.
func Run(ctx context.Context, cfg *rest.Config, opts Options) (*Result, error) {
	if opts.FieldManager == "" {
		return nil, errors.New("field manager must not be empty")
	}
	if opts.Commit == nil {
		return nil, errors.New("no commit to apply")
	}
	if opts.Prune && opts.ApplySet == (ApplySet{}) {
		return nil, refused("pruning needs an ApplySet to know what cronsync applied")
	}
	stop, stopRun := context.WithCancelCause(ctx)
	defer stopRun(nil)
	s, err := newSyncer(cfg, opts, stopRun)
	if err != nil {
		return nil, err
	}
	s.stop = stop
	// Discovery depends on nothing the run reads first, and every path
	// needs it: let it go beside the parent's read and the commit's.
	go s.mapper.RESTMappingWithContext(stop, schema.GroupKind{Kind: "Namespace"}) //nolint:errcheck // the real lookups report
	if s.fastEnabled() {
		s.startSalts(stop)
	}
	readCtx := ctx
	ctx, cancel := graceful(ctx, opts.Grace)
	defer cancel()
	res := &Result{}
	if s.sameCommit(ctx, res) {
		res.ParentChecked, res.ParentAnnotations = s.parentChecked, s.readAnnotations()
		return res, nil
	}
	s.forgetShortcut()

	objs, err := s.readCommit(readCtx)
	if err != nil {
		return nil, err
	}
	if err := checkIdentity(opts.Secrets, objs); err != nil {
		return nil, err
	}
	if opts.ApplySet != (ApplySet{}) {
		id := opts.ApplySet.id()
		for _, o := range objs {
			// In the object's own labels map: a copy for each object was
			// a tenth of a large run's memory.
			md, _ := o.Obj.Object["metadata"].(map[string]any)
			if md == nil {
				md = map[string]any{}
				o.Obj.Object["metadata"] = md
			}
			labels, _ := md["labels"].(map[string]any)
			if labels == nil {
				labels = map[string]any{}
				md["labels"] = labels
			}
			labels[applySetPartOfLabel] = id
		}
	}
	p, err := makePlan(ctx, s.mapper, s.groupUnavailable, objs, opts.Namespace)
	if err != nil {
		return nil, err
	}
	if err := s.reservedErrs(p); err != nil {
		return nil, err
	}
	err = s.run(ctx, p, res)
	if errors.Is(err, errReread) {
		fmt.Fprintln(opts.Out, "cronsync: an object of an unchanged file is not as the last run left it; reading the whole commit")
		opts.noTreeRead = true
		return Run(readCtx, cfg, opts)
	}
	if s.fastEnabled() && s.unreachable() == nil && s.recordedFPs != nil {
		err = errors.Join(err, s.writeFingerprints(ctx, slices.Concat(p.first, p.rest), err == nil && s.stop.Err() == nil))
	}
	res.ParentChecked, res.ParentAnnotations = s.parentChecked, s.readAnnotations()
	switch {
	case s.unreachable() != nil:
		err = s.collapseUnreachable(res, err)
	case s.stop.Err() != nil:
		err = errors.Join(fmt.Errorf("stopped with %d objects not applied: %w", res.Count(ActionSkipped), context.Cause(s.stop)), err)
	}
	return res, err
}

// run validates and writes in the order that lets one commit hold a CRD and
// its resources, or a Namespace and its contents:
//
//  1. check (live read + server dry run) every object that can be checked
//     now: CRDs, Namespaces, and whatever does not depend on a new one;
//  2. write the CRDs and Namespaces, and wait for the CRDs to be Established;
//  3. check the objects that depend on them;
//  4. write everything else.
//
// A failed check stops the run before the next write, so a bad commit
// changes nothing (or, when the fault is in a resource of a new CRD or
// Namespace, nothing but those CRDs and Namespaces).
func (s *syncer) run(ctx context.Context, p *plan, res *Result) error {
	recorded := newMembers()
	switch {
	case s.parentRead != nil:
		recorded = *s.parentRead // by sameCommit, a moment ago
	case s.applySet():
		var err error
		if recorded, err = s.readParent(ctx); err != nil {
			return err
		}
	}
	if s.digests() {
		// Dry runs carry the digest too: otherwise they would show its
		// removal as a change.
		if err := s.digestAll(slices.Concat(p.first, p.rest), s.parent); err != nil {
			return err
		}
	}
	if s.fastEnabled() {
		// Without the CRDs' generations (RBAC may not allow listing them)
		// nothing is decided from the LIST: every object asks the server.
		s.salts, _ = s.firstSalts(ctx)
		s.startRecord(ctx, slices.Concat(p.first, p.rest))
	}
	// A commit with CRDs may serve new kinds only once they are written.
	if s.opts.Prune && !slices.ContainsFunc(p.first, func(it *item) bool { return it.GroupKind() == crdGK }) {
		s.prefetchMembers(ctx, recorded.union(commitMembers(p)), listedWhole(slices.Concat(p.first, p.rest)))
	}
	errs := s.checkExternalDeps(ctx, append(p.first, p.rest...))
	errs = append(errs, s.checkAll(ctx, p.first)...)
	now, later := splitDeferred(p)
	s.checkAll(ctx, now)
	errs = append(errs, deferDependents(now)...)
	if mustReread(p) {
		return errReread // nothing is written yet
	}
	if len(errs) > 0 || s.stop.Err() != nil {
		return s.report(res, append(p.first, p.rest...), errs)
	}
	for _, it := range slices.Concat(p.first, now) {
		it.validated = it.err == nil && it.blocked == nil && !it.deferCheck
	}
	if s.opts.DryRun != DryRunNone {
		for _, it := range later {
			it.action = ActionNotValidated
		}
		for _, it := range now {
			if it.deferCheck {
				it.action = ActionNotValidated
			}
		}
		s.report(res, append(p.first, p.rest...), nil)
		errs := resultErrs(res.Objects)
		if s.opts.Prune && len(errs) == 0 {
			_, err := s.prune(ctx, p, recorded, res)
			return err
		}
		return errors.Join(errs...)
	}
	// Record the new members before writing them, so that a run that dies
	// halfway leaves nothing the next run cannot find. A parent in a
	// Namespace this commit creates can only be written once that exists.
	parentPending := s.applySet()
	if parentPending {
		recorded = recorded.union(commitMembers(p))
		if !slices.ContainsFunc(p.first, func(it *item) bool {
			return it.GroupKind() == namespaceGK && it.Obj.GetName() == s.opts.ApplySet.Namespace && it.action == ActionCreated
		}) {
			if err := s.writeParent(ctx, recorded, s.opts.Version); err != nil {
				return err
			}
			parentPending = false
		}
	}

	if err := s.storeNewDigestKey(ctx); err != nil {
		return err
	}
	s.writeAll(ctx, p.first)
	res.Objects = append(res.Objects, s.results(p.first)...)
	if parentPending {
		if err := s.writeParent(ctx, recorded, s.opts.Version); err != nil {
			return errors.Join(append(resultErrs(res.Objects), err)...)
		}
	}
	crdErrs := s.waitCRDs(ctx, p.first)
	if s.fastEnabled() && slices.ContainsFunc(p.first, func(it *item) bool {
		return it.GroupKind() == crdGK && (it.action == ActionCreated || it.action == ActionConfigured)
	}) {
		// The custom resources written next are fingerprinted against the
		// CRDs as they are now.
		s.salts, _ = s.crdSalts(ctx)
	}
	s.mapCustomResources(ctx, later, crdErrs)
	if errs := s.checkAll(ctx, later); len(errs) > 0 || s.stop.Err() != nil {
		s.report(res, p.rest, errs)
		return errors.Join(resultErrs(res.Objects)...)
	}
	s.writeStage(ctx, p.rest)
	s.retryBlocked(ctx, append(slices.Clone(p.first), p.rest...))
	res.Objects = append(s.results(p.first), s.results(p.rest)...)
	// Never prune after a failure, an object set aside, or an interrupted
	// apply: the commit's objects are not all in place.
	if errs := resultErrs(res.Objects); len(errs) > 0 || !s.opts.Prune || s.stop.Err() != nil {
		return errors.Join(errs...)
	}
	keep, pruneErr := s.prune(ctx, p, recorded, res)
	if err := s.writeParent(ctx, keep, s.opts.Version); err != nil {
		return errors.Join(pruneErr, err)
	}
	return pruneErr
}

func (s *syncer) applySet() bool { return s.opts.ApplySet != ApplySet{} }

// splitDeferred separates the objects of the second stage that cannot be
// checked before the first stage is written: resources of a CRD in this
// commit, and objects in a Namespace this commit creates (which the first
// stage's check found absent).
func splitDeferred(p *plan) (now, later []*item) {
	newNS := map[string]bool{}
	for _, it := range p.first {
		if it.GroupKind() == namespaceGK && it.action == ActionCreated {
			newNS[it.Obj.GetName()] = true
		}
	}
	for _, it := range p.rest {
		if it.crd != nil || newNS[it.Obj.GetNamespace()] {
			later = append(later, it)
		} else {
			now = append(now, it)
		}
	}
	return now, later
}

// report records items as they stand after a check: the ones that failed
// with their error, the others as what they would have done. When errs is
// not empty, nothing of items is written, and it says so.
func (s *syncer) report(res *Result, items []*item, errs []error) error {
	for _, it := range items {
		switch {
		case it.err == nil && (len(errs) > 0 || s.stop.Err() != nil) && s.opts.DryRun == DryRunNone:
			it.action = ActionSkipped
		case it.blocked != nil:
			// A dry run writes nothing the webhook could come back for.
			it.action, it.err = ActionFailed, objectErr(it.Object, it.blocked)
		}
	}
	out := s.results(items)
	var b bytes.Buffer
	for i, r := range out {
		s.print(&b, r)
		it := items[i]
		if s.opts.DryRun == DryRunServer && (it.action == ActionCreated || it.action == ActionConfigured) {
			d, err := it.diff()
			if err != nil {
				d = fmt.Sprintf("(no diff: %v)\n", err)
			}
			b.WriteString(d)
		}
	}
	s.emit(&b)
	res.Objects = append(res.Objects, out...)
	return errors.Join(errs...)
}

func (s *syncer) results(items []*item) []ObjectResult {
	out := make([]ObjectResult, len(items))
	for i, it := range items {
		out[i] = ObjectResult{Ref: it.Ref(), Source: it.Source, Action: it.action, Err: it.err,
			Namespace: it.Obj.GetNamespace(), Name: it.Obj.GetName(), WithoutRequest: it.fast && it.action == ActionUnchanged,
			Live: it.seen}
		if it.mapping != nil {
			out[i].Resource = it.mapping.Resource
		}
		if it.action == ActionSetAside {
			out[i].Err = objectErr(it.Object, it.blocked)
		}
		if it.action == ActionConfigured {
			out[i].Drift = it.drift
		}
	}
	return out
}

func resultErrs(rs []ObjectResult) []error {
	var errs []error
	for _, r := range rs {
		if r.Err != nil {
			errs = append(errs, r.Err)
		}
	}
	return errs
}

// graceful returns a context for requests that ends opts.Grace after stop
// does, so that requests in flight when the run is stopped can finish.
func graceful(stop context.Context, grace time.Duration) (context.Context, context.CancelFunc) {
	ctx, cancel := context.WithCancelCause(context.WithoutCancel(stop))
	go func() {
		select {
		case <-stop.Done():
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(grace)
		defer t.Stop()
		select {
		case <-t.C:
			cancel(context.Cause(stop))
		case <-ctx.Done():
		}
	}()
	return ctx, func() { cancel(context.Canceled) }
}

type syncer struct {
	// stop is done when the run must start no new request.
	stop   context.Context
	opts   Options
	dyn    dynamic.Interface
	meta   metadata.Interface
	mapper *restmapper.DeferredDiscoveryRESTMapper
	// disco is the discovery cache mapper reads; failedGroups are the
	// groups whose discovery failed (see discovery.go), read once.
	disco        discovery.CachedDiscoveryInterfaceWithContext
	groupsOnce   sync.Once
	failedGroups map[string]error
	// unlisted holds the set's kinds whose members prune could not list
	// (schema.GroupKind to why): kept in the set, pruned by a later run.
	unlisted sync.Map
	// parentAnnotations are the ApplySet parent's as last read or written;
	// nil while there is no parent.
	parentAnnotations map[string]string
	// parent is the ApplySet parent as read at the start; nil if none.
	parent *unstructured.Unstructured
	// recordedFPs are the fingerprints the parent holds (nil until read);
	// salts the CRD generations they are bound to (nil: no fast path).
	recordedFPs map[string]string
	salts       map[schema.GroupResource]string
	// early is the CRDs' generations as read when the run began.
	early *saltsRead
	// record is the commit record being encoded beside the checks.
	record *recordEncoding
	// digestKey keys the digests; newDigestKey says this run made it.
	digestKey    []byte
	newDigestKey bool
	// listed holds, for each resource and namespace that a check LIST read
	// whole (every object there, unfiltered), the ApplySet members it saw
	// that the commit does not hold: prune's candidates there, so that a
	// no-change run lists each resource and namespace once, not twice.
	listedMu sync.Mutex
	listed   map[string][]metav1.PartialObjectMetadata
	// recordedCommit is the parent's commit record as read, "" if none.
	recordedCommit string
	// recordedShards is the parent's index of shards, nil if none;
	// trustedShards those of them read intact.
	recordedShards []shardRef
	trustedShards  map[string]bool
	// parentUID is the parent's, once read or written: shards name it as
	// their owner.
	parentUID types.UID
	// cachedRecord is that record, when this run's options shape objects
	// as that run's did.
	cachedRecord *commitRecord
	// parentRead is the membership sameCommit read from the parent, which
	// the run then need not read again; nil if it did not read it.
	parentRead *members
	// parentChecked: readParent found the parent absent, or cronsync's.
	parentChecked bool
	// prefetch holds prune's LISTs, started beside the checks.
	prefetch *memberPrefetch
	// parents maps the ID of another set to a func returning its parent,
	// found once for messages (see claims.go).
	parents sync.Map
}

func newSyncer(cfg *rest.Config, opts Options, stopRun context.CancelCauseFunc) (*syncer, error) {
	cfg = rest.CopyConfig(cfg)
	// client-go's default of 5 QPS is what makes kubectl apply slow on big
	// repos. The API server's priority and fairness already protects it
	// from a burst, so cronsync does not throttle itself.
	cfg.QPS, cfg.Burst = -1, 0
	cfg.Wrap(func(rt http.RoundTripper) http.RoundTripper { return &breaker{next: rt, stop: stopRun} })
	if opts.Fence != nil {
		cfg.Wrap(opts.Fence)
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	md, err := metadata.NewForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	dc, err := discovery.NewDiscoveryClientForConfigAndClient(cfg, hc)
	if err != nil {
		return nil, err
	}
	disco := memory.NewMemCacheClientWithContext(dc)
	mapper := restmapper.NewDeferredDiscoveryRESTMapperWithContext(disco)
	if opts.Workers < 1 {
		opts.Workers = 1
	}
	return &syncer{opts: opts, dyn: dyn, meta: md, mapper: mapper, disco: disco}, nil
}

func (s *syncer) client(it *item) dynamic.ResourceInterface {
	if ns := it.Obj.GetNamespace(); ns != "" {
		return s.dyn.Resource(it.mapping.Resource).Namespace(ns)
	}
	return s.dyn.Resource(it.mapping.Resource)
}

// each runs fn on every item with up to opts.Workers in flight. Once the run
// is stopped no new call starts; the item is marked skipped instead.
func (s *syncer) each(ctx context.Context, items []*item, fn func(context.Context, *item)) {
	work := make(chan *item)
	var wg sync.WaitGroup
	for range min(s.opts.Workers, len(items)) {
		wg.Go(func() {
			for it := range work {
				if s.stop.Err() != nil {
					it.action = ActionSkipped // Run reports the stop once
					continue
				}
				fn(ctx, it)
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
}

// parallel runs fn(0..n-1) with up to opts.Workers at once: for work that
// is not one call per item, which each is for.
func (s *syncer) parallel(n int, fn func(i int)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(1, s.opts.Workers))
	for i := range n {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			fn(i)
		})
	}
	wg.Wait()
}

// printAll prints rs with one write: line by line, a run that decides
// thousands of objects from the LISTs makes as many system calls, and wakes
// whatever reads its output (a container runtime's log pipe) as often.
func (s *syncer) printAll(rs []ObjectResult) {
	var b bytes.Buffer
	for _, r := range rs {
		s.print(&b, r)
	}
	s.emit(&b)
}

// emit writes what printAll or report gathered.
func (s *syncer) emit(b *bytes.Buffer) {
	if b.Len() > 0 {
		s.opts.Out.Write(b.Bytes()) //nolint:errcheck // as fmt.Fprintf's would be
	}
}

func (s *syncer) print(w io.Writer, r ObjectResult) {
	switch {
	case r.Action == ActionUnchanged && r.Drift == nil && !s.opts.ShowUnchanged:
		// Counted in the summary (see ShowUnchanged).
	case s.unreachable() != nil && (r.Action == ActionSkipped || isTransport(r.Err)):
		// Said once for all of them, by Run.
	case r.Action == ActionFailed || r.Action == ActionSkipped:
		fmt.Fprintf(w, "%s %s\n", r.Ref, r.Action)
	case r.Action == ActionSetAside:
		// An admission webhook's message may hold anything, newlines too.
		fmt.Fprintf(w, "%s set aside until the rest is written: %s\n", r.Ref, redact.CleanLine(errors.Unwrap(r.Err).Error()))
	case s.opts.DryRun == DryRunServer && r.Drift != nil:
		fmt.Fprintf(w, "%s %s (server dry run; drift)\n  %s\n", r.Ref, r.Action, r.Drift.Line())
	case s.opts.DryRun == DryRunServer:
		fmt.Fprintf(w, "%s %s (server dry run)\n", r.Ref, r.Action)
	case s.opts.DryRun == DryRunClient:
		fmt.Fprintf(w, "%s %s (dry run)\n", r.Ref, r.Action)
	case r.Drift != nil:
		fmt.Fprintf(w, "%s %s (drift repaired)\n  %s\n", r.Ref, r.Action, r.Drift.Line())
	default:
		fmt.Fprintf(w, "%s %s\n", r.Ref, r.Action)
	}
}

// crdPoll is how often a new CRD's conditions are read while waiting, and
// crdWait bounds the wait: the API server establishes a valid CRD in well
// under a second.
const (
	crdPoll = 250 * time.Millisecond
	crdWait = 2 * time.Minute
)

// waitCRDs waits until every CRD created or changed in the first stage is
// Established, so that its resources can be mapped. It returns, per CRD,
// why its resources must be skipped (nil for the ones that are ready). An
// unchanged CRD was waited for by the run that wrote it; reading it again
// would download its whole schema on every no-change run. The waits are one
// after another: each poll downloads the whole CRD, and polling them all at
// once slowed the API server that was establishing them (a first sync of
// ten 600 KB CRDs took 36 s instead of 25 s).
func (s *syncer) waitCRDs(ctx context.Context, first []*item) map[*render.Object]error {
	out := map[*render.Object]error{}
	for _, it := range first {
		if it.GroupKind() != crdGK || it.action == ActionUnchanged {
			continue
		}
		if it.err != nil {
			out[it.Object] = fmt.Errorf("its CustomResourceDefinition %s failed to apply", it.Obj.GetName())
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

// mapCustomResources maps the items of later whose kinds the commit's CRDs
// define, now that those are written: discovery changed. Established is
// the CRD's own status; the discovery document that serves its kind
// follows a moment later, more so on a busy API server, so a kind not yet
// there is looked up again until crdWait has passed.
func (s *syncer) mapCustomResources(ctx context.Context, later []*item, crdErrs map[*render.Object]error) {
	var pending []*item
	for _, it := range later {
		if it.crd == nil {
			continue
		}
		if err := crdErrs[it.crd.obj]; err != nil {
			it.skip = err
			continue
		}
		pending = append(pending, it)
	}
	deadline := time.Now().Add(crdWait)
	for len(pending) > 0 {
		s.mapper.Reset()
		var unmapped []*item
		for _, it := range pending {
			gvk := it.Obj.GroupVersionKind()
			m, err := s.mapper.RESTMappingWithContext(ctx, gvk.GroupKind(), gvk.Version)
			switch {
			case err == nil:
				it.mapping = m
			case meta.IsNoMatchError(err) && time.Now().Before(deadline) && ctx.Err() == nil:
				unmapped = append(unmapped, it)
			default:
				it.skip = fmt.Errorf("its CustomResourceDefinition %s is not served: %w", it.crd.obj.Obj.GetName(), err)
			}
		}
		pending = unmapped
		if len(pending) > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(crdPoll):
			}
		}
	}
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
