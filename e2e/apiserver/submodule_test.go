package apiserver

import (
	"fmt"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A parent whose apps/lib is a submodule (relative URL) over smart HTTP:
// the submodule's plain files, a kustomization whose base lives in it and
// a Helm chart that is a submodule are applied; manifests moved from the parent into the submodule stay
// (unchanged, not pruned); the same parent commit again fetches nothing
// from the submodule; --submodules=off warns and applies only the parent.
// All of it both ways: the parent fetched whole, and partially (its
// trees, then the files read, the submodules whole).
func TestSubmodulesSynced(t *testing.T) {
	for _, filter := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowFilter=%t", filter), func(t *testing.T) { submodulesSynced(t, filter) })
	}
}

func submodulesSynced(t *testing.T, filter bool) {
	ns := testenv.Unique("submodules")
	root := t.TempDir()
	lib := testenv.NewRepoAt(t, filepath.Join(root, "lib"))
	lib.Write("lib.yaml", configMap(ns, "from-lib", "1"))
	lib.Write("base/kustomization.yaml", "resources: [cm.yaml]\n")
	lib.Write("base/cm.yaml", configMap(ns, "from-base", "1"))
	libFirst := lib.Commit("lib")
	chart := testenv.NewRepoAt(t, filepath.Join(root, "chart"))
	chart.Write("Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
	chart.Write("templates/cm.yaml", configMap(ns, "{{ .Release.Name }}-from-chart", "1"))
	chartSHA := chart.Commit("chart")
	parent := testenv.NewRepoAt(t, filepath.Join(root, "parent"))
	parent.Submodule("charts/web", chartSHA, "../chart")
	parent.Write("apps/ns.yaml", namespace(ns))
	parent.Write("apps/app.yaml", configMap(ns, "from-parent", "1"))
	parent.Write("apps/moved.yaml", configMap(ns, "moved", "1"))
	parent.Write("overlay/kustomization.yaml", "namePrefix: k-\nresources: [../apps/lib/base]\n")
	parent.Submodule("apps/lib", libFirst, "../lib")
	parent.Commit("parent")
	if filter {
		for _, r := range []*testenv.Repo{lib, chart, parent} {
			r.Git("config", "uploadpack.allowFilter", "true")
		}
	}
	var libRequests atomic.Int32
	srv := testenv.ServeHTTP(t, root, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/lib/") {
				libRequests.Add(1)
			}
			h.ServeHTTP(w, r)
		})
	})
	url := srv.URL + "/parent"

	apps := []string{"--repo", url, "--path", "apps", "--applyset", ns + "/apps", "--prune", "--lease", ""}
	out := mustSync(t, apps...)
	if partial := hasLineWith(out.stdout, "with its trees and no files"); partial != filter {
		t.Errorf("partial fetch: %t, want %t:\n%s", partial, filter, out.stdout)
	}
	for _, name := range []string{"from-parent", "from-lib", "from-base", "moved"} {
		if !hasLineWith(out.stdout, "configmap/"+name+" -n "+ns+" created") {
			t.Errorf("configmap %s was not created", name)
		}
	}
	out = mustSync(t, "--repo", url, "--path", "overlay", "--applyset", ns+"/overlay", "--lease", "")
	if !hasLineWith(out.stdout, "configmap/k-from-base -n "+ns+" created") {
		t.Error("the kustomization whose base is in the submodule was not applied")
	}

	out = mustSync(t, "--repo", url, "--path", "charts/web", "--namespace", ns, "--applyset", ns+"/chart", "--lease", "")
	if !hasLineWith(out.stdout, "configmap/web-from-chart -n "+ns+" created") {
		t.Error("the Helm chart that is a submodule was not rendered")
	}

	// The same parent commit pins the same submodule commit: nothing of it
	// is fetched again.
	libRequests.Store(0)
	out = mustSync(t, apps...)
	if n := libRequests.Load(); n != 0 {
		t.Errorf("a run at the same parent commit made %d requests for the submodule", n)
	}
	if !strings.Contains(out.stdout, "without reading its files") {
		t.Error("a run at the same parent commit read its files")
	}

	// moved.yaml moves from the parent into the submodule.
	lib.Write("moved.yaml", configMap(ns, "moved", "1"))
	libSecond := lib.Commit("moved here")
	parent.Remove("apps/moved.yaml")
	parent.Submodule("apps/lib", libSecond, "")
	parent.Commit("moved into the submodule")
	out = mustSync(t, append(slices.Clone(apps), "--show-unchanged")...)
	if !hasLineWith(out.stdout, "configmap/moved -n "+ns+" unchanged") || strings.Contains(out.stdout, "pruned") {
		t.Error("the manifest moved into the submodule was not kept unchanged")
	}

	// Off: the parent's objects only, and a warning naming the submodule.
	out = cronsync(t, nil, "--repo", url, "--path", "apps", "--applyset", ns+"/apps", "--lease", "", "--submodules", "off", "--dry-run")
	if out.code != exitOK {
		t.Errorf("--submodules=off: exit %d", out.code)
	}
	if !hasLineWith(out.stderr, "warning: submodule apps/lib is not read (--submodules=off)") {
		t.Error("--submodules=off: no warning names apps/lib")
	}
	if strings.Contains(out.stdout, "from-lib") {
		t.Error("--submodules=off read the submodule")
	}
}

// A submodule that cannot be followed stops the run before anything is
// written, naming the submodule, with the exit status of its cause.
func TestSubmoduleFailures(t *testing.T) {
	root := t.TempDir()
	lib := testenv.NewRepoAt(t, filepath.Join(root, "lib"))
	lib.Write("lib.yaml", configMap("default", "sub-lib", "1"))
	libSHA := lib.Commit("lib")
	const token = "t0ken-for-private"
	srv := testenv.ServeHTTP(t, root, func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.URL.Path, "/private/") {
				if _, pw, ok := r.BasicAuth(); !ok || pw != token {
					w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
					http.Error(w, "unauthorized", http.StatusUnauthorized)
					return
				}
			}
			h.ServeHTTP(w, r)
		})
	})
	private := testenv.NewRepoAt(t, filepath.Join(root, "private"))
	private.Write("lib.yaml", configMap("default", "sub-private", "1"))
	privateSHA := private.Commit("private")
	for _, tc := range []struct {
		name, url, sha string
		code           int
		want           string
	}{
		{"no .gitmodules entry", "", libSHA, exitContent, "submodule apps/lib: the commit pins " + libSHA + " here, but .gitmodules has no entry for this path"},
		{"git protocol", "git://127.0.0.1/lib", libSHA, exitContent, `submodule apps/lib: URL git://127.0.0.1/lib: scheme "git" is not followed`},
		{"option-like URL", "-uupload-pack=touch /tmp/x", libSHA, exitContent, "submodule apps/lib: URL \"-uupload-pack=touch /tmp/x\" is not one git would accept"},
		{"commit force-pushed away", "../lib", strings.Repeat("cd", 20), exitContent, "submodule apps/lib: commit " + strings.Repeat("cd", 20) + " is not in"},
		{"a path on this machine", "file://" + filepath.Join(root, "lib"), libSHA, exitContent, "submodule apps/lib: URL file://"},
		{"server unreachable", "http://127.0.0.1:1/lib", libSHA, exitRetry, "submodule apps/lib: repository http://127.0.0.1:1/lib"},
		{"credentials refused", "../private", privateSHA, exitConfig, "submodule apps/lib: repository " + srv.URL + "/private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := "parent-" + strings.ReplaceAll(tc.name, " ", "-")
			parent := testenv.NewRepoAt(t, filepath.Join(root, dir))
			parent.Write("apps/app.yaml", configMap("default", "sub-parent-"+strings.ReplaceAll(tc.name, " ", "-"), "1"))
			parent.Submodule("apps/lib", tc.sha, tc.url)
			parent.Commit(tc.name)
			before := snapshot(t)
			out := cronsync(t, nil, "--repo", srv.URL+"/"+dir, "--path", "apps", "--applyset", "", "--lease", "")
			if out.code != tc.code {
				t.Errorf("exit %d, want %d", out.code, tc.code)
			}
			if !hasLineWith(out.stderr, tc.want) {
				t.Errorf("no line holds %q", tc.want)
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}
