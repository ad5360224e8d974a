package apply

import (
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/render"
)

func itemOf(t *testing.T, y string) *item {
	t.Helper()
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		t.Fatal(err)
	}
	return &item{Object: &render.Object{Source: "x.yaml", Doc: 1, Obj: u}}
}

func TestReserved(t *testing.T) {
	s := &syncer{opts: Options{ApplySet: ApplySet{Namespace: "sys", Name: "cronsync"}, Lease: types.NamespacedName{Namespace: "sys", Name: "cronsync"}}}
	for _, c := range []struct {
		name, yaml string
		refused    bool
	}{
		{"the parent", "{apiVersion: v1, kind: Secret, metadata: {name: cronsync, namespace: sys}}", true},
		{"a Secret of the parent's name elsewhere", "{apiVersion: v1, kind: Secret, metadata: {name: cronsync, namespace: app}}", false},
		{"a ConfigMap of the parent's name", "{apiVersion: v1, kind: ConfigMap, metadata: {name: cronsync, namespace: sys}}", false},
		{"a shard by name", "{apiVersion: v1, kind: Secret, metadata: {name: cronsync-fd-abc, namespace: sys}}", true},
		{"a shard by type", "{apiVersion: v1, kind: Secret, type: cronsync.dev/fast-data, metadata: {name: x, namespace: app}}", true},
		{"a shard by label", "{apiVersion: v1, kind: Secret, metadata: {name: x, namespace: app, labels: {cronsync.dev/fast-data-of: applyset-y-v1}}}", true},
		{"the Lease", "{apiVersion: coordination.k8s.io/v1, kind: Lease, metadata: {name: cronsync, namespace: sys}}", true},
		{"another Lease", "{apiVersion: coordination.k8s.io/v1, kind: Lease, metadata: {name: other, namespace: sys}}", false},
		{"a parent by label", "{apiVersion: v1, kind: ConfigMap, metadata: {name: p, namespace: app, labels: {applyset.kubernetes.io/id: z}}}", true},
		{"a parent by annotation", "{apiVersion: v1, kind: ConfigMap, metadata: {name: p, namespace: app, annotations: {applyset.kubernetes.io/tooling: kubectl/v1}}}", true},
		{"the CronJob", "{apiVersion: batch/v1, kind: CronJob, metadata: {name: cronsync, namespace: sys}}", false},
		{"its ConfigMap", "{apiVersion: v1, kind: ConfigMap, metadata: {name: cronsync-config, namespace: sys}}", false},
	} {
		if got := s.reserved(itemOf(t, c.yaml)) != ""; got != c.refused {
			t.Errorf("%s: refused %t, want %t", c.name, got, c.refused)
		}
	}
	// No ApplySet and no Lease: nothing is this sync's own, but parents
	// still are no commit's.
	s = &syncer{}
	if why := s.reserved(itemOf(t, "{apiVersion: v1, kind: Secret, metadata: {name: cronsync, namespace: sys}}")); why != "" {
		t.Errorf("without --applyset: %s", why)
	}
	if why := s.reserved(itemOf(t, "{apiVersion: v1, kind: Secret, metadata: {name: p, namespace: sys, labels: {applyset.kubernetes.io/id: z}}}")); why == "" {
		t.Errorf("without --applyset, a parent was not refused")
	}
}

func TestAdopts(t *testing.T) {
	from := ApplySet{Namespace: "ns1", Name: "set"}
	s := &syncer{}
	for v, want := range map[string]bool{
		"ns1/set":  true,
		from.id():  true,
		"ns2/set":  false,
		"set":      false,
		"":         false,
		"applyset": false,
	} {
		it := itemOf(t, "{apiVersion: v1, kind: ConfigMap, metadata: {name: c, annotations: {cronsync.dev/adopt-from: '"+v+"'}}}")
		if got := s.adopts(it, from.id()); got != want {
			t.Errorf("adopt-from %q: %t, want %t", v, got, want)
		}
	}
	// The run's --adopt-from, for every object of the set.
	plain := itemOf(t, "{apiVersion: v1, kind: ConfigMap, metadata: {name: c}}")
	if s.adopts(plain, from.id()) {
		t.Errorf("adopted without being told")
	}
	s.opts.AdoptFrom = []string{"other/x", "ns1/set"}
	if !s.adopts(plain, from.id()) {
		t.Errorf("--adopt-from ns1/set did not adopt")
	}
}
