package render

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func write(t *testing.T, root string, files map[string]string) {
	t.Helper()
	for path, content := range files {
		full := filepath.Join(root, filepath.FromSlash(path))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func refs(objs []*Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Ref()+" @"+o.Source)
	}
	return out
}

func TestReadOrderAndShapes(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"b.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n" +
			"---\n# only a comment\n---\n" +
			"apiVersion: v1\nkind: Secret\nmetadata: {name: b2, namespace: x}\n",
		"a/list.yml": "apiVersion: v1\nkind: List\nitems:\n" +
			"- {apiVersion: v1, kind: ConfigMap, metadata: {name: l1}}\n" +
			"- {apiVersion: v1, kind: ConfigMap, metadata: {name: l2}}\n",
		"a/c.json":        `{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}`,
		"a/empty.yaml":    "",
		"notes.md":        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ignored}\n",
		".hidden.yaml":    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: hidden}\n",
		".github/ci.yaml": "on: push\n",
		"C.YAML":          "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: upper}\n",
	})
	objs, err := Read(t.Context(), root, root, Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"configmap/upper @C.YAML",
		"serviceaccount/sa @a/c.json",
		"configmap/l1 @a/list.yml",
		"configmap/l2 @a/list.yml",
		"configmap/b @b.yaml",
		"secret/b2 -n x @b.yaml",
	}
	// os.ReadDir sorts by byte order: "C.YAML" < "a" < "b.yaml".
	if got := refs(objs); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("got\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if objs[5].Doc != 3 {
		t.Errorf("secret/b2 is document %d of b.yaml, want 3", objs[5].Doc)
	}
}

func TestReadRefusals(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"ok/cm.yaml":   "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n",
		"big.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: big}\ndata: {x: " + strings.Repeat("a", 200) + "}\n",
		"gen.yaml":     "apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n",
		"scalar.yaml":  "just a string\n",
		"badlist.yaml": "apiVersion: v1\nkind: List\nitems:\n- {kind: ConfigMap, metadata: {name: x}}\n",
	})
	outside := t.TempDir()
	write(t, outside, map[string]string{"secret.yaml": "apiVersion: v1\nkind: Secret\nmetadata: {name: stolen}\n"})
	for link, target := range map[string]string{
		"abs.yaml":        filepath.Join(outside, "secret.yaml"),
		"rel.yaml":        "../" + filepath.Base(outside) + "/secret.yaml",
		"dirlink":         outside,
		"inside.yaml":     "ok/cm.yaml",
		"chain.yaml":      "inside.yaml",
		"loop/self":       ".",
		"dangling.yaml":   "nothing-here.yaml",
		"ok/up/back.yaml": "../../ok/cm.yaml",
	} {
		full := filepath.Join(root, link)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, full); err != nil {
			t.Fatal(err)
		}
	}
	objs, err := Read(t.Context(), root, root, Options{MaxFileBytes: 100})
	var msgs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var me *ManifestError
		if !errors.As(e, &me) {
			t.Errorf("%v is not a ManifestError", e)
		}
		msgs = append(msgs, e.Error())
	}
	all := strings.Join(msgs, "\n")
	for _, want := range []string{
		`abs.yaml: symlink to "` + filepath.Join(outside, "secret.yaml") + `" leaves the repository`,
		`rel.yaml: symlink to "../`,
		`dirlink: symlink to "` + outside + `" leaves the repository`,
		`dangling.yaml: broken symlink to "nothing-here.yaml"`,
		"big.yaml: file is 265 bytes, over the limit of 100",
		"gen.yaml, document 1: ConfigMap: metadata.generateName cannot be applied",
		"scalar.yaml, document 1: not a Kubernetes object: the document is a string",
		"badlist.yaml, document 1: List item 0: not a Kubernetes object: apiVersion missing",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("errors lack %q; got:\n%s", want, all)
		}
	}
	if strings.Contains(all, "stolen") {
		t.Errorf("content from outside the repository was read")
	}
	// Links inside the repository are followed, and a loop ends.
	got := strings.Join(refs(objs), "\n")
	for _, want := range []string{"configmap/ok @chain.yaml", "configmap/ok @inside.yaml", "configmap/ok @ok/cm.yaml"} {
		if !strings.Contains(got, want) {
			t.Errorf("objects lack %q; got:\n%s", want, got)
		}
	}
}

// A forgotten "---" makes one mapping of two objects; read leniently, the
// last value of each key would win and one object would vanish.
func TestDuplicateKeys(t *testing.T) {
	cm := func(name string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  a: x\n"
	}
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"forgotten separator", "two.yaml", cm("first") + cm("second"),
			`two.yaml, document 1: key "apiVersion" appears twice, on lines 1 and 7: is a "---" missing between two objects?`},
		{"in a later document", "later.yaml", "# head\n---\n" + cm("ok") + "---\n\n" + cm("first") + cm("second"),
			`later.yaml, document 3: key "apiVersion" appears twice, on lines 11 and 17: is a "---" missing`},
		{"nested", "nested.yaml", cm("n") + "  b: y\n  a: z\n",
			`nested.yaml, document 1: key "data.a" appears twice, on lines 6 and 8`},
		{"in a list item", "list.yaml", "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  kind: Secret\n  metadata: {name: x}\n",
			`list.yaml, document 1: key "items[0].kind" appears twice, on lines 5 and 6`},
		// YAML types keys and JSON does not: 1 and "1" are one JSON key.
		{"keys JSON reads as one", "typed.yaml", cm("t") + "  1: one\n  \"1\": two\n",
			`typed.yaml, document 1: key "data.1" appears twice, on lines 7 and 8`},
		{"a number written two ways", "octal.yaml", cm("o") + "  01: one\n  1: two\n",
			`octal.yaml, document 1: key "data.1" appears twice, on lines 7 and 8`},
		{"JSON", "j.json", "{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\",\n \"metadata\": {\"name\": \"j\"},\n \"kind\": \"Secret\"}",
			`j.json, document 1: key "kind" appears twice, on lines 1 and 3`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, map[string]string{tc.file: tc.content})
			_, err := Read(t.Context(), root, root, Options{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %s", err, tc.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("not one line: %q", err)
			}
		})
	}
}

// kustomize parses its inputs leniently itself; they are checked first.
func TestDuplicateKeysInKustomizeInputs(t *testing.T) {
	root := t.TempDir()
	write(t, root, map[string]string{
		"k/kustomization.yaml": "resources: [cm.yaml]\nnamespace: a\nnamespace: b\n",
		"k/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
		"j/kustomization.yaml": "resources: [cm.yaml]\n",
		"j/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\nkind: Secret\n",
	})
	_, err := Read(t.Context(), root, root, Options{})
	for _, want := range []string{
		`k/kustomization.yaml, document 1: key "namespace" appears twice, on lines 2 and 3`,
		`j/cm.yaml, document 1: key "kind" appears twice, on lines 2 and 4`,
	} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("got %v, want %s", err, want)
		}
	}
}

// Only a top-level sops key with a MAC makes a file SOPS's: a manifest
// that mentions both words is read as it is.
func TestLooksEncrypted(t *testing.T) {
	for _, tc := range []struct {
		data, format string
		want         bool
	}{
		{"apiVersion: v1\nkind: Secret\nsops:\n    mac: ENC[x]\n", "yaml", true},
		{"apiVersion: v1\nkind: ConfigMap\ndata:\n  .sops.yaml: |\n    sops:\n      mac: x\n", "yaml", false},
		// JSON is YAML: sops's YAML store reads an encrypted JSON file
		// named .yaml, and a flow mapping, as encrypted.
		{"{\n\"apiVersion\": \"v1\", \"kind\": \"Secret\",\n\"sops\": {\"mac\": \"ENC[x]\"}}", "yaml", true},
		{"{apiVersion: v1, kind: Secret, sops: {mac: 'ENC[x]'}}", "yaml", true},
		{"apiVersion: v1\nkind: ConfigMap\ndata: {note: \"sops: mac: x\"}\n", "yaml", false},
		{`{"apiVersion": "v1", "kind": "Secret", "sops": {"mac": "ENC[x]"}}`, "json", true},
		{`{"apiVersion": "v1", "kind": "ConfigMap", "data": {"note": "\"sops\" keeps a \"mac\""}}`, "json", false},
		{`{"data": "ENC[x]", "sops": {"mac": "ENC[y]"}}`, "binary", true},
		{"KEY=value\nsops_mac=ENC[x]\n", "dotenv", true},
		{"KEY=value\n", "dotenv", false},
	} {
		if got := looksEncrypted([]byte(tc.data), tc.format); got != tc.want {
			t.Errorf("%s %q: %v", tc.format, tc.data, got)
		}
	}
}
