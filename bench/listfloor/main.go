// Command listfloor is the read floor as a process of its own: the LISTs
// bench/sync's read floor makes, from a program that links client-go and
// nothing else. It shows what any tool started per run pays before its
// first request, which the read floor (measured inside bench/sync, already
// running) does not.
//
//	listfloor KUBECONFIG GROUP,VERSION,RESOURCE,NAMESPACE ...
package main

import (
	"context"
	"fmt"
	"os"
	"strings"

	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/cronsync/cronsync/bench/floorlist"
)

func main() {
	if err := run(os.Args[1], os.Args[2:]); err != nil {
		fmt.Fprintln(os.Stderr, "listfloor:", err)
		os.Exit(1)
	}
}

func run(kubeconfig string, specs []string) error {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return err
	}
	cfg.QPS, cfg.Burst = -1, 0
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	var targets []floorlist.Target
	for _, spec := range specs {
		f := strings.Split(spec, ",")
		if len(f) != 4 {
			return fmt.Errorf("%q is not GROUP,VERSION,RESOURCE,NAMESPACE", spec)
		}
		targets = append(targets, floorlist.Target{Resource: schema.GroupVersionResource{Group: f[0], Version: f[1], Resource: f[2]}, Namespace: f[3]})
	}
	return floorlist.List(context.Background(), dyn, targets)
}
