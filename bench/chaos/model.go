package main

import (
	"encoding/base64"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// The namespaces every commit holds, and the one the lab makes for the
// ApplySet parent and the Lease (a run cannot create the namespace its
// parent lives in).
var namespaces = []string{"chaos-a", "chaos-b", "chaos-c"}

const (
	ctlNamespace = "chaos-ctl"
	setName      = "cronsync"
	// widgetGroup is the group of the CRD every commit holds, and of the
	// gadget CRDs that come and go.
	widgetGroup = "chaos.example.com"
)

// model is what one commit of the repository holds, as objects. A trial
// changes it (change, add, remove); the checks compare the cluster with
// it. Names number up from next, so a removed object's name never comes
// back with other content.
type model struct {
	// CMs are plain ConfigMaps, by namespace/name, each in a file of
	// several documents.
	CMs map[string]*cm
	// Widgets are custom resources of the widgets CRD, namespace/name to
	// spec.size.
	Widgets map[string]int
	// Gadget numbers the gadget CRD the commit holds (a CR of it in
	// chaos-a beside it); 0: none.
	Gadget int
	// Chain is how many ConfigMaps in chaos-b depend on each other
	// (config.kubernetes.io/depends-on), each on the one before; ChainV
	// their value.
	Chain, ChainV int
	// Deploys are Deployments (and a Service each) in chaos-c: name to
	// replicas.
	Deploys map[string]int
	// Roles are a ServiceAccount, Role and RoleBinding each, in chaos-b:
	// name to a version of the Role's rules.
	Roles map[string]int
	// ClusterRoles are cluster-scoped members: name to version.
	ClusterRoles map[string]int
	// Sops is the version of the value of a Secret committed encrypted
	// with SOPS.
	Sops int
	// Kust are the ConfigMaps of a kustomization (namePrefix k-, into
	// chaos-b, a label): name to version.
	Kust map[string]int
	// ChartN ConfigMaps are rendered by a Helm chart, holding ChartV.
	ChartN, ChartV int
	// Rot numbers a namespace (chaos-n<Rot>) that holds a few ConfigMaps
	// and a Widget, and is replaced by a new one now and then: a commit
	// that creates a namespace and its content, and removes another.
	Rot  int
	Next int
}

type cm struct {
	V    int
	File string
}

func newModel(rng *rand.Rand) *model {
	m := &model{CMs: map[string]*cm{}, Widgets: map[string]int{}, Deploys: map[string]int{}, Roles: map[string]int{},
		ClusterRoles: map[string]int{}, Kust: map[string]int{}, Chain: 3, ChainV: 1, Sops: 1, ChartN: 8, ChartV: 1}
	for i := range 180 {
		ns := namespaces[i%len(namespaces)]
		m.CMs[ns+"/"+m.name("cm")] = &cm{V: rng.IntN(5), File: fmt.Sprintf("apps/%s/f%d.yaml", ns, i/15)}
	}
	for i := range 15 {
		m.Widgets[namespaces[i%len(namespaces)]+"/"+m.name("w")] = rng.IntN(10)
	}
	for range 4 {
		m.Deploys[m.name("web")] = 1 + rng.IntN(3)
	}
	for range 3 {
		m.Roles[m.name("reader")] = 1
	}
	for range 2 {
		m.ClusterRoles[m.name("chaos-view")] = 1
	}
	for range 10 {
		m.Kust[m.name("kcm")] = 1
	}
	m.Next++
	m.Rot = m.Next
	return m
}

func (m *model) name(prefix string) string {
	m.Next++
	return fmt.Sprintf("%s-%d", prefix, m.Next)
}

func (m *model) clone() *model {
	c := *m
	c.CMs = make(map[string]*cm, len(m.CMs))
	for k, v := range m.CMs {
		cp := *v
		c.CMs[k] = &cp
	}
	c.Widgets, c.Deploys, c.Roles = maps.Clone(m.Widgets), maps.Clone(m.Deploys), maps.Clone(m.Roles)
	c.ClusterRoles, c.Kust = maps.Clone(m.ClusterRoles), maps.Clone(m.Kust)
	return &c
}

// mutate is the change of commit between two trials: some objects
// changed, some added, some removed, in every part of the repository.
func (m *model) mutate(rng *rand.Rand) *model {
	n := m.clone()
	keys := slices.Sorted(maps.Keys(n.CMs))
	for range 3 + rng.IntN(10) {
		n.CMs[keys[rng.IntN(len(keys))]].V++
	}
	remove := 2 + rng.IntN(7)
	if len(keys) > 210 {
		remove += 10
	}
	for range remove {
		k := keys[rng.IntN(len(keys))]
		delete(n.CMs, k)
	}
	files := map[string][]string{}
	for _, c := range n.CMs {
		ns := strings.Split(c.File, "/")[1]
		if !slices.Contains(files[ns], c.File) {
			files[ns] = append(files[ns], c.File)
		}
	}
	for range 2 + rng.IntN(7) {
		ns := namespaces[rng.IntN(len(namespaces))]
		sort.Strings(files[ns])
		f := fmt.Sprintf("apps/%s/n%d.yaml", ns, n.Next)
		if len(files[ns]) > 0 && rng.IntN(10) < 7 {
			f = files[ns][rng.IntN(len(files[ns]))]
		}
		n.CMs[ns+"/"+n.name("cm")] = &cm{V: 0, File: f}
	}

	wkeys := slices.Sorted(maps.Keys(n.Widgets))
	for range 1 + rng.IntN(3) {
		n.Widgets[wkeys[rng.IntN(len(wkeys))]]++
	}
	if rng.IntN(10) < 3 && len(wkeys) > 5 {
		delete(n.Widgets, wkeys[rng.IntN(len(wkeys))])
	}
	if rng.IntN(10) < 3 {
		n.Widgets[namespaces[rng.IntN(len(namespaces))]+"/"+n.name("w")] = rng.IntN(10)
	}
	if rng.IntN(4) == 0 {
		// A new CRD with a resource of it, in place of the last one.
		n.Next++
		n.Gadget = n.Next
	}
	if rng.IntN(4) == 0 {
		n.Next++
		n.Rot = n.Next
	}
	if rng.IntN(10) < 3 {
		n.ChainV++
	}
	if rng.IntN(10) < 2 {
		n.Chain = 2 + rng.IntN(4)
	}
	dkeys := slices.Sorted(maps.Keys(n.Deploys))
	if rng.IntN(2) == 0 {
		n.Deploys[dkeys[rng.IntN(len(dkeys))]] = 1 + rng.IntN(4)
	}
	if rng.IntN(10) < 2 && len(dkeys) > 2 {
		delete(n.Deploys, dkeys[rng.IntN(len(dkeys))])
	}
	if rng.IntN(10) < 2 {
		n.Deploys[n.name("web")] = 1
	}
	rkeys := slices.Sorted(maps.Keys(n.Roles))
	if rng.IntN(10) < 3 {
		n.Roles[rkeys[rng.IntN(len(rkeys))]]++
	}
	if rng.IntN(10) < 2 && len(rkeys) > 1 {
		delete(n.Roles, rkeys[rng.IntN(len(rkeys))])
	}
	if rng.IntN(10) < 2 {
		n.Roles[n.name("reader")] = 1
	}
	ckeys := slices.Sorted(maps.Keys(n.ClusterRoles))
	if rng.IntN(10) < 3 {
		n.ClusterRoles[ckeys[rng.IntN(len(ckeys))]]++
	}
	if rng.IntN(10) < 2 && len(ckeys) > 1 {
		delete(n.ClusterRoles, ckeys[rng.IntN(len(ckeys))])
	}
	if rng.IntN(10) < 2 {
		n.ClusterRoles[n.name("chaos-view")] = 1
	}
	if rng.IntN(10) < 3 {
		n.Sops++
	}
	kkeys := slices.Sorted(maps.Keys(n.Kust))
	for range rng.IntN(3) {
		n.Kust[kkeys[rng.IntN(len(kkeys))]]++
	}
	if rng.IntN(10) < 3 && len(kkeys) > 4 {
		delete(n.Kust, kkeys[rng.IntN(len(kkeys))])
	}
	if rng.IntN(10) < 3 {
		n.Kust[n.name("kcm")] = 1
	}
	if rng.IntN(10) < 3 {
		n.ChartN = 5 + rng.IntN(8)
	}
	if rng.IntN(10) < 3 {
		n.ChartV++
	}
	return n
}

// obj is one object as the cluster should hold it once the commit is
// applied (after kustomize, Helm and SOPS), without what cronsync adds.
type obj = unstructured.Unstructured

// key names an object the way the audit log does: resource, namespace,
// name.
type key struct {
	Resource, Namespace, Name string
}

func (k key) String() string {
	if k.Namespace == "" {
		return k.Resource + "/" + k.Name
	}
	return k.Resource + "/" + k.Namespace + "/" + k.Name
}

// gvrs of the kinds a commit holds (the gadgets' aside).
var (
	gvrNamespace      = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	gvrConfigMap      = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	gvrSecret         = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	gvrService        = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	gvrServiceAccount = schema.GroupVersionResource{Version: "v1", Resource: "serviceaccounts"}
	gvrDeployment     = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	gvrRole           = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"}
	gvrRoleBinding    = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"}
	gvrClusterRole    = schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
	gvrCRD            = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	gvrWidget         = schema.GroupVersionResource{Group: widgetGroup, Version: "v1", Resource: "widgets"}
	gvrEvent          = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	gvrLease          = schema.GroupVersionResource{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"}
)

func gadgetGVR(n int) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: widgetGroup, Version: "v1", Resource: fmt.Sprintf("gadget%ds", n)}
}

// memberKinds are the resources the commits' objects are of, for the
// checks that look for members anywhere (the gadgets' are added).
var memberKinds = []schema.GroupVersionResource{gvrNamespace, gvrConfigMap, gvrSecret, gvrService, gvrServiceAccount,
	gvrDeployment, gvrRole, gvrRoleBinding, gvrClusterRole, gvrCRD, gvrWidget}

// item is an expected object with its resource.
type item struct {
	GVR schema.GroupVersionResource
	Obj *obj
}

func (it item) Key() key {
	return key{Resource: it.GVR.Resource, Namespace: it.Obj.GetNamespace(), Name: it.Obj.GetName()}
}

func u(apiVersion, kind, ns, name string, fields map[string]any) *obj {
	md := map[string]any{"name": name}
	if ns != "" {
		md["namespace"] = ns
	}
	o := map[string]any{"apiVersion": apiVersion, "kind": kind, "metadata": md}
	maps.Copy(o, fields)
	return &obj{Object: o}
}

func value(name string, v int) string { return fmt.Sprintf("%s version %d", name, v) }

// objects is what the cluster holds once the commit is applied, by key.
func (m *model) objects() map[key]item {
	out := map[key]item{}
	add := func(gvr schema.GroupVersionResource, o *obj) {
		it := item{GVR: gvr, Obj: o}
		out[it.Key()] = it
	}
	for _, ns := range namespaces {
		add(gvrNamespace, u("v1", "Namespace", "", ns, nil))
	}
	for k, c := range m.CMs {
		ns, name, _ := strings.Cut(k, "/")
		add(gvrConfigMap, u("v1", "ConfigMap", ns, name, map[string]any{"data": map[string]any{"value": value(name, c.V)}}))
	}
	add(gvrCRD, crd("Widget"))
	for k, size := range m.Widgets {
		ns, name, _ := strings.Cut(k, "/")
		add(gvrWidget, u(widgetGroup+"/v1", "Widget", ns, name, map[string]any{"spec": map[string]any{"size": int64(size)}}))
	}
	if m.Gadget != 0 {
		kind := fmt.Sprintf("Gadget%d", m.Gadget)
		add(gvrCRD, crd(kind))
		add(gadgetGVR(m.Gadget), u(widgetGroup+"/v1", kind, "chaos-a", "one", map[string]any{"spec": map[string]any{"size": int64(m.Gadget % 7)}}))
	}
	for i := range m.Chain {
		o := u("v1", "ConfigMap", "chaos-b", fmt.Sprintf("chain-%d", i), map[string]any{"data": map[string]any{"value": value("chain", m.ChainV)}})
		if i > 0 {
			o.SetAnnotations(map[string]string{"config.kubernetes.io/depends-on": fmt.Sprintf("/namespaces/chaos-b/ConfigMap/chain-%d", i-1)})
		}
		add(gvrConfigMap, o)
	}
	for name, replicas := range m.Deploys {
		labels := map[string]any{"app": name}
		add(gvrDeployment, u("apps/v1", "Deployment", "chaos-c", name, map[string]any{"spec": map[string]any{
			"replicas": int64(replicas),
			"selector": map[string]any{"matchLabels": labels},
			"template": map[string]any{
				"metadata": map[string]any{"labels": labels},
				"spec": map[string]any{"containers": []any{map[string]any{
					"name": "app", "image": "registry.invalid/app:1",
				}}},
			},
		}}))
		add(gvrService, u("v1", "Service", "chaos-c", name, map[string]any{"spec": map[string]any{
			"selector": labels,
			"ports":    []any{map[string]any{"name": "http", "port": int64(80), "targetPort": int64(8000 + replicas)}},
		}}))
	}
	for name, v := range m.Roles {
		add(gvrServiceAccount, u("v1", "ServiceAccount", "chaos-b", name, nil))
		add(gvrRole, u("rbac.authorization.k8s.io/v1", "Role", "chaos-b", name, map[string]any{"rules": rules(v)}))
		add(gvrRoleBinding, u("rbac.authorization.k8s.io/v1", "RoleBinding", "chaos-b", name, map[string]any{
			"roleRef":  map[string]any{"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
			"subjects": []any{map[string]any{"kind": "ServiceAccount", "name": name, "namespace": "chaos-b"}},
		}))
	}
	for name, v := range m.ClusterRoles {
		add(gvrClusterRole, u("rbac.authorization.k8s.io/v1", "ClusterRole", "", name, map[string]any{"rules": rules(v)}))
	}
	add(gvrSecret, u("v1", "Secret", "chaos-a", "sealed", map[string]any{
		"type": "Opaque",
		"data": map[string]any{"password": base64.StdEncoding.EncodeToString([]byte(value("sops-secret", m.Sops)))},
	}))
	for name, v := range m.Kust {
		o := u("v1", "ConfigMap", "chaos-b", "k-"+name, map[string]any{"data": map[string]any{"value": value(name, v)}})
		o.SetLabels(map[string]string{"chaos-kust": "yes"})
		add(gvrConfigMap, o)
	}
	if m.Rot != 0 {
		ns := fmt.Sprintf("chaos-n%d", m.Rot)
		add(gvrNamespace, u("v1", "Namespace", "", ns, nil))
		for i := range 4 {
			add(gvrConfigMap, u("v1", "ConfigMap", ns, fmt.Sprintf("rot-%d", i), map[string]any{"data": map[string]any{"value": value("rot", m.Rot)}}))
		}
		add(gvrWidget, u(widgetGroup+"/v1", "Widget", ns, "rot", map[string]any{"spec": map[string]any{"size": int64(m.Rot % 5)}}))
	}
	for i := range m.ChartN {
		add(gvrConfigMap, u("v1", "ConfigMap", "chaos-c", fmt.Sprintf("chart-cm-%d", i), map[string]any{"data": map[string]any{"value": value("chart", m.ChartV)}}))
	}
	return out
}

func rules(v int) []any {
	verbs := []any{"get", "list"}
	if v%2 == 0 {
		verbs = append(verbs, "watch")
	}
	return []any{map[string]any{"apiGroups": []any{""}, "resources": []any{"configmaps"}, "verbs": verbs}}
}

func crd(kind string) *obj {
	lower := strings.ToLower(kind)
	return u("apiextensions.k8s.io/v1", "CustomResourceDefinition", "", lower+"s."+widgetGroup, map[string]any{"spec": map[string]any{
		"group": widgetGroup,
		"scope": "Namespaced",
		"names": map[string]any{"plural": lower + "s", "singular": lower, "kind": kind, "listKind": kind + "List"},
		"versions": []any{map[string]any{
			"name": "v1", "served": true, "storage": true,
			"schema": map[string]any{"openAPIV3Schema": map[string]any{
				"type": "object",
				"properties": map[string]any{"spec": map[string]any{
					"type":       "object",
					"properties": map[string]any{"size": map[string]any{"type": "integer", "minimum": int64(0)}},
				}},
			}},
		}},
	}})
}
