package apiserver

import (
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/cronsync/cronsync/internal/testenv"
)

// Each bad input exits with its documented status, names what is wrong on
// one line of stderr, and leaves the cluster exactly as it was: an object
// the API server rejects is found by the dry run before anything is written.
func TestBadInput(t *testing.T) {
	const ns = "badinput"
	// The Namespace exists already: objects in a Namespace the commit
	// creates can only be checked once it exists (see
	// TestInvalidObjectInNewNamespace).
	setup := testenv.NewRepo(t)
	setup.Write("ns.yaml", namespace(ns))
	setup.Commit("namespace")
	mustSync(t, "--repo", setup.Dir)

	for _, tc := range []struct {
		name string
		// files are written to the repository besides a valid ConfigMap,
		// so that "nothing changed" also means "nothing valid was applied".
		files    map[string]string
		symlinks map[string]string
		args     []string
		code     int
		// wantErr are substrings of one stderr line.
		wantErr []string
	}{{
		name:    "broken YAML",
		files:   map[string]string{"apps/broken.yaml": configMap(ns, "fine", "x") + "---\nkind: ConfigMap\n  metadata: [oops\n"},
		code:    exitContent,
		wantErr: []string{"apps/broken.yaml, document 2:", "yaml"},
	}, {
		name:    "document that is not an object",
		files:   map[string]string{"apps/list.yaml": "- just\n- a list\n"},
		code:    exitContent,
		wantErr: []string{"apps/list.yaml, document 1: not a Kubernetes object"},
	}, {
		name:    "object without kind",
		files:   map[string]string{"apps/nokind.yaml": "apiVersion: v1\nmetadata: {name: x}\n"},
		code:    exitContent,
		wantErr: []string{"apps/nokind.yaml, document 1: not a Kubernetes object: kind missing"},
	}, {
		name:    "unknown kind",
		files:   map[string]string{"apps/frob.yaml": "apiVersion: example.com/v1\nkind: Frobnicator\nmetadata: {name: frob, namespace: badinput}\n"},
		code:    exitContent,
		wantErr: []string{"frobnicator.example.com/frob -n badinput (apps/frob.yaml, document 1): unknown kind"},
	}, {
		name: "same object twice",
		files: map[string]string{
			"apps/one.yaml": configMap(ns, "twice", "1"),
			"apps/two.yaml": configMap(ns, "twice", "2"),
		},
		code:    exitContent,
		wantErr: []string{"configmap/twice -n badinput (apps/two.yaml, document 1): defined twice: also in apps/one.yaml"},
	}, {
		// Helm renders a template's documents sorted by kind; the error
		// still counts them as the template rendered them.
		name: "same object twice in a chart template",
		files: map[string]string{
			"apps/c/Chart.yaml":         "apiVersion: v2\nname: c\nversion: 0.1.0\n",
			"apps/c/templates/all.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: " + ns + "}\nspec: {ports: [{port: 80}]}\n---\n" + configMap(ns, "dup", "1") + "---\n" + configMap(ns, "dup", "2"),
		},
		code:    exitContent,
		wantErr: []string{"configmap/dup -n badinput (apps/c/templates/all.yaml, document 3): defined twice: also in apps/c/templates/all.yaml, document 2"},
	}, {
		// Read leniently, the second Deployment would win, and prune
		// would delete the first from the cluster.
		name: "two objects with the --- between them forgotten",
		files: map[string]string{"apps/web.yaml": configMap(ns, "before", "b") + "---\n" +
			deployment(ns, "first", 1) + deployment(ns, "second", 1)},
		code:    exitContent,
		wantErr: []string{`apps/web.yaml, document 2: key "apiVersion" appears twice, on lines 9 and 25`, `is a "---" missing between two objects?`},
	}, {
		name:    "JSON object with a key twice",
		files:   map[string]string{"apps/cm.json": `{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "j", "namespace": "badinput"}, "data": {"a": "1", "a": "2"}}`},
		code:    exitContent,
		wantErr: []string{`apps/cm.json, document 1: key "data.a" appears twice, on lines 1 and 1`},
	}, {
		name: "kustomize resource with a key twice",
		files: map[string]string{
			"apps/k/kustomization.yaml": "resources: [cm.yaml]\n",
			"apps/k/cm.yaml":            configMap(ns, "k", "1") + "data: {b: \"2\"}\n",
		},
		code:    exitContent,
		wantErr: []string{`apps/k/cm.yaml, document 1: key "data" appears twice, on lines `},
	}, {
		name:    "Jsonnet syntax error",
		files:   map[string]string{"apps/bad.jsonnet": "{ a: }"},
		code:    exitContent,
		wantErr: []string{`apps/bad.jsonnet: jsonnet: apps/bad.jsonnet:1:6-7 Unexpected: "}"`},
	}, {
		name:    "Jsonnet runtime error",
		files:   map[string]string{"apps/bad.jsonnet": "{\n  a: error 'broken on purpose',\n}"},
		code:    exitContent,
		wantErr: []string{"apps/bad.jsonnet: jsonnet: RUNTIME ERROR: broken on purpose (at apps/bad.jsonnet:2:"},
	}, {
		name:    "Jsonnet import out of the repository",
		files:   map[string]string{"apps/bad.jsonnet": "import '../../x.libsonnet'"},
		code:    exitContent,
		wantErr: []string{`apps/bad.jsonnet: jsonnet: RUNTIME ERROR: import "../../x.libsonnet" leaves the repository`},
	}, {
		name:    "Jsonnet import of an absolute path",
		files:   map[string]string{"apps/bad.jsonnet": "{ a: importstr '/etc/hostname' }"},
		code:    exitContent,
		wantErr: []string{`apps/bad.jsonnet: jsonnet: RUNTIME ERROR: import "/etc/hostname" is an absolute path`},
	}, {
		name:     "Jsonnet import through a symlink out of the repository",
		files:    map[string]string{"apps/bad.jsonnet": "{ a: importstr '../etc/hostname' }"},
		symlinks: map[string]string{"etc": "/etc"},
		code:     exitContent,
		wantErr:  []string{`apps/bad.jsonnet: jsonnet: RUNTIME ERROR: import "etc/hostname" leaves the repository through a symlink`},
	}, {
		name:    "Jsonnet value that is not an object",
		files:   map[string]string{"apps/bad.jsonnet": "{ web: { config: 'a string' } }"},
		code:    exitContent,
		wantErr: []string{"apps/bad.jsonnet: web.config is a string, not an object or an array of objects"},
	}, {
		name:    "Jsonnet recursion without end",
		files:   map[string]string{"apps/bad.jsonnet": "local f(x) = f(x + 1) + 1;\nf(0)"},
		code:    exitContent,
		wantErr: []string{"apps/bad.jsonnet: jsonnet: RUNTIME ERROR: max stack frames exceeded."},
	}, {
		// About 3s: half of what --timeout leaves.
		name:    "Jsonnet evaluation past its time",
		files:   map[string]string{"apps/bad.jsonnet": "std.foldl(function(a, i) a + std.foldl(function(b, j) b + j, std.range(1, 1e4), 0), std.range(1, 1e5), 0)"},
		args:    []string{"--timeout", "6s"},
		code:    exitContent,
		wantErr: []string{"apps/bad.jsonnet: jsonnet: evaluation did not finish within ", "does it recurse or loop without end?"},
	}, {
		// go-jsonnet's stack limit does not count tailstrict calls; the Go
		// stack grows until the evaluation's process is stopped.
		name:    "Jsonnet tailstrict recursion without end",
		files:   map[string]string{"apps/bad.jsonnet": "local loop(n) = if n == 0 then {} else loop(n + 1) tailstrict;\nloop(1)"},
		code:    exitContent,
		wantErr: []string{"apps/bad.jsonnet: jsonnet: evaluation exceeded its memory budget of 256 MiB and was stopped: does it build a value, or recurse, without end?"},
	}, {
		name:     "symlink out of the repository",
		symlinks: map[string]string{"apps/token.yaml": "/var/run/secrets/kubernetes.io/serviceaccount/token"},
		code:     exitContent,
		wantErr:  []string{"apps/token.yaml: symlink to \"/var/run/secrets/kubernetes.io/serviceaccount/token\" leaves the repository"},
	}, {
		name:    "path that does not exist",
		args:    []string{"--path", "nowhere"},
		code:    exitConfig,
		wantErr: []string{`path "nowhere" does not exist in commit`},
	}, {
		name:    "path that leaves the repository",
		args:    []string{"--path", "../.."},
		code:    exitConfig,
		wantErr: []string{`path "../.." leaves the repository`},
	}, {
		name:    "unknown ref",
		args:    []string{"--ref", "no-such-branch"},
		code:    exitConfig,
		wantErr: []string{`ref "no-such-branch": no such branch or tag`},
	}, {
		name:    "bad flag value",
		args:    []string{"--dry-run=maybe"},
		code:    exitConfig,
		wantErr: []string{`--dry-run must be "none", "client" or "server", not "maybe"`},
	}, {
		name:    "object the server rejects",
		files:   map[string]string{"apps/svc.yaml": "apiVersion: v1\nkind: Service\nmetadata: {name: bad-port, namespace: badinput}\nspec:\n  ports: [{port: 99999}]\n"},
		code:    exitContent,
		wantErr: []string{"service/bad-port -n badinput (apps/svc.yaml): ", "Invalid value: 99999"},
	}, {
		// The API server answers this one with a 500, though it is the
		// commit's fault and the same on every try.
		name: "field the schema does not declare",
		files: map[string]string{"apps/web.yaml": strings.Replace(deployment(ns, "undeclared", 1),
			"spec:\n", "spec:\n  replicaz: 2\n", 1)},
		code:    exitContent,
		wantErr: []string{"deployment.apps/undeclared -n badinput (apps/web.yaml): ", ".spec.replicaz: field not declared in schema"},
	}, {
		name:    "field of the wrong type",
		files:   map[string]string{"apps/cm.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: wrong-type, namespace: badinput}\ndata: {a: [1]}\n"},
		code:    exitContent,
		wantErr: []string{"configmap/wrong-type -n badinput (apps/cm.yaml): "},
	}} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.NewRepo(t)
			r.Write("apps/ns.yaml", namespace(ns))
			r.Write("apps/valid.yaml", configMap(ns, "valid-"+strings.ReplaceAll(tc.name, " ", "-"), "v"))
			for path, content := range tc.files {
				r.Write(path, content)
			}
			for path, target := range tc.symlinks {
				r.Symlink(path, target)
			}
			r.Commit(tc.name)

			before := snapshot(t)
			out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps"}, tc.args...)...)
			if out.code != tc.code {
				t.Errorf("exit %d, want %d", out.code, tc.code)
			}
			if !hasLineWith(out.stderr, tc.wantErr...) {
				t.Errorf("no stderr line contains all of %q", tc.wantErr)
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

// The one documented exception to "a bad commit changes nothing": objects in
// a Namespace the commit creates can only be dry-run once it exists, so the
// Namespace is written, and nothing else.
func TestInvalidObjectInNewNamespace(t *testing.T) {
	ns := testenv.Unique("badinput-new")
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("ok.yaml", configMap(ns, "ok", "v"))
	r.Write("other.yaml", configMap("default", "untouched-by-bad-commit", "v"))
	r.Write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: bad-port, namespace: "+ns+"}\nspec:\n  ports: [{port: 99999}]\n")
	r.Commit("bad")
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", r.Dir)
	if out.code != exitContent || !hasLineWith(out.stderr, "service/bad-port -n "+ns+" (svc.yaml)", "Invalid value: 99999") {
		t.Errorf("exit %d; want %d and the Service named", out.code, exitContent)
	}
	diff := diffSnapshots(before, snapshot(t))
	if len(diff) != 1 || !strings.HasPrefix(diff[0], "namespaces//"+ns+":") {
		t.Errorf("want only the Namespace created, got:\n%s", strings.Join(diff, "\n"))
	}
}

func hasLineWith(text string, parts ...string) bool {
	for line := range strings.SplitSeq(text, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// Failures outside the commit: no cluster to talk to is worth a retry (1);
// credentials RBAC does not allow are the Job's configuration (2), and the
// message says which verb on which resource was refused.
func TestClusterFailures(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("config.yaml", configMap("default", "cluster-failures", "v"))
	r.Commit("one")

	t.Run("unreachable API server", func(t *testing.T) {
		out := cronsync(t, nil, "--repo", r.Dir, "--server", "https://127.0.0.1:1", "--timeout", "20s")
		if out.code != exitRetry {
			t.Errorf("exit %d, want %d", out.code, exitRetry)
		}
		if !strings.Contains(out.stderr, "127.0.0.1:1") {
			t.Errorf("the error does not name the server")
		}
	})
	t.Run("forbidden", func(t *testing.T) {
		kc, err := cluster.WriteKubeconfig("nobody")
		if err != nil {
			t.Fatal(err)
		}
		before := snapshot(t)
		out := cronsync(t, nil, "--repo", r.Dir, "--kubeconfig", kc)
		if out.code != exitConfig || !hasLineWith(out.stderr, "lease default/cronsync", `User "nobody" cannot get resource "leases"`) {
			t.Errorf("exit %d, want %d and the Lease's read refused", out.code, exitConfig)
		}
		out = cronsync(t, nil, "--repo", r.Dir, "--kubeconfig", kc, "--lease=")
		if out.code != exitConfig || !hasLineWith(out.stderr, "ApplySet parent secret/cronsync -n default", `User "nobody" cannot get resource "secrets"`) {
			t.Errorf("exit %d, want %d and the ApplySet parent's read refused", out.code, exitConfig)
		}
		out = cronsync(t, nil, "--repo", r.Dir, "--kubeconfig", kc, "--lease=", "--applyset=")
		if out.code != exitConfig {
			t.Errorf("exit %d, want %d", out.code, exitConfig)
		}
		if !hasLineWith(out.stderr, "configmap/cluster-failures -n default (config.yaml)", `User "nobody" cannot get resource "configmaps"`) {
			t.Errorf("the error does not say what was forbidden")
		}
		if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
			t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
		}
	})
	t.Run("no cluster configured", func(t *testing.T) {
		cmd := exec.Command(binary, "--repo", r.Dir)
		cmd.Env = []string{"HOME=" + t.TempDir(), "PATH=" + os.Getenv("PATH")}
		out, _ := cmd.CombinedOutput()
		if code := cmd.ProcessState.ExitCode(); code != exitConfig || !strings.Contains(string(out), "no cluster to sync to") {
			t.Errorf("exit %d, output %q", code, out)
		}
	})
	t.Run("lease or parent in a namespace that does not exist", func(t *testing.T) {
		for _, args := range [][]string{{"--lease", "nowhere/cronsync"}, {"--lease", "", "--applyset", "nowhere/cronsync"}} {
			out := cronsync(t, nil, append([]string{"--repo", r.Dir}, args...)...)
			if out.code != exitConfig || !strings.Contains(out.stderr, "namespace nowhere does not exist") {
				t.Errorf("%v: exit %d; want %d and the namespace named", args, out.code, exitConfig)
			}
		}
	})
	t.Run("missing --repo", func(t *testing.T) {
		out := cronsync(t, nil)
		if out.code != exitConfig || !strings.Contains(out.stderr, "--repo (or CRONSYNC_REPO) is required") {
			t.Errorf("exit %d, stderr %q", out.code, out.stderr)
		}
	})
}

// Admission plugins answer 403 too, and theirs is a verdict on the object,
// not on the Job's RBAC: a Pod that the namespace's Pod Security level
// refuses exits 3 (TestClusterFailures has RBAC's 403 exit 2), and the
// cluster is untouched.
func TestAdmissionForbiddenIsTheCommits(t *testing.T) {
	ns := testenv.Unique("admission-forbidden")
	setup := testenv.NewRepo(t)
	setup.Write("ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: "+ns+"\n  labels: {pod-security.kubernetes.io/enforce: restricted}\n")
	setup.Commit("a restricted namespace")
	mustSync(t, "--repo", setup.Dir, "--applyset", "", "--lease", "")

	r := testenv.NewRepo(t)
	r.Write("ok.yaml", configMap(ns, "admitted", "v"))
	r.Write("pod.yaml", "apiVersion: v1\nkind: Pod\nmetadata: {name: root, namespace: "+ns+"}\nspec:\n  containers:\n  - name: c\n    image: registry.invalid/c:1\n    securityContext: {privileged: true}\n")
	r.Commit("a privileged pod")
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", r.Dir, "--applyset", "", "--lease", "")
	if out.code != exitContent {
		t.Errorf("exit %d, want %d", out.code, exitContent)
	}
	if !hasLineWith(out.stderr, "error: pod/root -n "+ns+" (pod.yaml): ", `violates PodSecurity "restricted:latest"`) {
		t.Error("no error line names the Pod and the Pod Security level")
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
}
