package chart

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/budget"
)

// TestMain lets the test binary be the process a chart renders in, as the
// command is (Options.Child).
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == budget.ChildArg {
		if err := budget.Serve(os.Stdin, os.Stdout, map[string]budget.Task{Task: Serve}); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestChildRendersAsThisProcess: a chart rendered in a child gives what it
// gives here, values of every type included (an empty list is not null, an
// int is not a float).
func TestChildRendersAsThisProcess(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\ndependencies: [{name: sub, version: 0.1.0}]\n",
		"c/values.yaml":       "own: 1\n",
		"c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\ndata:\n  values: {{ toJson .Values | quote }}\n  big: {{ .Values.big | quote }}\n  kube: {{ .Capabilities.KubeVersion.Version }}\n",
		"c/charts/.keep":      "",
	})
	if err := os.WriteFile(filepath.Join(root, "c/charts/sub-0.1.0.tgz"), tgz(t, "sub", subChart), 0o644); err != nil {
		t.Fatal(err)
	}
	req := Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r", Namespace: "default",
		Values: map[string]any{"big": 1000000, "f": 1.5, "empty": []any{}, "none": nil, "m": map[string]any{}, "s": "x", "b": true}}
	here, err := New(Options{Discovery: fakeCluster()}).Render(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	there, err := New(Options{Discovery: fakeCluster(), Child: os.Args[0]}).Render(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(here, there) {
		t.Errorf("here:\n%+v\nin a child:\n%+v", here, there)
	}
	for _, d := range there.Docs {
		if d.Source == "c/templates/cm.yaml" && !strings.Contains(string(d.YAML), `big: "1000000"`) {
			t.Errorf("an int came back changed:\n%s", d.YAML)
		}
	}

	// A template's error keeps its place.
	write(t, root, map[string]string{"c/templates/bad.yaml": "x: {{ fail \"no\" }}\n"})
	_, err = New(Options{Discovery: fakeCluster(), Child: os.Args[0]}).Render(t.Context(), req)
	if _, ok := err.(*LocatedError); !ok || !strings.Contains(err.Error(), "c/templates/bad.yaml:1: ") {
		t.Fatalf("err = %#v", err)
	}
}

// TestNameTemplateInTheBudget: kustomize's nameTemplate is a template like
// any other: one that loops without end is stopped, in a child or here.
func TestNameTemplateInTheBudget(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/templates/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: {{ .Release.Name }}}\n",
	})
	req := Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", NameTemplate: "web-{{ print 1 }}", Namespace: "default"}
	for _, child := range []string{"", os.Args[0]} {
		out, err := New(Options{Discovery: fakeCluster(), Child: child}).Render(t.Context(), req)
		if err != nil || !strings.Contains(string(out.Docs[0].YAML), "name: web-1") {
			t.Fatalf("child %q: %v %+v", child, err, out)
		}
	}
	loop := req
	loop.NameTemplate = "{{range 100000000000000}}{{end}}x"
	start := time.Now()
	_, err := New(Options{Discovery: fakeCluster(), Child: os.Args[0], RenderBudget: time.Second}).Render(t.Context(), loop)
	if err == nil || !strings.Contains(err.Error(), "rendering did not finish within 1s: does nameTemplate or a template loop") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("stopped after %s", d)
	}
}

// TestChartInflatesWithinItsBound: subchart archives, nested ones too,
// share one bound on what they inflate to, checked from each file's header
// before it is read.
func TestChartInflatesWithinItsBound(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml":   "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/charts/.keep": "",
	})
	files := map[string]string{"Chart.yaml": "apiVersion: v2\nname: sub\nversion: 0.1.0\n"}
	for i := range 4 {
		files[filepath.Join("files", string(rune('a'+i)))] = strings.Repeat("0", 30000)
	}
	// One subchart inside another's archive.
	inner := tgz(t, "inner", files)
	outerFiles := map[string]string{"Chart.yaml": "apiVersion: v2\nname: outer\nversion: 0.1.0\n", "charts/inner-0.1.0.tgz": string(inner)}
	if err := os.WriteFile(filepath.Join(root, "c/charts/outer-0.1.0.tgz"), tgz(t, "outer", outerFiles), 0o644); err != nil {
		t.Fatal(err)
	}
	req := Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r", Namespace: "default"}
	_, err := New(Options{Discovery: fakeCluster(), MaxChartBytes: 100000}).Render(t.Context(), req)
	want := "the chart's files, its archives' inflated files included, come to over 100000 bytes; refused"
	if err == nil || !strings.HasPrefix(err.Error(), "charts/outer-0.1.0.tgz: charts/inner-0.1.0.tgz: files/") || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("err = %v\nwant %s", err, want)
	}
	if _, err := New(Options{Discovery: fakeCluster(), MaxChartBytes: 200000}).Render(t.Context(), req); err != nil {
		t.Fatal(err)
	}
}

// TestOneHugeAllocation: one Sprig call that asks for 3 GB at once fails
// in the child, which is reported past its memory budget.
func TestOneHugeAllocation(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"c/Chart.yaml":        "apiVersion: v2\nname: c\nversion: 0.1.0\n",
		"c/templates/cm.yaml": "x: {{ indent 3000000000 \"x\" }}\n",
	})
	req := Request{Root: root, Dir: filepath.Join(root, "c"), Shown: "c", ReleaseName: "r", Namespace: "default"}
	start := time.Now()
	_, err := New(Options{Discovery: fakeCluster(), Child: os.Args[0], MemoryBudget: 64 << 20}).Render(t.Context(), req)
	if err == nil || err.Error() != "rendering exceeded its memory budget of 64 MiB and was stopped: does a template produce output without end?" {
		t.Fatalf("err = %v", err)
	}
	t.Logf("%v, after %s", err, time.Since(start))
}
