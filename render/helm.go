package render

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/types"
	kyaml "sigs.k8s.io/kustomize/kyaml/yaml"
	"sigs.k8s.io/kustomize/kyaml/yaml/merge2"
	"sigs.k8s.io/yaml"
)

// ChartRequest asks for one Helm chart to be rendered; see Options.
type ChartRequest struct {
	// Dir is the chart's directory, a real path inside Root; empty for a
	// remote chart.
	Dir string
	// Shown is the chart's directory as users see it, or for a remote chart
	// what names it.
	Shown string
	// Repo, Name and Version name a chart that is not in the repository.
	Repo, Name, Version string
	// ReleaseName and Namespace are .Release.Name and .Release.Namespace.
	ReleaseName, Namespace string
	// NameTemplate, when ReleaseName is empty, is the Go template that
	// gives it (kustomize's nameTemplate). The renderer runs it, within
	// the chart's budgets: it is repository text.
	NameTemplate string
	// Values are coalesced over the chart's values.yaml; nil: its own only.
	Values map[string]any
	// ValuesFor, when set, gives Values from the chart's own values.yaml
	// (found: it has one) once the renderer has the chart. It is set for a
	// remote chart without a valuesFile, whose values.yaml kustomize merges
	// valuesInline with after pulling it.
	ValuesFor func(own []byte, found bool) (map[string]any, error)
	// IncludeCRDs adds the crds/ directories' files.
	IncludeCRDs bool
	// SkipTests drops test hooks silently; SkipHooks, every hook (hooks
	// are always left out, but otherwise with a warning).
	SkipTests, SkipHooks bool
	// KubeVersion replaces the cluster's version when set; APIVersions are
	// added to the cluster's.
	KubeVersion string
	APIVersions []string
}

// ChartDoc is one rendered document or crds/ file.
type ChartDoc struct {
	// Source is the template it came from, as users see it.
	Source string
	YAML   []byte
	// Doc is the document's place (from 1) among those its template
	// rendered; 0 for a crds/ file, whose documents are counted within it.
	Doc int
}

// ChartOutput is what one chart rendered to.
type ChartOutput struct {
	Docs []ChartDoc
	// Hooks lists the hooks left out, one "kind/name (source)" each.
	Hooks []string
}

// chartFile is the file that makes a directory a Helm chart.
const chartFile = "Chart.yaml"

func isChart(dir string) bool {
	st, err := os.Stat(filepath.Join(dir, chartFile))
	return err == nil && st.Mode().IsRegular()
}

// renderChart renders one chart through the renderer main wired in. A
// chart's errors are the commit's: they become manifest errors.
func (r *reader) renderChart(req ChartRequest) (*ChartOutput, error) {
	if r.opts.RenderChart == nil {
		return nil, errors.New("Helm charts are not rendered here")
	}
	if req.Dir != "" {
		// The renderer reads the whole chart, in another process.
		r.need(req.Dir, true)
		if err := r.needFailed(); err != nil {
			return nil, err
		}
	}
	out, err := r.opts.RenderChart(r.ctx, req)
	if err != nil {
		return nil, err
	}
	if len(out.Hooks) > 0 && r.opts.Warn != nil && !req.SkipHooks {
		r.opts.Warn(fmt.Sprintf("%s: %d Helm hooks left out, as cronsync renders charts and does not run hooks: %s",
			req.Shown, len(out.Hooks), strings.Join(out.Hooks, ", ")))
	}
	return out, nil
}

// chart reads a chart directory as one unit, the way a kustomization is:
// the release is named after the directory and lives in --namespace, the
// values are the chart's own, and its CRDs are included. A chart at the
// repository's root is named by its Chart.yaml instead: the checkout's
// directory is a temporary name.
func (r *reader) chart(dir, shown string) {
	name := filepath.Base(filepath.FromSlash(shown))
	if shown == "." || shown == "" {
		var meta struct{ Name string }
		data, err := os.ReadFile(filepath.Join(dir, chartFile))
		if err == nil {
			err = yaml.Unmarshal(data, &meta)
		}
		if err != nil {
			r.errs = append(r.errs, &ManifestError{Source: chartFile, Err: err})
			return
		}
		name = meta.Name
	}
	out, err := r.renderChart(ChartRequest{Dir: dir, Shown: shown, ReleaseName: name, Namespace: r.opts.Namespace, IncludeCRDs: true})
	if err != nil {
		r.errs = append(r.errs, chartError(shown, err))
		return
	}
	for _, d := range out.Docs {
		r.readDocs(d.YAML, d.Source, max(d.Doc, 1))
	}
}

// chartError makes a rendering error a manifest error that names the
// chart, and the template and line when Helm said which.
func chartError(shown string, err error) error {
	if me := atTemplate(shown, err); me != nil {
		return me
	}
	return &ManifestError{Source: shown, Err: fmt.Errorf("Helm chart: %w", err)}
}

// atTemplate places an error at its template and line, or returns nil when
// the renderer did not say where it was.
func atTemplate(shown string, err error) *ManifestError {
	var located interface {
		error
		Location() (string, int)
	}
	if !errors.As(err, &located) {
		return nil
	}
	src, line := located.Location()
	if line > 0 {
		src = fmt.Sprintf("%s:%d", src, line)
	}
	return &ManifestError{Source: src, Err: fmt.Errorf("Helm chart %s: %w", shown, errors.Unwrap(located))}
}

// Annotations that carry a rendered object through kustomize. Kustomize's
// own helm-generated mark keeps its namespace transformer off the object,
// as after `helm template` run by kustomize, and is dropped from its output;
// the source one is cronsync's, read and dropped after the build.
const (
	helmGeneratedAnnotation = "internal.config.kubernetes.io/helm-generated"
	helmSourceAnnotation    = "cronsync.dev/helm-source"
	// inflatedFile is the file, seen only by kustomize, that holds a
	// kustomization's rendered charts in place of its helmCharts.
	inflatedFile = ".cronsync-helm-charts.yaml"
)

// inflate renders the helmCharts of the kustomization at dir/name and
// gives kustomize, through fsys, a kustomization that lists the result as
// a resource instead: kustomize would run a helm binary, and cronsync runs
// none. The rendered objects still go through the kustomization's
// transformers, as generated ones would.
func (r *reader) inflate(dir, name string, raw []byte, k *types.Kustomization, fsys *confinedFS) error {
	k.FixKustomization()
	if len(k.HelmCharts) == 0 {
		return nil
	}
	home := types.HelmDefaultHome
	if k.HelmGlobals != nil && k.HelmGlobals.ChartHome != "" {
		home = k.HelmGlobals.ChartHome
	}
	var stream bytes.Buffer
	for i, hc := range k.HelmCharts {
		docs, err := r.inflateOne(dir, home, hc)
		if err != nil {
			var me *ManifestError
			if errors.As(err, &me) {
				return err
			}
			return fmt.Errorf("helmCharts[%d] (%s): %w", i, hc.Name, err)
		}
		stream.Write(docs)
	}
	var m map[string]any
	if err := yaml.Unmarshal(raw, &m); err != nil {
		return err
	}
	delete(m, "helmCharts")
	delete(m, "helmGlobals")
	delete(m, "helmChartInflationGenerator")
	resources, _ := m["resources"].([]any)
	m["resources"] = append(resources, inflatedFile)
	rewritten, err := yaml.Marshal(m)
	if err != nil {
		return err
	}
	fsys.virtual[filepath.Join(dir, name)] = rewritten
	fsys.virtual[filepath.Join(dir, inflatedFile)] = stream.Bytes()
	return nil
}

// inflateOne renders one helmCharts entry with kustomize's meanings, and
// returns its objects as a YAML stream marked for the build.
func (r *reader) inflateOne(dir, home string, hc types.HelmChart) ([]byte, error) {
	if hc.Name == "" {
		return nil, errors.New("chart name cannot be empty")
	}
	if filepath.IsAbs(home) {
		return nil, fmt.Errorf("chartHome %q: must be a path inside the repository", home)
	}
	chartHome := filepath.Join(dir, home)
	if hc.Version != "" && hc.Repo != "" {
		chartHome = filepath.Join(chartHome, hc.Name+"-"+hc.Version)
	}
	chartDir := filepath.Join(chartHome, hc.Name)
	if !r.inside(chartDir) {
		return nil, fmt.Errorf("chart directory %s leaves the repository", r.rel(chartDir))
	}
	req := ChartRequest{
		Namespace: hc.Namespace, IncludeCRDs: hc.IncludeCRDs, SkipTests: hc.SkipTests, SkipHooks: hc.SkipHooks,
		KubeVersion: hc.KubeVersion, APIVersions: hc.ApiVersions,
	}
	if req.Namespace == "" {
		req.Namespace = r.opts.Namespace
	}
	local := false
	// A chart here is read whole: one request for all of it.
	r.need(chartDir, true)
	if real, err := filepath.EvalSymlinks(chartDir); err == nil {
		if !r.inside(real) {
			return nil, fmt.Errorf("chart directory %s leaves the repository through a symlink", r.rel(chartDir))
		}
		if st, err := os.Stat(real); err == nil && st.IsDir() {
			req.Dir, req.Shown, local = real, r.rel(chartDir), true
		}
	}
	if !local {
		if hc.Repo == "" {
			return nil, fmt.Errorf("no chart at %s and no repo to fetch it from", r.rel(chartDir))
		}
		req.Repo, req.Name, req.Version = hc.Repo, hc.Name, hc.Version
		req.Shown = strings.TrimSuffix(hc.Repo, "/") + "/" + hc.Name
		if hc.Version != "" {
			req.Shown += "-" + hc.Version
		}
	}
	var err error
	if req.ReleaseName, req.NameTemplate, err = releaseName(hc); err != nil {
		return nil, err
	}
	if local || hc.ValuesFile != "" {
		if req.Values, err = r.chartValues(dir, chartDir, hc, nil); err != nil {
			return nil, err
		}
	} else {
		req.ValuesFor = func(own []byte, found bool) (map[string]any, error) {
			if !found {
				return nil, fmt.Errorf("chart %s has no values.yaml, which kustomize reads for its values", req.Shown)
			}
			return r.chartValues(dir, chartDir, hc, append([]byte{}, own...))
		}
	}
	out, err := r.renderChart(req)
	if err != nil {
		if me := atTemplate(req.Shown, err); me != nil {
			return nil, me
		}
		return nil, err // inflate names the entry, kustomize the file
	}
	var stream bytes.Buffer
	for _, d := range out.Docs {
		objs, err := decodeAll(d.YAML)
		if err != nil {
			return nil, &ManifestError{Source: d.Source, Err: err}
		}
		for _, o := range objs {
			ann := o.GetAnnotations()
			if ann == nil {
				ann = map[string]string{}
			}
			ann[helmGeneratedAnnotation] = "true"
			ann[helmSourceAnnotation] = d.Source
			o.SetAnnotations(ann)
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				return nil, err
			}
			stream.WriteString("---\n")
			stream.Write(y)
		}
	}
	return stream.Bytes(), nil
}

// releaseName is releaseName, or nameTemplate for the renderer to run
// (within the chart's budgets: a template can loop without end). Kustomize
// would let helm generate a name when both are empty; a name that changes
// on every run would have every sync create new objects and prune the old,
// so that is refused, as is a template that does not give the same name
// twice.
func releaseName(hc types.HelmChart) (name, nameTemplate string, err error) {
	switch {
	case hc.ReleaseName != "" && hc.NameTemplate != "":
		return "", "", errors.New("releaseName and nameTemplate cannot both be set")
	case hc.ReleaseName != "":
		return hc.ReleaseName, "", nil
	case hc.NameTemplate == "":
		return "", "", errors.New("releaseName is empty: set it, or every build would name the release anew")
	}
	return "", hc.NameTemplate, nil
}

// chartValues builds the values kustomize would pass with -f: the values
// file (the chart's values.yaml by default, which is own for a remote
// chart), with valuesInline merged in as valuesMerge says, then each
// additional values file over them.
func (r *reader) chartValues(dir, chartDir string, hc types.HelmChart, own []byte) (map[string]any, error) {
	mode := hc.ValuesMerge
	switch mode {
	case "":
		mode = "override"
	case "merge", "override", "replace":
	default:
		return nil, fmt.Errorf("valuesMerge must be one of [merge override replace], not %q", mode)
	}
	file := hc.ValuesFile
	if file == "" {
		file = filepath.Join(chartDir, "values.yaml")
	} else if !filepath.IsAbs(file) {
		file = filepath.Join(dir, file)
	}
	load := func(f string) (*kyaml.RNode, error) {
		if !r.inside(f) {
			return nil, fmt.Errorf("values file %s leaves the repository", f)
		}
		r.need(f, false)
		real, err := filepath.EvalSymlinks(f)
		if err != nil {
			return nil, fmt.Errorf("values file %s: %w", r.rel(f), err)
		}
		if !r.inside(real) {
			return nil, fmt.Errorf("values file %s leaves the repository through a symlink", r.rel(f))
		}
		data, err := os.ReadFile(real)
		if err != nil {
			return nil, err
		}
		node, err := kyaml.Parse(string(data))
		if err != nil {
			return nil, fmt.Errorf("values file %s: %w", r.rel(f), err)
		}
		return node, nil
	}
	var values *kyaml.RNode
	switch {
	case len(hc.ValuesInline) > 0 && mode == "replace":
		inline, err := kyaml.FromMap(hc.ValuesInline)
		if err != nil {
			return nil, err
		}
		values = inline
	default:
		var base *kyaml.RNode
		var err error
		if own != nil {
			if base, err = kyaml.Parse(string(own)); err != nil {
				return nil, fmt.Errorf("values.yaml of chart %s: %w", hc.Name, err)
			}
		} else if base, err = load(file); err != nil {
			return nil, err
		}
		values = base
		if len(hc.ValuesInline) > 0 {
			inline, err := kyaml.FromMap(hc.ValuesInline)
			if err != nil {
				return nil, err
			}
			// merge2.Merge writes its first argument over the second.
			if mode == "override" {
				values, err = merge2.Merge(inline, base.Copy(), kyaml.MergeOptions{})
			} else {
				values, err = merge2.Merge(base, inline.Copy(), kyaml.MergeOptions{})
			}
			if err != nil {
				return nil, fmt.Errorf("merging valuesInline: %w", err)
			}
		}
	}
	m, err := values.Map()
	if err != nil {
		return nil, err
	}
	for _, f := range hc.AdditionalValuesFiles {
		node, err := load(filepath.Join(dir, f))
		if err != nil {
			return nil, err
		}
		more, err := node.Map()
		if err != nil {
			return nil, err
		}
		m = mergeMaps(m, more)
	}
	return m, nil
}

// mergeMaps is Helm's merge of successive -f files: b wins, maps merge.
func mergeMaps(a, b map[string]any) map[string]any {
	out := make(map[string]any, len(a))
	for k, v := range a {
		out[k] = v
	}
	for k, v := range b {
		if bm, ok := v.(map[string]any); ok {
			if am, ok := out[k].(map[string]any); ok {
				out[k] = mergeMaps(am, bm)
				continue
			}
		}
		out[k] = v
	}
	return out
}

// helmSource takes the template source the build carried through, so that
// the object is reported at its template rather than its kustomization.
func helmSource(u *unstructured.Unstructured) string {
	ann := u.GetAnnotations()
	src, ok := ann[helmSourceAnnotation]
	if !ok {
		return ""
	}
	delete(ann, helmSourceAnnotation)
	if len(ann) == 0 {
		unstructured.RemoveNestedField(u.Object, "metadata", "annotations")
	} else {
		u.SetAnnotations(ann)
	}
	return src
}
