// Package apiserver runs the cronsync binary against a kube-apiserver and
// etcd and nothing else: no controller writes, so the cluster changes only
// when cronsync or the test changes it, and a test can assert that a run
// left every object as it was. Runs that need the cluster to act
// (rollouts, Jobs, health) are in the parent package, e2e.
package apiserver

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"slices"
	"sort"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/cronsync/cronsync/internal/testenv"
)

// The tests in this package run the cronsync binary, built once, against a
// real kube-apiserver and etcd, with repositories made by git.
var (
	cluster *testenv.Cluster
	binary  string
	kube    dynamic.Interface
)

func TestMain(m *testing.M) {
	var h testenv.Harness
	os.Exit(testenv.RunMain(m, &h, false, func() {
		cluster, binary = h.Cluster, h.Binary
		kube = dynamic.NewForConfigOrDie(cluster.Config)
	}))
}

// Exit statuses as the README documents them. They are written out here,
// not taken from package main, so that a change to one of them fails these
// tests rather than silently changing what they assert.
const (
	exitOK         = 0
	exitRetry      = 1
	exitConfig     = 2
	exitContent    = 3
	exitUnverified = 4
	exitChanges    = 5
	exitUnhealthy  = 6
)

type result struct {
	code           int
	stdout, stderr string
	// maxRSS is the process's peak resident memory in bytes.
	maxRSS int64
}

// cronsync runs the binary as cluster-admin with args and the environment
// variables in env (NAME=value), and returns how it exited.
func cronsync(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := cronsyncCmd(args...)
	cmd.Env = append(cmd.Env, env...)
	r := testenv.RunBinary(t, cmd)
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr, maxRSS: r.MaxRSS}
}

// cronsyncCmd is the binary as cluster-admin with args. This package's
// cluster runs no controllers, so no Deployment would ever roll out: waiting
// is off, and tested in e2e against a cluster that acts.
func cronsyncCmd(args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"--kubeconfig", cluster.Kubeconfig}, args...)...)
	cmd.Env = append(os.Environ(), "CRONSYNC_WAIT=false")
	return cmd
}

// mustSync runs cronsync and fails the test unless it exits 0.
func mustSync(t *testing.T, args ...string) result {
	t.Helper()
	r := cronsync(t, nil, args...)
	if r.code != 0 {
		t.Fatalf("cronsync exited %d:\n%s", r.code, r.stderr)
	}
	return r
}

var (
	configMaps  = schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}
	services    = schema.GroupVersionResource{Version: "v1", Resource: "services"}
	namespaces  = schema.GroupVersionResource{Version: "v1", Resource: "namespaces"}
	deployments = schema.GroupVersionResource{Group: "apps", Version: "v1", Resource: "deployments"}
	crds        = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
)

// get returns a field of a live object, or "<absent>" when the object does
// not exist.
func get(t *testing.T, gvr schema.GroupVersionResource, ns, name string, field ...string) string {
	t.Helper()
	var c dynamic.ResourceInterface = kube.Resource(gvr)
	if ns != "" {
		c = kube.Resource(gvr).Namespace(ns)
	}
	u, err := c.Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return "<absent>"
	}
	if err != nil {
		t.Fatal(err)
	}
	v, found, err := nestedString(u.Object, field...)
	if err != nil || !found {
		return "<unset>"
	}
	return v
}

func nestedString(obj map[string]any, fields ...string) (string, bool, error) {
	var cur any = obj
	for _, f := range fields {
		m, ok := cur.(map[string]any)
		if !ok {
			return "", false, nil
		}
		if cur, ok = m[f]; !ok {
			return "", false, nil
		}
	}
	return fmt.Sprint(cur), true, nil
}

// snapshot lists every object of the kinds the tests use or a commit may
// hold (Secrets, Leases, RBAC, custom resources of every CRD), with its
// resourceVersion, so that "nothing changed" can be checked exactly. Left
// out is what the run itself keeps, which changes whatever the commit
// holds: ApplySet parents (a failed run is recorded on its parent), the
// Leases a run takes, and the API server's own Leases in kube-system.
func snapshot(t *testing.T) map[string]string {
	t.Helper()
	ctx := context.Background()
	kinds := []schema.GroupVersionResource{configMaps, services, namespaces, deployments, crds,
		{Version: "v1", Resource: "secrets"}, {Version: "v1", Resource: "serviceaccounts"},
		{Group: "coordination.k8s.io", Version: "v1", Resource: "leases"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "roles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "rolebindings"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"},
		{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterrolebindings"},
	}
	crdList, err := kube.Resource(crds).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, crd := range crdList.Items {
		group, _, _ := unstructured.NestedString(crd.Object, "spec", "group")
		plural, _, _ := unstructured.NestedString(crd.Object, "spec", "names", "plural")
		versions, _, _ := unstructured.NestedSlice(crd.Object, "spec", "versions")
		for _, v := range versions {
			vm, _ := v.(map[string]any)
			if storage, _ := vm["storage"].(bool); storage {
				name, _ := vm["name"].(string)
				kinds = append(kinds, schema.GroupVersionResource{Group: group, Version: name, Resource: plural})
			}
		}
	}
	out := map[string]string{}
	for _, gvr := range kinds {
		list, err := kube.Resource(gvr).List(ctx, metav1.ListOptions{})
		if apierrors.IsNotFound(err) {
			continue // a CRD being deleted
		}
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range list.Items {
			switch {
			case gvr.Resource == "secrets" && u.GetLabels()["applyset.kubernetes.io/id"] != "":
				continue
			case gvr.Resource == "leases" && (u.GetNamespace() == "kube-system" || u.GetName() == "cronsync"):
				continue
			}
			out[gvr.Resource+"/"+u.GetNamespace()+"/"+u.GetName()] = u.GetResourceVersion()
		}
	}
	return out
}

func diffSnapshots(before, after map[string]string) []string {
	var diff []string
	for k, v := range after {
		if before[k] != v {
			diff = append(diff, fmt.Sprintf("%s: %q -> %q", k, before[k], v))
		}
	}
	for k := range before {
		if _, ok := after[k]; !ok {
			diff = append(diff, k+": deleted")
		}
	}
	sort.Strings(diff)
	return diff
}

var (
	namespace = testenv.Namespace
	configMap = testenv.ConfigMap
)

func deployment(ns, name string, replicas int) string {
	return fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata:
  name: %[2]s
  namespace: %[1]s
spec:
  replicas: %[3]d
  selector:
    matchLabels: {app: %[2]s}
  template:
    metadata:
      labels: {app: %[2]s}
    spec:
      containers:
      - name: app
        image: registry.invalid/app:1
`, ns, name, replicas)
}

// webhookRecorder is a --notify-url that keeps every body posted to it.
func webhookRecorder(t *testing.T) (url string, posts func() []string) {
	var mu sync.Mutex
	var bodies []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		mu.Lock()
		bodies = append(bodies, string(body))
		mu.Unlock()
	}))
	t.Cleanup(srv.Close)
	return srv.URL, func() []string {
		mu.Lock()
		defer mu.Unlock()
		return slices.Clone(bodies)
	}
}
