package main

import (
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
