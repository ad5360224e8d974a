package apiserver

import (
	"context"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/cronsync/cronsync/internal/testenv"
)

// kustomizeRepo writes a base and two overlays, the layout most config repos
// have.
func kustomizeRepo(t *testing.T) *testenv.Repo {
	r := testenv.NewRepo(t)
	r.Write("base/kustomization.yaml", "resources: [deployment.yaml, service.yaml]\n"+
		"configMapGenerator:\n- name: settings\n  literals: [mode=base]\n")
	r.Write("base/deployment.yaml", deployment("placeholder", "web", 1))
	r.Write("base/service.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: web}\nspec:\n  selector: {app: web}\n  ports: [{port: 80}]\n")
	for _, env := range []struct {
		name     string
		replicas int
	}{{"dev", 1}, {"prod", 3}} {
		r.Write("overlays/"+env.name+"/kustomization.yaml", fmt.Sprintf(`namespace: k-%[1]s
namePrefix: %[1]s-
resources: [../../base, namespace.yaml]
configMapGenerator:
- name: settings
  behavior: merge
  literals: [mode=%[1]s]
patches:
- target: {kind: Deployment, name: web}
  patch: |
    - op: replace
      path: /spec/replicas
      value: %[2]d
`, env.name, env.replicas))
		r.Write("overlays/"+env.name+"/namespace.yaml", namespace("k-"+env.name))
	}
	return r
}

// Syncing an overlay gives the cluster exactly what `kustomize build` of the
// overlay gives.
func TestKustomizeOverlay(t *testing.T) {
	r := kustomizeRepo(t)
	r.Commit("base and overlays")
	out := mustSync(t, "--repo", r.Dir, "--path", "overlays/dev")

	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(r.Dir, "overlays/dev"))
	if err != nil {
		t.Fatal(err)
	}
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cluster.Config)))
	for _, res := range resMap.Resources() {
		want, err := res.Map()
		if err != nil {
			t.Fatal(err)
		}
		gvk := res.GetGvk()
		m, err := mapper.RESTMapping(schema.GroupKind{Group: gvk.Group, Kind: gvk.Kind}, gvk.Version)
		if err != nil {
			t.Fatal(err)
		}
		c := kube.Resource(m.Resource)
		var live map[string]any
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			u, err := c.Namespace(res.GetNamespace()).Get(context.Background(), res.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("%s %s/%s from kustomize build is not in the cluster: %v", gvk.Kind, res.GetNamespace(), res.GetName(), err)
			}
			live = u.Object
		} else {
			u, err := c.Get(context.Background(), res.GetName(), metav1.GetOptions{})
			if err != nil {
				t.Fatalf("%s %s from kustomize build is not in the cluster: %v", gvk.Kind, res.GetName(), err)
			}
			live = u.Object
		}
		if path, ok := contains(live, want, ""); !ok {
			t.Errorf("%s %s: live object differs from kustomize build at %s", gvk.Kind, res.GetName(), path)
		}
	}
	// Created the first time, unchanged when the test runs again
	// (go test -count=2): either way exactly the objects kustomize builds.
	if n := len(resMap.Resources()); !strings.Contains(out.stdout, fmt.Sprintf("%d objects: ", n)) || !strings.Contains(out.stdout, " 0 failed") {
		t.Errorf("cronsync did not apply exactly the %d objects kustomize builds", n)
	}
	if got := get(t, deployments, "k-dev", "dev-web", "spec", "replicas"); got != "1" {
		t.Errorf("dev-web replicas = %s, want the dev overlay's 1", got)
	}
	if got := get(t, deployments, "k-prod", "prod-web", "metadata", "name"); got != "<absent>" {
		t.Errorf("the prod overlay was applied too")
	}
}

// contains reports whether every field of want is in have with the same
// value, and where the first difference is.
func contains(have, want any, path string) (string, bool) {
	switch w := want.(type) {
	case map[string]any:
		h, ok := have.(map[string]any)
		if !ok {
			return path, false
		}
		for k, v := range w {
			if p, ok := contains(h[k], v, path+"."+k); !ok {
				return p, false
			}
		}
		return "", true
	case []any:
		h, ok := have.([]any)
		if !ok || len(h) != len(w) {
			return path, false
		}
		for i := range w {
			if p, ok := contains(h[i], w[i], fmt.Sprintf("%s[%d]", path, i)); !ok {
				return p, false
			}
		}
		return "", true
	}
	return path, reflect.DeepEqual(fmt.Sprint(have), fmt.Sprint(want))
}

// A plain-YAML tree with kustomized subdirectories: plain files are read
// one by one, a kustomized directory only through its kustomization.
func TestKustomizeInPlainTree(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("cluster/ns.yaml", namespace("mixed"))
	r.Write("cluster/plain.yaml", configMap("mixed", "plain", "v"))
	r.Write("cluster/app/kustomization.yaml", "namespace: mixed\nresources: [cm.yaml]\ncommonLabels: {built: by-kustomize}\n")
	r.Write("cluster/app/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: from-kustomize}\n")
	r.Write("cluster/app/unlisted.yaml", configMap("mixed", "unlisted", "v"))
	r.Commit("mixed")
	mustSync(t, "--repo", r.Dir, "--path", "cluster")
	if got := get(t, configMaps, "mixed", "plain", "data", "value"); got != "v" {
		t.Errorf("plain ConfigMap: %s", got)
	}
	if got := get(t, configMaps, "mixed", "from-kustomize", "metadata", "labels", "built"); got != "by-kustomize" {
		t.Errorf("kustomized ConfigMap label = %s, want by-kustomize", got)
	}
	if got := get(t, configMaps, "mixed", "unlisted", "metadata", "name"); got != "<absent>" {
		t.Errorf("a file the kustomization does not list was applied")
	}
}

// Kustomize stays inside the repository and off the network and exec.
func TestKustomizeConfined(t *testing.T) {
	for _, tc := range []struct {
		name, kustomization string
		extra               map[string]string
		want                string
	}{{
		name:          "remote base",
		kustomization: "resources:\n- https://github.com/example/config//base?ref=v1\n",
		want:          `remote resource "https://github.com/example/config//base?ref=v1": pass --kustomize-allow-remote`,
	}, {
		name:          "git shorthand",
		kustomization: "resources: [github.com/example/config/base]\n",
		want:          `remote resource "github.com/example/config/base": pass --kustomize-allow-remote`,
	}, {
		name:          "resource outside the repository",
		kustomization: "resources: [../../../../../../../../etc]\n",
		want:          `resource "../../../../../../../../etc" leaves the repository`,
	}, {
		name:          "file outside the kustomization root",
		kustomization: "resources: [cm.yaml]\nconfigMapGenerator:\n- name: stolen\n  files: [/etc/passwd]\n",
		extra:         map[string]string{"app/cm.yaml": configMap("default", "x", "v")},
		want:          "kustomize: loading KV pairs: file sources: [/etc/passwd]: /etc/passwd is outside the repository",
	}, {
		name:          "exec plugin",
		kustomization: "generators: [gen.yaml]\n",
		extra:         map[string]string{"app/gen.yaml": "apiVersion: example.com/v1\nkind: Generator\nmetadata:\n  name: gen\n  annotations:\n    config.kubernetes.io/function: |\n      exec:\n        path: /bin/sh\n"},
		want:          "kustomize: loading generator plugins: failed to load generator: external plugins disabled",
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.NewRepo(t)
			r.Write("app/kustomization.yaml", tc.kustomization)
			for p, c := range tc.extra {
				r.Write(p, c)
			}
			r.Write("plain.yaml", configMap("default", "confined-"+strings.ReplaceAll(tc.name, " ", "-"), "v"))
			r.Commit(tc.name)
			before := snapshot(t)
			out := cronsync(t, nil, "--repo", r.Dir)
			if out.code != exitContent || !hasLineWith(out.stderr, "app/kustomization.yaml", tc.want) {
				t.Errorf("exit %d; want %d and a line naming app/kustomization.yaml with %q", out.code, exitContent, tc.want)
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}
