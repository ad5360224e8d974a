// Package e2e runs the cronsync binary against a cluster that acts: a real
// kube-apiserver and etcd with kube-controller-manager, kube-scheduler and
// kwok's fake nodes, so that Deployments roll out, pods become Ready and
// Jobs complete or fail. Everything that depends on the cluster doing
// something after cronsync applied lives here.
package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/cronsync/cronsync/internal/testenv"
)

var (
	cluster *testenv.Cluster
	binary  string
	kube    dynamic.Interface
)

func TestMain(m *testing.M) {
	var h testenv.Harness
	os.Exit(testenv.RunMain(m, &h, true, func() {
		cluster, binary = h.Cluster, h.Binary
		kube = dynamic.NewForConfigOrDie(cluster.Config)
	}))
}

type result struct {
	code           int
	stdout, stderr string
	elapsed        time.Duration
}

// cronsync runs the binary as cluster-admin, with the Lease off so tests
// can run side by side.
func cronsync(t *testing.T, args ...string) result {
	t.Helper()
	r := testenv.RunBinary(t, exec.Command(binary, append([]string{"--kubeconfig", cluster.Kubeconfig, "--lease", ""}, args...)...))
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr, elapsed: r.Elapsed}
}

// cronsyncStarting runs the binary like cronsync and calls then once a
// line of its stdout holds marker (see testenv.RunBinaryWhen).
func cronsyncStarting(t *testing.T, marker string, then func(), args ...string) result {
	t.Helper()
	cmd := exec.Command(binary, append([]string{"--kubeconfig", cluster.Kubeconfig, "--lease", ""}, args...)...)
	r := testenv.RunBinaryWhen(t, cmd, func(line string) bool { return strings.Contains(line, marker) }, then)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr, elapsed: r.Elapsed}
}

func wantExit(t *testing.T, r result, code int) {
	t.Helper()
	if r.code != code {
		t.Fatalf("exit %d, want %d", r.code, code)
	}
}

func wantLine(t *testing.T, out, substr string) {
	t.Helper()
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, substr) {
			return
		}
	}
	t.Errorf("no line contains %q", substr)
}

var (
	configMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	jobs        = schema.GroupVersionResource{Group: "batch", Version: "v1", Resource: "jobs"}
	secrets     = schema.GroupVersionResource{Version: "v1", Resource: "secrets"}
	webhooks    = schema.GroupVersionResource{Group: "admissionregistration.k8s.io", Version: "v1", Resource: "validatingwebhookconfigurations"}
	eventsGVR   = schema.GroupVersionResource{Version: "v1", Resource: "events"}
	listAll     = metav1.ListOptions{}
)

func unstructuredInt(obj map[string]any, fields ...string) (int64, bool, error) {
	return unstructured.NestedInt64(obj, fields...)
}

func unstructuredString(obj map[string]any, fields ...string) (string, bool, error) {
	return unstructured.NestedString(obj, fields...)
}

// live returns an object, or nil when it does not exist.
func live(t *testing.T, gvr schema.GroupVersionResource, ns, name string) *unstructured.Unstructured {
	t.Helper()
	var c dynamic.ResourceInterface = kube.Resource(gvr)
	if ns != "" {
		c = kube.Resource(gvr).Namespace(ns)
	}
	u, err := c.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// snapshot lists the objects of the kinds these tests write in ns, and the
// Secrets there but for ApplySet parents (which a failed run is recorded
// on), with their resourceVersions, so that "nothing changed" can be
// checked exactly.
func snapshot(t *testing.T, ns string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, gvr := range []schema.GroupVersionResource{configMaps, deployments, jobs, secrets} {
		list, err := kube.Resource(gvr).Namespace(ns).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			if gvr == secrets && u.GetLabels()["applyset.kubernetes.io/id"] != "" {
				continue
			}
			out[gvr.Resource+"/"+u.GetName()] = u.GetResourceVersion()
		}
	}
	return out
}

func wantUnchanged(t *testing.T, before, after map[string]string) {
	t.Helper()
	for k, v := range after {
		if before[k] != v {
			t.Errorf("%s changed: resourceVersion %q -> %q", k, before[k], v)
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			t.Errorf("%s was deleted", k)
		}
	}
}

var (
	namespace = testenv.Namespace
	configMap = testenv.ConfigMap
)

// deployment is a Deployment of replicas pods; extra is YAML indented into
// its spec (progressDeadlineSeconds, say) and podSpec into the pod's spec
// (a nodeSelector no node matches keeps it from ever rolling out).
func deployment(ns, name string, replicas int, extra, podSpec string) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  replicas: %[3]d
%[4]s  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
%[5]s      containers:
      - name: app
        image: registry.invalid/app:1
`, ns, name, replicas, indent(extra, "  "), indent(podSpec, "      "))
}

// job is a Job whose one pod kwok completes, unless podSpec keeps it from
// being scheduled.
func job(ns, name, extra, podSpec string) string {
	return fmt.Sprintf(`apiVersion: batch/v1
kind: Job
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  backoffLimit: 0
%[3]s  template:
    spec:
      restartPolicy: Never
%[4]s      containers:
      - name: run
        image: registry.invalid/migrate:1
`, ns, name, indent(extra, "  "), indent(podSpec, "      "))
}

// unschedulable keeps pods off every node.
const unschedulable = "nodeSelector: {no-such-node: \"true\"}\n"

func indent(s, prefix string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	for line := range strings.SplitSeq(strings.TrimSuffix(s, "\n"), "\n") {
		b.WriteString(prefix + line + "\n")
	}
	return b.String()
}
