// Command demo tells cronsync's story in about a minute, against a cluster
// that acts, started on this machine: kube-apiserver and etcd with
// kube-controller-manager, kube-scheduler and a kwok fake node (what the e2e
// tests start), so that the example's Deployment really rolls out. It runs
// the cronsync binary `make build` made on examples/hello from this
// repository's HEAD, in six steps, and checks each: it exits non-zero when
// a step does not show what it says, so it is a test too (CI runs it). Run
// it with `make demo`.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"

	"github.com/cronsync/cronsync/internal/testenv"
)

func main() {
	start := time.Now()
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
	fmt.Printf("\ndemo: all six steps showed what they claim, in %s\n", time.Since(start).Round(time.Second))
}

// user is who cronsync runs as, so that the audit log tells its requests
// from the controllers'.
const user = "cronsync-demo"

var (
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	configMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	services    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	secrets     = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
)

type env struct {
	root, binary, kubeconfig string
	cluster                  *testenv.Cluster
	kube                     dynamic.Interface
}

func demo() error {
	e := &env{root: testenv.ModuleRoot()}
	e.binary = filepath.Join(e.root, "cronsync")
	if _, err := os.Stat(e.binary); err != nil {
		return fmt.Errorf("no cronsync binary (run `make demo`, which builds it): %w", err)
	}
	fmt.Println("starting kube-apiserver, etcd, kube-controller-manager, kube-scheduler and a kwok fake node ...")
	c, err := testenv.StartCluster()
	if err != nil {
		return err
	}
	defer c.Stop()
	if err := c.StartControllers(); err != nil {
		return err
	}
	e.cluster, e.kube = c, dynamic.NewForConfigOrDie(c.Config)
	if e.kubeconfig, err = c.WriteKubeconfig(user, "system:masters"); err != nil {
		return err
	}
	for _, step := range []func() error{e.firstSync, e.sameCommit, e.drift, e.badCommit, e.recorded, e.status} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}

func (e *env) firstSync() error {
	fmt.Println("\n== 1. The first sync: every object is checked by a server dry run, then created; cronsync waits until they are ready.")
	r, err := e.cronsync(0, "--repo", e.root, "--path", "examples/hello")
	if err != nil {
		return err
	}
	for _, want := range []string{
		"namespace/hello created", "configmap/hello -n hello created",
		"deployment.apps/hello -n hello created", "service/hello -n hello created",
		"deployment.apps/hello -n hello ready after",
	} {
		if !hasLine(r.stdout, want) {
			return fmt.Errorf("step 1: no line says %q", want)
		}
	}
	return nil
}

func (e *env) sameCommit() error {
	fmt.Println("\n== 2. The same commit again: nothing to change, decided from the LISTs, without a request for any one object.")
	mark := e.cluster.AuditMark()
	r, err := e.cronsync(0, "--repo", e.root, "--path", "examples/hello")
	if err != nil {
		return err
	}
	if !strings.Contains(r.stdout, "4 unchanged (4 without a request)") {
		return errors.New("step 2: the summary does not say 4 unchanged (4 without a request)")
	}
	events, err := e.cluster.AuditSince(mark, user)
	if err != nil {
		return err
	}
	lists := 0
	var others []string
	for _, ev := range events {
		if ev.Verb == "list" {
			lists++
			continue
		}
		if strings.Contains(ev.RequestURI, "/namespaces/hello") {
			return fmt.Errorf("step 2: cronsync sent %s %s, a request for one of the example's objects", ev.Verb, ev.RequestURI)
		}
		others = append(others, ev.Verb+" "+resourceOf(ev.RequestURI))
	}
	fmt.Printf("-- the API server's audit log: cronsync sent %d LISTs, and besides them only %s; no request for an object of the example\n",
		lists, strings.Join(others, ", "))
	return nil
}

func (e *env) drift() error {
	fmt.Println("\n== 3. Drift: someone scales the Deployment by hand to 5 replicas; the next run puts Git's 2 back and says what moved and who moved it.")
	ctx := context.Background()
	_, err := e.kube.Resource(deployments).Namespace("hello").Patch(ctx, "hello", types.MergePatchType,
		[]byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{FieldManager: "kubectl-scale"}, "scale")
	if err != nil {
		return fmt.Errorf("step 3: scaling by hand: %w", err)
	}
	fmt.Println("$ kubectl scale -n hello deployment/hello --replicas=5")
	r, err := e.cronsync(0, "--repo", e.root, "--path", "examples/hello")
	if err != nil {
		return err
	}
	if !hasLine(r.stdout, "deployment.apps/hello -n hello configured (drift repaired)") {
		return errors.New("step 3: the run did not repair deployment.apps/hello as drift")
	}
	if !hasLine(r.stdout, "  spec.replicas: 5 → 2 (changed by kubectl-scale") {
		return errors.New("step 3: the run did not name the field that moved and who moved it")
	}
	d, err := e.kube.Resource(deployments).Namespace("hello").Get(ctx, "hello", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if n, _, _ := unstructured.NestedInt64(d.Object, "spec", "replicas"); n != 2 {
		return fmt.Errorf("step 3: spec.replicas is %d after the run, want 2", n)
	}
	fmt.Println("-- spec.replicas is 2 again")
	return nil
}

func (e *env) badCommit() error {
	fmt.Println("\n== 4. A bad commit changes nothing: it changes the greeting and adds a Service with an invalid port; the dry run refuses the Service, so not even the greeting lands.")
	dir, err := os.MkdirTemp("", "cronsync-demo-repo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	if err := os.CopyFS(filepath.Join(dir, "examples", "hello"), os.DirFS(filepath.Join(e.root, "examples", "hello"))); err != nil {
		return err
	}
	app := filepath.Join(dir, "examples", "hello", "app.yaml")
	b, err := os.ReadFile(app)
	if err != nil {
		return err
	}
	changed := strings.Replace(string(b), "greeting: Hello from Git", "greeting: Hello from a bad commit", 1)
	if changed == string(b) {
		return errors.New("step 4: examples/hello/app.yaml no longer holds the greeting this step changes")
	}
	if err := os.WriteFile(app, []byte(changed), 0o644); err != nil {
		return err
	}
	bad := "apiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: hello\nspec:\n  selector: {app: hello}\n  ports:\n  - port: 99999\n"
	if err := os.WriteFile(filepath.Join(dir, "examples", "hello", "api.yaml"), []byte(bad), 0o644); err != nil {
		return err
	}
	if err := commit(dir, "a greeting, and a Service whose port is out of range"); err != nil {
		return err
	}
	before, err := e.snapshot()
	if err != nil {
		return err
	}
	r, err := e.cronsync(3, "--repo", dir, "--path", "examples/hello")
	if err != nil {
		return err
	}
	var errLines []string
	for line := range strings.SplitSeq(strings.TrimSpace(r.stderr), "\n") {
		if strings.HasPrefix(line, "error: ") {
			errLines = append(errLines, line)
		}
	}
	if len(errLines) != 1 || !strings.Contains(errLines[0], "service/api -n hello (examples/hello/api.yaml)") || !strings.Contains(errLines[0], "99999") {
		return fmt.Errorf("step 4: want one error line naming service/api -n hello (examples/hello/api.yaml) and its port, got %q", errLines)
	}
	after, err := e.snapshot()
	if err != nil {
		return err
	}
	if !maps.Equal(before, after) {
		return fmt.Errorf("step 4: the cluster changed: %v, then %v", before, after)
	}
	cm, err := e.kube.Resource(configMaps).Namespace("hello").Get(context.Background(), "hello", metav1.GetOptions{})
	if err != nil {
		return err
	}
	if g, _, _ := unstructured.NestedString(cm.Object, "data", "greeting"); g != "Hello from Git" {
		return fmt.Errorf("step 4: the greeting is %q", g)
	}
	fmt.Println("-- exit 3, one error line; every object in namespace hello keeps its resourceVersion, and the greeting is still \"Hello from Git\"")
	return nil
}

func (e *env) recorded() error {
	fmt.Println("\n== 5. What was recorded: every run writes its outcome on the ApplySet parent, a Secret (kubectl get secret cronsync -o yaml):")
	s, err := e.kube.Resource(secrets).Namespace("default").Get(context.Background(), "cronsync", metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("step 5: reading the ApplySet parent: %w", err)
	}
	anns := s.GetAnnotations()
	var keys []string
	for k := range anns {
		if strings.HasPrefix(k, "cronsync.dev/last-sync-") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	fmt.Println("metadata:\n  annotations:")
	for _, k := range keys {
		fmt.Printf("    %s: %q\n", k, anns[k])
	}
	if anns["cronsync.dev/last-sync-result"] != "failed" || !strings.Contains(anns["cronsync.dev/last-sync-error"], "service/api -n hello") {
		return errors.New("step 5: the parent does not record the last run as failed on service/api")
	}
	return nil
}

func (e *env) status() error {
	fmt.Println("\n== 6. Which sync is failing? `cronsync status` lists every sync from those records, and exits 1 while one needs a look.")
	r, err := e.cronsync(1, "status")
	if err != nil {
		return err
	}
	var row string
	for line := range strings.SplitSeq(r.stdout, "\n") {
		if f := strings.Fields(line); len(f) > 2 && f[0] == "default" && f[1] == "cronsync" {
			row = line
		}
	}
	switch {
	case row == "":
		return errors.New("step 6: no row for the sync default/cronsync")
	case !strings.Contains(row, " failed ") || !strings.Contains(row, "service/api -n hello (examples/hello/api.yaml)"):
		return fmt.Errorf("step 6: the row does not show the failed sync and its first error: %q", row)
	case !strings.Contains(r.stderr, "default/cronsync failed"):
		return fmt.Errorf("step 6: stderr does not name the failed sync: %q", r.stderr)
	}
	fmt.Println("-- exit 1: the sync default/cronsync failed on the bad commit, named with its first error")
	return nil
}

// resourceOf shortens a request's URI to what it is about
// (leases/cronsync -n default).
func resourceOf(uri string) string {
	path, _, _ := strings.Cut(uri, "?")
	if path == "/api" || path == "/apis" {
		return path + " (discovery)"
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	ns := ""
	if i := slices.Index(parts, "namespaces"); i >= 0 && i+2 < len(parts) {
		ns, parts = parts[i+1], parts[i+2:]
	} else if len(parts) > 0 {
		parts = parts[len(parts)-min(2, len(parts)):]
	}
	out := strings.Join(parts, "/")
	if ns != "" {
		out += " -n " + ns
	}
	return out
}

type result struct{ stdout, stderr string }

// cronsync runs the binary and fails unless it exits with want.
func (e *env) cronsync(want int, args ...string) (result, error) {
	var shown []string
	for _, a := range args {
		shown = append(shown, strings.ReplaceAll(a, e.root, "."))
	}
	fmt.Printf("$ cronsync %s\n", strings.Join(shown, " "))
	var stdout, stderr strings.Builder
	flags := append([]string{"--kubeconfig", e.kubeconfig}, args...)
	if len(args) > 0 && args[0] == "status" {
		// The subcommand comes first.
		flags = append([]string{"status", "--kubeconfig", e.kubeconfig}, args[1:]...)
	}
	cmd := exec.Command(e.binary, flags...)
	cmd.Stdout = io.MultiWriter(&stdout, os.Stdout)
	cmd.Stderr = io.MultiWriter(&stderr, os.Stderr)
	err := cmd.Run()
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		return result{}, err
	}
	if code := cmd.ProcessState.ExitCode(); code != want {
		return result{}, fmt.Errorf("cronsync exited %d, want %d", code, want)
	}
	return result{stdout.String(), stderr.String()}, nil
}

// snapshot is the resourceVersion of every object of the example.
func (e *env) snapshot() (map[string]string, error) {
	out := map[string]string{}
	for _, gvr := range []schema.GroupVersionResource{configMaps, deployments, services} {
		list, err := e.kube.Resource(gvr).Namespace("hello").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return nil, err
		}
		for _, u := range list.Items {
			out[gvr.Resource+"/"+u.GetName()] = u.GetResourceVersion()
		}
	}
	return out, nil
}

func hasLine(out, prefix string) bool {
	for line := range strings.SplitSeq(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			return true
		}
	}
	return false
}

// commit makes dir a Git repository of one commit holding its files, with
// no configuration of the user's.
func commit(dir, msg string) error {
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", msg}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), testenv.GitEnv...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return nil
}
