package e2e

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// shortcutLine is what a run says when it decides everything from the
// record of the last complete run at the same commit, without the files.
const shortcutLine = "without reading its files"

func tookShortcut(out result) bool { return strings.Contains(out.stdout, shortcutLine) }

// A run at the commit the last run applied completely is decided from the
// LISTs without reading the commit. Anything the LISTs show moved, and
// anything that shapes the desired objects besides the files, sends it down
// the ordinary path, which repairs exactly what moved.
func TestSameCommitIsDecidedFromTheRecord(t *testing.T) {
	const ns = "same-commit"
	ctx := context.Background()
	files := map[string]string{"ns.yaml": namespace(ns), "web.yaml": deployment(ns, "web", 1, "", "")}
	for i := range 6 {
		files[fmt.Sprintf("cm/cm-%d.yaml", i)] = configMap(ns, fmt.Sprintf("cm-%d", i), "v")
	}
	r := repoWith(t, files)
	args := []string{"--repo", r.Dir, "--applyset", ns + "/cs", "--prune", "--wait=false"}
	const total = 8

	// The first run waits for the rollout, so that the Deployment
	// controller is done writing status before the snapshots.
	out := cronsync(t, append(args[:len(args)-1:len(args)-1], "--wait-timeout", "2m")...)
	wantExit(t, out, 0)
	if tookShortcut(out) {
		t.Fatal("the first run had no record to go by")
	}
	settled := func(t *testing.T) {
		t.Helper()
		before := snapshot(t, ns)
		out := cronsync(t, args...)
		wantExit(t, out, 0)
		if !tookShortcut(out) {
			t.Errorf("a run at the commit the last run applied completely read the commit")
		}
		wantLine(t, out.stdout, fmt.Sprintf("%d unchanged (%d without a request)", total, total))
		if strings.Contains(out.stdout, "configmap/cm-0 -n "+ns) {
			t.Errorf("a run that changed nothing printed a line for an unchanged object:\n%s", out.stdout)
		}
		wantUnchanged(t, before, snapshot(t, ns))
	}
	// ordinary asserts that the run read the commit and said want.
	ordinary := func(t *testing.T, args []string, want ...string) {
		t.Helper()
		out := cronsync(t, args...)
		wantExit(t, out, 0)
		if tookShortcut(out) {
			t.Errorf("decided from the record although it should not have been")
		}
		for _, w := range want {
			wantLine(t, out.stdout, w)
		}
	}
	settled(t)

	cms := kube.Resource(configMaps).Namespace(ns)
	t.Run("a member created by hand is pruned", func(t *testing.T) {
		id := live(t, secrets, ns, "cs").GetLabels()["applyset.kubernetes.io/id"]
		cm := &unstructured.Unstructured{}
		cm.SetAPIVersion("v1")
		cm.SetKind("ConfigMap")
		cm.SetName("stowaway")
		cm.SetLabels(map[string]string{"applyset.kubernetes.io/part-of": id})
		if _, err := cms.Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		ordinary(t, args, "configmap/stowaway -n "+ns+" pruned")
		if live(t, configMaps, ns, "stowaway") != nil {
			t.Error("the hand-made member survived")
		}
		settled(t)
	})
	t.Run("an object deleted by hand is created again", func(t *testing.T) {
		if err := cms.Delete(ctx, "cm-3", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		ordinary(t, args, "configmap/cm-3 -n "+ns+" created", "7 unchanged (7 without a request)")
		settled(t)
	})
	t.Run("a value changed by hand is restored", func(t *testing.T) {
		if _, err := cms.Patch(ctx, "cm-1", types.MergePatchType, []byte(`{"data":{"value":"hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		ordinary(t, args, "configmap/cm-1 -n "+ns+" configured")
		if v, _, _ := unstructured.NestedString(live(t, configMaps, ns, "cm-1").Object, "data", "value"); v != "v" {
			t.Errorf("value %q after the run", v)
		}
		settled(t)
	})
	for _, tc := range []struct{ name, patch string }{
		{"record deleted", `{"data":{"cronsync-commit":null}}`},
		{"record corrupted", `{"data":{"cronsync-commit":"bm90IGd6aXA="}}`},
		{"record of another commit", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			patch := tc.patch
			if patch == "" {
				// A well-formed record whose stamp is not this run's.
				other := withStamp(t, live(t, secrets, ns, "cs"), strings.Repeat("0", 64))
				patch = fmt.Sprintf(`{"data":{"cronsync-commit":%q}}`, other)
			}
			if _, err := kube.Resource(secrets).Namespace(ns).Patch(ctx, "cs", types.MergePatchType, []byte(patch), metav1.PatchOptions{FieldManager: "vandal"}); err != nil {
				t.Fatal(err)
			}
			ordinary(t, args, fmt.Sprintf("%d unchanged (%d without a request)", total, total))
			settled(t)
		})
	}
	t.Run("other options", func(t *testing.T) {
		// Without --prune the same commit is the same objects, but the
		// record is of a run that pruned.
		ordinary(t, []string{"--repo", r.Dir, "--applyset", ns + "/cs", "--wait=false"}, "8 unchanged")
		ordinary(t, args, "8 unchanged")
		settled(t)
	})
	t.Run("a new commit", func(t *testing.T) {
		r.Write("cm/cm-0.yaml", configMap(ns, "cm-0", "w"))
		r.Commit("change")
		ordinary(t, args, "configmap/cm-0 -n "+ns+" configured")
		settled(t)
	})
}

// withStamp is parent's commit record with its stamp replaced.
func withStamp(t *testing.T, parent *unstructured.Unstructured, stamp string) string {
	t.Helper()
	raw, _, _ := unstructured.NestedString(parent.Object, "data", "cronsync-commit")
	gz, err := base64.StdEncoding.DecodeString(raw)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	// NUL-separated fields: the format's name, then the stamp.
	fields := strings.Split(string(plain), "\x00")
	if len(fields) < 3 || fields[0] != "cronsync-record-v2" {
		t.Fatalf("the record is not in the format this test knows: %q", plain)
	}
	fields[1] = stamp
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	if _, err := io.WriteString(zw, strings.Join(fields, "\x00")); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes())
}

// fromRecordLine is what a run says when it takes unchanged files from the
// last complete run's record and reads only the others.
const fromRecordLine = "manifest files are as the last complete run read them"

// A new commit is read file by file only where its blobs changed; whatever
// the LISTs show moved since the last run makes the run read everything.
func TestNewCommitReadsOnlyChangedFiles(t *testing.T) {
	const ns = "new-commit"
	ctx := context.Background()
	files := map[string]string{"ns.yaml": namespace(ns)}
	for i := range 6 {
		files[fmt.Sprintf("cm/cm-%d.yaml", i)] = configMap(ns, fmt.Sprintf("cm-%d", i), "v")
	}
	r := repoWith(t, files)
	args := []string{"--repo", r.Dir, "--applyset", ns + "/cs", "--prune", "--wait=false"}
	wantExit(t, cronsync(t, args...), 0)
	cms := kube.Resource(configMaps).Namespace(ns)
	value := func(name string) string {
		v, _, _ := unstructured.NestedString(live(t, configMaps, ns, name).Object, "data", "value")
		return v
	}
	run := func(t *testing.T, want ...string) result {
		t.Helper()
		out := cronsync(t, args...)
		wantExit(t, out, 0)
		for _, w := range want {
			wantLine(t, out.stdout, w)
		}
		return out
	}

	t.Run("one file changed", func(t *testing.T) {
		r.Write("cm/cm-0.yaml", configMap(ns, "cm-0", "w"))
		r.Commit("one")
		out := run(t, "cronsync: 6 "+fromRecordLine, "configmap/cm-0 -n "+ns+" configured", "6 unchanged (6 without a request)")
		if strings.Contains(out.stdout, "reading the whole commit") {
			t.Error("started over with nothing moved")
		}
		if value("cm-0") != "w" {
			t.Errorf("cm-0 is %q", value("cm-0"))
		}
	})
	t.Run("an unchanged file's object edited by hand", func(t *testing.T) {
		if _, err := cms.Patch(ctx, "cm-3", types.MergePatchType, []byte(`{"data":{"value":"hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
		r.Write("cm/cm-1.yaml", configMap(ns, "cm-1", "w"))
		r.Commit("two")
		run(t, "reading the whole commit", "configmap/cm-1 -n "+ns+" configured", "configmap/cm-3 -n "+ns+" configured", "5 unchanged (5 without a request)")
		if value("cm-3") != "v" || value("cm-1") != "w" {
			t.Errorf("cm-3 %q, cm-1 %q", value("cm-3"), value("cm-1"))
		}
	})
	t.Run("an unchanged file's object deleted by hand", func(t *testing.T) {
		if err := cms.Delete(ctx, "cm-4", metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		r.Write("cm/cm-2.yaml", configMap(ns, "cm-2", "w"))
		r.Commit("three")
		run(t, "reading the whole commit", "configmap/cm-4 -n "+ns+" created", "configmap/cm-2 -n "+ns+" configured")
	})
	t.Run("a file removed", func(t *testing.T) {
		r.Remove("cm/cm-5.yaml")
		r.Commit("four")
		run(t, "cronsync: 6 "+fromRecordLine, "configmap/cm-5 -n "+ns+" pruned", "6 unchanged (6 without a request)")
	})
	t.Run("a kustomization appears", func(t *testing.T) {
		// A kustomization may read any file: the whole commit is written
		// and read as before.
		r.Write("extra/kustomization.yaml", "resources: [cm.yaml]\n")
		r.Write("extra/cm.yaml", configMap(ns, "extra", "k"))
		r.Commit("five")
		out := run(t, "configmap/extra -n "+ns+" created", "6 unchanged (6 without a request)")
		if strings.Contains(out.stdout, fromRecordLine) {
			t.Error("a commit with a kustomization was read from the record")
		}
	})
}

// A run at the commit the last run applied completely asks the Git server
// for its refs and nothing more: the commit's objects are fetched only by
// a run that reads them.
func TestSameCommitFetchesNoObjects(t *testing.T) {
	ns := testenv.Unique("same-commit-fetch")
	r := repoWith(t, map[string]string{"ns.yaml": namespace(ns), "cm.yaml": configMap(ns, "cm", "v")})
	var fetches atomic.Int32
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-upload-pack") {
				fetches.Add(1)
			}
			h.ServeHTTP(w, req)
		})
	})
	args := []string{"--repo", srv.URL + "/" + filepath.Base(r.Dir), "--applyset", ns + "/cs", "--prune", "--wait=false"}
	run := func(wantFetches int32, want ...string) {
		t.Helper()
		fetches.Store(0)
		out := cronsync(t, args...)
		wantExit(t, out, 0)
		for _, w := range want {
			wantLine(t, out.stdout, w)
		}
		if n := fetches.Load(); n != wantFetches {
			t.Errorf("the run fetched objects %d times, want %d", n, wantFetches)
		}
	}
	run(1, "configmap/cm -n "+ns+" created")
	run(0, shortcutLine, "2 unchanged (2 without a request)")
	r.Write("cm.yaml", configMap(ns, "cm", "w"))
	r.Commit("change")
	run(1, "configmap/cm -n "+ns+" configured")
	run(0, shortcutLine, "2 unchanged (2 without a request)")
}
