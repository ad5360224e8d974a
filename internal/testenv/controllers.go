package testenv

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
)

// FakeNode is the name of the Node kwok runs pods on.
const FakeNode = "kwok-node-0"

// StartControllers makes the cluster act: kube-controller-manager (rollouts,
// Jobs, garbage collection, service accounts, node lifecycle),
// kube-scheduler, and kwok managing one fake Node, so that pods are scheduled
// and become Running and Ready, and Job pods complete, with no container
// runtime. Stop ends them with the control plane. It returns once the Node
// is Ready and schedulable.
func (c *Cluster) StartControllers() error {
	bin, err := binaries()
	if err != nil {
		return err
	}
	// The controllers sign service-account tokens with the key envtest
	// gave the API server.
	certDir := c.env.ControlPlane.APIServer.CertDir
	procs := []struct {
		name string
		args []string
	}{
		{"kube-controller-manager", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--service-account-private-key-file=" + filepath.Join(certDir, "sa-signer.key"),
			"--root-ca-file=" + filepath.Join(certDir, "apiserver.crt"),
			"--use-service-account-credentials=false",
			"--leader-elect=false",
			"--secure-port=0",
			// Fast enough for tests that watch a rollout fail.
			"--node-monitor-period=2s",
			// On a loaded 2-core machine kwok's heartbeats arrive late; with
			// the default grace the node lifecycle controller marks the node
			// NotReady and its pods Ready=False, and kwok never sets them
			// back. No test needs a node to go away.
			"--node-monitor-grace-period=10m",
			"--concurrent-deployment-syncs=10",
			"--concurrent-replicaset-syncs=10",
			"--concurrent-job-syncs=10",
		}},
		{"kube-scheduler", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--authentication-kubeconfig=" + c.Kubeconfig,
			"--authorization-kubeconfig=" + c.Kubeconfig,
			"--leader-elect=false",
			"--secure-port=0",
		}},
		{"kwok", []string{
			"--kubeconfig=" + c.Kubeconfig,
			"--manage-all-nodes=true",
			"--node-lease-duration-seconds=40",
			"--server-address=",
			"--config=" + stageFiles(bin),
		}},
	}
	for _, p := range procs {
		cmd := exec.Command(filepath.Join(bin, p.name), p.args...)
		logf, err := os.Create(filepath.Join(c.dir, p.name+".log"))
		if err != nil {
			return err
		}
		cmd.Stdout, cmd.Stderr = logf, logf
		if err := cmd.Start(); err != nil {
			logf.Close()
			return fmt.Errorf("starting %s: %w", p.name, err)
		}
		c.procs = append(c.procs, cmd)
		c.logs = append(c.logs, logf)
	}
	return c.addFakeNode()
}

// StartNamespaceController runs kube-controller-manager's namespace
// controller alone, so that a deleted Namespace is emptied and goes away
// as in a real cluster, without the rest of StartControllers' load. Stop
// ends it with the control plane.
func (c *Cluster) StartNamespaceController() error {
	bin, err := binaries()
	if err != nil {
		return err
	}
	cmd := exec.Command(filepath.Join(bin, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig,
		"--controllers=namespace-controller",
		"--use-service-account-credentials=false",
		"--leader-elect=false",
		"--secure-port=0",
	)
	logf, err := os.Create(filepath.Join(c.dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting kube-controller-manager: %w", err)
	}
	c.procs = append(c.procs, cmd)
	c.logs = append(c.logs, logf)
	return nil
}

func stageFiles(bin string) string {
	files, _ := filepath.Glob(filepath.Join(bin, "kwok-stages", "*.yaml"))
	return strings.Join(files, ",")
}

// addFakeNode registers the Node kwok answers for, with room for many pods,
// and waits until the node lifecycle controller has seen it Ready and taken
// its not-ready taint off.
func (c *Cluster) addFakeNode() error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	capacity := corev1.ResourceList{
		// Room for the benchmark's thousands of pods.
		corev1.ResourceCPU:    resource.MustParse("1000"),
		corev1.ResourceMemory: resource.MustParse("4Ti"),
		corev1.ResourcePods:   resource.MustParse("20000"),
	}
	_, err = cs.CoreV1().Nodes().Create(ctx, &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name:        FakeNode,
			Labels:      map[string]string{"kubernetes.io/hostname": FakeNode, "type": "kwok"},
			Annotations: map[string]string{"kwok.x-k8s.io/node": "fake"},
		},
		Status: corev1.NodeStatus{Capacity: capacity, Allocatable: capacity},
	}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("creating the fake node: %w", err)
	}
	err = wait.PollUntilContextCancel(ctx, 500*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		n, err := cs.CoreV1().Nodes().Get(ctx, FakeNode, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ready := false
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady && cond.Status == corev1.ConditionTrue {
				ready = true
			}
		}
		for _, t := range n.Spec.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule || t.Effect == corev1.TaintEffectNoExecute {
				return false, nil
			}
		}
		return ready, nil
	})
	if err != nil {
		return fmt.Errorf("the fake node did not become Ready and untainted: %w (logs in %s)", err, c.dir)
	}
	return nil
}

func (c *Cluster) stopControllers() {
	for _, p := range c.procs {
		_ = p.Process.Kill()
		_, _ = p.Process.Wait()
	}
	for _, f := range c.logs {
		f.Close()
	}
	c.procs, c.logs = nil, nil
}
