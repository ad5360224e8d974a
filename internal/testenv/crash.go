package testenv

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery"
)

// KillAPIServer kills kube-apiserver with SIGKILL, the way a crash or a lost
// node would, and returns its command line for RestartAPIServer. etcd and
// the certificates stay.
func (c *Cluster) KillAPIServer() ([]string, error) {
	certDir := c.env.ControlPlane.APIServer.CertDir
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		raw, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if filepath.Base(args[0]) != "kube-apiserver" || !bytes.Contains(raw, []byte(certDir)) {
			continue
		}
		pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(p)))
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			return nil, err
		}
		for range 100 {
			if syscall.Kill(pid, 0) != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		return args, nil
	}
	return nil, fmt.Errorf("no kube-apiserver process with --cert-dir %s", certDir)
}

// RestartAPIServer starts kube-apiserver again with the command line
// KillAPIServer returned, on the same port and certificates, and waits
// until it answers. Stop ends it.
func (c *Cluster) RestartAPIServer(args []string) error {
	cmd := exec.Command(args[0], args[1:]...)
	logf, err := os.Create(filepath.Join(c.dir, "kube-apiserver-restarted.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return err
	}
	c.procs = append(c.procs, cmd)
	c.logs = append(c.logs, logf)
	dc, err := discovery.NewDiscoveryClientForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return wait.PollUntilContextCancel(ctx, 200*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		body, err := dc.RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		return err == nil && string(body) == "ok", nil
	})
}
