package render

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"path/filepath"
	"reflect"
	"sync/atomic"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// treeOf is files as a Tree whose blob hashes are content hashes.
func treeOf(files map[string]string) *Tree {
	t := &Tree{Files: map[string]string{}}
	blobs := map[string][]byte{}
	for p, c := range files {
		sum := sha256.Sum256([]byte(c))
		h := hex.EncodeToString(sum[:])
		t.Files[p], blobs[h] = h, []byte(c)
	}
	t.Read = func(h string) ([]byte, error) { return blobs[h], nil }
	return t
}

func cm(ns, name string) string {
	return fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\n", name, ns)
}

// Read from Git, a plain tree gives what the walk of its files on disk
// gives: the same objects, sources, documents, order and errors.
func TestReadTreeIsReadFromDisk(t *testing.T) {
	files := map[string]string{
		"b.yaml":           cm("x", "b-file"),
		"b/a.yaml":         cm("x", "b-dir") + "---\n" + cm("x", "b-dir-2"),
		"b/c/d.yml":        cm("x", "deep"),
		"a.json":           `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"json","namespace":"x"}}`,
		"UPPER.YAML":       cm("x", "upper"),
		"notes.txt":        "not a manifest",
		".hidden.yaml":     cm("x", "hidden"),
		".git-ish/x.yaml":  cm("x", "hidden-dir"),
		"empty.yaml":       "",
		"docs.yaml":        "---\n" + cm("x", "second-doc") + "---\n---\n" + cm("x", "fourth-doc"),
		"broken/bad.yaml":  "apiVersion: v1\nkind: [\n",
		"broken/big.yaml":  cm("x", "too-big") + "# " + string(make([]byte, 300)) + "\n",
		"apps/web/cm.yaml": cm("web", "web"),
		"apps/web2.yaml":   cm("web", "web2"),
		"apps/web-x.yaml":  cm("web", "web-x"),
	}
	for _, dir := range []string{".", "apps", "b"} {
		t.Run(dir, func(t *testing.T) {
			root := t.TempDir()
			write(t, root, files)
			opts := Options{MaxFileBytes: 300}
			want, wantErr := Read(context.Background(), root, filepath.Join(root, dir), opts)
			got, n, ok, gotErr := readTree(context.Background(), treeOf(files), dir, opts, nil, nil)
			if !ok || n != 0 {
				t.Fatalf("ok %v, %d from the record", ok, n)
			}
			if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) {
				t.Errorf("errors:\n%v\nwant\n%v", gotErr, wantErr)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("objects:\n%v\nwant\n%v", refs(got), refs(want))
			}
		})
	}
	// A directory the tree does not have is left to the disk to explain.
	if _, _, ok, _ := readTree(context.Background(), treeOf(files), "missing", Options{}, nil, nil); ok {
		t.Error("readTree read a directory that is not there")
	}
	if _, _, ok, _ := readTree(context.Background(), treeOf(files), "b.yaml", Options{}, nil, nil); ok {
		t.Error("readTree read a file as a directory")
	}
}

// A file whose blob is the one recorded yields the recorded objects in its
// place, unread; a changed file is read.
func TestReadTreeTakesUnchangedFilesFromTheRecord(t *testing.T) {
	files := map[string]string{"a.yaml": cm("x", "a"), "b.yaml": cm("x", "b"), "c.yaml": cm("x", "c")}
	tree := treeOf(files)
	stand := &Object{Source: "b.yaml", Doc: 1, Recorded: true}
	stand.Obj = parseOne(t, cm("x", "b-as-recorded"))
	known := map[string]string{"b.yaml": tree.Files["b.yaml"], "c.yaml": "another blob"}
	recorded := map[string][]*Object{"b.yaml": {stand}, "c.yaml": {stand}}
	var reads atomic.Int32 // files are read in parallel
	read := tree.Read
	tree.Read = func(h string) ([]byte, error) { reads.Add(1); return read(h) }
	got, n, ok, err := readTree(context.Background(), tree, ".", Options{}, known, recorded)
	if err != nil || !ok {
		t.Fatal(ok, err)
	}
	if want := []string{"configmap/a -n x @a.yaml", "configmap/b-as-recorded -n x @b.yaml", "configmap/c -n x @c.yaml"}; !reflect.DeepEqual(refs(got), want) {
		t.Errorf("got %v, want %v", refs(got), want)
	}
	if n != 1 || reads.Load() != 2 || !got[1].Recorded || got[0].Recorded || !got[0].Plain {
		t.Errorf("%d from the record, %d files read, flags %v/%v/%v", n, reads.Load(), got[1].Recorded, got[0].Recorded, got[0].Plain)
	}
}

func parseOne(t *testing.T, y string) *unstructured.Unstructured {
	t.Helper()
	objs, errs := parseDocs([]byte(y), "x.yaml", 1)
	if len(errs) > 0 || len(objs) != 1 {
		t.Fatal(errs)
	}
	return objs[0].Obj
}

// Only what is under the path counts: the rest of the commit is not read.
func TestTreePlainUnderPath(t *testing.T) {
	tree := &Tree{Files: map[string]string{"deploy/a.yaml": "1", "deploy/b/c.yaml": "2", "base/kustomization.yaml": "3",
		"charts/web/Chart.yaml": "4", "lib/x.jsonnet": "5", "deployments/kustomization.yaml": "6"}, Others: []string{"src/link", "vendor/sub"}}
	for dir, want := range map[string]bool{"deploy": true, "deploy/b": true, "base": false, "charts": false, "lib": false, "src": false, ".": false} {
		if got := tree.plain(dir); got != want {
			t.Errorf("%s: plain %v, want %v", dir, got, want)
		}
	}
}

func TestTreePlain(t *testing.T) {
	for _, tc := range []struct {
		tree *Tree
		want bool
	}{
		{&Tree{Files: map[string]string{"a.yaml": "1", "b/c.yaml": "2"}}, true},
		{&Tree{Files: map[string]string{"a.yaml": "1", "b/kustomization.yaml": "2"}}, false},
		{&Tree{Files: map[string]string{"charts/web/Chart.yaml": "1"}}, false},
		{&Tree{Files: map[string]string{"Kustomization": "1"}}, false},
		{&Tree{Files: map[string]string{"a.yaml": "1"}, Others: []string{"link"}}, false},
	} {
		if got := tc.tree.plain("."); got != tc.want {
			t.Errorf("%v: plain %v", tc.tree.Files, got)
		}
	}
}
