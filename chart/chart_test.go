package chart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/version"
	fakediscovery "k8s.io/client-go/discovery/fake"
	clienttesting "k8s.io/client-go/testing"
)

func fakeCluster() *fakediscovery.FakeDiscovery {
	return &fakediscovery.FakeDiscovery{
		Fake:               &clienttesting.Fake{},
		FakedServerVersion: &version.Info{GitVersion: "v1.37.2", Major: "1", Minor: "37"},
	}
}

func write(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// tgz packs files as `helm package` lays a chart out: under the chart's
// name.
func tgz(t *testing.T, name string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for p, c := range files {
		if err := tw.WriteHeader(&tar.Header{Name: name + "/" + p, Mode: 0o644, Size: int64(len(c)), Typeflag: tar.TypeReg}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write([]byte(c)); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := gz.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

var subChart = map[string]string{
	"Chart.yaml":           "apiVersion: v2\nname: sub\nversion: 0.1.0\n",
	"templates/cm.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}-sub}\n",
	"templates/big.yaml":   "# " + strings.Repeat("x", 4000) + "\n",
	"templates/other.yaml": "{{/* nothing */}}\n",
}

func TestArchiveAndUnpackedFilesCountAgainstTheLimit(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies: [{name: sub, version: 0.1.0}]\n",
		"c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: top}\n",
		"c/charts/.keep":      "",
	})
	archive := tgz(t, "sub", subChart)
	if err := os.WriteFile(filepath.Join(root, "c/charts/sub-0.1.0.tgz"), archive, 0o644); err != nil {
		t.Fatal(err)
	}
	req := Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r", Namespace: "default"}

	// The archive is small; what it unpacks to is not.
	r := New(Options{Discovery: fakeCluster(), MaxFileBytes: 3000})
	_, err := r.Render(t.Context(), req)
	if err == nil || !strings.Contains(err.Error(), "charts/sub-0.1.0.tgz: templates/big.yaml is 4003 bytes, over the limit of 3000") {
		t.Fatalf("err = %v", err)
	}
	// The archive itself counts too.
	r = New(Options{Discovery: fakeCluster(), MaxFileBytes: int64(len(archive) - 1)})
	if _, err := r.Render(t.Context(), req); err == nil || !strings.Contains(err.Error(), "charts/sub-0.1.0.tgz is") {
		t.Fatalf("err = %v", err)
	}
	r = New(Options{Discovery: fakeCluster(), MaxFileBytes: 1 << 20})
	out, err := r.Render(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	var sources []string
	for _, d := range objects(out) {
		sources = append(sources, d.Source)
	}
	if strings.Join(sources, " ") != "c/charts/sub/templates/cm.yaml c/templates/cm.yaml" {
		t.Errorf("sources %q", sources)
	}
}

// objects leaves out documents that hold only comments.
func objects(out *Rendered) []Doc {
	var docs []Doc
	for _, d := range out.Docs {
		if strings.Contains(string(d.YAML), "kind:") {
			docs = append(docs, d)
		}
	}
	return docs
}

func TestErrorsNameTheTemplateInItsSubchart(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"deploy/c/Chart.yaml":                      "apiVersion: v2\nname: top\nversion: 0.1.0\n",
		"deploy/c/charts/db/Chart.yaml":            "apiVersion: v2\nname: db\nversion: 0.1.0\n",
		"deploy/c/charts/db/templates/secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: db}\nstringData:\n  password: {{ required \"db.password must be set\" .Values.password }}\n",
	})
	_, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), Request{Root: root, Dir: filepath.Join(root, "deploy/c"), Shown: "deploy/c", ReleaseName: "r"})
	want := "deploy/c/charts/db/templates/secret.yaml:5: db.password must be set"
	if err == nil || err.Error() != want {
		t.Fatalf("err = %v, want %s", err, want)
	}
}

func TestRemoteChartFromAHelmRepository(t *testing.T) {
	archive := tgz(t, "sub", subChart)
	old := tgz(t, "sub", map[string]string{"Chart.yaml": "apiVersion: v2\nname: sub\nversion: 0.0.9\n"})
	mux := http.NewServeMux()
	mux.HandleFunc("/charts/index.yaml", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "apiVersion: v1\nentries:\n  sub:\n  - version: 0.1.0\n    urls: [sub-0.1.0.tgz]\n  - version: 0.0.9\n    urls: [sub-0.0.9.tgz]\n")
	})
	mux.HandleFunc("/charts/sub-0.1.0.tgz", func(w http.ResponseWriter, r *http.Request) { w.Write(archive) })
	mux.HandleFunc("/charts/sub-0.0.9.tgz", func(w http.ResponseWriter, r *http.Request) { w.Write(old) })
	srv := httptest.NewServer(mux)
	defer srv.Close()

	req := Request{Root: t.TempDir(), Shown: "remote", ReleaseName: "r", Remote: &Remote{Repo: srv.URL + "/charts", Name: "sub", Version: "~0.1"}}
	if _, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), req); err == nil || !strings.Contains(err.Error(), "not in the repository; vendor it") {
		t.Fatalf("without AllowRemote: err = %v", err)
	}
	out, err := New(Options{Discovery: fakeCluster(), AllowRemote: true}).Render(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if docs := objects(out); len(docs) != 1 || !strings.Contains(string(docs[0].YAML), "name: r-sub") {
		t.Errorf("docs %d", len(docs))
	}
	req.Remote.Version = "0.2.0"
	if _, err := New(Options{Discovery: fakeCluster(), AllowRemote: true}).Render(t.Context(), req); err == nil || !strings.Contains(err.Error(), `no version matching "0.2.0"`) {
		t.Fatalf("err = %v", err)
	}
}

// TestRemoteChartFromAnOCIRegistry serves the distribution API's two reads
// behind an anonymous token, as public registries do.
func TestRemoteChartFromAnOCIRegistry(t *testing.T) {
	archive := tgz(t, "sub", subChart)
	var srv *httptest.Server
	srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/token":
			if r.URL.Query().Get("scope") != "repository:charts/sub:pull" {
				http.Error(w, "bad scope", http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, `{"token":"anon"}`)
		case r.Header.Get("Authorization") != "Bearer anon":
			w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test"`, srv.URL))
			w.WriteHeader(http.StatusUnauthorized)
		case r.URL.Path == "/v2/charts/sub/manifests/0.1.0":
			fmt.Fprint(w, `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.cncf.helm.chart.content.v1.tar+gzip","digest":"sha256:abc"}]}`)
		case r.URL.Path == "/v2/charts/sub/blobs/sha256:abc":
			w.Write(archive)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	req := Request{Root: t.TempDir(), Shown: "remote", ReleaseName: "r", Remote: &Remote{Repo: "oci://" + host + "/charts", Name: "sub", Version: "0.1.0"}}
	out, err := New(Options{Discovery: fakeCluster(), AllowRemote: true, HTTPClient: srv.Client()}).Render(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if docs := objects(out); len(docs) != 1 || !strings.Contains(string(docs[0].YAML), "name: r-sub") {
		t.Errorf("docs %d", len(docs))
	}
}

func TestLookupFindsNothing(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/templates/cm.yaml": `{{- $s := lookup "v1" "Secret" "kube-system" "admin" -}}
apiVersion: v1
kind: ConfigMap
metadata: {name: found}
data: {found: {{ if $s }}"yes"{{ else }}"no"{{ end }}}
`,
	})
	out, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out.Docs[0].YAML), `found: "no"`) {
		t.Errorf("%s", out.Docs[0].YAML)
	}
}

func TestCappedFunctions(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {n: {{ len (until 5) | quote }}, m: {{ until -3 | toJson | quote }}}\n{{- range until 100000000 }}{{ end }}\n",
	})
	_, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r"})
	if err == nil || !strings.Contains(err.Error(), "c/templates/cm.yaml:5: ") || !strings.Contains(err.Error(), "until 100000000: over 1000000 items") {
		t.Fatalf("err = %v", err)
	}
	write(t, root, map[string]string{"c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {n: {{ len (until 5) | quote }}, m: {{ until -3 | toJson | quote }}}\n"})
	out, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out.Docs[0].YAML), `n: "5", m: "[0,-1,-2]"`) {
		t.Errorf("%s", out.Docs[0].YAML)
	}
}

// Helm sorts what a template renders by kind; each document keeps its place
// among those its template rendered, so that an error names the right one.
func TestDocumentsKeepTheirPlaceInTheirTemplate(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml": "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/templates/all.yaml": `{{- if false }}
apiVersion: v1
kind: Secret
metadata: {name: skipped}
{{- end }}
---
apiVersion: v1
kind: Service
metadata: {name: s}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: same}
---
apiVersion: v1
kind: Namespace
metadata: {name: n}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: same}
`,
		"c/templates/one.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: one}\n",
	})
	out, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range out.Docs {
		kind, name := "", ""
		for line := range strings.SplitSeq(string(d.YAML), "\n") {
			if k, ok := strings.CutPrefix(line, "kind: "); ok {
				kind = k
			}
			if n, ok := strings.CutPrefix(line, "metadata: {name: "); ok {
				name = strings.TrimSuffix(n, "}")
			}
		}
		got = append(got, fmt.Sprintf("%s %s/%s #%d", d.Source, kind, name, d.Index))
	}
	want := []string{
		"c/templates/all.yaml Namespace/n #3",
		"c/templates/all.yaml ConfigMap/same #2",
		"c/templates/all.yaml ConfigMap/same #4",
		"c/templates/one.yaml ConfigMap/one #1",
		"c/templates/all.yaml Service/s #1",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("documents:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
