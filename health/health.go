// Package health answers "is what was applied running?" for a set of
// objects, the way Flux does: kstatus judges each object from its own status
// fields, so no rule of readiness per kind is written here, and the objects
// are read with one LIST per resource and namespace per round rather than a
// GET each.
//
// Objects of kinds whose API has no status at all (ConfigMaps, Secrets,
// RBAC, ...) are not read when the caller saw them a moment ago: kstatus
// can judge them only by their deletion timestamp, and the caller's view
// holds it. Their LISTs were most of a no-change run's wait.
//
// On top of kstatus: a Job counts only once it is Complete (kstatus calls a
// running Job Current, which would let a migration that fails later pass),
// and an object annotated cronsync.dev/wait: "false" is not waited for.
package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/status"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/internal/redact"
)

// SkipAnnotation set to "false" on an object leaves it out of the wait: for
// objects whose readiness is not cronsync's business (a Job that is
// expected to run long, a custom resource whose controller is not
// installed yet).
const SkipAnnotation = "cronsync.dev/wait"

// Object is one object to wait for.
type Object struct {
	// Resource addresses the object's kind.
	Resource schema.GroupVersionResource
	// Namespace is empty for cluster-scoped objects.
	Namespace string
	Name      string
	// Ref names the object in messages, as kubectl prints it.
	Ref string
	// Source is the file the object came from.
	Source string
	// Seen is the object's metadata as the caller last saw it in the
	// cluster (its annotations and deletion timestamp are what is read),
	// nil if it did not. For a kind in Statusless, it is judged from this
	// and not read.
	Seen *metav1.ObjectMeta
}

// statusless holds the built-in resources whose API has no status: kstatus
// calls such an object Current unless it is being deleted, so its
// metadata is all there is to judge.
var statusless = map[schema.GroupResource]bool{
	{Resource: "configmaps"}:                                                             true,
	{Resource: "secrets"}:                                                                true,
	{Resource: "serviceaccounts"}:                                                        true,
	{Resource: "limitranges"}:                                                            true,
	{Resource: "podtemplates"}:                                                           true,
	{Group: "rbac.authorization.k8s.io", Resource: "roles"}:                              true,
	{Group: "rbac.authorization.k8s.io", Resource: "rolebindings"}:                       true,
	{Group: "rbac.authorization.k8s.io", Resource: "clusterroles"}:                       true,
	{Group: "rbac.authorization.k8s.io", Resource: "clusterrolebindings"}:                true,
	{Group: "scheduling.k8s.io", Resource: "priorityclasses"}:                            true,
	{Group: "storage.k8s.io", Resource: "storageclasses"}:                                true,
	{Group: "networking.k8s.io", Resource: "ingressclasses"}:                             true,
	{Group: "node.k8s.io", Resource: "runtimeclasses"}:                                   true,
	{Group: "admissionregistration.k8s.io", Resource: "validatingwebhookconfigurations"}: true,
	{Group: "admissionregistration.k8s.io", Resource: "mutatingwebhookconfigurations"}:   true,
}

// Statusless says whether objects of gr have no status, so that Seen
// suffices to judge them.
func Statusless(gr schema.GroupResource) bool { return statusless[gr] }

// Options configures a wait.
type Options struct {
	// Timeout bounds the wait. Objects still in progress then are not
	// ready.
	Timeout time.Duration
	// Poll is the pause after the first round; each later pause is half as
	// long again, up to MaxPoll, so a slow rollout costs few requests.
	Poll time.Duration
	// MaxPoll caps the pause between rounds.
	MaxPoll time.Duration
	// Workers is how many LISTs of one round are in flight at once.
	Workers int
	// Out receives one line per object that was not ready in the first
	// round, when it becomes ready, fails, or is still waiting at the
	// timeout.
	Out io.Writer
}

// DefaultOptions holds the defaults the command line starts from.
func DefaultOptions() Options {
	return Options{Timeout: 5 * time.Minute, Poll: 2 * time.Second, MaxPoll: 5 * time.Second, Workers: 8, Out: io.Discard}
}

// Verdicts of one object.
const (
	// Ready: kstatus says Current (and a Job is Complete).
	Ready = "ready"
	// Failed: kstatus says Failed; waiting longer will not help.
	Failed = "failed"
	// Waiting: still in progress, terminating, or not found.
	Waiting = "waiting"
	// NotWaited: annotated cronsync.dev/wait: "false".
	NotWaited = "not waited"
)

// State is an object's verdict when the wait ended.
type State struct {
	Object
	// Verdict is one of Ready, Failed, Waiting, NotWaited.
	Verdict string
	// Reason says why an object is not ready: kstatus's reason and message,
	// such as "ProgressDeadlineExceeded: ReplicaSet "api-7d9" has timed
	// out progressing" or "Available: 1/3".
	Reason string
}

// Result is the outcome of a wait.
type Result struct {
	// Ready counts the objects that were ready; NotReady the ones that
	// failed or were still waiting. Objects not waited for are in neither.
	Ready, NotReady int
	// States holds every object's verdict, in the order they were given.
	States []State
}

// UnhealthyError ends a wait in which an object failed, or in which objects
// were still in progress at the timeout.
type UnhealthyError struct {
	// First is the object that failed, or the first one still waiting.
	First State
	// Waiting is how many objects were still in progress.
	Waiting int
	// Timeout is set when the wait ran out of time rather than failing fast.
	Timeout time.Duration
}

func (e *UnhealthyError) Error() string {
	where := e.First.Ref
	if e.First.Source != "" {
		where += " (" + e.First.Source + ")"
	}
	if e.First.Verdict == Failed {
		return fmt.Sprintf("%s: not healthy: %s", where, e.First.Reason)
	}
	msg := fmt.Sprintf("%s: not ready after %s: %s", where, e.Timeout, e.First.Reason)
	if e.Waiting > 1 {
		msg += fmt.Sprintf(" (and %d more objects not ready)", e.Waiting-1)
	}
	return msg
}

// Wait reads objs until every one is ready, one has failed, or
// opts.Timeout passes. A run where everything is ready at once costs at
// most one round of LISTs and no sleep. The error is an *UnhealthyError
// when the wait ended without everything ready, or what reading failed
// with; the Result is valid either way once a round has been read.
//
// client must send its requests to the API server's root and decode the
// server's errors in JSON and protobuf (see RESTClientFor): the LISTs are
// decoded here, without what kstatus does not read.
func Wait(ctx context.Context, client rest.Interface, objs []Object, opts Options) (*Result, error) {
	if opts.Out == nil {
		opts.Out = io.Discard
	}
	w := &waiter{client: client, opts: opts, states: make([]State, len(objs))}
	var pending []int
	for i, o := range objs {
		w.states[i] = State{Object: o, Verdict: Waiting, Reason: "not read yet"}
		if o.Seen != nil && Statusless(o.Resource.GroupResource()) {
			// One being deleted is read like any other, and kstatus's
			// verdict on it taken, as it goes.
			if v, reason := judgeSeen(o.Seen); v != Waiting {
				w.states[i].Verdict, w.states[i].Reason = v, reason
				continue
			}
		}
		pending = append(pending, i)
	}
	start := time.Now()
	deadline := start.Add(opts.Timeout)
	pause := opts.Poll
	for round := 0; ; round++ {
		if err := w.read(ctx, pending); err != nil {
			return w.result(), err
		}
		var still []int
		var failed *State
		for _, i := range pending {
			st := &w.states[i]
			switch st.Verdict {
			case Waiting:
				still = append(still, i)
			case Ready:
				if round > 0 {
					fmt.Fprintf(opts.Out, "%s ready after %s\n", st.Ref, time.Since(start).Round(time.Second))
				}
			case Failed:
				fmt.Fprintf(opts.Out, "%s failed: %s\n", st.Ref, st.Reason)
				if failed == nil {
					failed = st
				}
			}
		}
		if failed != nil {
			return w.result(), &UnhealthyError{First: *failed, Waiting: len(still)}
		}
		pending = still
		if len(pending) == 0 {
			return w.result(), nil
		}
		if round == 0 {
			fmt.Fprintf(opts.Out, "waiting up to %s for %d of %d objects to be ready\n", opts.Timeout, len(pending), len(objs))
		}
		left := time.Until(deadline)
		if left <= 0 {
			for _, i := range pending {
				st := w.states[i]
				fmt.Fprintf(opts.Out, "%s not ready after %s: %s\n", st.Ref, opts.Timeout, st.Reason)
			}
			return w.result(), &UnhealthyError{First: w.states[pending[0]], Waiting: len(pending), Timeout: opts.Timeout}
		}
		t := time.NewTimer(min(pause, left))
		select {
		case <-ctx.Done():
			t.Stop()
			return w.result(), context.Cause(ctx)
		case <-t.C:
		}
		pause = min(pause*3/2, opts.MaxPoll)
	}
}

type waiter struct {
	client rest.Interface
	opts   Options
	states []State
}

func (w *waiter) result() *Result {
	r := &Result{States: w.states}
	for _, s := range w.states {
		switch s.Verdict {
		case Ready:
			r.Ready++
		case Failed, Waiting:
			r.NotReady++
		}
	}
	return r
}

type groupKey struct {
	resource  schema.GroupVersionResource
	namespace string
}

// read judges the objects at indexes, one LIST per resource and namespace.
func (w *waiter) read(ctx context.Context, indexes []int) error {
	groups := map[groupKey][]int{}
	var keys []groupKey
	for _, i := range indexes {
		k := groupKey{w.states[i].Resource, w.states[i].Namespace}
		if _, ok := groups[k]; !ok {
			keys = append(keys, k)
		}
		groups[k] = append(groups[k], i)
	}
	work := make(chan groupKey)
	var (
		wg   sync.WaitGroup
		mu   sync.Mutex
		errs []error
	)
	for range min(max(w.opts.Workers, 1), len(keys)) {
		wg.Go(func() {
			for k := range work {
				if err := w.readGroup(ctx, k, groups[k]); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, k := range keys {
		work <- k
	}
	close(work)
	wg.Wait()
	return errors.Join(errs...)
}

func (w *waiter) readGroup(ctx context.Context, k groupKey, indexes []int) error {
	protobuf := typed(k.resource)
	req := func(cont string) *rest.Request {
		r := w.client.Get().AbsPath(listPath(k.resource, k.namespace)).Param("limit", "500")
		if protobuf {
			r.SetHeader("Accept", listAccept)
		}
		if len(indexes) == 1 {
			// One object: do not read a whole namespace of its kind for it.
			r.Param("fieldSelector", fields.OneTermEqualSelector("metadata.name", w.states[indexes[0]].Name).String())
		}
		if cont != "" {
			r.Param("continue", cont)
		}
		return r
	}
	want := map[string]int{}
	for _, i := range indexes {
		want[w.states[i].Name] = i
	}
	found := map[string]bool{}
	cont := ""
	for {
		var objs []*unstructured.Unstructured
		res := req(cont).Do(ctx)
		body, err := res.Raw()
		if err != nil {
			err = res.Error() // the server's Status, JSON or protobuf
		} else {
			var next string
			objs, next, err = decodePage(body)
			if protobuf && runtime.IsNotRegisteredError(err) {
				// A kind newer than this client-go, in a version it
				// knows: the same page again, in JSON.
				protobuf = false
				continue
			}
			cont = next
		}
		if err != nil {
			st := w.states[indexes[0]]
			var status apierrors.APIStatus
			if errors.As(err, &status) && status.Status().Code != http.StatusUnauthorized && status.Status().Code != http.StatusForbidden {
				// The commit was applied: a LIST the server answers 400
				// or 404 (its CRD deleted since, say) is no verdict on
				// the commit, and the next run reads it again. Refusals
				// of who is asking keep their meaning.
				return fmt.Errorf("%s (%s): reading its status: %s", st.Ref, st.Source, err)
			}
			return fmt.Errorf("%s (%s): reading its status: %w", st.Ref, st.Source, err)
		}
		for _, u := range objs {
			if i, ok := want[u.GetName()]; ok {
				found[u.GetName()] = true
				w.states[i].Verdict, w.states[i].Reason = Judge(u)
				// A status message is whatever a controller, or a
				// container's termination message, wrote: one line.
				w.states[i].Reason = redact.CleanLine(w.states[i].Reason)
			}
		}
		if cont == "" {
			break
		}
	}
	for name, i := range want {
		if !found[name] {
			w.states[i].Verdict, w.states[i].Reason = Waiting, "not found"
		}
	}
	return nil
}

// RESTClientFor returns the client Wait needs for cfg: rooted at the API
// server, JSON by default (a LIST of a kind client-go knows asks for
// protobuf itself, see listAccept), and able to read the server's errors in
// either.
func RESTClientFor(cfg *rest.Config) (rest.Interface, error) {
	c := rest.CopyConfig(cfg)
	c.AcceptContentTypes, c.ContentType = runtime.ContentTypeJSON, runtime.ContentTypeJSON
	c.NegotiatedSerializer = scheme.Codecs.WithoutConversion()
	if c.UserAgent == "" {
		c.UserAgent = rest.DefaultKubernetesUserAgent()
	}
	c.GroupVersion, c.APIPath = nil, ""
	return rest.UnversionedRESTClientFor(c)
}

// Judge gives one live object's verdict and, unless it is ready, why.
func Judge(u *unstructured.Unstructured) (verdict, reason string) {
	if u.GetAnnotations()[SkipAnnotation] == "false" {
		return NotWaited, ""
	}
	res, err := status.Compute(u)
	if err != nil {
		return Waiting, err.Error()
	}
	switch res.Status {
	case status.CurrentStatus:
		if u.GroupVersionKind().GroupKind() == (schema.GroupKind{Group: "batch", Kind: "Job"}) && !jobComplete(u) {
			return Waiting, "not complete: " + res.Message
		}
		return Ready, ""
	case status.FailedStatus:
		return Failed, failedReason(u, res)
	}
	return Waiting, inProgressReason(res)
}

// judgeSeen is Judge for an object of a Statusless kind, from its metadata:
// what kstatus does with an object that has no status.
func judgeSeen(m *metav1.ObjectMeta) (verdict, reason string) {
	switch {
	case m.Annotations[SkipAnnotation] == "false":
		return NotWaited, ""
	case m.DeletionTimestamp != nil:
		return Waiting, "terminating"
	}
	return Ready, ""
}

func jobComplete(u *unstructured.Unstructured) bool {
	for _, c := range conditions(u) {
		if c.typ == "Complete" && c.status == "True" {
			return true
		}
	}
	return false
}

// failedReason prefers the object's own words (a Job's DeadlineExceeded, a
// Deployment's ReplicaSet that timed out) to kstatus's summary.
func failedReason(u *unstructured.Unstructured, res *status.Result) string {
	for _, c := range conditions(u) {
		if c.typ == "Failed" && c.status == "True" && c.reason != "" {
			return c.reason + ": " + c.message
		}
	}
	for _, c := range res.Conditions {
		if c.Type == status.ConditionStalled && c.Reason != "" && c.Message != "" {
			return c.Reason + ": " + c.Message
		}
	}
	return res.Message
}

func inProgressReason(res *status.Result) string {
	if res.Status == status.TerminatingStatus {
		return "terminating"
	}
	if res.Message != "" {
		return res.Message
	}
	return string(res.Status)
}

type condition struct{ typ, status, reason, message string }

func conditions(u *unstructured.Unstructured) []condition {
	raw, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
	out := make([]condition, 0, len(raw))
	for _, r := range raw {
		m, _ := r.(map[string]any)
		get := func(k string) string { s, _ := m[k].(string); return s }
		out = append(out, condition{get("type"), get("status"), get("reason"), get("message")})
	}
	return out
}
