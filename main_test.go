package main

import (
	"flag"
	"fmt"
	"os"
	"testing"

	"k8s.io/client-go/dynamic"

	"github.com/cronsync/cronsync/internal/testenv"
)

// The tests here call package main's functions directly. Rendering charts
// with the cluster's capabilities needs an API server, started once; the
// tests that run the built binary are under e2e/.
var (
	cluster *testenv.Cluster
	kube    dynamic.Interface
)

func TestMain(m *testing.M) {
	flag.Parse()
	if f := flag.Lookup("test.fuzz"); f != nil && f.Value.String() != "" {
		// Fuzzing (make fuzz) runs no test but the target, in worker
		// processes that each pass through here: none needs a cluster.
		os.Exit(m.Run())
	}
	os.Exit(func() int {
		var err error
		if cluster, err = testenv.StartCluster(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer cluster.Stop()
		kube = dynamic.NewForConfigOrDie(cluster.Config)
		return m.Run()
	}())
}
