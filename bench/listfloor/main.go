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
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
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
	work := make(chan string)
	errs := make(chan error, len(specs))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for spec := range work {
				f := strings.Split(spec, ",")
				if len(f) != 4 {
					errs <- fmt.Errorf("%q is not GROUP,VERSION,RESOURCE,NAMESPACE", spec)
					continue
				}
				var ri dynamic.ResourceInterface = dyn.Resource(schema.GroupVersionResource{Group: f[0], Version: f[1], Resource: f[2]})
				if f[3] != "" {
					ri = dyn.Resource(schema.GroupVersionResource{Group: f[0], Version: f[1], Resource: f[2]}).Namespace(f[3])
				}
				opts := metav1.ListOptions{Limit: 500}
				for {
					list, err := ri.List(context.Background(), opts)
					if err != nil {
						errs <- err
						break
					}
					if opts.Continue = list.GetContinue(); opts.Continue == "" {
						break
					}
				}
			}
		})
	}
	for _, s := range specs {
		work <- s
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}
