package e2e

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/cronsync/cronsync/internal/testenv"
)

// appChart is a small chart: a Deployment, and a ConfigMap the values can
// turn off, with a hook and a test that cronsync leaves out.
func appChart(ns string) map[string]string {
	return map[string]string{
		"Chart.yaml":  "apiVersion: v2\nname: app\nversion: 0.1.0\n",
		"values.yaml": "replicas: 1\nconfig: {enabled: true, color: blue}\n",
		"templates/deployment.yaml": `apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ .Release.Name }}
  namespace: {{ .Release.Namespace }}
spec:
  replicas: {{ .Values.replicas }}
  selector:
    matchLabels: {app: {{ .Release.Name }}}
  template:
    metadata:
      labels: {app: {{ .Release.Name }}}
    spec:
      containers:
      - name: app
        image: registry.invalid/app:1
`,
		"templates/config.yaml": `{{- if .Values.config.enabled }}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ .Release.Name }}-config
  namespace: {{ .Release.Namespace }}
data: {color: {{ .Values.config.color | quote }}}
{{- end }}
`,
		"templates/hook.yaml": `apiVersion: batch/v1
kind: Job
metadata:
  name: {{ .Release.Name }}-migrate
  annotations: {helm.sh/hook: pre-install}
spec:
  template:
    spec:
      restartPolicy: Never
      containers: [{name: m, image: registry.invalid/m:1}]
`,
		"templates/tests/ping.yaml": `apiVersion: v1
kind: Pod
metadata:
  name: {{ .Release.Name }}-ping
  annotations: {helm.sh/hook: test}
spec:
  containers: [{name: p, image: registry.invalid/p:1}]
`,
	}
}

func chartAt(dir string, files map[string]string) map[string]string {
	out := map[string]string{}
	for p, c := range files {
		out[dir+"/"+p] = c
	}
	return out
}

func TestChartDirectorySync(t *testing.T) {
	ns := testenv.Unique("helm-dir")
	files := chartAt("apps/web", appChart(ns))
	files["apps/ns.yaml"] = namespace(ns)
	r := repoWith(t, files)
	args := []string{"--repo", r.Dir, "--path", "apps", "--namespace", ns, "--applyset", ns + "/cs", "--prune", "--wait-timeout", "2m"}

	out := cronsync(t, args...)
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "deployment.apps/web -n "+ns+" created")
	wantLine(t, out.stdout, "configmap/web-config -n "+ns+" created")
	wantLine(t, out.stderr, "warning: apps/web: 2 Helm hooks left out")
	wantLine(t, out.stderr, "job/web-migrate (apps/web/templates/hook.yaml)")
	if live(t, jobs, ns, "web-migrate") != nil {
		t.Error("the pre-install hook was applied")
	}

	out = cronsync(t, append(args, "--output", "json")...)
	wantExit(t, out, 0)
	if !strings.Contains(out.stdout, `"source": "apps/web/templates/deployment.yaml"`) {
		t.Error("the Deployment is not reported at its template")
	}
	wantLine(t, out.stderr, "3 unchanged")
	// A chart may read the cluster (capabilities, lookup): the same commit
	// is rendered again, never taken from the last run's record.
	if strings.Contains(out.stderr, shortcutLine) {
		t.Error("a chart's objects were taken from the last run's record")
	}

	r.Write("apps/web/values.yaml", "replicas: 1\nconfig: {enabled: false}\n")
	r.Commit("no config")
	out = cronsync(t, args...)
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "configmap/web-config -n "+ns+" pruned")
	if live(t, configMaps, ns, "web-config") != nil {
		t.Error("the ConfigMap the chart no longer renders is still there")
	}
}

func TestHelmChartsOverlaySync(t *testing.T) {
	ns := testenv.Unique("helm-overlay")
	files := chartAt("base/charts/app", appChart(ns))
	files["base/kustomization.yaml"] = "helmCharts:\n- name: app\n  releaseName: shop\n  namespace: " + ns + "\n  valuesFile: values.yaml\n"
	files["base/values.yaml"] = "replicas: 1\nconfig: {enabled: true, color: green}\n"
	files["prod/ns.yaml"] = namespace(ns)
	files["prod/kustomization.yaml"] = "resources: [../base, ns.yaml]\nlabels: [{pairs: {env: prod}}]\n"
	r := repoWith(t, files)
	args := []string{"--repo", r.Dir, "--path", "prod", "--applyset", ns + "/cs", "--prune", "--wait-timeout", "2m"}

	out := cronsync(t, args...)
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "configmap/shop-config -n "+ns+" created")
	cm := live(t, configMaps, ns, "shop-config")
	if color, _, _ := unstructuredString(cm.Object, "data", "color"); color != "green" {
		t.Errorf("color %q, want the values file's green", color)
	}
	if cm.GetLabels()["env"] != "prod" {
		t.Error("the overlay's label is missing")
	}

	out = cronsync(t, args...)
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "3 unchanged")
	if tookShortcut(out) {
		t.Error("helmCharts' objects were taken from the last run's record")
	}

	// An overlay's valuesInline, per environment.
	r.Write("prod/kustomization.yaml", "resources: [../base, ns.yaml]\nlabels: [{pairs: {env: prod}}]\n")
	r.Write("base/kustomization.yaml", "helmCharts:\n- name: app\n  releaseName: shop\n  namespace: "+ns+"\n  valuesFile: values.yaml\n  valuesInline: {config: {color: red}}\n")
	r.Commit("red")
	out = cronsync(t, args...)
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "configmap/shop-config -n "+ns+" configured")
	if color, _, _ := unstructuredString(live(t, configMaps, ns, "shop-config").Object, "data", "color"); color != "red" {
		t.Errorf("color %q, want red", color)
	}
}

// TestBadChartsChangeNothing commits, over a synced chart, each fault a
// chart can have. Each exits 3 with one line naming the chart and the
// template, and leaves the cluster as it was.
func TestBadChartsChangeNothing(t *testing.T) {
	ns := "helm-bad"
	files := chartAt("apps/web", appChart(ns))
	files["apps/ns.yaml"] = namespace(ns)
	r := repoWith(t, files)
	args := []string{"--repo", r.Dir, "--path", "apps", "--namespace", ns, "--applyset", ns + "/cs", "--prune", "--wait=false"}
	// The first sync waits for the rollout, so that the Deployment
	// controller is done writing status before the snapshot.
	wantExit(t, cronsync(t, append(args[:len(args)-1:len(args)-1], "--wait-timeout", "2m")...), 0)
	before := snapshot(t, ns)

	bad := `apiVersion: v1
kind: ConfigMap
metadata: {name: bad}
data:
%s
`
	cases := []struct {
		name, template, want string
		// timeout is --timeout: a template's budget is half of it. Filling
		// 256 MiB takes seconds of page faults on a busy machine.
		timeout   string
		extra     map[string]string
		symlink   [2]string
		kustomize bool
	}{
		{name: "syntax error", template: "  x: {{ .Values.config.color \n", want: `apps/web/templates/bad.yaml:7: Helm chart apps/web: unclosed action started at apps/web/templates/bad.yaml:5`},
		{name: "required value missing", template: `  x: {{ required "config.size is required" .Values.config.size }}`, want: "apps/web/templates/bad.yaml:5: Helm chart apps/web: config.size is required"},
		{name: "fail", template: `  x: {{ fail "this chart needs a database" }}`, want: "apps/web/templates/bad.yaml:5: Helm chart apps/web: this chart needs a database"},
		{name: "Files.Get outside the chart", template: `  x: {{ .Files.Get "../../secrets/key" | quote }}`, want: `apps/web/templates/bad.yaml:5: Helm chart apps/web: .Files.Get "../../secrets/key" reads outside the chart`},
		{name: "endless recursion", template: "  x: {{ include \"loop\" . }}\n{{- define \"loop\" }}{{ include \"loop\" . }}{{ end }}", want: `apps/web/templates/bad.yaml:5: Helm chart apps/web: error calling include: rendering template has a nested reference name: loop`},
		{name: "endless loop", template: "  x: y\n{{- range 1000000000 }}{{ range 1000000000 }}{{ end }}{{ end }}", want: "apps/web: Helm chart: rendering did not finish within "}, // about 4s: half of what --timeout leaves
		{name: "endless output", template: "  x: |\n{{- range 1000000000 }}    {{ repeat 100000 \"y\" }}{{ end }}", want: "apps/web: Helm chart: rendering exceeded its memory budget of 256 MiB and was stopped", timeout: "60s"},
		{name: "symlink out of the repository", symlink: [2]string{"apps/web/files/passwd", "/etc/passwd"}, want: `apps/web: Helm chart: files/passwd: symlink to "/etc/passwd" leaves the repository; refused`},
		{name: "remote chart without the flag", kustomize: true, want: "apps/remote/kustomization.yaml: helmCharts[0] (podinfo): chart podinfo 6.5.0 from https://stefanprodan.github.io/podinfo is not in the repository; vendor it"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			switch {
			case c.template != "":
				r.Write("apps/web/templates/bad.yaml", fmt.Sprintf(bad, c.template))
			case c.symlink[0] != "":
				r.Symlink(c.symlink[0], c.symlink[1])
			case c.kustomize:
				r.Write("apps/remote/kustomization.yaml", "helmCharts:\n- name: podinfo\n  repo: https://stefanprodan.github.io/podinfo\n  version: 6.5.0\n  releaseName: podinfo\n")
			}
			r.Commit(fmt.Sprintf("bad %d", i))
			timeout := "8s"
			if c.timeout != "" {
				timeout = c.timeout
			}
			out := cronsync(t, append(slices.Clone(args), "--timeout", timeout)...)
			wantExit(t, out, 3)
			wantLine(t, out.stderr, "error: "+c.want)
			wantUnchanged(t, before, snapshot(t, ns))
			switch {
			case c.template != "":
				r.Remove("apps/web/templates/bad.yaml")
			case c.symlink[0] != "":
				r.Remove(c.symlink[0])
			case c.kustomize:
				r.Remove("apps/remote/kustomization.yaml")
			}
			r.Commit(fmt.Sprintf("good %d", i))
		})
	}
}
