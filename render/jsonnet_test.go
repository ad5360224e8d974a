package render

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/budget"
)

const cmJsonnet = `function(name) { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name } }`

func TestJsonnetFlattening(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"lib/cm.libsonnet": cmJsonnet,
		// Never evaluated by itself, though it would render.
		"apps/alone.libsonnet": "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'libsonnet' } }",
		"apps/a.jsonnet": `local cm = import '../lib/cm.libsonnet';
{
  z: cm('z-field'),
  a: { nested: cm('a-nested'), list: [cm('a-list-0'), [cm('a-list-1')]] },
  none: null,
  items: { apiVersion: 'v1', kind: 'List', items: [cm('from-list')] },
}`,
		"apps/b.jsonnet": `[(import '../lib/cm.libsonnet')('array-' + i) for i in [1, 2]]`,
		"apps/c.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: yaml}\n",
	})
	objs, err := Read(t.Context(), root, filepath.Join(root, "apps"), DefaultOptions())
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"configmap/a-list-0 @apps/a.jsonnet", "configmap/a-list-1 @apps/a.jsonnet", "configmap/a-nested @apps/a.jsonnet",
		"configmap/from-list @apps/a.jsonnet", "configmap/z-field @apps/a.jsonnet",
		"configmap/array-1 @apps/b.jsonnet", "configmap/array-2 @apps/b.jsonnet",
		"configmap/yaml @apps/c.yaml",
	}
	if got := refs(objs); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
	for _, o := range objs {
		if strings.HasSuffix(o.Source, ".jsonnet") && o.Plain {
			t.Errorf("%s is marked plain: its blob alone does not decide it", o.Ref())
		}
	}
}

func TestJsonnetVariablesAndLibPaths(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"vendor/one/x.libsonnet": "{ from: 'one' }",
		"vendor/two/x.libsonnet": "{ from: 'two' }",
		"apps/main.jsonnet": `local x = import 'x.libsonnet';
function(replicas=1, suffix='default') {
  apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'cm-' + suffix },
  data: { env: std.extVar('env'), n: std.toString(std.extVar('n') + replicas), from: x.from },
}`,
	})
	opts := DefaultOptions()
	opts.Jsonnet.LibPaths = []string{"vendor/one", "vendor/two"}
	opts.Jsonnet.ExtStr = map[string]string{"env": "prod"}
	opts.Jsonnet.ExtCode = map[string]string{"n": "40"}
	opts.Jsonnet.TLACode = map[string]string{"replicas": "2"}
	objs, err := Read(t.Context(), root, filepath.Join(root, "apps"), opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(objs) != 1 {
		t.Fatalf("%d objects", len(objs))
	}
	data, _ := objs[0].Obj.Object["data"].(map[string]any)
	// The last library path wins, as with the CLI's -J; suffix keeps its
	// default.
	if objs[0].Obj.GetName() != "cm-default" || !reflect.DeepEqual(data, map[string]any{"env": "prod", "n": "42", "from": "two"}) {
		t.Errorf("got %s %v", objs[0].Obj.GetName(), data)
	}
}

// Every fault is one line naming the file, and stops nothing else from
// being reported.
func TestJsonnetFaults(t *testing.T) {
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.libsonnet"), []byte("{ token: 'x' }"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, program string
		budget        time.Duration
		want          string
	}{
		{"syntax error", "{ a: }", 0, `apps/f.jsonnet: jsonnet: apps/f.jsonnet:1:6-7 Unexpected: "}" while parsing terminal`},
		{"runtime error", "local x = 1;\n{ a: error 'no ' + x }", 0, "apps/f.jsonnet: jsonnet: RUNTIME ERROR: no 1 (at apps/f.jsonnet:2:"},
		{"import through ..", "import '../../x.libsonnet'", 0, `import "../../x.libsonnet" leaves the repository`},
		{"absolute import", "import '" + filepath.Join(outside, "secret.libsonnet") + "'", 0, "is an absolute path: only files inside the repository can be imported"},
		{"importstr outside", "{ a: importstr '../../../etc/passwd' }", 0, "leaves the repository"},
		{"import through a symlink", "import '../link/secret.libsonnet'", 0, `import "link/secret.libsonnet" leaves the repository through a symlink`},
		{"missing import", "import 'nope.libsonnet'", 0, `import "nope.libsonnet": no such file next to apps/f.jsonnet`},
		{"string leaf", "{ a: { b: 'text' } }", 0, "apps/f.jsonnet: a.b is a string, not an object or an array of objects"},
		{"number at the top", "42", 0, "apps/f.jsonnet: the file's value is a number"},
		{"leaf in an array", "[{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'x' } }, true]", 0, "apps/f.jsonnet: [1] is a boolean"},
		{"object without a name", "{ x: { apiVersion: 'v1', kind: 'ConfigMap' } }", 0, "apps/f.jsonnet: x: ConfigMap: metadata.name is missing"},
		{"imported YAML with a key twice", "std.parseYaml(importstr '../data/values.yaml')", 0, `RUNTIME ERROR: data/values.yaml, document 1: key "replicas" appears twice, on lines 1 and 3 (at apps/f.jsonnet:1:`},
		{"endless recursion", "local f(x) = f(x + 1) + 1; f(0)", 0, "max stack frames exceeded"},
		{"past its time", "std.foldl(function(a, i) a + std.foldl(function(b, j) b + j, std.range(1, 1e4), 0), std.range(1, 1e5), 0)", 300 * time.Millisecond, "apps/f.jsonnet: jsonnet: evaluation did not finish within 300ms: does it recurse or loop without end?"},
		{"past its heap", "std.length(std.repeat([std.makeArray(1e4, function(i) i)], 1e6))", 0, "apps/f.jsonnet: jsonnet: evaluation exceeded its memory budget of 64 MiB"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, map[string]string{"apps/f.jsonnet": tc.program, "data/values.yaml": "replicas: 1\nimage: x\nreplicas: 2\n"})
			if err := os.Symlink(outside, filepath.Join(root, "link")); err != nil {
				t.Fatal(err)
			}
			opts := DefaultOptions()
			opts.Jsonnet.Budget = budget.Limits{Time: 20 * time.Second, Heap: 64 << 20}
			// In a process of its own, as the command evaluates: an
			// evaluation past its budget ends with it.
			opts.Jsonnet.Evaluate = JsonnetInChild(os.Args[0])
			if tc.budget > 0 {
				opts.Jsonnet.Budget.Time = tc.budget
			}
			_, err := Read(t.Context(), root, filepath.Join(root, "apps"), opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v\nwant %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
}
