package render

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"testing"
)

func TestScanImports(t *testing.T) {
	for _, tc := range []struct {
		src  string
		want []jsonnetImport
	}{
		{`local a = import 'a.libsonnet'; importstr "b.txt" + importbin @'c''d.bin'`,
			[]jsonnetImport{{"a.libsonnet", true}, {"b.txt", false}, {"c'd.bin", false}}},
		{"// import 'no.libsonnet'\n# import 'no2'\n/* import 'no3' */ import /* here */ 'yes.libsonnet'",
			[]jsonnetImport{{"yes.libsonnet", true}}},
		{`{ s: "import 'no.libsonnet'", t: 'x\'import "no"', u: import "dir/\u0061.jsonnet" }`,
			[]jsonnetImport{{"dir/a.jsonnet", true}}},
		{"local b = |||\n  import 'inside.libsonnet'\n|||;\nlocal c = import 'after.libsonnet';",
			[]jsonnetImport{{"after.libsonnet", true}}},
		{`local important = 1; local imports = 2; myimport 'x'`, nil},
	} {
		if got := scanImports(tc.src); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%q:\n got %v\nwant %v", tc.src, got, tc.want)
		}
	}
}

// Before a file is evaluated, every candidate its imports are looked up
// at is asked for, in the order the evaluation looks, and only those may
// be looked at; an import the scan misses is asked for when the
// evaluation names it, and the file evaluated again.
func TestJsonnetAhead(t *testing.T) {
	root := t.TempDir()
	write := func(p, content string) {
		full := filepath.Join(root, p)
		os.MkdirAll(filepath.Dir(full), 0o755)
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("lib/k.libsonnet", `{ cm(name):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name }, data: { v: importstr 'v.txt', w: (import 'w.libsonnet') } } }`)
	write("lib/v.txt", "from-lib")
	write("lib/w.libsonnet", `'w'`)
	write("app/main.jsonnet", `local k = import 'k.libsonnet'; { a: k.cm('a') }`)
	// A text block the scan ends too early (its last line has the
	// block's own indentation: content, to Jsonnet) hides the import
	// after it in what the scan takes for a string.
	write("tricky/main.jsonnet", "local t = |||\n  a\n  ||| + 'x';\n  ' ;\n|||;\nlocal k = import 'k.libsonnet';\n{ a: k.cm('t') }")
	for _, tc := range []struct {
		dir         string
		want        []string
		evaluations int
	}{
		{"app", []string{"app/main.jsonnet", "app/k.libsonnet", "lib/k.libsonnet", "lib/v.txt", "lib/w.libsonnet"}, 1},
		{"tricky", []string{"tricky/main.jsonnet", "tricky/k.libsonnet", "lib/k.libsonnet", "lib/v.txt", "lib/w.libsonnet"}, 2},
	} {
		t.Run(tc.dir, func(t *testing.T) {
			var asked []string
			evaluations := 0
			opts := DefaultOptions()
			opts.Jsonnet.LibPaths = []string{"lib"}
			opts.Jsonnet.Evaluate = func(ctx context.Context, req JsonnetRequest) (string, error) {
				evaluations++
				return EvaluateJsonnet(ctx, req)
			}
			need := func(_ context.Context, p string, whole bool) error {
				if !slices.Contains(asked, p) {
					asked = append(asked, p)
				}
				return nil
			}
			objs, err := read(context.Background(), root, filepath.Join(root, tc.dir), opts, need)
			if err != nil || len(objs) != 1 {
				t.Fatalf("%d objects, %v", len(objs), err)
			}
			if v, _, _ := unstructuredString(objs[0].Obj.Object, "data", "v"); v != "from-lib" {
				t.Errorf("data.v = %q", v)
			}
			var files []string
			for _, p := range asked {
				if filepath.Ext(p) != "" {
					files = append(files, p)
				}
			}
			if !slices.Equal(files, tc.want) {
				t.Errorf("asked for\n %v\nwant\n %v", files, tc.want)
			}
			if evaluations != tc.evaluations {
				t.Errorf("%d evaluations, want %d", evaluations, tc.evaluations)
			}
		})
	}
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	var v any = obj
	for _, f := range fields {
		m, ok := v.(map[string]any)
		if !ok {
			return "", false, nil
		}
		v = m[f]
	}
	s, ok := v.(string)
	return s, ok, nil
}
