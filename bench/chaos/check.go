package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes/scheme"

	"github.com/cronsync/cronsync/internal/testenv"
)

// setID is the ApplySet's ID as the specification (KEP-3659) defines it,
// worked out here rather than read from the parent, which a fault may
// have left unwritten.
func setID() string {
	sum := sha256.Sum256([]byte(setName + "." + ctlNamespace + ".Secret."))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

const partOf = "applyset.kubernetes.io/part-of"

func (l *lab) resource(gvr schema.GroupVersionResource, ns string) dynamic.ResourceInterface {
	if ns == "" {
		return l.kube.Resource(gvr)
	}
	return l.kube.Resource(gvr).Namespace(ns)
}

// gvrs is every resource the trial's commits and leftovers hold.
func (p *plan) gvrs() map[string]schema.GroupVersionResource {
	out := map[string]schema.GroupVersionResource{}
	for _, g := range memberKinds {
		out[g.Resource] = g
	}
	for _, m := range []*model{p.Before, p.After} {
		for _, it := range m.objects() {
			out[it.GVR.Resource] = it.GVR
		}
	}
	for _, it := range p.Left {
		out[it.GVR.Resource] = it.GVR
	}
	return out
}

// members lists the live members of the set, wherever they are.
func (l *lab) members(p *plan) (map[key]*unstructured.Unstructured, error) {
	out := map[key]*unstructured.Unstructured{}
	for _, gvr := range p.gvrs() {
		list, err := l.kube.Resource(gvr).List(context.Background(), metav1.ListOptions{LabelSelector: partOf + "=" + setID()})
		if apierrors.IsNotFound(err) {
			continue // a CRD gone
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		for i := range list.Items {
			o := &list.Items[i]
			k := key{Resource: gvr.Resource, Namespace: o.GetNamespace(), Name: o.GetName()}
			out[k] = o
		}
	}
	return out, nil
}

// uids are the live objects of both commits and the leftovers, by key,
// read with one LIST per resource.
func (l *lab) uids(p *plan) (map[key]types.UID, error) {
	all := p.Before.objects()
	maps.Copy(all, p.After.objects())
	maps.Copy(all, p.Left)
	gvrs := map[string]schema.GroupVersionResource{}
	for _, it := range all {
		gvrs[it.GVR.Resource] = it.GVR
	}
	out := map[key]types.UID{}
	for _, gvr := range gvrs {
		list, err := l.kube.Resource(gvr).List(context.Background(), metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue // a CRD not made yet, or gone
		}
		if err != nil {
			return nil, fmt.Errorf("listing %s: %w", gvr.Resource, err)
		}
		for _, o := range list.Items {
			k := key{Resource: gvr.Resource, Namespace: o.GetNamespace(), Name: o.GetName()}
			if _, ok := all[k]; ok {
				out[k] = o.GetUID()
			}
		}
	}
	return out, nil
}

func parallel(items map[key]item, fn func(key, item)) {
	work := make(chan key)
	var wg sync.WaitGroup
	for range 16 {
		wg.Go(func() {
			for k := range work {
				fn(k, items[k])
			}
		})
	}
	for _, k := range slices.SortedFunc(maps.Keys(items), func(a, b key) int { return strings.Compare(a.String(), b.String()) }) {
		work <- k
	}
	close(work)
	wg.Wait()
}

// checkUIDs: (3) no object of either commit was deleted (or deleted and
// made again) over the trial but the members the new commit removed, and
// only with --prune.
func (l *lab) checkUIDs(p *plan, before map[key]types.UID, res *trialResult) error {
	after, err := l.uids(p)
	if err != nil {
		return err
	}
	removed := l.removed(p)
	for k, uid := range before {
		now, ok := after[k]
		switch {
		case ok && now == uid:
		case removed[k] && p.Prune && !ok:
		case ok:
			res.violate("(3) %s was deleted and made again (uid %s → %s)", k, uid, now)
		case !p.Prune:
			res.violate("(3) %s was deleted by runs without --prune", k)
		default:
			res.violate("(3) %s was deleted, but the new commit still holds it", k)
		}
	}
	return nil
}

// removed are the objects the trial's runs may prune: members before the
// trial (the commit's, those left behind, any other live member, such as a
// Namespace still being emptied) that the new commit does not hold.
func (l *lab) removed(p *plan) map[key]bool {
	out := map[key]bool{}
	after := p.After.objects()
	for _, set := range []map[key]item{p.Before.objects(), p.Left} {
		for k := range set {
			if _, ok := after[k]; !ok {
				out[k] = true
			}
		}
	}
	for k := range l.startMembers {
		if _, ok := after[k]; !ok {
			out[k] = true
		}
	}
	return out
}

// checkFaulted: (1) the faulted run's exit status; (4) a dry run, or a
// run whose check failed, wrote nothing.
func (l *lab) checkFaulted(p *plan, f *run, res *trialResult) {
	switch {
	case f.Signal == "killed" && p.Fault.Kind == sigkill:
		return
	case f.Signal != "":
		res.violate("(1) the faulted run %s ended by %s", f.Tag, f.Signal)
	case f.Code == 1:
	case f.Code == 0 && !res.Landed:
	case f.Code == 0 && f.Summary != nil && f.Summary.Result == "skipped" && (p.Fault.Kind == leaseStolen):
		// The other holder had the Lease first: nothing to do.
	case f.Code == 0:
		// A fault absorbed (client-go retried): 0 is the truth only if the
		// run did all of it.
		if p.DryRun {
			if f.Summary == nil {
				res.violate("(1) the faulted dry run %s exited 0 after %s landed, with no JSON summary", f.Tag, p.Fault)
				return
			}
			for _, o := range f.Summary.Objects {
				if o.Action == "failed" || o.Action == "skipped" {
					res.violate("(1) the faulted dry run %s exited 0 after %s landed, but %s is %s", f.Tag, p.Fault, o.Ref, o.Action)
					return
				}
			}
			if len(f.Summary.Objects) < len(p.After.objects()) {
				res.violate("(1) the faulted dry run %s exited 0 after %s landed, but reported %d objects of %d", f.Tag, p.Fault, len(f.Summary.Objects), len(p.After.objects()))
			}
			return
		}
		before := len(res.Violations)
		if err := l.checkEquals(p, res, "after the faulted run "+f.Tag+", which exited 0"); err != nil {
			res.violate("(1) checking the faulted run's exit 0: %v", err)
		}
		for i := before; i < len(res.Violations); i++ {
			res.Violations[i] = "(1) exit 0 but " + strings.TrimPrefix(res.Violations[i], "(5) ")
		}
	default:
		res.violate("(1) the faulted run %s exited %d after %s, want 1: %s", f.Tag, f.Code, p.Fault, lastLines(f.Stderr, 6))
	}
}

// checkEquals: (5) the cluster holds the commit: each object as a server
// dry run of it, as cronsync applies it, would leave it, and (with
// --prune) no other member.
func (l *lab) checkEquals(p *plan, res *trialResult, when string) error {
	want := p.After.objects()
	var mu sync.Mutex
	var firstErr error
	parallel(want, func(k key, it item) {
		diff, err := l.differs(it)
		mu.Lock()
		defer mu.Unlock()
		if err != nil && firstErr == nil {
			firstErr = fmt.Errorf("%s: %w", k, err)
		}
		if diff != "" {
			res.violate("(5) %s: %s %s", when, k, diff)
		}
	})
	if firstErr != nil {
		return firstErr
	}
	members, err := l.members(p)
	if err != nil {
		return err
	}
	for k, o := range members {
		if _, ok := want[k]; ok || o.GetDeletionTimestamp() != nil {
			continue
		}
		if p.Prune {
			res.violate("(5) %s: %s is a member the commit does not hold, after a run with --prune", when, k)
		} else if !l.removed(p)[k] {
			res.violate("(5) %s: %s is a member no commit held", when, k)
		}
	}
	return nil
}

// differs says how the live object differs from what applying it would
// make of it; "" when it does not.
func (l *lab) differs(it item) (string, error) {
	ctx := context.Background()
	c := l.resource(it.GVR, it.Obj.GetNamespace())
	live, err := c.Get(ctx, it.Obj.GetName(), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "is missing", nil
	}
	if err != nil {
		return "", err
	}
	if live.GetDeletionTimestamp() != nil {
		return "is being deleted", nil
	}
	o := it.Obj.DeepCopy()
	labels := o.GetLabels()
	if labels == nil {
		labels = map[string]string{}
	}
	labels[partOf] = setID()
	o.SetLabels(labels)
	// What cronsync keeps on the object for itself is not the commit's.
	anns := o.GetAnnotations()
	for k, v := range live.GetAnnotations() {
		if strings.HasPrefix(k, "cronsync.dev/") {
			if anns == nil {
				anns = map[string]string{}
			}
			anns[k] = v
		}
	}
	o.SetAnnotations(anns)
	body, err := json.Marshal(o.Object)
	if err != nil {
		return "", err
	}
	applied, err := c.Patch(ctx, o.GetName(), types.ApplyPatchType, body, metav1.PatchOptions{
		FieldManager: "cronsync", Force: new(true), DryRun: []string{metav1.DryRunAll},
	})
	if err != nil {
		return "", fmt.Errorf("server dry run: %w", err)
	}
	if d := firstDiff("", normal(live.Object), normal(applied.Object)); d != "" {
		return "differs from the commit: " + d, nil
	}
	return "", nil
}

// normal drops what a dry run changes on every object.
func normal(o map[string]any) map[string]any {
	o = runtimeCopy(o)
	if md, ok := o["metadata"].(map[string]any); ok {
		for _, f := range []string{"managedFields", "resourceVersion", "generation"} {
			delete(md, f)
		}
	}
	return o
}

func runtimeCopy(o map[string]any) map[string]any {
	return (&unstructured.Unstructured{Object: o}).DeepCopy().Object
}

func firstDiff(path string, a, b any) string {
	switch av := a.(type) {
	case map[string]any:
		bv, ok := b.(map[string]any)
		if !ok {
			return fmt.Sprintf("%s: %v → %v", path, a, b)
		}
		for _, k := range slices.Sorted(maps.Keys(av)) {
			if d := firstDiff(path+"."+k, av[k], bv[k]); d != "" {
				return d
			}
		}
		for _, k := range slices.Sorted(maps.Keys(bv)) {
			if _, ok := av[k]; !ok {
				return fmt.Sprintf("%s.%s: <absent> → %v", path, k, bv[k])
			}
		}
		return ""
	default:
		if !reflect.DeepEqual(a, b) {
			return fmt.Sprintf("%s: %v (live) → %v (the commit)", path, a, b)
		}
		return ""
	}
}

// checkInventory: (6) the parent lists the group-kind and namespace of
// every live member, so that a later prune finds it.
func (l *lab) checkInventory(p *plan, res *trialResult, when string) error {
	members, err := l.members(p)
	if err != nil {
		return err
	}
	if len(members) == 0 {
		return nil
	}
	parent, err := l.kube.Resource(gvrSecret).Namespace(ctlNamespace).Get(context.Background(), setName, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		res.violate("(6) %s: %d members and no ApplySet parent", when, len(members))
		return nil
	}
	if err != nil {
		return err
	}
	anns := parent.GetAnnotations()
	gks := map[string]bool{}
	for _, gk := range strings.Split(anns["applyset.kubernetes.io/contains-group-kinds"], ",") {
		gks[gk] = true
	}
	nss := map[string]bool{ctlNamespace: true}
	for _, ns := range strings.Split(anns["applyset.kubernetes.io/additional-namespaces"], ",") {
		nss[ns] = true
	}
	var missing []string
	for k, o := range members {
		if o.GetDeletionTimestamp() != nil {
			continue
		}
		gk := o.GroupVersionKind().GroupKind().String()
		if !gks[gk] {
			missing = append(missing, fmt.Sprintf("%s (group-kind %s)", k, gk))
		} else if k.Namespace != "" && !nss[k.Namespace] {
			missing = append(missing, fmt.Sprintf("%s (namespace %s)", k, k.Namespace))
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		res.violate("(6) %s: the parent does not list %d live members: %s", when, len(missing), strings.Join(first(missing, 5), ", "))
	}
	return nil
}

func first(s []string, n int) []string {
	if len(s) > n {
		return append(s[:n:n], fmt.Sprintf("and %d more", len(s)-n))
	}
	return s
}

// tagOf is the run that sent a request, from the User-Agent the proxy
// stamped.
func tagOf(ev testenv.AuditEvent) string {
	_, tag, ok := strings.Cut(ev.UserAgent, "chaos-run/")
	if !ok {
		return ""
	}
	return tag
}

// isWrite says ev changed something: a write that was not a server dry
// run. A DELETE carries its dryRun in its body, which the audit log (at
// the Metadata level) does not keep: the proxies' records do.
func (l *lab) isWrite(ev testenv.AuditEvent) bool {
	switch ev.Verb {
	case "create", "update", "patch", "deletecollection":
		return !strings.Contains(ev.RequestURI, "dryRun=All")
	case "delete":
		return !l.dryDeletes[tagOf(ev)+" "+ev.RequestURI]
	}
	return false
}

// noteDryDeletes records which DELETEs of the proxies' records were dry
// runs, by run and URI.
func (l *lab) noteDryDeletes(logs ...[]testenv.ProxiedRequest) {
	l.dryDeletes = map[string]bool{}
	for _, log := range logs {
		for _, r := range log {
			if r.Method == "DELETE" && bytes.Contains(r.Body, []byte(`"dryRun":["All"]`)) {
				l.dryDeletes[r.Tag+" "+r.URI] = true
			}
		}
	}
}

func evKey(ev testenv.AuditEvent) key {
	if ev.ObjectRef == nil {
		return key{}
	}
	k := key{Resource: ev.ObjectRef.Resource, Namespace: ev.ObjectRef.Namespace, Name: ev.ObjectRef.Name}
	if k.Resource == "namespaces" {
		k.Namespace = ""
	}
	return k
}

// bookkeeping says k is what a run keeps for itself: the parent and its
// shards, the Lease, the Events it records.
func bookkeeping(k key) bool {
	if k.Namespace != ctlNamespace {
		return false
	}
	switch k.Resource {
	case "secrets":
		return k.Name == setName || strings.HasPrefix(k.Name, setName+"-fd-")
	case "leases":
		return k.Name == setName
	case "events":
		return true
	}
	return false
}

// checkWrites: (2) every write of every run was to an object of the
// commits or the set's own; (3) every delete was of a member the new
// commit removed, by a run with --prune (or of a shard); (4) a dry run
// wrote nothing.
func (l *lab) checkWrites(p *plan, runs []*run, events []testenv.AuditEvent, res *trialResult) {
	known := p.Before.objects()
	maps.Copy(known, p.After.objects())
	maps.Copy(known, p.Left)
	for k := range l.startMembers {
		known[k] = item{}
	}
	removed := l.removed(p)
	byTag := map[string]*run{}
	for _, r := range runs {
		byTag[r.Tag] = r
	}
	for _, ev := range events {
		if ev.User.Username != runUser && ev.User.Username != otherUser {
			continue
		}
		r := byTag[tagOf(ev)]
		if r == nil || !l.isWrite(ev) {
			continue
		}
		k := evKey(ev)
		_, inCommit := known[k]
		switch {
		case r == runs[0] && p.DryRun:
			res.violate("(4) the dry run %s wrote: %s %s", r.Tag, ev.Verb, ev.RequestURI)
		case !inCommit && !bookkeeping(k):
			res.violate("(2) run %s wrote outside the set: %s %s", r.Tag, ev.Verb, ev.RequestURI)
		case ev.Verb == "deletecollection":
			res.violate("(3) run %s deleted a collection: %s", r.Tag, ev.RequestURI)
		case ev.Verb == "delete" && inCommit && !slices.Contains(r.Args, "--prune"):
			res.violate("(3) run %s, without --prune, deleted %s", r.Tag, k)
		case ev.Verb == "delete" && inCommit && !removed[k]:
			res.violate("(3) run %s deleted %s, which the new commit holds", r.Tag, k)
		case ev.Verb == "delete" && k.Resource == "secrets" && k.Name == setName:
			res.violate("(3) run %s deleted the ApplySet parent", r.Tag)
		}
	}
}

// checkFailedCheck: (4) a check that failed writes nothing after it: when
// the fault landed on a dry run (which client-go does not send again: a
// reset, a stall, a cut answer, a 503), the run wrote no object of the
// commit after it, unless the object checked depends on one the commit
// creates (its check is then made again once that is written).
func (l *lab) checkFailedCheck(p *plan, f *run, proxied []testenv.ProxiedRequest, events []testenv.AuditEvent, res *trialResult) {
	switch p.Fault.Kind {
	case apiReset, apiStall, apiCut, api503:
	default:
		return
	}
	var failed *testenv.ProxiedRequest
	for i := range proxied {
		if r := &proxied[i]; r.Tag == f.Tag && r.Fault != "" && r.Method != "GET" && strings.Contains(r.URI, "dryRun=All") {
			failed = r
			break
		}
	}
	if failed == nil {
		return
	}
	before := p.Before.objects()
	if strings.Contains(failed.URI, "/configmaps/chain-") {
		var i int
		if _, err := fmt.Sscanf(failed.URI[strings.Index(failed.URI, "/configmaps/chain-")+len("/configmaps/chain-"):], "%d", &i); err == nil && i > 0 {
			if _, ok := before[key{Resource: "configmaps", Namespace: "chaos-b", Name: fmt.Sprintf("chain-%d", i-1)}]; !ok {
				return // it depends on a link the commit adds
			}
		}
	}
	for _, ev := range events {
		k := evKey(ev)
		if tagOf(ev) != f.Tag || !l.isWrite(ev) || bookkeeping(k) || !ev.Received.After(failed.Start) {
			continue
		}
		res.violate("(4) the faulted run %s's dry run %s %s failed (%s) at %s, and it wrote %s %s at %s after it",
			f.Tag, failed.Method, failed.URI, failed.Fault, failed.Start.Format("15:04:05.000000"), ev.Verb, ev.RequestURI, ev.Received.Format("15:04:05.000000"))
		return
	}
}

// checkNoChange: (5) the run after the one that converged is a no-change
// run decided from the LISTs: every object unchanged without a request,
// no dry run and no write to an object. (A group of objects too small
// for a LIST is read with a GET each, and decided from that as from a
// LIST.)
func (l *lab) checkNoChange(p *plan, r *run, events []testenv.AuditEvent, res *trialResult) {
	if r.Summary == nil {
		res.violate("(5) the no-change run %s printed no JSON summary", r.Tag)
		return
	}
	if r.Summary.Result == "skipped" {
		res.violate("(5) the no-change run %s was skipped", r.Tag)
		return
	}
	n := 0
	for _, o := range r.Summary.Objects {
		if o.Action != "unchanged" || !o.WithoutRequest {
			n++
			if n <= 3 {
				res.violate("(5) the no-change run %s: %s %s (withoutRequest %v)", r.Tag, o.Ref, o.Action, o.WithoutRequest)
			}
		}
	}
	if want := len(p.After.objects()); len(r.Summary.Objects) != want {
		res.violate("(5) the no-change run %s reported %d objects, the commit holds %d", r.Tag, len(r.Summary.Objects), want)
	}
	for _, ev := range events {
		if tagOf(ev) != r.Tag || ev.User.Username != runUser {
			continue
		}
		k := evKey(ev)
		if strings.Contains(ev.RequestURI, "dryRun=All") {
			res.violate("(5) the no-change run %s sent a dry run: %s %s", r.Tag, ev.Verb, ev.RequestURI)
			return
		}
		if l.isWrite(ev) && !bookkeeping(k) {
			res.violate("(5) the no-change run %s wrote: %s %s", r.Tag, ev.Verb, ev.RequestURI)
			return
		}
	}
}

// checkOverlap: (8) no two runs wrote at the same time: the span from a
// run's first write to the end of its last does not meet another run's.
// The Lease itself is how they take turns, and is left out.
func (l *lab) checkOverlap(events []testenv.AuditEvent, res *trialResult) {
	type span struct {
		tag        string
		from, to   time.Time
		last       string
		firstWrite string
	}
	spans := map[string]*span{}
	for _, ev := range events {
		if (ev.User.Username != runUser && ev.User.Username != otherUser) || !l.isWrite(ev) {
			continue
		}
		k := evKey(ev)
		if k.Resource == "leases" || k.Resource == "events" {
			continue
		}
		tag := tagOf(ev)
		s := spans[tag]
		if s == nil {
			s = &span{tag: tag, from: ev.Received, to: ev.Completed, firstWrite: ev.Verb + " " + ev.RequestURI}
			spans[tag] = s
		}
		if ev.Received.Before(s.from) {
			s.from = ev.Received
		}
		if ev.Completed.After(s.to) {
			s.to, s.last = ev.Completed, ev.Verb+" "+ev.RequestURI
		}
	}
	all := slices.Collect(maps.Values(spans))
	sort.Slice(all, func(i, j int) bool { return all[i].from.Before(all[j].from) })
	for i := 1; i < len(all); i++ {
		if prev := all[i-1]; all[i].from.Before(prev.to) {
			res.violate("(8) runs %s and %s wrote at the same time: %s wrote %s at %s, after %s's first write (%s) at %s",
				prev.tag, all[i].tag, prev.tag, prev.last, prev.to.Format("15:04:05.000000"), all[i].tag, all[i].firstWrite, all[i].from.Format("15:04:05.000000"))
		}
	}
}

// leaseWrite is a run's write of the Lease that the server took, as the
// proxy saw it.
type leaseWrite struct {
	start, end time.Time
	holder     string
	renew      time.Time
}

// leaseWrites are the Lease writes the proxies' records hold, by run.
func leaseWrites(logs ...[]testenv.ProxiedRequest) map[string][]leaseWrite {
	out := map[string][]leaseWrite{}
	for _, log := range logs {
		for _, r := range log {
			if r.Body == nil || r.Status < 200 || r.Status >= 300 || strings.Contains(r.URI, "dryRun=All") {
				continue
			}
			// client-go sends built-in kinds as protobuf.
			o, _, err := scheme.Codecs.UniversalDeserializer().Decode(r.Body, nil, nil)
			le, ok := o.(*coordinationv1.Lease)
			if err != nil || !ok {
				continue
			}
			w := leaseWrite{start: r.Start, end: r.End}
			if le.Spec.HolderIdentity != nil {
				w.holder = *le.Spec.HolderIdentity
			}
			if le.Spec.RenewTime != nil {
				w.renew = le.Spec.RenewTime.Time
			}
			out[r.Tag] = append(out[r.Tag], w)
		}
	}
	for _, ws := range out {
		sort.Slice(ws, func(i, j int) bool { return ws[i].end.Before(ws[j].end) })
	}
	return out
}

// checkFencing: (8) a run writes only while it holds the Lease: each write
// comes in before the renewTime of the run's last answered write of the
// Lease plus --lease-duration (when another run may take it), and none
// after the write that released it. This is what keeps two runs from
// writing at once; checkOverlap sees only the times another run did.
func (l *lab) checkFencing(runs []*run, events []testenv.AuditEvent, leases map[string][]leaseWrite, res *trialResult) {
	for _, r := range runs {
		if slices.Contains(r.Args, "--dry-run=server") {
			continue
		}
		for _, ev := range events {
			if tagOf(ev) != r.Tag || !l.isWrite(ev) {
				continue
			}
			if k := evKey(ev); k.Resource == "leases" || k.Resource == "events" {
				continue
			}
			ws := leases[r.Tag]
			i := len(ws) - 1
			for i >= 0 && ws[i].end.After(ev.Received) {
				i--
			}
			at := ev.Received.Format("15:04:05.000000")
			var why string
			switch {
			case i < 0:
				why = "before it held the lease"
			case ws[i].holder == "":
				why = "after it released the lease at " + ws[i].start.Format("15:04:05.000000")
			case ev.Received.After(ws[i].renew.Add(leaseDuration)):
				why = fmt.Sprintf("%s after the renewTime it last wrote: the lease had run out, another run could have been writing", ev.Received.Sub(ws[i].renew).Round(time.Millisecond))
			}
			if why != "" {
				res.violate("(8) run %s wrote %s %s at %s, %s", r.Tag, ev.Verb, ev.RequestURI, at, why)
				break
			}
		}
	}
}

// checkBystanders: (2) the objects outside the set are as the lab made
// them.
func (l *lab) checkBystanders(res *trialResult) error {
	now, err := l.bystanderState()
	if err != nil {
		return err
	}
	for k, v := range l.bystanderVersions {
		if now[k] != v {
			res.violate("(2) %s outside the set was written (resourceVersion %s → %s)", k, v, now[k])
		}
	}
	return nil
}
