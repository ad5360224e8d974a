package render

import (
	"errors"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

func TestSubstituteEval(t *testing.T) {
	s := Substitute{Strict: true, Vars: map[string]string{"A": "alpha", "EMPTY": "", "N": "3", "P": "a.b.c"}}
	for _, tc := range []struct{ in, want string }{
		{"x ${A} y", "x alpha y"},
		{"${A}${A}", "alphaalpha"},
		{"$A and $${A} and $$A", "$A and ${A} and $A"},
		{"${B:=bee}", "bee"},
		{"${B:-bee}", "bee"},
		{"${B=bee}", "bee"},
		{"${B:+bee}", "bee"},
		{"${B:?bee}", "bee"},
		{"${A:-bee}", "alpha"},
		{"${EMPTY}", ""},
		{"${EMPTY:-d}", "d"},
		{"${B:-${A}}", "alpha"},
		{"${B:-x/y}", "x/y"},
		{"${#A}", "5"},
		{"${A^}", "Alpha"},
		{"${A^^}", "ALPHA"},
		{"${A:1:3}", "lph"},
		{"${A:-2}", "alpha"}, // a default, not an offset, as in bash
		{"${A: -2}", "ha"},
		{"${P#*.}", "b.c"},
		{"${P##*.}", "c"},
		{"${P%.*}", "a.b"},
		{"${P%%.*}", "a"},
		{"${P/./-}", "a-b.c"},
		{"${P//./-}", "a-b-c"},
		{"no refs $ here", "no refs $ here"},
		{"trailing $", "trailing $"},
	} {
		got, err := s.Eval(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("Eval(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestSubstituteStrict(t *testing.T) {
	s := Substitute{Strict: true, Vars: map[string]string{}}
	_, err := s.Eval("a: ${MISSING}\nb: ${OTHER}\nc: ${MISSING}\nd: ${DEF:=x}")
	var unset *UnsetError
	if !errors.As(err, &unset) || strings.Join(unset.Names, ",") != "MISSING,OTHER" {
		t.Fatalf("err = %v, want both unset variables named once", err)
	}
	s.Strict = false
	got, err := s.Eval("a: ${MISSING}|")
	if err != nil || got != "a: |" {
		t.Fatalf("non-strict: %q, %v", got, err)
	}
	for _, bad := range []string{"${my-key}", "${1A}", "${}", "${A", "${A:-x"} {
		if _, err := s.Eval(bad); err == nil {
			t.Errorf("Eval(%q): no error", bad)
		}
	}
}

// References that repeat a value within each other multiply it at every
// level (an empty pattern matches between every character): ten levels of
// a five-letter variable would be 363 MB from a line of 77 bytes.
func TestSubstituteIsBounded(t *testing.T) {
	s := Substitute{Strict: true, Vars: map[string]string{"A": "alpha"}}
	nest := func(levels int) string {
		return strings.Repeat("${A///", levels) + "${A}" + strings.Repeat("}", levels)
	}
	got, err := s.Eval("x: " + nest(3))
	if err != nil || len(got) != len("x: ")+1295 {
		t.Fatalf("three levels: %d bytes, %v", len(got), err)
	}
	if _, err := s.Eval("x: " + nest(10)); !errors.Is(err, errSubstitutedTooLarge) {
		t.Fatalf("ten levels: %v", err)
	}
}

func TestSubstituteObject(t *testing.T) {
	s := Substitute{Strict: true, Vars: map[string]string{"NAME": "web", "R": "3", "ID": `"1234"`}}
	mk := func(labels map[string]any) *Object {
		return &Object{Source: "a.yaml", Doc: 1, Obj: &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "apps/v1", "kind": "Deployment",
			"metadata": map[string]any{"name": "${NAME}", "labels": labels, "annotations": map[string]any{"id": "${ID}"}},
			"spec":     map[string]any{"replicas": "${R}", "note": "${UNSET}"},
		}}}
	}
	o := mk(map[string]any{"app": "x"})
	err := substituteAll([]*Object{o}, s)
	var me *ManifestError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "${UNSET}") || !strings.Contains(err.Error(), "a.yaml") {
		t.Fatalf("err = %v, want a ManifestError naming the file and ${UNSET}", err)
	}
	s.Vars["UNSET"] = "u"
	o = mk(map[string]any{"app": "x"})
	if err := substituteAll([]*Object{o}, s); err != nil {
		t.Fatal(err)
	}
	if o.Obj.GetName() != "web" || o.Obj.GetAnnotations()["id"] != "1234" {
		t.Fatalf("got %v", o.Obj.Object)
	}
	if r, _, _ := unstructured.NestedInt64(o.Obj.Object, "spec", "replicas"); r != 3 {
		t.Fatalf("replicas = %v, want the number 3", o.Obj.Object["spec"])
	}
	for _, key := range []string{SubstituteDisabled, fluxSubstituteDisabled} {
		o = mk(map[string]any{key: "disabled"})
		if err := substituteAll([]*Object{o}, s); err != nil || o.Obj.GetName() != "${NAME}" {
			t.Fatalf("%s: name %q, %v", key, o.Obj.GetName(), err)
		}
	}
	off := Substitute{Strict: true}
	o = mk(nil)
	if err := substituteAll([]*Object{o}, off); err != nil || o.Obj.GetName() != "${NAME}" {
		t.Fatalf("off: name %q, %v", o.Obj.GetName(), err)
	}
	if off.stamp() != "" || s.stamp() == (Substitute{Strict: true, Vars: map[string]string{"NAME": "web2"}}).stamp() || strings.Contains(s.stamp(), "web") {
		t.Fatal("stamp must change with values and not hold them")
	}
}

// BenchmarkSubstitute1000 is what substitution adds to a run that reads the
// commit: 1,000 ConfigMaps, each with three references, or none.
func BenchmarkSubstitute1000(b *testing.B) {
	b.Run("references", func(b *testing.B) { benchSubstitute(b, "${REGION}", "${CLUSTER}") })
	b.Run("none", func(b *testing.B) { benchSubstitute(b, "eu", "edge-1") })
}

func benchSubstitute(b *testing.B, region, cluster string) {
	s := Substitute{Strict: true, Vars: map[string]string{"CLUSTER": "edge-1", "REGION": "eu"}}
	for b.Loop() {
		b.StopTimer()
		objs := make([]*Object, 1000)
		for i := range objs {
			objs[i] = &Object{Source: "a.yaml", Doc: i + 1, Obj: &unstructured.Unstructured{Object: map[string]any{
				"apiVersion": "v1", "kind": "ConfigMap",
				"metadata": map[string]any{"name": "cm-" + strings.Repeat("x", i%7), "namespace": "shop", "labels": map[string]any{"cluster": cluster}},
				"data":     map[string]any{"region": region, "url": "https://" + cluster + ".example.com/path", "other": "plain value"},
			}}}
		}
		b.StartTimer()
		if err := substituteAll(objs, s); err != nil {
			b.Fatal(err)
		}
	}
}
