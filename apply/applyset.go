package apply

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/metadata"
	"k8s.io/client-go/rest"
)

// ApplySet membership follows the specification kubectl implements
// (KEP-3659), so `kubectl` sees the same set: a parent object labelled with
// the set's ID and annotated with the group-kinds and namespaces its members
// live in, and a part-of label on every member.
const (
	applySetIDLabel       = "applyset.kubernetes.io/id"
	applySetPartOfLabel   = "applyset.kubernetes.io/part-of"
	applySetToolingAnn    = "applyset.kubernetes.io/tooling"
	applySetGKsAnn        = "applyset.kubernetes.io/contains-group-kinds"
	applySetNamespacesAnn = "applyset.kubernetes.io/additional-namespaces"
	toolingName           = "cronsync"
)

// ErrRefused marks what cronsync will not do without being told to: prune
// to an empty set, delete a Namespace or CRD, take over an ApplySet that
// another tool manages, or invent the namespace its parent lives in. The
// fix is in the Job's configuration.
var ErrRefused = errors.New("refused")

// refusal is an ErrRefused whose message is written out in full.
type refusal struct{ msg string }

func (r *refusal) Error() string        { return r.msg }
func (r *refusal) Is(target error) bool { return target == ErrRefused }

func refused(format string, args ...any) error {
	return &refusal{fmt.Sprintf(format, args...)}
}

var secretsGVR = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}

// ApplySet names the Secret that records which objects cronsync applied.
// The zero value means no ApplySet.
type ApplySet struct {
	// Namespace and Name of the parent Secret.
	Namespace, Name string
}

// id is the set's ID as the specification defines it:
// base64url(sha256(<name>.<namespace>.<kind>.<group>)).
func (a ApplySet) id() string {
	sum := sha256.Sum256([]byte(strings.Join([]string{a.Name, a.Namespace, "Secret", ""}, ".")))
	return "applyset-" + base64.RawURLEncoding.EncodeToString(sum[:]) + "-v1"
}

func (a ApplySet) String() string { return "secret/" + a.Name + " -n " + a.Namespace }

// members is what a parent says its set holds.
type members struct {
	gks        map[schema.GroupKind]bool
	namespaces map[string]bool
}

func newMembers() members {
	return members{gks: map[schema.GroupKind]bool{}, namespaces: map[string]bool{}}
}

func (m members) add(gk schema.GroupKind, ns string) {
	m.gks[gk] = true
	if ns != "" {
		m.namespaces[ns] = true
	}
}

// equal says whether m and o cover the same kinds and namespaces.
func (m members) equal(o members) bool {
	return maps.Equal(m.gks, o.gks) && maps.Equal(m.namespaces, o.namespaces)
}

func (m members) union(o members) members {
	u := newMembers()
	for gk := range m.gks {
		u.gks[gk] = true
	}
	for gk := range o.gks {
		u.gks[gk] = true
	}
	for ns := range m.namespaces {
		u.namespaces[ns] = true
	}
	for ns := range o.namespaces {
		u.namespaces[ns] = true
	}
	return u
}

// readParent returns the members the parent records, or an empty set when
// there is no parent yet. A parent that exists but belongs to another tool,
// or to another set, is refused: writing it would orphan that tool's objects.
func (s *syncer) readParent(ctx context.Context) (members, error) {
	m := newMembers()
	a := s.opts.ApplySet
	parent, err := s.dyn.Resource(secretsGVR).Namespace(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		s.recordedFPs = map[string]string{}
		s.parentChecked = true
		if s.opts.ParentRead != nil {
			s.opts.ParentRead(ctx, map[string]string{})
		}
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("ApplySet parent %s: %w", a, err)
	}
	s.parentAnnotations = parent.GetAnnotations()
	s.parent = parent
	s.parentUID = parent.GetUID()
	tooling := parent.GetAnnotations()[applySetToolingAnn]
	if name, _, _ := strings.Cut(tooling, "/"); name != toolingName {
		return m, refused("ApplySet parent %s exists and is managed by %q, not %s", a, tooling, toolingName)
	}
	if got := parent.GetLabels()[applySetIDLabel]; got != a.id() {
		return m, refused("ApplySet parent %s has label %s=%q, want %q", a, applySetIDLabel, got, a.id())
	}
	for _, gk := range splitList(parent.GetAnnotations()[applySetGKsAnn]) {
		m.gks[schema.ParseGroupKind(gk)] = true
	}
	for _, ns := range splitList(parent.GetAnnotations()[applySetNamespacesAnn]) {
		m.namespaces[ns] = true
	}
	m.namespaces[a.Namespace] = true
	s.parentChecked = true
	if s.opts.ParentRead != nil {
		s.opts.ParentRead(ctx, parent.GetAnnotations())
	}
	s.readFastData(ctx, parent)
	return m, nil
}

func splitList(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ",")
}

// writeParent records m on the parent with server-side apply, creating it if
// needed.
func (s *syncer) writeParent(ctx context.Context, m members, version string) error {
	a := s.opts.ApplySet
	annotations := s.membershipAnnotations(m, version)
	if s.parentAnnotations != nil && subset(annotations, s.parentAnnotations) {
		return nil // a run that changes nothing writes nothing
	}
	patch, err := a.parentPatch(annotations)
	if err != nil {
		return err
	}
	opts := metav1.PatchOptions{FieldManager: s.opts.FieldManager, Force: new(true)}
	if s.opts.DryRun == DryRunServer {
		opts.DryRun = []string{metav1.DryRunAll}
	}
	// The metadata client asks for the answer without the parent's data,
	// which at 10,000 objects is 700 KB of fingerprints.
	answer, err := s.meta.Resource(secretsGVR).Namespace(a.Namespace).Patch(ctx, a.Name, types.ApplyPatchType, patch, opts)
	if apierrors.IsNotFound(err) {
		return refused("ApplySet parent %s: namespace %s does not exist; create it, or point --applyset elsewhere", a, a.Namespace)
	}
	if err != nil {
		return fmt.Errorf("updating ApplySet parent %s: %w", a, err)
	}
	if s.opts.DryRun == DryRunNone {
		s.parentAnnotations = annotations
		s.parentUID = answer.GetUID()
	}
	return nil
}

// membershipAnnotations are the parent's annotations recording m.
func (s *syncer) membershipAnnotations(m members, version string) map[string]string {
	a := s.opts.ApplySet
	var gks, nss []string
	for gk := range m.gks {
		gks = append(gks, gk.String())
	}
	for ns := range m.namespaces {
		if ns != a.Namespace {
			nss = append(nss, ns)
		}
	}
	sort.Strings(gks)
	sort.Strings(nss)
	return map[string]string{
		applySetToolingAnn:    toolingName + "/" + version,
		applySetGKsAnn:        strings.Join(gks, ","),
		applySetNamespacesAnn: strings.Join(nss, ","),
	}
}

// parentPatch is a server-side apply patch for the parent Secret carrying
// the set's ID label and annotations.
func (a ApplySet) parentPatch(annotations map[string]string) ([]byte, error) {
	return json.Marshal(map[string]any{
		"apiVersion": "v1",
		"kind":       "Secret",
		"type":       "Opaque",
		"metadata": map[string]any{
			"name":        a.Name,
			"namespace":   a.Namespace,
			"labels":      map[string]string{applySetIDLabel: a.id()},
			"annotations": annotations,
		},
	})
}

func subset(want, have map[string]string) bool {
	for k, v := range want {
		if got, ok := have[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// commitMembers is the set the commit's objects make.
func commitMembers(p *plan) members {
	m := newMembers()
	for _, it := range slices.Concat(p.first, p.rest) {
		m.add(it.GroupKind(), it.Obj.GetNamespace())
	}
	return m
}

// readAnnotations are the parent's annotations as the run read them, nil
// if it read none.
func (s *syncer) readAnnotations() map[string]string {
	if s.parent == nil {
		return nil
	}
	return s.parent.GetAnnotations()
}

// Record is one run's outcome as RecordRun writes it on the parent.
type Record struct {
	// Annotations are written as they are.
	Annotations map[string]string
	// Keep names annotations that stay as the parent has them when
	// Annotations lacks them: server-side apply removes a field its manager
	// no longer sends, and some of the record (when the last run succeeded)
	// is not this run's to say.
	Keep []string
	// Checked is the run's Result.ParentChecked: a parent the run found its
	// own is not read again.
	Checked bool
	// Read is the run's Result.ParentAnnotations, where what Keep names is
	// found when Checked.
	Read map[string]string
}

// ParentAnnotations returns the annotations of the ApplySet parent, for a
// run that did not get as far as reading it; none, and no error, when
// there is no parent yet. A parent another tool manages is refused, as
// RecordRun refuses to write it.
func ParentAnnotations(ctx context.Context, cfg *rest.Config, a ApplySet) (map[string]string, error) {
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	parent, err := md.Resource(secretsGVR).Namespace(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return map[string]string{}, nil
	case err != nil:
		return nil, fmt.Errorf("reading ApplySet parent %s: %w", a, err)
	}
	if name, _, _ := strings.Cut(parent.GetAnnotations()[applySetToolingAnn], "/"); name != toolingName {
		return nil, fmt.Errorf("ApplySet parent %s is managed by %q", a, name)
	}
	return parent.GetAnnotations(), nil
}

// RecordRun writes annotations describing the last run onto the ApplySet
// parent (creating it if this is the first run), so that
// `kubectl get secret cronsync -o yaml` and `cronsync status` answer "which
// commit is live?". It uses its own field manager, so that the membership
// annotations, which the run itself owns, are neither touched nor dropped.
func RecordRun(ctx context.Context, cfg *rest.Config, a ApplySet, version string, rec Record) error {
	annotations, checked, read := rec.Annotations, rec.Checked, rec.Read
	// Metadata only, both ways: the parent's data is the run's fingerprints.
	md, err := metadata.NewForConfig(cfg)
	if err != nil {
		return err
	}
	// A parent another tool manages was refused by the run; recording on it
	// would claim it after all. Its metadata says so: the fingerprints need
	// not be downloaded again.
	if !checked {
		parent, err := md.Resource(secretsGVR).Namespace(a.Namespace).Get(ctx, a.Name, metav1.GetOptions{})
		switch {
		case apierrors.IsNotFound(err):
		case err != nil:
			return fmt.Errorf("recording the run on ApplySet parent %s: %w", a, err)
		default:
			if name, _, _ := strings.Cut(parent.GetAnnotations()[applySetToolingAnn], "/"); name != toolingName {
				return fmt.Errorf("not recording the run on ApplySet parent %s: it is managed by %q", a, name)
			}
			read = parent.GetAnnotations()
		}
	}
	anns := map[string]string{applySetToolingAnn: toolingName + "/" + version}
	for _, k := range rec.Keep {
		if v, ok := read[k]; ok {
			anns[k] = v
		}
	}
	maps.Copy(anns, annotations)
	patch, err := a.parentPatch(anns)
	if err != nil {
		return err
	}
	_, err = md.Resource(secretsGVR).Namespace(a.Namespace).Patch(ctx, a.Name, types.ApplyPatchType, patch,
		metav1.PatchOptions{FieldManager: toolingName + "-status", Force: new(true)})
	if err != nil {
		return fmt.Errorf("recording the run on ApplySet parent %s: %w", a, err)
	}
	return nil
}
