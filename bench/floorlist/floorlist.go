// Package floorlist makes the read floor's LISTs: one per resource and
// namespace, 8 at a time, every page. bench/sync makes them inside its own
// process and bench/listfloor as a process of its own; both must make the
// same requests for their times to compare.
package floorlist

import (
	"context"
	"sync"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
)

// Target is one LIST: a resource, in Namespace unless that is empty.
type Target struct {
	Resource  schema.GroupVersionResource
	Namespace string
}

// List reads every page of every target, 8 targets at a time, and returns
// the first error.
func List(ctx context.Context, dyn dynamic.Interface, targets []Target) error {
	work := make(chan Target)
	errs := make(chan error, len(targets))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for t := range work {
				var ri dynamic.ResourceInterface = dyn.Resource(t.Resource)
				if t.Namespace != "" {
					ri = dyn.Resource(t.Resource).Namespace(t.Namespace)
				}
				opts := metav1.ListOptions{Limit: 500}
				for {
					list, err := ri.List(ctx, opts)
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
	for _, t := range targets {
		work <- t
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}
