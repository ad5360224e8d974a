// Command demo starts a kube-apiserver and etcd on this machine, syncs
// examples/hello from this repository's HEAD into it with the cronsync binary
// built by `make build` (twice: the second run has nothing to do), and lists
// what landed. Run it with `make demo`.
package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/cronsync/cronsync/internal/testenv"
)

func main() {
	if err := demo(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func demo() error {
	root := testenv.ModuleRoot()
	fmt.Println("starting kube-apiserver and etcd ...")
	c, err := testenv.StartCluster()
	if err != nil {
		return err
	}
	defer c.Stop()

	// The second run finds nothing to change and writes no object.
	for range 2 {
		sync := exec.Command(filepath.Join(root, "cronsync"),
			"--kubeconfig", c.Kubeconfig, "--repo", root, "--path", "examples/hello")
		sync.Stdout, sync.Stderr = os.Stdout, os.Stderr
		fmt.Println("\n$ cronsync --repo . --path examples/hello")
		if err := sync.Run(); err != nil {
			return fmt.Errorf("cronsync: %w", err)
		}
	}

	kube := dynamic.NewForConfigOrDie(c.Config)
	fmt.Println("\nin namespace hello now:")
	for _, gvr := range []schema.GroupVersionResource{
		{Version: "v1", Resource: "configmaps"},
		{Group: "apps", Version: "v1", Resource: "deployments"},
		{Version: "v1", Resource: "services"},
	} {
		list, err := kube.Resource(gvr).Namespace("hello").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, u := range list.Items {
			managers := ""
			for _, m := range u.GetManagedFields() {
				managers += " " + m.Manager + "(" + string(m.Operation) + ")"
			}
			fmt.Printf("  %s/%s  managed by:%s\n", gvr.Resource, u.GetName(), managers)
		}
	}
	return nil
}
