package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/chart"
	"github.com/cronsync/cronsync/internal/testenv"
	"github.com/cronsync/cronsync/render"
)

// These tests render charts made here with cronsync (render.Read through
// the renderer main wires in, against the test cluster's discovery) and
// with the helm and kustomize CLIs built from the same versions, and
// compare: the same objects, the same content, and each object attributed
// to the same template (so CRDs come from the same crds/ files).

// writeTree writes files (path: content) under dir.
func writeTree(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func tool(t *testing.T, name string) string { return testenv.MustTool(t, name) }

func runTool(t *testing.T, dir, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(tool(t, name), args...)
	cmd.Dir = dir
	// No kubeconfig and no Helm state of the machine's: helm's namespace is
	// "default" and its directories are the test's.
	home := t.TempDir()
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(home, "none"), "HELM_CONFIG_HOME="+home, "HELM_CACHE_HOME="+home, "HELM_DATA_HOME="+home, "HELM_NAMESPACE=")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String()
}

// rendered is one object of a render: its key, content and template.
type rendered struct {
	source  string
	content string
}

// cronsyncRender reads dir (inside root) as a sync would.
func cronsyncRender(t *testing.T, root, dir string) (map[string]rendered, []string) {
	t.Helper()
	return cronsyncRenderWith(t, chart.DefaultOptions(), root, dir)
}

func cronsyncRenderWith(t *testing.T, opts chart.Options, root, dir string) (map[string]rendered, []string) {
	t.Helper()
	renderChart, err := newChartRenderer(cluster.Config, opts, root)
	if err != nil {
		t.Fatal(err)
	}
	var warnings []string
	objs, err := render.Read(context.Background(), root, dir, render.Options{
		Namespace: "default", RenderChart: renderChart, Warn: func(s string) { warnings = append(warnings, s) },
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]rendered{}
	for _, o := range objs {
		add(t, out, o.Obj, o.Source)
	}
	return out, warnings
}

func add(t *testing.T, out map[string]rendered, u *unstructured.Unstructured, source string) {
	t.Helper()
	key := u.GetKind() + "/" + u.GetNamespace() + "/" + u.GetName()
	if _, dup := out[key]; dup {
		t.Fatalf("%s rendered twice", key)
	}
	j, err := json.Marshal(u.Object) // map keys sorted: order-insensitive
	if err != nil {
		t.Fatal(err)
	}
	out[key] = rendered{source: source, content: string(j)}
}

// parseHelmOutput reads `helm template` (or kustomize) output; sources come
// from helm's "# Source:" comments, with the chart's name replaced by
// chartDir. Hooks are dropped: cronsync leaves them out.
func parseHelmOutput(t *testing.T, out, chartName, chartDir string) map[string]rendered {
	t.Helper()
	objs := map[string]rendered{}
	source := "" // a crds/ file's later documents carry no comment of their own
	for doc := range strings.SplitSeq("\n"+out, "\n---\n") {
		if after, ok := strings.CutPrefix(doc, "# Source: "); ok {
			first, _, _ := strings.Cut(after, "\n")
			source = chartDir + strings.TrimPrefix(first, chartName)
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(doc), &m); err != nil {
			t.Fatalf("%v\n%s", err, doc)
		}
		if m == nil {
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if _, hook := u.GetAnnotations()["helm.sh/hook"]; hook {
			continue
		}
		add(t, objs, u, source)
	}
	return objs
}

func compareRenders(t *testing.T, got, want map[string]rendered, checkSources bool) {
	t.Helper()
	if len(want) == 0 {
		t.Fatal("the reference rendered nothing")
	}
	var keys []string
	for k := range want {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("%s: rendered by the reference, not by cronsync", k)
		case g.content != want[k].content:
			t.Errorf("%s differs:\ncronsync:  %s\nreference: %s", k, g.content, want[k].content)
		case checkSources && g.source != want[k].source:
			t.Errorf("%s: source %q, the reference says %q", k, g.source, want[k].source)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("%s: rendered by cronsync, not by the reference", k)
		}
	}
	t.Logf("%d objects compared", len(want))
}

// helmTemplate renders a chart directory as cronsync's chart directories
// are: release named after the directory, CRDs included, the test
// cluster's version.
func helmTemplate(t *testing.T, root, chartDir string, apiVersions ...string) map[string]rendered {
	t.Helper()
	full := filepath.Join(root, filepath.FromSlash(chartDir))
	meta, err := os.ReadFile(filepath.Join(full, "Chart.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Name string }
	if err := yaml.Unmarshal(meta, &c); err != nil {
		t.Fatal(err)
	}
	args := []string{"template", filepath.Base(full), full, "--namespace", "default", "--include-crds", "--kube-version", clusterVersion(t)}
	for _, v := range apiVersions {
		args = append(args, "--api-versions", v)
	}
	return parseHelmOutput(t, runTool(t, root, "helm", args...), c.Name, chartDir)
}

func clusterVersion(t *testing.T) string {
	t.Helper()
	var v struct{ GitVersion string }
	raw, err := kubeREST(t).Get().AbsPath("/version").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		t.Fatal(err)
	}
	return v.GitVersion
}

const labelsLibrary = `{{- define "lib.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}
`

// webChart is an application chart with a subchart (vendored as a
// directory) and a library chart, that uses .Files, tpl, include and
// required, and whose values the parent overrides for the subchart.
func webChart() map[string]string {
	return map[string]string{
		"Chart.yaml": `apiVersion: v2
name: web
version: 1.2.3
appVersion: "4.5"
dependencies:
- name: cache
  version: 0.1.0
- name: lib
  version: 0.1.0
`,
		"values.yaml": `replicas: 2
image: {repository: registry.invalid/web, tag: ""}
greeting: "hello from {{ .Release.Name }}"
cache: {size: 64}
`,
		"files/app.conf": "listen = 8080\nworkers = 4\n",
		"templates/_helpers.tpl": `{{- define "web.fullname" -}}
{{ .Release.Name }}-{{ .Chart.Name }}
{{- end -}}
`,
		"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ include "web.fullname" . }}
  labels:
    {{- include "lib.labels" . | nindent 4 }}
spec:
  replicas: {{ required "replicas is required" .Values.replicas }}
  selector:
    matchLabels: {app: {{ include "web.fullname" . }}}
  template:
    metadata:
      labels: {app: {{ include "web.fullname" . }}}
      annotations:
        checksum/config: {{ .Files.Get "files/app.conf" | sha256sum }}
    spec:
      containers:
      - name: web
        image: "{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}"
`,
		"templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "web.fullname" . }}-config
data:
  greeting: {{ tpl .Values.greeting . | quote }}
{{ (.Files.Glob "files/*").AsConfig | indent 2 }}
`,
		"templates/NOTES.txt":      "Thanks for installing {{ .Release.Name }}.\n",
		"charts/cache/Chart.yaml":  "apiVersion: v2\nname: cache\nversion: 0.1.0\n",
		"charts/cache/values.yaml": "size: 16\n",
		"charts/cache/templates/configmap.yaml": `apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-cache
data:
  size: {{ .Values.size | quote }}
`,
		"charts/lib/Chart.yaml":            "apiVersion: v2\nname: lib\nversion: 0.1.0\ntype: library\n",
		"charts/lib/templates/_labels.tpl": labelsLibrary,
	}
}

func TestRenderMatchesHelmTemplate(t *testing.T) {
	root := t.TempDir()
	tree := map[string]string{}
	for p, c := range webChart() {
		tree["deploy/web/"+p] = c
	}
	// A v1 chart whose dependency is declared in requirements.yaml and
	// vendored as an archive, as `helm dependency build` leaves it.
	tree["legacy/old/Chart.yaml"] = "apiVersion: v1\nname: old\nversion: 0.9.0\n"
	tree["legacy/old/requirements.yaml"] = "dependencies:\n- name: dep\n  version: 0.2.0\n"
	tree["legacy/old/values.yaml"] = "dep: {message: from-parent}\n"
	tree["legacy/old/templates/svc.yaml"] = "apiVersion: v1\nkind: Service\nmetadata:\n  name: {{ .Release.Name }}\nspec:\n  ports: [{port: 80}]\n"
	tree["src/dep/Chart.yaml"] = "apiVersion: v1\nname: dep\nversion: 0.2.0\n"
	tree["src/dep/values.yaml"] = "message: default\n"
	tree["src/dep/templates/cm.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-dep\ndata: {message: {{ .Values.message | quote }}}\n"
	// A chart gated on what the cluster serves: the Renderwidget CRD is served
	// by the test cluster, the Gadget API is not.
	tree["gated/g/Chart.yaml"] = "apiVersion: v2\nname: g\nversion: 0.1.0\nkubeVersion: \">= 1.30.0-0\"\n"
	tree["gated/g/templates/cr.yaml"] = `{{- if .Capabilities.APIVersions.Has "example.com/v1/Renderwidget" }}
apiVersion: example.com/v1
kind: Renderwidget
metadata: {name: {{ .Release.Name }}}
spec: {size: 3}
{{- end }}
---
{{- if .Capabilities.APIVersions.Has "gadgets.example.com/v1" }}
apiVersion: gadgets.example.com/v1
kind: Gadget
metadata: {name: {{ .Release.Name }}}
{{- end }}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: caps}
data:
  kube: {{ .Capabilities.KubeVersion.Version | quote }}
  minor: {{ .Capabilities.KubeVersion.Minor | quote }}
  new: {{ semverCompare ">=1.30.0-0" .Capabilities.KubeVersion.Version | quote }}
`
	// A chart with hooks, a test, and CRDs.
	tree["ops/h/Chart.yaml"] = "apiVersion: v2\nname: h\nversion: 0.1.0\n"
	tree["ops/h/crds/things.yaml"] = testenv.CRD("Thing") + "---\n" + testenv.CRD("Stuff")
	tree["ops/h/templates/migrate.yaml"] = "apiVersion: batch/v1\nkind: Job\nmetadata:\n  name: migrate\n  annotations: {helm.sh/hook: pre-install}\nspec:\n  template:\n    spec:\n      restartPolicy: Never\n      containers: [{name: m, image: registry.invalid/m:1}]\n"
	tree["ops/h/templates/tests/ping.yaml"] = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: ping\n  annotations: {helm.sh/hook: test}\nspec:\n  containers: [{name: p, image: registry.invalid/p:1}]\n"
	tree["ops/h/templates/thing.yaml"] = "apiVersion: example.com/v1\nkind: Thing\nmetadata: {name: one}\n"
	writeTree(t, root, tree)
	runTool(t, root, "helm", "package", "src/dep", "-d", "legacy/old/charts")
	createGatingCRD(t)

	cases := []struct {
		dir         string
		apiVersions []string
		hooks       []string
	}{
		{dir: "deploy/web"},
		{dir: "legacy/old"},
		{dir: "gated/g", apiVersions: []string{"example.com/v1/Renderwidget"}},
		{dir: "ops/h", hooks: []string{"job/migrate (ops/h/templates/migrate.yaml)", "pod/ping (ops/h/templates/tests/ping.yaml)"}},
	}
	for _, c := range cases {
		t.Run(c.dir, func(t *testing.T) {
			got, warnings := cronsyncRender(t, root, filepath.Join(root, c.dir))
			compareRenders(t, got, helmTemplate(t, root, c.dir, c.apiVersions...), true)
			if len(c.hooks) == 0 && len(warnings) > 0 {
				t.Errorf("warnings: %q", warnings)
			}
			for _, h := range c.hooks {
				if len(warnings) != 1 || !strings.Contains(warnings[0], h) {
					t.Errorf("want one warning naming %s, got %q", h, warnings)
				}
			}
		})
	}
}

var crdsGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// createGatingCRD makes the cluster serve example.com/v1 Renderwidgets.
func createGatingCRD(t *testing.T) {
	t.Helper()
	var m map[string]any
	if err := yaml.Unmarshal([]byte(testenv.CRD("Renderwidget")), &m); err != nil {
		t.Fatal(err)
	}
	_, err := kube.Resource(crdsGVR).Create(context.Background(), &unstructured.Unstructured{Object: m}, metav1.CreateOptions{})
	if err != nil && !strings.Contains(err.Error(), "already exists") {
		t.Fatal(err)
	}
	// Discovery shows the group only once the CRD is Established.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := kubeREST(t).Get().AbsPath("/apis/example.com/v1/renderwidgets").DoRaw(context.Background()); err == nil {
			return
		} else if time.Now().After(deadline) {
			t.Fatalf("the Renderwidget CRD is not served: %v", err)
		}
	}
}

func kubeREST(t *testing.T) rest.Interface {
	t.Helper()
	dc, err := discovery.NewDiscoveryClientForConfig(cluster.Config)
	if err != nil {
		t.Fatal(err)
	}
	return dc.RESTClient()
}

// TestHelmChartsMatchKustomize renders an overlay whose base inflates a
// vendored chart through helmCharts, with values from a file and inline,
// and compares with `kustomize build --enable-helm` running the helm CLI.
func TestHelmChartsMatchKustomize(t *testing.T) {
	root := t.TempDir()
	tree := map[string]string{
		"base/kustomization.yaml": `helmCharts:
- name: web
  releaseName: shop
  namespace: shop
  valuesFile: shop-values.yaml
  valuesInline:
    replicas: 5
    image: {tag: "9.9"}
- name: web
  releaseName: plain
  includeCRDs: true
  kubeVersion: "1.33.0"
  skipHooks: true
- name: web
  releaseName: quiet
  skipTests: true
`,
		"base/shop-values.yaml": "replicas: 3\ngreeting: shop says hi\n",
		"overlays/prod/kustomization.yaml": `resources: [../../base]
namespace: prod
commonLabels: {env: prod}
patches:
- target: {kind: ConfigMap, name: shop-web-config}
  patch: |
    - op: add
      path: /data/patched
      value: "yes"
`,
	}
	for p, c := range webChart() {
		tree["base/charts/web/"+p] = c
	}
	tree["base/charts/web/crds/thing.yaml"] = testenv.CRD("Thing")
	tree["base/charts/web/templates/tests/t.yaml"] = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {{ .Release.Name }}-test\n  annotations: {helm.sh/hook: test}\nspec:\n  containers: [{name: t, image: registry.invalid/t:1}]\n"
	tree["base/charts/web/templates/caps.yaml"] = "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-caps}\ndata: {minor: {{ .Capabilities.KubeVersion.Minor | quote }}}\n"
	writeTree(t, root, tree)

	for _, dir := range []string{"base", "overlays/prod"} {
		t.Run(dir, func(t *testing.T) {
			got, warnings := cronsyncRender(t, root, filepath.Join(root, dir))
			want := parseHelmOutput(t, runTool(t, root, "kustomize", "build", "--enable-helm", "--helm-command", tool(t, "helm"), dir), "", "")
			compareRenders(t, got, want, false)
			// The first chart's test hook is listed; the second's (skipHooks)
			// and the third's (skipTests) are not.
			if len(warnings) != 1 || !strings.Contains(warnings[0], "pod/shop-test (base/charts/web/templates/tests/t.yaml)") {
				t.Errorf("warnings: %q", warnings)
			}
			for k, o := range got {
				if !strings.HasPrefix(o.source, "base/charts/web/") {
					t.Errorf("%s: source %q, want its template", k, o.source)
				}
			}
			if src := got["Deployment//shop-web"].source; dir == "overlays/prod" && src != "base/charts/web/templates/deployment.yaml" {
				t.Errorf("shop-web source %q", src)
			}
		})
	}
}

// A remote chart's values are built as kustomize builds them once it has
// pulled the chart: valuesInline merged with the chart's own values.yaml as
// valuesMerge says. Under "merge" the chart's values win, which Helm's
// coalescing of valuesInline over the chart alone would get backwards.
func TestRemoteHelmChartValuesMatchKustomize(t *testing.T) {
	src, repo := t.TempDir(), t.TempDir()
	writeTree(t, src, prefixed("web/", webChart()))
	srv := httptest.NewServer(http.FileServer(http.Dir(repo)))
	defer srv.Close()
	runTool(t, src, "helm", "package", "web", "-d", repo)
	runTool(t, src, "helm", "repo", "index", repo, "--url", srv.URL)

	root := t.TempDir()
	entry := "- name: web\n  repo: " + srv.URL + "\n  version: 1.2.3\n"
	writeTree(t, root, map[string]string{"app/kustomization.yaml": "helmCharts:\n" +
		entry + "  releaseName: over\n  valuesInline: {replicas: 5, image: {tag: '9.9'}, cache: {size: 1}}\n" +
		entry + "  releaseName: merged\n  valuesMerge: merge\n  valuesInline: {replicas: 5, greeting: inline, image: {tag: '9.9'}, cache: {size: 1, extra: x}}\n" +
		entry + "  releaseName: replaced\n  valuesMerge: replace\n  valuesInline: {replicas: 7, image: {repository: registry.invalid/other, tag: '1'}, greeting: hi}\n" +
		entry + "  releaseName: own\n",
	})
	opts := chart.DefaultOptions()
	opts.AllowRemote = true
	// cronsync first: kustomize pulls the chart into the tree, where it
	// would then be a vendored chart.
	got, _ := cronsyncRenderWith(t, opts, root, filepath.Join(root, "app"))
	want := parseHelmOutput(t, runTool(t, root, "kustomize", "build", "--enable-helm", "--helm-command", tool(t, "helm"), "app"), "", "")
	compareRenders(t, got, want, false)
	if d := got["Deployment//merged-web"].content; !strings.Contains(d, `"replicas":2,`) {
		t.Errorf("under valuesMerge: merge the chart's replicas (2) must win:\n%s", d)
	}

	// kustomize reads the pulled chart's values.yaml: a chart without one
	// fails there, and so it does here, by name.
	writeTree(t, src, map[string]string{"bare/Chart.yaml": "apiVersion: v2\nname: bare\nversion: 0.1.0\n", "bare/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bare}\n"})
	runTool(t, src, "helm", "package", "bare", "-d", repo)
	runTool(t, src, "helm", "repo", "index", repo, "--url", srv.URL)
	writeTree(t, root, map[string]string{"bare/kustomization.yaml": "helmCharts:\n- name: bare\n  repo: " + srv.URL + "\n  version: 0.1.0\n  releaseName: b\n"})
	renderChart, err := newChartRenderer(cluster.Config, opts, root)
	if err != nil {
		t.Fatal(err)
	}
	_, err = render.Read(context.Background(), root, filepath.Join(root, "bare"), render.Options{Namespace: "default", RenderChart: renderChart})
	if want := "chart " + srv.URL + "/bare-0.1.0 has no values.yaml, which kustomize reads for its values"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("got %v, want an error saying %q", err, want)
	}
	cmd := exec.Command(tool(t, "kustomize"), "build", "--enable-helm", "--helm-command", tool(t, "helm"), "bare")
	cmd.Dir, cmd.Env = root, append(os.Environ(), "HELM_CONFIG_HOME="+t.TempDir(), "HELM_CACHE_HOME="+t.TempDir(), "HELM_DATA_HOME="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil {
		t.Errorf("kustomize built a chart without values.yaml:\n%s", out)
	}
}

// prefixed returns files with prefix before each path.
func prefixed(prefix string, files map[string]string) map[string]string {
	out := make(map[string]string, len(files))
	for p, c := range files {
		out[prefix+p] = c
	}
	return out
}
