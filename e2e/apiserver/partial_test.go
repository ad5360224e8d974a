package apiserver

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/cronsync/cronsync/internal/testenv"
)

// gitTraffic counts what a smart HTTP server is asked, and the bytes it
// sends.
type gitTraffic struct {
	adverts, packs atomic.Int32
	sent           atomic.Int64
}

func (g *gitTraffic) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			g.packs.Add(1)
		} else {
			g.adverts.Add(1)
		}
		h.ServeHTTP(&sentCounter{ResponseWriter: w, n: &g.sent}, r)
	})
}

func (g *gitTraffic) reset() { g.adverts.Store(0); g.packs.Store(0); g.sent.Store(0) }

func (g *gitTraffic) String() string {
	return fmt.Sprintf("%d advertisements, %d packs, %d bytes", g.adverts.Load(), g.packs.Load(), g.sent.Load())
}

type sentCounter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w *sentCounter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// noise is n bytes of text that does not compress, different per seed:
// the application code beside the manifests.
func noise(seed, n int) string {
	var b strings.Builder
	x := uint32(seed*2654435761 + 1)
	for b.Len() < n {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		fmt.Fprintf(&b, "%08x", x)
		if b.Len()%72 == 0 {
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// partialRepo is a monorepo: 300 source files beside the manifests, which
// reach outside their paths in every way rendering does.
func partialRepo(t *testing.T, prefix string) *testenv.Repo {
	t.Helper()
	r := testenv.NewRepo(t)
	for i := range 300 {
		r.Write(fmt.Sprintf("src/pkg%02d/file%03d.go", i/20, i), noise(i, 4<<10))
	}
	cm := func(name string) string { return configMap("default", prefix+"-"+name, "1") }
	r.Write("plain/a.yaml", cm("plain-a"))
	r.Write("plain/sub/b.yaml", cm("plain-b"))
	r.Write("base/kustomization.yaml", "resources: [cm.yaml]\n")
	r.Write("base/cm.yaml", cm("base"))
	r.Write("deploy/kustomization.yaml", "resources: [../base, cm.yaml]\n")
	r.Write("deploy/cm.yaml", cm("deploy"))
	r.Write("charts/web/Chart.yaml", "apiVersion: v2\nname: web\nversion: 0.1.0\n")
	r.Write("charts/web/values.yaml", "value: from-values\n")
	r.Write("charts/web/templates/cm.yaml", configMap("default", "{{ .Release.Name }}-chart", "{{ .Values.value }}"))
	r.Write("helm/kustomization.yaml", "helmCharts:\n- name: web\n  releaseName: "+prefix+"\nhelmGlobals:\n  chartHome: ../charts\n")
	r.Write("jlib/k.libsonnet", `{ cm(name):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name, namespace: 'default' }, data: { value: importstr 'value.txt' } } }`)
	r.Write("jlib/value.txt", "from-jlib")
	r.Write("jsonnet/main.jsonnet", `local k = import 'k.libsonnet'; // from --jsonnet-lib-path
{ cm: k.cm('`+prefix+`-jsonnet') }`)
	r.Write("shared/cm.yaml", cm("shared"))
	r.Write("linked/own.yaml", cm("linked"))
	r.Symlink("linked/shared", "../shared")
	r.Commit("monorepo")
	return r
}

// With a server that filters blobs, a run fetches the commit's trees and
// then the files it reads: those of --path in one request, and what a
// kustomization's base, a chart of helmCharts, a Jsonnet library path or a
// symlink to a directory outside reaches, one more request each. A commit
// that changes only code moves no file of a plain path. The objects are
// what a whole fetch gives.
func TestPartialFetchReadsWhatItNeeds(t *testing.T) {
	ns := testenv.Unique("partial")
	r := partialRepo(t, ns)
	r.Git("config", "uploadpack.allowFilter", "true")
	var g gitTraffic
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), g.wrap)
	url := srv.URL + "/" + filepath.Base(r.Dir)
	whole := int64(0)
	for _, f := range strings.Fields(r.Git("ls-files")) {
		st, _ := os.Stat(filepath.Join(r.Dir, f))
		whole += st.Size()
	}

	for _, tc := range []struct {
		path  string
		extra []string
		packs int32
		want  map[string]string
	}{
		{"plain", nil, 2, map[string]string{"plain-a": "1", "plain-b": "1"}},
		{"deploy", nil, 3, map[string]string{"deploy": "1", "base": "1"}},
		{"helm", nil, 3, map[string]string{"chart": "from-values"}},
		{"jsonnet", []string{"--jsonnet-lib-path", "jlib"}, 3, map[string]string{"jsonnet": "from-jlib"}},
		{"linked", nil, 3, map[string]string{"linked": "1", "shared": "1"}},
	} {
		t.Run(tc.path, func(t *testing.T) {
			g.reset()
			args := append([]string{"--repo", url, "--path", tc.path, "--applyset", "default/" + ns + "-" + tc.path, "--prune"}, tc.extra...)
			out := mustSync(t, args...)
			t.Logf("%s: %s", tc.path, &g)
			if !hasLineWith(out.stdout, "with its trees and no files (the server filters blobs)") {
				t.Errorf("no line says the fetch was partial:\n%s", out.stdout)
			}
			if g.packs.Load() != tc.packs || g.adverts.Load() != 1 {
				t.Errorf("%s; want 1 advertisement and %d packs", &g, tc.packs)
			}
			if g.sent.Load()*10 > whole {
				t.Errorf("the server sent %d bytes of a commit of %d", g.sent.Load(), whole)
			}
			for name, value := range tc.want {
				if got := get(t, configMaps, "default", ns+"-"+name, "data", "value"); got != value {
					t.Errorf("configmap %s-%s: value %q, want %q", ns, name, got, value)
				}
			}
		})
	}

	// A commit that changes only code: the plain path's files are all as
	// the last complete run read them, and not one is fetched.
	r.Write("src/pkg00/file000.go", noise(1000, 4<<10))
	r.Commit("code only")
	g.reset()
	out := mustSync(t, "--repo", url, "--path", "plain", "--applyset", "default/"+ns+"-plain", "--prune")
	t.Logf("code-only commit, plain: %s", &g)
	if g.packs.Load() != 1 {
		t.Errorf("%s; want the trees alone", &g)
	}
	if !strings.Contains(out.stdout, "2 manifest files are as the last complete run read them") {
		t.Errorf("the files were read again:\n%s", out.stdout)
	}
}

// A server without filter gets the whole commit fetched, and the run says
// so; the objects are the same.
func TestPartialFallsBackWithoutFilter(t *testing.T) {
	ns := testenv.Unique("whole")
	r := partialRepo(t, ns)
	var g gitTraffic
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), g.wrap)
	out := mustSync(t, "--repo", srv.URL+"/"+filepath.Base(r.Dir), "--path", "deploy", "--applyset", "default/"+ns)
	if !hasLineWith(out.stdout, "whole: the server does not offer filter (git: uploadpack.allowFilter)") {
		t.Errorf("no line says why the whole commit was fetched:\n%s", out.stdout)
	}
	if g.packs.Load() != 1 {
		t.Errorf("%s; want one pack", &g)
	}
	for _, name := range []string{"deploy", "base"} {
		if get(t, configMaps, "default", ns+"-"+name, "data", "value") != "1" {
			t.Errorf("configmap %s-%s was not applied", ns, name)
		}
	}
}

// A tree naming a blob the server does not have: the request for it is
// refused, the whole commit too, and the run exits 1 having applied
// nothing.
func TestPartialBlobRefused(t *testing.T) {
	ns := testenv.Unique("refused")
	r := partialRepo(t, ns)
	r.Git("config", "uploadpack.allowFilter", "true")
	blob := r.Git("rev-parse", "HEAD:base/cm.yaml")
	if err := os.Remove(filepath.Join(r.Dir, ".git", "objects", blob[:2], blob[2:])); err != nil {
		t.Fatal(err)
	}
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", srv.URL+"/"+filepath.Base(r.Dir), "--path", "deploy", "--applyset", "default/"+ns)
	if out.code != exitRetry {
		t.Errorf("exit %d, want %d:\n%s", out.code, exitRetry, out.stderr)
	}
	if !hasLineWith(out.stdout, "whole: asking the server for 2 files by id failed", "not our ref") {
		t.Errorf("no line says the blobs were refused:\n%s", out.stdout)
	}
	if !hasLineWith(out.stderr, "error:", "fetching commit", "whole after") {
		t.Errorf("the error does not say the whole commit could not be fetched:\n%s", out.stderr)
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
}
