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
	"context"
	"errors"
	"fmt"
	"net/http"
	"path"
	"slices"
	"strings"
	"sync"
	"time"

	"helm.sh/helm/v4/pkg/chart/common"
	commonutil "helm.sh/helm/v4/pkg/chart/common/util"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	chartutil "helm.sh/helm/v4/pkg/chart/v2/util"
	releasev1 "helm.sh/helm/v4/pkg/release/v1"
	releaseutil "helm.sh/helm/v4/pkg/release/v1/util"
	"k8s.io/client-go/discovery"
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
}

// DefaultOptions holds the defaults the command line starts from.
func DefaultOptions() Options {
	return Options{RenderBudget: 30 * time.Second, MemoryBudget: 256 << 20}
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

// ownValues returns the chart's values.yaml as it is in the chart.
func ownValues(ch *chartv2.Chart) ([]byte, bool) {
	for _, f := range ch.Raw {
		if f.Name == "values.yaml" {
			return f.Data, true
		}
	}
	return nil, false
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
	if opts.HTTPClient == nil {
		opts.HTTPClient = http.DefaultClient
	}
	return &Renderer{opts: opts}
}

// Render renders one chart as `helm template` would, minus hooks. Errors
// name the chart, and the template and line when Helm says which.
func (r *Renderer) Render(ctx context.Context, req Request) (*Rendered, error) {
	ch, err := r.load(ctx, req)
	if err != nil {
		return nil, err
	}
	if t := ch.Metadata.Type; t != "" && t != "application" {
		return nil, fmt.Errorf("%s charts are not installable", t)
	}
	if err := checkDependencies(ch); err != nil {
		return nil, err
	}
	caps, err := r.capabilities(ctx, req)
	if err != nil {
		return nil, err
	}
	if kv := ch.Metadata.KubeVersion; kv != "" && !chartutil.IsCompatibleRange(kv, caps.KubeVersion.String()) {
		return nil, fmt.Errorf("chart requires kubeVersion %s, which is incompatible with Kubernetes %s", kv, caps.KubeVersion.Version)
	}
	if err := chartutil.ValidateReleaseName(req.ReleaseName); err != nil {
		return nil, fmt.Errorf("release name %q: %w", req.ReleaseName, err)
	}
	vals := req.Values
	if req.ValuesFor != nil {
		own, found := ownValues(ch)
		if vals, err = req.ValuesFor(own, found); err != nil {
			return nil, err
		}
	}
	if vals == nil {
		vals = map[string]any{}
	}
	if err := chartutil.ProcessDependencies(ch, vals); err != nil {
		return nil, fmt.Errorf("chart dependencies: %w", err)
	}
	if err := checkFileReads(ch, req.Shown); err != nil {
		return nil, err
	}
	top, err := commonutil.ToRenderValuesWithSchemaValidation(ch, vals, common.ReleaseOptions{
		Name: req.ReleaseName, Namespace: req.Namespace, Revision: 1, IsInstall: true,
	}, caps, false)
	if err != nil {
		return nil, err
	}
	files, err := r.render(ctx, ch, top)
	if err != nil {
		return nil, locate(err, ch.Name(), req.Shown)
	}
	for name := range files {
		if strings.HasSuffix(name, "NOTES.txt") {
			delete(files, name)
		}
	}
	hooks, manifests, err := releaseutil.SortManifests(files, nil, releaseutil.InstallOrder)
	if err != nil {
		return nil, locate(err, ch.Name(), req.Shown)
	}
	out := &Rendered{}
	if req.IncludeCRDs {
		for _, crd := range ch.CRDObjects() {
			out.Docs = append(out.Docs, Doc{Source: source(req.Shown, crd.Filename), YAML: crd.File.Data})
		}
	}
	index := indexer(files)
	for _, m := range manifests {
		out.Docs = append(out.Docs, Doc{Source: source(req.Shown, m.Name), YAML: []byte(m.Content), Index: index(m.Name, m.Content)})
	}
	for _, h := range hooks {
		if req.SkipTests && slices.Contains(h.Events, releasev1.HookTest) {
			continue
		}
		out.Hooks = append(out.Hooks, fmt.Sprintf("%s/%s (%s)", strings.ToLower(h.Kind), h.Name, source(req.Shown, h.Path)))
	}
	return out, nil
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

// capabilities is what the cluster serves, asked once per run, with the
// request's overrides.
func (r *Renderer) capabilities(ctx context.Context, req Request) (*common.Capabilities, error) {
	r.capsOnce.Do(func() { r.caps, r.capsErr = clusterCapabilities(ctx, r.opts.Discovery) })
	if r.capsErr != nil {
		return nil, r.capsErr
	}
	caps := r.caps.Copy()
	if req.KubeVersion != "" {
		kv, err := common.ParseKubeVersion(req.KubeVersion)
		if err != nil {
			return nil, fmt.Errorf("kubeVersion %q: %w", req.KubeVersion, err)
		}
		caps.KubeVersion = *kv
	}
	if len(req.APIVersions) > 0 {
		caps.APIVersions = slices.Concat(caps.APIVersions, req.APIVersions)
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
