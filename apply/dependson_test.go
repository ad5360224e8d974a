package apply

import (
	"errors"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/cronsync/cronsync/render"
)

func TestParseDependsOn(t *testing.T) {
	deps, err := parseDependsOn("batch/namespaces/shop/Job/migrate, /namespaces/shop/ConfigMap/settings,apiextensions.k8s.io/CustomResourceDefinition/widgets.example.com")
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range deps {
		got = append(got, d.ref())
	}
	want := "job.batch/migrate -n shop|configmap/settings -n shop|customresourcedefinition.apiextensions.k8s.io/widgets.example.com"
	if strings.Join(got, "|") != want {
		t.Errorf("got %s", strings.Join(got, "|"))
	}
	for _, bad := range []string{"Job/migrate", "batch/namespaces//Job/x", "batch/Job/", "a/b/c/d"} {
		if _, err := parseDependsOn(bad); err == nil {
			t.Errorf("%q parsed", bad)
		}
	}
}

func testItem(kind, name, deps string) *item {
	u := &unstructured.Unstructured{}
	u.SetAPIVersion("v1")
	u.SetKind(kind)
	u.SetName(name)
	u.SetNamespace("ns")
	if deps != "" {
		u.SetAnnotations(map[string]string{dependsOnAnn: deps})
	}
	return &item{Object: &render.Object{Source: name + ".yaml", Doc: 1, Obj: u}}
}

func TestWavesFollowDependencies(t *testing.T) {
	a := testItem("ConfigMap", "a", "")
	b := testItem("ConfigMap", "b", "/namespaces/ns/ConfigMap/a")
	c := testItem("ConfigMap", "c", "/namespaces/ns/ConfigMap/b,/namespaces/ns/ConfigMap/a")
	ext := testItem("ConfigMap", "ext", "/namespaces/other/ConfigMap/outside")
	items := []*item{c, b, a, ext}
	if err := linkDeps(items); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, w := range waves(items) {
		var names []string
		for _, it := range w {
			names = append(names, it.Obj.GetName())
		}
		got = append(got, strings.Join(names, ","))
	}
	// ext depends on something outside the stage: it waits a wave for it.
	if want := "a|b,ext|c"; strings.Join(got, "|") != want {
		t.Errorf("waves %s, want %s", strings.Join(got, "|"), want)
	}
}

func TestCycleIsAManifestError(t *testing.T) {
	a := testItem("ConfigMap", "a", "/namespaces/ns/ConfigMap/b")
	b := testItem("ConfigMap", "b", "/namespaces/ns/ConfigMap/a")
	err := linkDeps([]*item{a, b})
	var me *render.ManifestError
	if !errors.As(err, &me) || !strings.Contains(err.Error(), "dependency cycle: configmap/a -n ns -> configmap/b -n ns -> configmap/a -n ns") {
		t.Errorf("got %v", err)
	}
	self := testItem("ConfigMap", "s", "/namespaces/ns/ConfigMap/s")
	if err := linkDeps([]*item{self}); err == nil || !strings.Contains(err.Error(), "depends on itself") {
		t.Errorf("self dependency: %v", err)
	}
}

func TestImmutableFields(t *testing.T) {
	gk := schema.GroupKind{Group: "apps", Kind: "Deployment"}
	immutable := apierrors.NewInvalid(gk, "web", field.ErrorList{field.Invalid(field.NewPath("spec", "selector"), "x", "field is immutable")})
	if got := immutableFields(objectErr(&render.Object{Obj: &unstructured.Unstructured{}}, immutable)); strings.Join(got, ",") != "spec.selector" {
		t.Errorf("got %v", got)
	}
	mixed := apierrors.NewInvalid(gk, "web", field.ErrorList{
		field.Invalid(field.NewPath("spec", "selector"), "x", "field is immutable"),
		field.Invalid(field.NewPath("spec", "replicas"), -1, "must be greater than or equal to 0"),
	})
	if got := immutableFields(mixed); got != nil {
		t.Errorf("a change with other faults too is not only immutable: %v", got)
	}
	if got := immutableFields(apierrors.NewBadRequest("field is immutable")); got != nil {
		t.Errorf("not an Invalid: %v", got)
	}
}

func TestWebhookUnreachable(t *testing.T) {
	unreachable := apierrors.NewInternalError(errors.New(`failed calling webhook "validate.example.com": failed to call webhook: Post "https://x:443/validate": dial tcp: connect: connection refused`))
	if name, ok := webhookUnreachable(unreachable); !ok || name != "validate.example.com" {
		t.Errorf("got %q %v", name, ok)
	}
	denied := &apierrors.StatusError{ErrStatus: metav1.Status{Code: 400, Message: `admission webhook "validate.example.com" denied the request: no`}}
	if _, ok := webhookUnreachable(denied); ok {
		t.Error("a denial counted as unreachable")
	}
	if _, ok := webhookUnreachable(nil); ok {
		t.Error("nil counted")
	}
}
