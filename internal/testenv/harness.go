package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Harness is what a package of tests that run the cronsync binary shares:
// the binary, built once, and a cluster.
type Harness struct {
	// Binary is the path of the cronsync binary built from this module.
	Binary string
	// Cluster is the running control plane.
	Cluster *Cluster
}

// RunMain is a TestMain for such a package: it builds cronsync, starts an
// audited cluster (with controllers, scheduler and kwok when controllers is
// set), calls ready, runs the tests, and stops everything. It returns the exit status for
// os.Exit; a failure to build or start is printed and fails the package.
func RunMain(m *testing.M, h *Harness, controllers bool, ready func()) int {
	dir, err := os.MkdirTemp("", "cronsync-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	h.Binary = filepath.Join(dir, "cronsync")
	if out, err := exec.Command("go", "build", "-o", h.Binary, ModuleRoot()).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building cronsync: %v\n%s", err, out)
		return 1
	}
	if h.Cluster, err = StartCluster(); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer h.Cluster.Stop()
	if controllers {
		if err := h.Cluster.StartControllers(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	ready()
	return m.Run()
}
