// Package chart renders the Helm charts of a repository checkout with Helm's
// SDK: its chart loader, its values coalescing and its template engine, as
// `helm template` does, and none of Helm's release machinery.
//
// cronsync renders charts; it does not install releases. So hooks are left
// out (nothing would run them at the right moment), `lookup` finds nothing
// (a render must depend on the commit, not on what the cluster holds), and
// nothing outside the repository is read unless a remote chart is allowed.
package chart

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"text/template"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	"helm.sh/helm/v4/pkg/engine"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/client-go/discovery"

	"github.com/cronsync/cronsync/internal/budget"
)

// Options configures a Renderer.
type Options struct {
	// Discovery answers .Capabilities: the cluster's version and the API
	// versions it serves. It is asked once, and only if a chart is rendered.
	Discovery discovery.DiscoveryInterface
	// MaxFileBytes refuses any chart file, chart archive, or file unpacked
	// from an archive, larger than this; 0 means no limit.
	MaxFileBytes int64
	// AllowRemote lets a chart that is not in the repository be fetched over
	// HTTP(S) or OCI (chart bytes only; no plugin, no credentials helper).
	AllowRemote bool
	// RenderBudget is the longest one chart may take to render; a template
	// that runs past it is stopped and the chart is a manifest error. The
	// run's own deadline shortens it further.
	RenderBudget time.Duration
	// HTTPClient fetches remote charts; nil is http.DefaultClient.
	HTTPClient *http.Client
	// MemoryBudget is how much the heap may grow while one chart renders
	// before it is stopped, for templates that produce output without end.
	// It stays well below the memory limit manifests/ gives the pod, so
	// that such a chart is reported rather than OOM-killed.
	MemoryBudget uint64
	// MaxChartBytes bounds one chart's files all together, what its
	// subchart archives (and theirs) inflate to included; 0 is Helm's
	// bound for one archive, archive.MaxDecompressedChartSize (100 MiB).
	MaxChartBytes int64
	// Child, when set, is the command itself (os.Executable): each chart
	// is then loaded and rendered in a process of its own (see
	// budget.InChild), which a template cannot take past its budgets.
	// Empty renders in this process, watched by budget.Run.
	Child string
}

// DefaultOptions holds the defaults the command line starts from.
func DefaultOptions() Options {
	return Options{RenderBudget: 30 * time.Second, MemoryBudget: 256 << 20, MaxChartBytes: archive.MaxDecompressedChartSize}
}

// Request is one chart to render.
type Request struct {
	// Root is the repository checkout. No file outside it is read, even
	// through a symlink.
	Root string
	// Dir is the chart's directory, a real path inside Root. It is empty
	// for a remote chart.
	Dir string
	// Shown is where the chart is, as users see it (relative to Root for a
	// vendored chart). Every Source starts with it.
	Shown string
	// Remote names a chart to fetch instead of Dir; only with AllowRemote.
	Remote *Remote
	// ReleaseName is .Release.Name.
	ReleaseName string
	// NameTemplate, when ReleaseName is empty, is a Go template that
	// gives it (kustomize's helmCharts nameTemplate). It is repository
	// text run as a template, so it runs within the chart's budgets.
	NameTemplate string
	// Namespace is .Release.Namespace.
	Namespace string
	// Values are coalesced over the chart's values.yaml, as the values of
	// `helm template -f` are; nil renders with the chart's own.
	Values map[string]any
	// ValuesFor, when set, replaces Values: it is given the chart's own
	// values.yaml (found says whether the chart has one) once the chart is
	// loaded. A remote chart's is known only then, and kustomize builds the
	// values of `-f` from it.
	ValuesFor func(own []byte, found bool) (map[string]any, error)
	// IncludeCRDs adds the files of the chart's (and its subcharts') crds/
	// directories.
	IncludeCRDs bool
	// SkipTests drops test hooks without a word; other hooks are always
	// left out and listed in Rendered.Hooks.
	SkipTests bool
	// KubeVersion, when set, replaces the cluster's version in
	// .Capabilities.KubeVersion.
	KubeVersion string
	// APIVersions are added to the cluster's in .Capabilities.APIVersions,
	// as `helm template --api-versions` adds them.
	APIVersions []string
}

// Remote names a chart in a Helm repository (https://...) or an OCI
// registry (oci://...).
type Remote struct {
	Repo, Name, Version string
}

// Doc is one rendered document, or one file of a crds/ directory.
type Doc struct {
	// Source is the template (or CRD file) it came from, as Shown plus the
	// path inside the chart: deploy/chart/templates/deployment.yaml.
	Source string
	// YAML is the document; a crds/ file may hold several.
	YAML []byte
	// Index is the document's place (from 1) among those its template
	// rendered, which Helm's sorting by kind loses; 0 for a crds/ file,
	// whose documents are counted within it.
	Index int
}

// Rendered is what one chart produced.
type Rendered struct {
	// Docs are in `helm template` order: CRDs first, then by kind.
	Docs []Doc
	// Hooks lists the hooks left out, as kind/name (source).
	Hooks []string
}

// Renderer renders charts for one run.
type Renderer struct {
	opts     Options
	capsOnce sync.Once
	caps     *common.Capabilities
	capsErr  error
}

// New returns a Renderer.
func New(opts Options) *Renderer {
	d := DefaultOptions()
	if opts.RenderBudget <= 0 {
		opts.RenderBudget = d.RenderBudget
	}
	if opts.MemoryBudget == 0 {
		opts.MemoryBudget = d.MemoryBudget
	}
	if opts.MaxChartBytes <= 0 {
		opts.MaxChartBytes = d.MaxChartBytes
	}
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	return &Renderer{opts: opts}
}

// Render renders one chart as `helm template` would, minus hooks. Errors
// name the chart, and the template and line when Helm says which. What
// needs the cluster or the network is done here; the rest, from reading
// the chart's files on, in the process Options.Child names, if any.
func (r *Renderer) Render(ctx context.Context, req Request) (*Rendered, error) {
	j, err := r.prepare(ctx, req)
	if err != nil {
		return nil, err
	}
	limits := budget.Limits{Time: r.opts.RenderBudget, Heap: r.opts.MemoryBudget}
	var out *Rendered
	if r.opts.Child != "" {
		out, err = r.inChild(ctx, j, limits)
	} else {
		out, err = budget.Run(ctx, limits, func() (*Rendered, error) { return r.renderJob(ctx, j) })
	}
	if exceeded, ok := errors.AsType[*budget.ExceededError](err); ok {
		what := "a template"
		if j.ReleaseName == "" {
			what = "nameTemplate or a template"
		}
		if exceeded.Heap > 0 {
			return nil, fmt.Errorf("rendering %w: does %s produce output without end?", exceeded, what)
		}
		return nil, fmt.Errorf("rendering %w: does %s loop or recurse without end?", exceeded, what)
	}
	return out, err
}

// job is one chart to render once the cluster and the network have been
// asked: all of it travels to the process that renders.
type job struct {
	// Root, Dir and Shown are the request's; Dir is empty for a remote
	// chart, whose archive is Archive, named ArchiveName.
	Root, Dir, Shown string
	Archive          []byte
	ArchiveName      string
	// ReleaseName, or NameTemplate when it is empty, and Namespace are
	// .Release's.
	ReleaseName, NameTemplate, Namespace string
	// Values are the values given, in a form that keeps their types.
	Values      *value
	IncludeCRDs bool
	SkipTests   bool
	// ClusterVersion and ClusterAPIVersions are what the cluster serves;
	// KubeVersion and APIVersions, the request's overrides.
	ClusterVersion     string
	ClusterAPIVersions []string
	KubeVersion        string
	APIVersions        []string
}

// prepare does what rendering needs the cluster or the network for: the
// capabilities, a remote chart's archive, and values the request builds
// from the chart's own.
func (r *Renderer) prepare(ctx context.Context, req Request) (*job, error) {
	caps, err := r.clusterCaps(ctx)
	if err != nil {
		return nil, err
	}
	j := &job{
		Root: req.Root, Dir: req.Dir, Shown: req.Shown,
		ReleaseName: req.ReleaseName, NameTemplate: req.NameTemplate, Namespace: req.Namespace,
		IncludeCRDs: req.IncludeCRDs, SkipTests: req.SkipTests,
		ClusterVersion: caps.KubeVersion.Version, ClusterAPIVersions: caps.APIVersions,
		KubeVersion: req.KubeVersion, APIVersions: req.APIVersions,
	}
	if req.Remote != nil {
		if !r.opts.AllowRemote {
			return nil, fmt.Errorf("chart %s is not in the repository; vendor it (helm pull --untar) and commit it, or pass --helm-allow-remote", req.Remote)
		}
		if j.Archive, err = r.fetch(ctx, *req.Remote); err != nil {
			return nil, err
		}
		j.ArchiveName = req.Remote.String()
	}
	vals := req.Values
	if req.ValuesFor != nil {
		own, found, err := r.ownValues(j)
		if err != nil {
			return nil, err
		}
		if vals, err = req.ValuesFor(own, found); err != nil {
			return nil, err
		}
	}
	if j.Values, err = toValue(vals); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	return j, nil
}

// ownValues reads the chart's values.yaml, as Helm's loader would find
// it, and nothing else of the chart.
func (r *Renderer) ownValues(j *job) ([]byte, bool, error) {
	if j.Archive != nil {
		files, err := r.unpack(j.ArchiveName, j.Archive, newInflation(r.opts.MaxChartBytes), func(name string) bool { return name == "values.yaml" })
		if err != nil || len(files) == 0 {
			return nil, false, err
		}
		return files[0].Data, true, nil
	}
	root, err := filepath.EvalSymlinks(j.Root)
	if err != nil {
		return nil, false, err
	}
	p := filepath.Join(j.Dir, "values.yaml")
	info, err := os.Lstat(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	if info.Mode()&fs.ModeSymlink != 0 {
		if p, err = r.follow(root, p); err != nil {
			return nil, false, fmt.Errorf("values.yaml: %w", err)
		}
		if info, err = os.Stat(p); err != nil {
			return nil, false, fmt.Errorf("values.yaml: %w", err)
		}
	}
	if !info.Mode().IsRegular() {
		return nil, false, fmt.Errorf("values.yaml: not a regular file (%s)", info.Mode().Type())
	}
	if err := r.checkSize("values.yaml", info.Size()); err != nil {
		return nil, false, err
	}
	data, err := readAtMost(p, info.Size())
	if err != nil {
		return nil, false, fmt.Errorf("values.yaml: %w", err)
	}
	return bytes.TrimPrefix(data, utf8BOM), true, nil
}

// renderJob loads and renders the chart j names, with no budget of its
// own: the caller's holds it.
func (r *Renderer) renderJob(ctx context.Context, j *job) (*Rendered, error) {
	ch, err := r.load(j)
	if err != nil {
		return nil, err
	}
	if t := ch.Metadata.Type; t != "" && t != "application" {
		return nil, fmt.Errorf("%s charts are not installable", t)
	}
	if err := checkDependencies(ch); err != nil {
		return nil, err
	}
	caps, err := j.capabilities()
	if err != nil {
		return nil, err
	}
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, which is incompatible with Kubernetes %s", kv, caps.KubeVersion.Version)
	}
	name := j.ReleaseName
	if name == "" {
		if name, err = nameFromTemplate(j.NameTemplate); err != nil {
			return nil, err
		}
	}
	if err := chartutil.ValidateReleaseName(name); err != nil {
		return nil, fmt.Errorf("release name %q: %w", name, err)
	}
	vals, _ := j.Values.any().(map[string]any)
	if vals == nil {
		vals = map[string]any{}
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return nil, fmt.Errorf("chart dependencies: %w", err)
	}
	if err := checkFileReads(ch, j.Shown); err != nil {
		return nil, err
	}
	top, err := commonutil.ToRenderValuesWithSchemaValidation(ch, vals, common.ReleaseOptions{
		Name: name, Namespace: j.Namespace, Revision: 1, IsInstall: true,
	}, caps, false)
	if err != nil {
		return nil, err
	}
	files, err := engine.Engine{CustomTemplateFuncs: cappedFuncs()}.RenderWithContext(ctx, ch, top)
	if err != nil {
		return nil, locate(err, ch.Name(), j.Shown)
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, locate(err, ch.Name(), j.Shown)
	}
	out := &Rendered{}
	if j.IncludeCRDs {
		for _, crd := range ch.CRDObjects() {
			out.Docs = append(out.Docs, Doc{Source: source(j.Shown, crd.Filename), YAML: crd.File.Data})
		}
	}
	index := indexer(files)
	for _, m := range manifests {
		out.Docs = append(out.Docs, Doc{Source: source(j.Shown, m.Name), YAML: []byte(m.Content), Index: index(m.Name, m.Content)})
	}
	for _, h := range hooks {
		if j.SkipTests && slices.Contains(h.Events, releasev1.HookTest) {
			continue
		}
		out.Hooks = append(out.Hooks, fmt.Sprintf("%s/%s (%s)", strings.ToLower(h.Kind), h.Name, source(j.Shown, h.Path)))
	}
	return out, nil
}

// nameFromTemplate runs kustomize's nameTemplate. A name that changes on
// every run would have every sync create new objects and prune the old,
// so a template that does not give the same name twice is refused.
func nameFromTemplate(text string) (string, error) {
	t, err := template.New("nameTemplate").Parse(text)
	if err != nil {
		return "", fmt.Errorf("nameTemplate: %w", err)
	}
	var a, b strings.Builder
	if err := t.Execute(&a, nil); err != nil {
		return "", fmt.Errorf("nameTemplate: %w", err)
	}
	_ = t.Execute(&b, nil)
	if a.String() != b.String() || a.Len() == 0 {
		return "", fmt.Errorf("nameTemplate %q does not give one fixed name", text)
	}
	return a.String(), nil
}

// indexer numbers the documents of the rendered templates as Helm splits
// them, before its sort by kind: each call finds content among name's
// documents, the first not found before it (identical documents follow
// their order).
func indexer(files map[string]string) func(name, content string) int {
	split := map[string][]string{}
	return func(name, content string) int {
		docs, ok := split[name]
		if !ok {
			m := releaseutil.SplitManifests(files[name])
			docs = make([]string, len(m))
			for i := range docs {
				docs[i] = m[fmt.Sprintf("manifest-%d", i)]
			}
		}
		for i, d := range docs {
			if d == content {
				docs[i] = "\x00" // taken: a rendered document is never NUL
				split[name] = docs
				return i + 1
			}
		}
		split[name] = docs
		return 0
	}
}

// source turns Helm's path of a template, which starts with the chart's
// name, into the file's path as users see it.
func source(shown, helmPath string) string {
	_, rest, ok := strings.Cut(helmPath, "/")
	if !ok {
		rest = helmPath
	}
	if shown == "" || shown == "." {
		return rest
	}
	return shown + "/" + rest
}

// checkDependencies refuses a chart whose Chart.yaml (or requirements.yaml)
// names a dependency that is not vendored in charts/, as `helm template`
// does: cronsync never runs `helm dependency build`.
func checkDependencies(ch *chartv2.Chart) error {
	have := map[string]bool{}
	for _, d := range ch.Dependencies() {
		have[d.Name()] = true
	}
	var missing []string
	for _, d := range ch.Metadata.Dependencies {
		if !have[d.Name] {
			missing = append(missing, d.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("dependencies %s are in Chart.yaml but not in charts/: vendor them (helm dependency build) and commit them", strings.Join(missing, ", "))
	}
	return nil
}

// clusterCaps is what the cluster serves, asked once per run.
func (r *Renderer) clusterCaps(ctx context.Context) (*common.Capabilities, error) {
	r.capsOnce.Do(func() { r.caps, r.capsErr = clusterCapabilities(ctx, r.opts.Discovery) })
	return r.caps, r.capsErr
}

// capabilities are the cluster's with the request's overrides.
func (j *job) capabilities() (*common.Capabilities, error) {
	caps := common.DefaultCapabilities.Copy()
	kv, err := common.ParseKubeVersion(j.ClusterVersion)
	if err != nil {
		return nil, fmt.Errorf("the cluster's version %q: %w", j.ClusterVersion, err)
	}
	caps.KubeVersion, caps.APIVersions = *kv, j.ClusterAPIVersions
	if j.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(j.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("kubeVersion %q: %w", j.KubeVersion, err)
		}
		caps.KubeVersion = *kv
	}
	if len(j.APIVersions) > 0 {
		caps.APIVersions = slices.Concat(caps.APIVersions, j.APIVersions)
	}
	return caps, nil
}

// clusterCapabilities reads the version and API versions as Helm's install
// does, so that a chart renders for the cluster it is synced to rather than
// for Helm's default of Kubernetes v1.20.
func clusterCapabilities(ctx context.Context, dc discovery.DiscoveryInterface) (*common.Capabilities, error) {
	if dc == nil {
		return nil, errors.New("no cluster to read capabilities from")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sv, err := dc.ServerVersion()
	if err != nil {
		return nil, fmt.Errorf("reading the cluster's version for .Capabilities: %w", err)
	}
	kv, err := common.ParseKubeVersion(sv.GitVersion)
	if err != nil {
		return nil, fmt.Errorf("the cluster's version %q: %w", sv.GitVersion, err)
	}
	groups, resources, err := dc.ServerGroupsAndResources()
	if err != nil && !discovery.IsGroupDiscoveryFailedError(err) {
		return nil, fmt.Errorf("reading the cluster's API versions for .Capabilities: %w", err)
	}
	seen := map[string]bool{}
	for _, g := range groups {
		for _, v := range g.Versions {
			seen[v.GroupVersion] = true
		}
	}
	for _, rl := range resources {
		for _, res := range rl.APIResources {
			seen[path.Join(rl.GroupVersion, res.Kind)] = true
		}
	}
	versions := make([]string, 0, len(seen))
	for v := range seen {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	caps := common.DefaultCapabilities.Copy()
	caps.KubeVersion, caps.APIVersions = *kv, versions
	return caps, nil
}
