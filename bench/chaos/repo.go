package main

import (
	"bytes"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/internal/testenv"
)

// files is the repository of m, path to content, with the SOPS Secret
// encrypted by encrypt. Extra objects (the members a run without --prune
// left behind, re-created for a replay) go in plain files of their own.
func (m *model) files(encrypt func(plain string) (string, error), extra []item) (map[string]string, error) {
	out := map[string]string{}
	docs := func(objs ...*obj) string {
		var b strings.Builder
		for _, o := range objs {
			y, err := yaml.Marshal(o.Object)
			if err != nil {
				panic(err) // maps of strings, numbers and lists always marshal
			}
			b.WriteString("---\n")
			b.Write(y)
		}
		return b.String()
	}
	objs := m.objects()
	get := func(gvr string, ns, name string) *obj {
		return objs[key{Resource: gvr, Namespace: ns, Name: name}].Obj
	}

	var nss []*obj
	for _, ns := range namespaces {
		nss = append(nss, get("namespaces", "", ns))
	}
	out["apps/namespaces.yaml"] = docs(nss...)
	out["apps/crds/widgets.yaml"] = docs(get("customresourcedefinitions", "", "widgets."+widgetGroup))
	if m.Gadget != 0 {
		kind := fmt.Sprintf("gadget%d", m.Gadget)
		out["apps/crds/"+kind+".yaml"] = docs(get("customresourcedefinitions", "", kind+"s."+widgetGroup))
		out["apps/gadget.yaml"] = docs(get(kind+"s", "chaos-a", "one"))
	}

	byFile := map[string][]string{}
	for k, c := range m.CMs {
		byFile[c.File] = append(byFile[c.File], k)
	}
	for f, ks := range byFile {
		sort.Strings(ks)
		var list []*obj
		for _, k := range ks {
			ns, name, _ := strings.Cut(k, "/")
			list = append(list, get("configmaps", ns, name))
		}
		out[f] = docs(list...)
	}
	widgets := map[string][]*obj{}
	for _, k := range slices.Sorted(maps.Keys(m.Widgets)) {
		ns, name, _ := strings.Cut(k, "/")
		widgets[ns] = append(widgets[ns], get("widgets", ns, name))
	}
	for ns, ws := range widgets {
		out["apps/widgets/"+ns+".yaml"] = docs(ws...)
	}
	var chain []*obj
	for i := range m.Chain {
		chain = append(chain, get("configmaps", "chaos-b", fmt.Sprintf("chain-%d", i)))
	}
	out["apps/chain.yaml"] = docs(chain...)
	for name := range m.Deploys {
		out["apps/web/"+name+".yaml"] = docs(get("deployments", "chaos-c", name), get("services", "chaos-c", name))
	}
	for name := range m.Roles {
		out["apps/rbac/"+name+".yaml"] = docs(get("serviceaccounts", "chaos-b", name), get("roles", "chaos-b", name), get("rolebindings", "chaos-b", name))
	}
	for name := range m.ClusterRoles {
		out["apps/cluster/"+name+".yaml"] = docs(get("clusterroles", "", name))
	}
	secret, err := encrypt(docs(get("secrets", "chaos-a", "sealed"))[len("---\n"):])
	if err != nil {
		return nil, err
	}
	out["apps/secret.yaml"] = secret

	// The kustomization names, places and labels its ConfigMaps.
	var kust []*obj
	for _, name := range slices.Sorted(maps.Keys(m.Kust)) {
		kust = append(kust, u("v1", "ConfigMap", "", name, map[string]any{"data": map[string]any{"value": value(name, m.Kust[name])}}))
	}
	out["apps/kust/kustomization.yaml"] = "namespace: chaos-b\nnamePrefix: k-\nlabels:\n- pairs: {chaos-kust: \"yes\"}\nresources: [cms.yaml]\n"
	out["apps/kust/cms.yaml"] = docs(kust...)

	// The chart's directory names the release: chart.
	out["apps/chart/Chart.yaml"] = "apiVersion: v2\nname: chaos\nversion: 0.1.0\n"
	out["apps/chart/values.yaml"] = fmt.Sprintf("count: %d\nvalue: %q\n", m.ChartN, value("chart", m.ChartV))
	out["apps/chart/templates/cms.yaml"] = `{{- range $i, $_ := until (int .Values.count) }}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ $.Release.Name }}-cm-{{ $i }}
  namespace: chaos-c
data:
  value: {{ $.Values.value | quote }}
{{- end }}
`
	if m.Rot != 0 {
		ns := fmt.Sprintf("chaos-n%d", m.Rot)
		list := []*obj{get("namespaces", "", ns)}
		for i := range 4 {
			list = append(list, get("configmaps", ns, fmt.Sprintf("rot-%d", i)))
		}
		list = append(list, get("widgets", ns, "rot"))
		out["apps/rot/"+ns+".yaml"] = docs(list...)
	}
	if len(extra) > 0 {
		var list []*obj
		for _, it := range extra {
			list = append(list, it.Obj)
		}
		out["apps/left-behind.yaml"] = docs(list...)
	}
	return out, nil
}

// gitRepo is the repository cronsync clones, a work tree on disk that the
// lab serves over smart HTTP.
type gitRepo struct{ dir string }

func newGitRepo(dir string) (*gitRepo, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &gitRepo{dir: dir}
	if _, err := r.git("init", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *gitRepo) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), testenv.GitEnv...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// commit replaces the work tree's files with files and commits them.
func (r *gitRepo) commit(files map[string]string, msg string) (string, error) {
	if err := os.RemoveAll(filepath.Join(r.dir, "apps")); err != nil {
		return "", err
	}
	for p, content := range files {
		full := filepath.Join(r.dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return "", err
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			return "", err
		}
	}
	if _, err := r.git("add", "-A"); err != nil {
		return "", err
	}
	if _, err := r.git("commit", "-q", "--allow-empty", "-m", msg); err != nil {
		return "", err
	}
	return r.git("rev-parse", "HEAD")
}
