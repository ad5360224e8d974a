package main

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"testing"

	"github.com/cronsync/cronsync/render"
)

// cronsync evaluates .jsonnet files with go-jsonnet as a library; these
// tests evaluate the same files with the jsonnet CLI built from the same
// version (hack/testbin) and compare the objects, so that flags, imports
// and library paths mean what they mean to the CLI.

// jsonnetLib is a vendored library, as jsonnet-bundler lays one out.
const jsonnetLib = `{
  configMap(name, data={}):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: data },
  serviceAccount(name):: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: name } },
}`

func TestJsonnetMatchesCLI(t *testing.T) {
	for _, tc := range []struct {
		name  string
		files map[string]string
		// file is the one evaluated, under apps/.
		file string
		opts render.Jsonnet
		// cli are the flags that mean the same to the jsonnet CLI.
		cli []string
	}{{
		name:  "plain object",
		files: map[string]string{"apps/cm.jsonnet": `{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'plain' }, data: { n: std.toString(6 * 7) } }`},
		file:  "cm.jsonnet",
	}, {
		name:  "array",
		files: map[string]string{"apps/list.jsonnet": `[{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'sa-' + i } } for i in std.range(1, 3)]`},
		file:  "list.jsonnet",
	}, {
		name: "nested map of manifests",
		files: map[string]string{"apps/stack.jsonnet": `{
  prometheus: { serviceAccount: { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'prometheus' } },
                config: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'prometheus' }, data: { 'prometheus.yml': std.manifestYamlDoc({ global: { scrape_interval: '30s' } }) } } },
  'alert-manager': [{ apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'alertmanager' } }],
}`},
		file: "stack.jsonnet",
	}, {
		name: "function with top-level arguments and defaults",
		files: map[string]string{"apps/fn.jsonnet": `function(name, replicas=1, labels={ tier: 'web' }, suffix='-x')
  [{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name + suffix + '-' + i, labels: labels } } for i in std.range(1, replicas)]`},
		file: "fn.jsonnet",
		opts: render.Jsonnet{TLAStr: map[string]string{"name": "web"}, TLACode: map[string]string{"replicas": "2", "labels": "{ tier: 'api', team: 'a' }"}},
		cli:  []string{"--tla-str", "name=web", "--tla-code", "replicas=2", "--tla-code", "labels={ tier: 'api', team: 'a' }"},
	}, {
		name:  "external variables",
		files: map[string]string{"apps/ext.jsonnet": `{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'ext-' + std.extVar('env') }, data: { size: std.toString(std.extVar('size') * 2) } }`},
		file:  "ext.jsonnet",
		opts:  render.Jsonnet{ExtStr: map[string]string{"env": "prod"}, ExtCode: map[string]string{"size": "21"}},
		cli:   []string{"--ext-str", "env=prod", "--ext-code", "size=21"},
	}, {
		name: "libsonnet import",
		files: map[string]string{
			"apps/lib/k.libsonnet": jsonnetLib,
			"apps/main.jsonnet":    `local k = import 'lib/k.libsonnet'; [k.configMap('imported', { a: importstr 'lib/data.txt' }), k.serviceAccount('imported')]`,
			"apps/lib/data.txt":    "raw text\n",
		},
		file: "main.jsonnet",
	}, {
		name: "vendored library through a library path",
		files: map[string]string{
			"vendor/github.com/example/k/k.libsonnet": jsonnetLib,
			"lib/k.libsonnet":                         `(import 'github.com/example/k/k.libsonnet') + { viaLib:: true }`,
			"apps/main.jsonnet":                       `local k = import 'k.libsonnet'; { cm: k.configMap('vendored'), sa: k.serviceAccount('vendored'), checked: if k.viaLib then null else error 'lib/ not searched' }`,
		},
		file: "main.jsonnet",
		opts: render.Jsonnet{LibPaths: []string{"vendor", "lib"}},
		cli:  []string{"-J", "vendor", "-J", "lib"},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeTree(t, root, tc.files)
			opts := render.DefaultOptions()
			opts.Jsonnet.LibPaths, opts.Jsonnet.ExtStr, opts.Jsonnet.ExtCode = tc.opts.LibPaths, tc.opts.ExtStr, tc.opts.ExtCode
			opts.Jsonnet.TLAStr, opts.Jsonnet.TLACode = tc.opts.TLAStr, tc.opts.TLACode
			objs, err := render.Read(t.Context(), root, filepath.Join(root, "apps"), opts)
			if err != nil {
				t.Fatal(err)
			}
			var got []map[string]any
			for _, o := range objs {
				if o.Source != "apps/"+tc.file {
					t.Errorf("%s comes from %s", o.Ref(), o.Source)
				}
				got = append(got, o.Obj.Object)
			}
			// The CLI runs from the repository root, as the paths cronsync
			// takes are the repository's.
			out := runTool(t, root, "jsonnet", append(slices.Clone(tc.cli), "apps/"+tc.file)...)
			var v any
			if err := json.Unmarshal([]byte(out), &v); err != nil {
				t.Fatal(err)
			}
			want := manifestsOf(v)
			if len(want) == 0 || !reflect.DeepEqual(got, want) {
				t.Errorf("cronsync rendered\n%v\nthe jsonnet CLI\n%v", got, want)
			}
		})
	}
}

// manifestsOf flattens the CLI's output by the rules the README gives,
// written again here so that the test does not check cronsync against
// itself: objects with apiVersion and kind, arrays element by element,
// other objects field by field in key order, null as nothing.
func manifestsOf(v any) []map[string]any {
	switch v := v.(type) {
	case []any:
		var out []map[string]any
		for _, e := range v {
			out = append(out, manifestsOf(e)...)
		}
		return out
	case map[string]any:
		if v["apiVersion"] != nil && v["kind"] != nil {
			return []map[string]any{v}
		}
		var out []map[string]any
		for _, k := range slices.Sorted(maps.Keys(v)) {
			out = append(out, manifestsOf(v[k])...)
		}
		return out
	}
	return nil
}
