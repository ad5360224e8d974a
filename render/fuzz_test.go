package render

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/getsops/sops/v3"
	"github.com/getsops/sops/v3/aes"
	sopsage "github.com/getsops/sops/v3/age"
	yamlv3 "go.yaml.in/yaml/v3"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

// The fuzz targets of what a repository sends the render package. `go test`
// runs each on its seeds (and on testdata/fuzz/<Target>, where every input
// a fuzzing run found is pinned); `make fuzz` fuzzes each in turn.

// within runs fn and fails t when it has not returned after d: the fuzzer
// then keeps the input that hangs, where a check after the call would
// never be reached.
func within(t *testing.T, d time.Duration, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("%s still runs after %v", what, d)
	}
}

// fuzzDeadline fails an input that takes longer than any file of a real
// repository should: a parser that is slow on some shape of input is a run
// that never ends.
func fuzzDeadline(t *testing.T, start time.Time, what string) {
	t.Helper()
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("%s took %v", what, d)
	}
}

// Whatever a manifest file holds, reading it ends, every error is one line
// naming the file and its document, every object has what an object needs,
// and documents keep their order. A document it accepts lost no key: each
// mapping of the YAML holds as many keys as the object made of it, so two
// keys that collapse into one JSON key (`1` and `"1"`, a forgotten "---")
// are refused, not merged.
func FuzzParseDocs(f *testing.F) {
	cm := func(name string) string {
		return "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: " + name + "\ndata:\n  a: x\n"
	}
	for _, s := range []string{
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: b}\n---\n# only a comment\n---\napiVersion: v1\nkind: Secret\nmetadata: {name: b2, namespace: x}\n",
		"apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: l1}}\n- {apiVersion: v1, kind: ConfigMap, metadata: {name: l2}}\n",
		`{"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "sa"}}`,
		"",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {generateName: x-}\n",
		"just a string\n",
		"apiVersion: v1\nkind: List\nitems:\n- {kind: ConfigMap, metadata: {name: x}}\n",
		cm("first") + cm("second"),
		"# head\n---\n" + cm("ok") + "---\n\n" + cm("first") + cm("second"),
		cm("n") + "  b: y\n  a: z\n",
		"apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: ConfigMap\n  kind: Secret\n  metadata: {name: x}\n",
		"{\"apiVersion\": \"v1\", \"kind\": \"ConfigMap\",\n \"metadata\": {\"name\": \"j\"},\n \"kind\": \"Secret\"}",
		cm("n") + "  1: one\n  \"2\": two\n",
		"base: &b {apiVersion: v1, kind: ConfigMap}\n",
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {a: [1, 2, {b: c}]}\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		objs, errs := parseDocs(data, "f.yaml", 1)
		fuzzDeadline(t, start, "parseDocs")
		for _, err := range errs {
			var me *ManifestError
			if !errors.As(err, &me) || me.Source != "f.yaml" {
				t.Errorf("%v: not a ManifestError naming the file", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("not one line: %q", err.Error())
			}
		}
		last := 0
		for _, o := range objs {
			if o.Doc < last || o.Doc < 1 {
				t.Errorf("document %d after %d", o.Doc, last)
			}
			last = o.Doc
			if err := checkObject(o.Obj); err != nil || o.Obj.IsList() {
				t.Errorf("an object that is not one: %v, %v", o.Obj.Object, err)
			}
		}
		// The same documents, one at a time, against their YAML.
		docs := utilyaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			raw, err := docs.Read()
			if err != nil {
				if err != io.EOF && len(errs) == 0 {
					t.Errorf("the reader failed (%v), yet parseDocs reported nothing", err)
				}
				return
			}
			j, err := toJSON(raw)
			if err != nil {
				continue
			}
			var v any
			if json.Unmarshal(j, &v) != nil {
				continue
			}
			var node yamlv3.Node
			if yamlv3.Unmarshal(raw, &node) != nil || !plainTree(&node) {
				continue // anchors and merge keys may repeat keys by design
			}
			if len(node.Content) == 1 {
				if path, ok := sameShape(node.Content[0], v, ""); !ok {
					t.Errorf("accepted, but the object lost a key at %q: %s", path, j)
				}
			}
		}
	})
}

// plainTree says whether n uses no anchor, alias, merge key or tag, so that
// its keys are the object's keys one for one.
func plainTree(n *yamlv3.Node) bool {
	if n.Anchor != "" || n.Kind == yamlv3.AliasNode || (n.Tag != "" && !strings.HasPrefix(n.Tag, "!!")) || n.Tag == "!!merge" || n.Tag == "!!binary" {
		return false
	}
	if n.Kind == yamlv3.MappingNode {
		for i := 0; i < len(n.Content); i += 2 {
			if n.Content[i].Kind != yamlv3.ScalarNode || n.Content[i].Value == "<<" {
				return false
			}
		}
	}
	for _, c := range n.Content {
		if !plainTree(c) {
			return false
		}
	}
	return true
}

// sameShape compares the mappings and sequences of a YAML tree with the
// JSON value made of it: as many keys, as many items.
func sameShape(n *yamlv3.Node, v any, at string) (string, bool) {
	switch n.Kind {
	case yamlv3.MappingNode:
		m, ok := v.(map[string]any)
		if !ok {
			return at, true // a shape of YAML that JSON has no word for
		}
		if len(m) != len(n.Content)/2 {
			return at, false
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i].Value
			if p, ok := sameShape(n.Content[i+1], m[k], at+"."+k); !ok {
				return p, false
			}
		}
	case yamlv3.SequenceNode:
		l, ok := v.([]any)
		if !ok {
			return at, true
		}
		if len(l) != len(n.Content) {
			return at, false
		}
		for i, c := range n.Content {
			if p, ok := sameShape(c, l[i], at+"[]"); !ok {
				return p, false
			}
		}
	}
	return at, true
}

// Substitution as Flux does it: text with no reference is left as it is,
// text whose every "$" is escaped comes back unescaped, and no text makes
// more than a bounded output however its references nest (a 60-byte
// commit must not make gigabytes of a short variable). Nothing panics.
func FuzzSubstitute(f *testing.F) {
	for _, s := range []string{
		"x ${A} y", "${A}${A}", "$A and $${A} and $$A", "${B:=bee}", "${B:-bee}", "${B=bee}",
		"${B:+bee}", "${B:?bee}", "${A:-bee}", "${EMPTY}", "${EMPTY:-d}", "${B:-${A}}", "${B:-x/y}",
		"${#A}", "${A^}", "${A^^}", "${A,}", "${A,,}", "${A:1:3}", "${A:-2}", "${A: -2}", "${P#*.}", "${P##*.}",
		"${P%.*}", "${P%%.*}", "${P/./-}", "${P//./-}", "${P/#a/-}", "${P/%c/-}", "no refs $ here", "trailing $",
		"${my-key}", "${1A}", "${}", "${A", "${A:-x", "a: ${MISSING}\nb: ${OTHER}\n", "${B:-a\\}b}",
		"${A///${A///${A}}}",
	} {
		f.Add(s, "alpha", true)
	}
	// Found by reading, not by the fuzzer: nine levels make 60 MB.
	f.Add(strings.Repeat("${A///", 9)+"${A}"+strings.Repeat("}", 9), "alpha", false)
	f.Fuzz(func(t *testing.T, text, value string, strict bool) {
		value = strings.ReplaceAll(value, "\n", "")
		s := Substitute{Strict: strict, Vars: map[string]string{"A": value, "EMPTY": "", "N": "3", "P": "a.b.c"}}
		start := time.Now()
		out, err := s.Eval(text)
		fuzzDeadline(t, start, "Eval")
		if err == nil && len(out) > len(text)+maxSubstitutedGrowth {
			t.Fatalf("%d bytes of text made %d", len(text), len(out))
		}
		if !strings.Contains(text, "${") && !strings.Contains(text, "$$") && (err != nil || out != text) {
			t.Errorf("no reference, yet %q became %q (%v)", text, out, err)
		}
		if unset, ok := errors.AsType[*UnsetError](err); ok {
			for _, n := range unset.Names {
				if !VarNameRE.MatchString(n) || s.Vars[n] != "" || !strings.Contains(text, n) {
					t.Errorf("%q named unset", n)
				}
			}
		}
		escaped := strings.ReplaceAll(text, "$", "$$")
		if got, err := s.Eval(escaped); err != nil || got != text {
			t.Errorf("escaped %q came back as %q (%v)", escaped, got, err)
		}
	})
}

// fullStore is the store of format, as decrypt picks it, with the methods
// that encrypt.
func fullStore(format string) interface {
	LoadPlainFile([]byte) (sops.TreeBranches, error)
	LoadEncryptedFile([]byte) (sops.Tree, error)
	EmitEncryptedFile(sops.Tree) ([]byte, error)
} {
	return storeFor(format).(interface {
		LoadPlainFile([]byte) (sops.TreeBranches, error)
		LoadEncryptedFile([]byte) (sops.Tree, error)
		EmitEncryptedFile(sops.Tree) ([]byte, error)
	})
}

// sopsEncrypt encrypts plain for recipient as the sops CLI does, in
// process, so that the seeds are real SOPS files of every store.
func sopsEncrypt(t testing.TB, format, plain, recipient string) []byte {
	t.Helper()
	store := fullStore(format)
	branches, err := store.LoadPlainFile([]byte(plain))
	if err != nil {
		t.Fatal(err)
	}
	mk, err := sopsage.MasterKeyFromRecipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	tree := sops.Tree{Branches: branches, Metadata: sops.Metadata{
		KeyGroups: []sops.KeyGroup{{mk}}, UnencryptedSuffix: "_unencrypted", Version: "3.13.3", LastModified: time.Unix(1767225600, 0).UTC(),
	}}
	key, errs := tree.GenerateDataKey()
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	cipher := aes.NewCipher()
	mac, err := tree.Encrypt(key, cipher)
	if err != nil {
		t.Fatal(err)
	}
	if tree.Metadata.MessageAuthenticationCode, err = cipher.Encrypt(mac, key, tree.Metadata.LastModified.Format(time.RFC3339)); err != nil {
		t.Fatal(err)
	}
	out, err := store.EmitEncryptedFile(tree)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var sopsFormats = []string{"yaml", "json", "dotenv", "binary"}

// Whatever a file holds, the first look (looksEncrypted) and decryption
// end, and they agree with sops: a file that sops's own store reads as
// encrypted (metadata with a MAC) is never taken for a plain manifest, to
// be applied with its ENC[...] values. Decryption with the run's key fails
// with a one-line error naming the file, or gives back a document of the
// file's store; never a panic.
func FuzzSopsFile(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	keyFile := filepath.Join(f.TempDir(), "age.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	recipient := id.Recipient().String()
	for i, plain := range []string{
		"apiVersion: v1\nkind: Secret\nmetadata: {name: s}\nstringData:\n  password: hunter2\n",
		`{"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "dg=="}}`,
		"KEY=value\nOTHER=x\n",
		"binary \x00\x01 data",
	} {
		enc := sopsEncrypt(f, sopsFormats[i], plain, recipient)
		d := &decryptor{opts: Sops{AgeKeyFile: keyFile}}
		if got, err := d.decrypt(f.Context(), enc, "seed", sopsFormats[i]); err != nil || !looksEncrypted(enc, sopsFormats[i]) {
			f.Fatalf("seed %d does not open: %v", i, err)
		} else if i == 3 && string(got) != plain {
			f.Fatalf("seed %d opens to %q", i, got)
		}
		f.Add(enc, uint8(i))
	}
	for _, tc := range []struct {
		data   string
		format uint8
	}{
		{"apiVersion: v1\nkind: Secret\nsops:\n    mac: ENC[x]\n", 0},
		{"apiVersion: v1\nkind: ConfigMap\ndata:\n  .sops.yaml: |\n    sops:\n      mac: x\n", 0},
		{`{"apiVersion": "v1", "kind": "Secret", "sops": {"mac": "ENC[x]"}}`, 1},
		{`{"apiVersion": "v1", "kind": "ConfigMap", "data": {"note": "\"sops\" keeps a \"mac\""}}`, 1},
		{"KEY=value\nsops_mac=ENC[x]\n", 2},
		{`{"data": "ENC[x]", "sops": {"mac": "ENC[y]"}}`, 3},
	} {
		f.Add([]byte(tc.data), tc.format)
	}
	f.Fuzz(func(t *testing.T, data []byte, which uint8) {
		format := sopsFormats[int(which)%len(sopsFormats)]
		start := time.Now()
		looks := looksEncrypted(data, format)
		tree, err := fullStore(format).LoadEncryptedFile(data)
		if err == nil && tree.Metadata.MessageAuthenticationCode != "" && !looks {
			t.Fatalf("sops reads this %s file as encrypted, but looksEncrypted does not", format)
		}
		if !looks {
			return
		}
		d := &decryptor{opts: Sops{AgeKeyFile: keyFile}}
		var plain []byte
		within(t, 10*time.Second, "decrypt", func() { plain, err = d.decrypt(t.Context(), data, "s.enc", format) })
		fuzzDeadline(t, start, "decrypt")
		if err != nil {
			_, manifest := errors.AsType[*ManifestError](err)
			_, key := errors.AsType[*SopsKeyError](err)
			if !manifest && !key || !strings.Contains(err.Error(), "s.enc") {
				t.Errorf("%T %v: not an error naming the file", err, err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("not one line: %q", err)
			}
			return
		}
		if _, err := fullStore(format).LoadPlainFile(plain); err != nil {
			t.Errorf("decrypted to what its store cannot read: %v", err)
		}
	})
}

// A Secret's data values are opened when they hold a SOPS document of the
// store their key names, refused with a one-line error naming the Secret
// and the key when they hold one of another store, and otherwise left
// byte for byte as they are.
func FuzzSecretData(f *testing.F) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		f.Fatal(err)
	}
	keyFile := filepath.Join(f.TempDir(), "age.txt")
	if err := os.WriteFile(keyFile, []byte(id.String()+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	yamlDoc := sopsEncrypt(f, "yaml", "password: hunter2\n", id.Recipient().String())
	f.Add("config.yaml", yamlDoc)
	f.Add("config", yamlDoc)
	f.Add("app.env", sopsEncrypt(f, "dotenv", "KEY=value\n", id.Recipient().String()))
	f.Add("blob.bin", sopsEncrypt(f, "binary", "\x00\x01", id.Recipient().String()))
	f.Add("plain", []byte("just a value"))
	f.Add("x.json", []byte(`{"sops": {"mac": "x"}}`))
	f.Fuzz(func(t *testing.T, key string, value []byte) {
		encoded := base64.StdEncoding.EncodeToString(value)
		o := &Object{Source: "s.yaml", Doc: 1, Obj: &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": "v1", "kind": "Secret", "metadata": map[string]any{"name": "s"},
			"data": map[string]any{key: encoded, "other": "dg=="},
		}}}
		d := &decryptor{opts: Sops{AgeKeyFile: keyFile}}
		var err error
		within(t, 10*time.Second, "decryptSecretData", func() {
			err = decryptSecretData(t.Context(), []*Object{o}, func() *decryptor { return d })
		})
		data := o.Obj.Object["data"].(map[string]any)
		if data["other"] != "dg==" && key != "other" {
			t.Errorf("another key changed: %v", data["other"])
		}
		encrypted := looksEncrypted(value, sopsFormat(key))
		switch {
		case err != nil:
			if !strings.Contains(err.Error(), "secret/s") || !strings.Contains(err.Error(), "s.yaml") || strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("not one line naming the Secret and its file: %q", err)
			}
			if !encrypted && sopsFormatOf(value) == "" {
				t.Errorf("a value that is no SOPS document was refused: %v", err)
			}
		case encrypted:
			if !o.Decrypted || data[key] == encoded {
				t.Errorf("opened, yet not marked or not changed")
			}
		case data[key] != encoded || o.Decrypted:
			t.Errorf("a plain value changed: %q became %v", encoded, data[key])
		}
	})
}

// A Jsonnet file's value is flattened into every object it holds, each
// emitted once with a path that leads back to it in the value, and
// nothing else: whatever the value's shape, in time and memory in
// proportion to it (a value nested ten thousand deep is a few kilobytes of
// output).
func FuzzFlattenJsonnet(f *testing.F) {
	cm := `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}`
	for _, s := range []string{
		cm, "[" + cm + ", [" + cm + "]]", `{"z": ` + cm + `, "a": {"nested": ` + cm + `, "list": [` + cm + `]}, "none": null}`,
		`{"a-b": {"c d": [null, ` + cm + `]}, "\"q\"": ` + cm + `}`, `{"x": 1}`, `[1]`, `"s"`, `null`,
		`{"apiVersion": "v1", "kind": "List", "items": [` + cm + `]}`, `{"apiVersion": "v1"}`,
		strings.Repeat("[", 5000) + strings.Repeat("]", 5000),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, text string) {
		var v any
		if json.Unmarshal([]byte(text), &v) != nil {
			return
		}
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		start := time.Now()
		seen := map[string]bool{}
		emitted := 0
		err := flattenJsonnet(v, func(m map[string]any, at string) error {
			emitted++
			if seen[at] {
				t.Errorf("path %q emitted twice", at)
			}
			seen[at] = true
			got, ok := jsonnetPathValue(t, v, at)
			if gm, isMap := got.(map[string]any); !ok || !isMap || reflect.ValueOf(gm).UnsafePointer() != reflect.ValueOf(m).UnsafePointer() {
				t.Errorf("path %q does not lead to the object emitted", at)
			}
			return nil
		})
		fuzzDeadline(t, start, "flattenJsonnet")
		runtime.ReadMemStats(&after)
		if grown := after.TotalAlloc - before.TotalAlloc; grown > 64*uint64(len(text))+1<<20 {
			t.Errorf("flattening %d bytes of JSON allocated %d", len(text), grown)
		}
		objects, scalar := countManifests(v)
		if err == nil && (scalar || emitted != objects) || err != nil && !scalar {
			t.Errorf("emitted %d of %d objects; err %v, a scalar in the value: %v", emitted, objects, err, scalar)
		}
	})
}

// countManifests counts the objects flattening finds in v, and says
// whether v holds a value that is neither (which flattening refuses).
func countManifests(v any) (int, bool) {
	switch v := v.(type) {
	case nil:
		return 0, false
	case map[string]any:
		_, api := v["apiVersion"]
		_, kind := v["kind"]
		if api && kind {
			return 1, false
		}
		n, bad := 0, false
		for _, e := range v {
			c, b := countManifests(e)
			n, bad = n+c, bad || b
		}
		return n, bad
	case []any:
		n, bad := 0, false
		for _, e := range v {
			c, b := countManifests(e)
			n, bad = n+c, bad || b
		}
		return n, bad
	}
	return 0, true
}

// jsonnetPathValue follows a path as fieldPath writes it (a.b, ["a-b"],
// [0]) into v.
func jsonnetPathValue(t *testing.T, v any, at string) (any, bool) {
	for at != "" {
		switch {
		case strings.HasPrefix(at, `["`):
			dec := json.NewDecoder(strings.NewReader(at[1:]))
			var k string
			if err := dec.Decode(&k); err != nil {
				t.Errorf("path %q: %v", at, err)
				return nil, false
			}
			at = at[1+int(dec.InputOffset()):]
			if !strings.HasPrefix(at, "]") {
				return nil, false
			}
			at = at[1:]
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			v = m[k]
		case strings.HasPrefix(at, "["):
			end := strings.IndexByte(at, ']')
			i, err := strconv.Atoi(at[1:max(end, 1)])
			l, ok := v.([]any)
			if end < 0 || err != nil || !ok || i < 0 || i >= len(l) {
				return nil, false
			}
			v, at = l[i], at[end+1:]
		default:
			at = strings.TrimPrefix(at, ".")
			end := strings.IndexAny(at, ".[")
			if end < 0 {
				end = len(at)
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			v, at = m[at[:end]], at[end:]
		}
	}
	return v, true
}

// Kustomize and Jsonnet read through confined views of the repository:
// whatever path a kustomization or an import names (relative, absolute,
// with "..", through symlinks that leave), nothing outside the repository
// is read, listed or resolved.
func FuzzConfinement(f *testing.F) {
	base := f.TempDir()
	root, outside := filepath.Join(base, "repo"), filepath.Join(base, "outside")
	const stolen = "stolen-outside-content"
	for dir, files := range map[string]map[string]string{
		root: {
			"app/kustomization.yaml": "resources: [cm.yaml]\n",
			"app/cm.yaml":            "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n",
			"lib/x.libsonnet":        "{ a: 1 }",
			"main.jsonnet":           "import 'lib/x.libsonnet'",
		},
		outside: {"secret.yaml": stolen, "stolen-name.libsonnet": stolen},
	} {
		for p, c := range files {
			full := filepath.Join(dir, p)
			if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
				f.Fatal(err)
			}
			if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
				f.Fatal(err)
			}
		}
	}
	for link, target := range map[string]string{
		"app/escape.yaml": filepath.Join(outside, "secret.yaml"),
		"app/rel.yaml":    "../../outside/secret.yaml",
		"out":             outside,
		"app/up":          "..",
		"app/chain.yaml":  "rel.yaml",
		"lib/y.libsonnet": "../../outside/stolen-name.libsonnet",
		"inside.yaml":     "app/cm.yaml",
	} {
		if err := os.Symlink(target, filepath.Join(root, link)); err != nil {
			f.Fatal(err)
		}
	}
	for _, p := range []string{"app/cm.yaml", "app/escape.yaml", "app/rel.yaml", "out/secret.yaml", "app/up/out/secret.yaml",
		"app/chain.yaml", "../outside/secret.yaml", "app/../../outside/secret.yaml", filepath.Join(outside, "secret.yaml"), "out", "app/up/../outside",
		"lib/y.libsonnet", "out/stolen-name.libsonnet", "inside.yaml", "."} {
		f.Add(p, "main.jsonnet")
	}
	f.Add("x.libsonnet", "lib/main.jsonnet")
	f.Add("stolen-name.libsonnet", "out/a.jsonnet")
	f.Fuzz(func(t *testing.T, p, from string) {
		if strings.ContainsRune(p, 0) {
			return
		}
		abs := p
		if !filepath.IsAbs(p) {
			abs = root + "/" + p // not cleaned: the disk resolves ".." after a link
		}
		fsys := &confinedFS{FileSystem: filesys.MakeFsOnDisk(), root: root, virtual: map[string][]byte{}}
		if data, err := fsys.ReadFile(abs); err == nil && strings.Contains(string(data), stolen) {
			t.Fatalf("ReadFile(%q) read outside the repository", abs)
		}
		if file, err := fsys.Open(abs); err == nil {
			data, _ := io.ReadAll(io.LimitReader(file, 1<<20))
			file.Close()
			if strings.Contains(string(data), stolen) {
				t.Fatalf("Open(%q) read outside the repository", abs)
			}
		}
		if names, err := fsys.ReadDir(abs); err == nil {
			for _, n := range names {
				if strings.Contains(n, "stolen-name") || n == "secret.yaml" {
					t.Fatalf("ReadDir(%q) listed outside the repository: %v", abs, names)
				}
			}
		}
		if dir, _, err := fsys.CleanedAbs(abs); err == nil {
			if real, err := filepath.EvalSymlinks(string(dir)); err == nil && !inside(root, real) {
				t.Fatalf("CleanedAbs(%q) = %s, outside the repository", abs, dir)
			}
		}
		im := &confinedImporter{req: JsonnetRequest{Root: root, Jsonnet: Jsonnet{LibPaths: []string{"lib", from}}}, cache: map[string]*imported{}}
		contents, found, err := im.Import(from, p)
		if err == nil && (strings.Contains(contents.String(), stolen) || !filepath.IsLocal(found)) {
			t.Fatalf("import %q from %q found %q outside the repository", p, from, found)
		}
	})
}

// A kustomization, whatever it names (resources, components, patches,
// generators, Helm charts), is built from the repository alone: nothing
// outside it shows in the objects or in the errors, the build ends, and
// each error is one line naming the file.
func FuzzKustomization(f *testing.F) {
	outside := f.TempDir()
	const stolen = "stolen-outside-content"
	if err := os.WriteFile(filepath.Join(outside, "secret.yaml"), []byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: "+stolen+"}\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(outside, "kustomization.yaml"), []byte("resources: [secret.yaml]\n"), 0o644); err != nil {
		f.Fatal(err)
	}
	for _, k := range []string{
		"resources: [cm.yaml]\n",
		"resources: [escape.yaml]\n",
		"resources: [../out]\n",
		"resources: [" + outside + "]\n",
		"resources: [../../" + filepath.Base(outside) + "/secret.yaml]\n",
		"components: [../out]\n",
		"bases: [../out]\n",
		"resources: [https://example.com/x.yaml]\n",
		"resources: [github.com/x/y]\n",
		"resources: [cm.yaml]\npatches:\n- path: ../out/secret.yaml\n",
		"resources: [cm.yaml]\nconfigMapGenerator:\n- name: g\n  files: [../out/secret.yaml]\n",
		"resources: [cm.yaml]\nsecretGenerator:\n- name: g\n  envs: [escape.yaml]\n",
		"resources: [cm.yaml]\nnamespace: a\nnamespace: b\n",
		"resources: [cm.yaml]\ncrds: [escape.yaml]\n",
		"resources: [cm.yaml]\nopenapi: {path: escape.yaml}\n",
		"resources: [cm.yaml]\nreplacements:\n- path: escape.yaml\n",
		"resources: [cm.yaml]\ntransformers: [escape.yaml]\n",
	} {
		f.Add(k)
	}
	f.Fuzz(func(t *testing.T, kustomization string) {
		root := t.TempDir()
		app := filepath.Join(root, "app")
		if err := os.MkdirAll(app, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, content := range map[string]string{"kustomization.yaml": kustomization, "cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n"} {
			if err := os.WriteFile(filepath.Join(app, name), []byte(content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Symlink(filepath.Join(outside, "secret.yaml"), filepath.Join(app, "escape.yaml")); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(outside, filepath.Join(root, "out")); err != nil {
			t.Fatal(err)
		}
		var objs []*Object
		var err error
		within(t, 20*time.Second, "kustomize", func() { objs, err = Read(t.Context(), root, app, DefaultOptions()) })
		if err != nil && strings.Contains(err.Error(), stolen) {
			t.Fatalf("the error shows what is outside the repository: %v", err)
		}
		if err != nil {
			for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
				if strings.ContainsAny(e.Error(), "\r\n") || !strings.HasPrefix(e.Error(), "app/") {
					t.Errorf("not one line naming the file: %q", e)
				}
			}
		}
		for _, o := range objs {
			if strings.Contains(o.Obj.GetName(), stolen) {
				t.Fatalf("read from outside the repository: %s", o.Ref())
			}
		}
	})
}
