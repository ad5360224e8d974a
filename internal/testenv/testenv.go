// Package testenv gives tests the real parts cronsync talks to: a
// kube-apiserver with etcd (built from source by hack/testbin/build.sh and
// started through envtest), optionally with the controllers, scheduler and
// kwok's fake nodes that make workloads roll out, and Git repositories made with the git command
// and served over smart HTTP; and fault proxies to put between cronsync and
// either (faultproxy.go). Only tests import it, so neither envtest nor
// controller-runtime ends up in the cronsync binary.
package testenv

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// ModuleRoot is the directory of cronsync's go.mod.
func ModuleRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}

// Cluster is a running kube-apiserver and etcd.
type Cluster struct {
	// Config is a cluster-admin client configuration.
	Config *rest.Config
	// Kubeconfig is the path of a kubeconfig file for Config, for running the
	// cronsync binary.
	Kubeconfig string
	env        *envtest.Environment
	dir        string
	// procs are the controllers StartControllers started, logs their output.
	procs []*exec.Cmd
	logs  []*os.File
}

// binaries returns the directory holding kube-apiserver and etcd. They are
// built on first use when KUBEBUILDER_ASSETS is unset, so that a plain
// `go test ./...` works; a failure to build is an error, never a skip.
func binaries() (string, error) {
	if dir := os.Getenv("KUBEBUILDER_ASSETS"); dir != "" {
		return dir, nil
	}
	cmd := exec.Command(filepath.Join(ModuleRoot(), "hack", "testbin", "build.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("building kube-apiserver and etcd: %v\n%s", err, stderr.String())
	}
	return strings.TrimSpace(string(out)), nil
}

// StartCluster starts a control plane that audits every request (see
// AuditSince). Call Stop when done (from TestMain).
func StartCluster() (*Cluster, error) { return start(true) }

// StartClusterUnaudited starts a control plane without an audit log, for
// measurements that must not pay for it.
func StartClusterUnaudited() (*Cluster, error) { return start(false) }

func start(audit bool) (*Cluster, error) {
	bin, err := binaries()
	if err != nil {
		return nil, err
	}
	env := &envtest.Environment{
		BinaryAssetsDirectory:    bin,
		ControlPlaneStartTimeout: 2 * time.Minute,
		ControlPlaneStopTimeout:  time.Minute,
	}
	dir, err := os.MkdirTemp("", "cronsync-cluster-")
	if err != nil {
		return nil, err
	}
	// envtest's default /24 runs out of Service IPs at 254 Services; the
	// benchmark creates thousands.
	env.ControlPlane.GetAPIServer().Configure().Set("service-cluster-ip-range", "10.96.0.0/16")
	if audit {
		// Every request is audited, so tests can prove what cronsync sent.
		policy := filepath.Join(dir, "audit-policy.yaml")
		if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
			return nil, err
		}
		// The log is never rotated (at the default 100 MB a long chaos
		// run would see it start again under its mark).
		env.ControlPlane.GetAPIServer().Configure().
			Set("audit-policy-file", policy).
			Set("audit-log-path", filepath.Join(dir, "audit.log")).
			Set("audit-log-maxsize", "1000000")
	}
	cfg, err := env.Start()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("starting kube-apiserver and etcd from %s: %w", bin, err)
	}
	c := &Cluster{Config: cfg, env: env, dir: dir}
	c.Kubeconfig, err = c.WriteKubeconfig("admin", "system:masters")
	if err != nil {
		c.Stop()
		return nil, err
	}
	if err := c.waitBootstrapped(); err != nil {
		c.Stop()
		return nil, err
	}
	return c, nil
}

// waitBootstrapped waits for the API server's own objects (the default
// namespace's kubernetes Service) to be written, so that a test that
// compares resourceVersions before and after a run does not see them
// appear.
func (c *Cluster) waitBootstrapped() error {
	cs, err := kubernetes.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	err = wait.PollUntilContextCancel(ctx, 100*time.Millisecond, true, func(ctx context.Context) (bool, error) {
		_, err := cs.CoreV1().Services("default").Get(ctx, "kubernetes", metav1.GetOptions{})
		return err == nil, nil
	})
	if err != nil {
		return fmt.Errorf("the API server never wrote the default/kubernetes Service: %w", err)
	}
	return nil
}

// WriteKubeconfig makes a user authenticated by client certificate and
// returns the path of a kubeconfig for it. With no groups the user can do
// nothing until RBAC grants it something.
func (c *Cluster) WriteKubeconfig(name string, groups ...string) (string, error) {
	user, err := c.env.ControlPlane.AddUser(envtest.User{Name: name, Groups: groups}, nil)
	if err != nil {
		return "", err
	}
	kc, err := user.KubeConfig()
	if err != nil {
		return "", err
	}
	path := filepath.Join(c.dir, name+".kubeconfig")
	return path, os.WriteFile(path, kc, 0o600)
}

const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Metadata
`

// AuditEvent is the part of an audit log entry tests look at.
type AuditEvent struct {
	Verb       string `json:"verb"`
	RequestURI string `json:"requestURI"`
	User       struct {
		Username string `json:"username"`
	} `json:"user"`
	// UserAgent carries what a FaultProxy's SetTag added.
	UserAgent string `json:"userAgent"`
	// ObjectRef is what the request addressed; nil for non-resource
	// requests (discovery).
	ObjectRef *struct {
		Resource    string `json:"resource"`
		Namespace   string `json:"namespace"`
		Name        string `json:"name"`
		APIGroup    string `json:"apiGroup"`
		Subresource string `json:"subresource"`
	} `json:"objectRef"`
	ResponseStatus *struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	// Received is when the request came in, Completed when its answer
	// was done.
	Received  time.Time `json:"requestReceivedTimestamp"`
	Completed time.Time `json:"stageTimestamp"`
}

// AuditMark returns a position in the audit log; AuditSince reads from it.
func (c *Cluster) AuditMark() int64 {
	st, err := os.Stat(filepath.Join(c.dir, "audit.log"))
	if err != nil {
		return 0
	}
	return st.Size()
}

// AuditSince returns the requests user made since mark (everyone's if user
// is ""). The API server
// writes the log while it is read: a line it has not finished (at the end,
// or under mark) is not an event yet, and is left out.
func (c *Cluster) AuditSince(mark int64, user string) ([]AuditEvent, error) {
	// Only what follows the mark is read (and the byte before it): a
	// long chaos run writes gigabytes of it.
	f, err := os.Open(filepath.Join(c.dir, "audit.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	from := max(mark-1, 0)
	if _, err := f.Seek(from, io.SeekStart); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, err
	}
	if from+int64(len(data)) < mark {
		return nil, fmt.Errorf("audit log is %d bytes, shorter than its mark %d", from+int64(len(data)), mark)
	}
	tail := data[mark-from:]
	if mark > 0 && data[0] != '\n' {
		_, tail, _ = bytes.Cut(tail, []byte("\n"))
	}
	var out []AuditEvent
	for len(tail) > 0 {
		line, rest, complete := bytes.Cut(tail, []byte("\n"))
		if !complete {
			break
		}
		tail = rest
		var ev AuditEvent
		if err := json.Unmarshal(line, &ev); err != nil {
			return nil, err
		}
		if user == "" || ev.User.Username == user {
			out = append(out, ev)
		}
	}
	return out, nil
}

// Stop stops the control plane and removes its files.
func (c *Cluster) Stop() {
	c.stopControllers()
	_ = c.env.Stop()
	if c.dir != "" {
		_ = os.RemoveAll(c.dir)
	}
}

// Tool returns the path of a CLI that hack/testbin/build.sh builds beside
// the control plane (helm, kustomize, jsonnet, sops, age-keygen), building
// it first if need be.
func Tool(name string) (string, error) {
	dir, err := binaries()
	if err != nil {
		return "", err
	}
	p := filepath.Join(dir, name)
	if _, err := os.Stat(p); err != nil {
		return "", fmt.Errorf("%s is not in %s: run hack/testbin/build.sh (KUBEBUILDER_ASSETS points at an older build?): %w", name, dir, err)
	}
	return p, nil
}

// MustTool is Tool, failing t when the tool is not there.
func MustTool(t testing.TB, name string) string {
	t.Helper()
	p, err := Tool(name)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
