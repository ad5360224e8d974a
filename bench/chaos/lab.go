package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/cronsync/cronsync/internal/testenv"
)

// lab is what every trial runs in: the cronsync binary, an audited
// cluster, a fault proxy in front of its API server for the runs (and
// another, fault-free, for a second run that competes with one), a Git
// server over smart HTTP behind a fault proxy, and an age key for SOPS.
type lab struct {
	dir     string
	binary  string
	cluster *testenv.Cluster
	// api is the proxy every run goes through, authenticated upstream as
	// runUser; other is a second one, as otherUser.
	api, other        *testenv.FaultProxy
	kubeconfig, kc2   string
	git               *testenv.FaultProxy
	gitSrv            *httptest.Server
	repo              *gitRepo
	repoURL           string
	ageKey, recipient string
	sops              string
	cipher            map[string]string
	kube              dynamic.Interface
	cs                *kubernetes.Clientset
	apiserverArgs     []string
	log               io.Writer
	runs              int
	faultedRunTimeout time.Duration
	cleanRunTimeout   time.Duration
	bystanderVersions map[string]string
	// second is the run that took the Lease from the faulted one, if any.
	second *run
	// dryDeletes are the trial's DELETEs that were dry runs (noteDryDeletes).
	dryDeletes map[string]bool
	// startMembers are the set's live members when the trial began.
	startMembers map[key]*unstructured.Unstructured
	verbose      bool
}

// prebuilt is -binary: a cronsync binary to run instead of building one.
var prebuilt string

const (
	runUser   = "chaos-run"
	otherUser = "chaos-other"
	// leaseDuration is --lease-duration: the shortest the product allows
	// would make a loaded machine lose leases for no fault at all.
	leaseDuration = 6 * time.Second
)

func newLab(log io.Writer) (*lab, error) {
	dir, err := os.MkdirTemp("", "cronsync-chaos-")
	if err != nil {
		return nil, err
	}
	l := &lab{dir: dir, log: log, cipher: map[string]string{}, faultedRunTimeout: 40 * time.Second, cleanRunTimeout: 3 * time.Minute}
	ok := false
	defer func() {
		if !ok {
			l.Close()
		}
	}()
	l.binary = filepath.Join(dir, "cronsync")
	if prebuilt != "" {
		l.binary = prebuilt
	} else if out, err := exec.Command("go", "build", "-o", l.binary, testenv.ModuleRoot()).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("building cronsync: %v\n%s", err, out)
	}
	if l.cluster, err = testenv.StartCluster(); err != nil {
		return nil, err
	}
	// Namespaces that runs prune go away, as in a real cluster.
	if err := l.cluster.StartNamespaceController(); err != nil {
		return nil, err
	}
	l.kube = dynamic.NewForConfigOrDie(l.cluster.Config)
	l.cs = kubernetes.NewForConfigOrDie(l.cluster.Config)
	if l.api, l.kubeconfig, err = l.cluster.APIProxy(runUser); err != nil {
		return nil, err
	}
	if l.other, l.kc2, err = l.cluster.APIProxy(otherUser); err != nil {
		return nil, err
	}
	// The Lease's writes are kept, to see when each run held it.
	l.api.KeepBodies(keepBody)
	l.other.KeepBodies(keepBody)
	h, err := testenv.GitHandler(filepath.Join(dir, "git"))
	if err != nil {
		return nil, err
	}
	l.gitSrv = httptest.NewServer(h)
	if l.git, err = testenv.GitProxy(l.gitSrv.URL); err != nil {
		return nil, err
	}
	if l.repo, err = newGitRepo(filepath.Join(dir, "git", "repo")); err != nil {
		return nil, err
	}
	l.repoURL = l.git.URL() + "/repo"
	if err := l.keys(); err != nil {
		return nil, err
	}
	if err := l.bystanders(); err != nil {
		return nil, err
	}
	ok = true
	return l, nil
}

func (l *lab) Close() {
	if l.api != nil {
		l.api.Close()
	}
	if l.other != nil {
		l.other.Close()
	}
	if l.git != nil {
		l.git.Close()
	}
	if l.gitSrv != nil {
		l.gitSrv.Close()
	}
	if l.cluster != nil {
		l.cluster.Stop()
	}
	os.RemoveAll(l.dir)
}

// keys makes the age key the SOPS Secret is encrypted for, with the
// test cache's age-keygen.
func (l *lab) keys() error {
	keygen, err := testenv.Tool("age-keygen")
	if err != nil {
		return err
	}
	if l.sops, err = testenv.Tool("sops"); err != nil {
		return err
	}
	l.ageKey = filepath.Join(l.dir, "age.txt")
	out, err := exec.Command(keygen, "-o", l.ageKey).CombinedOutput()
	if err != nil {
		return fmt.Errorf("age-keygen: %v\n%s", err, out)
	}
	l.recipient = regexp.MustCompile(`age1[0-9a-z]+`).FindString(string(out))
	if l.recipient == "" {
		return fmt.Errorf("age-keygen said %q", out)
	}
	return nil
}

// encrypt encrypts a Secret's manifest with the sops CLI, once per
// plaintext: the same plaintext keeps its ciphertext from commit to
// commit, as a repository's would.
func (l *lab) encrypt(plain string) (string, error) {
	if c, ok := l.cipher[plain]; ok {
		return c, nil
	}
	d, err := os.MkdirTemp(l.dir, "sops-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(d)
	in := filepath.Join(d, "secret.yaml")
	if err := os.WriteFile(in, []byte(plain), 0o600); err != nil {
		return "", err
	}
	cmd := exec.Command(l.sops, "--encrypt", "--age", l.recipient, "--encrypted-regex", "^(data|stringData)$", in)
	cmd.Dir = d
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("sops --encrypt: %v\n%s", err, stderr.String())
	}
	l.cipher[plain] = stdout.String()
	return stdout.String(), nil
}

// bystanders are objects no run may touch: a ConfigMap and a Secret
// beside the parent, a ConfigMap labelled as a member of another set, and
// a ClusterRole. (The commits' namespaces are not made here: the first
// run creates them.)
func (l *lab) bystanders() error {
	ctx := context.Background()
	if _, err := l.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ctlNamespace}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	for _, cm := range []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Name: "bystander", Namespace: ctlNamespace}, Data: map[string]string{"v": "1"}},
		{ObjectMeta: metav1.ObjectMeta{Name: "other-set", Namespace: "default", Labels: map[string]string{"applyset.kubernetes.io/part-of": "applyset-someone-else-v1"}}, Data: map[string]string{"v": "1"}},
	} {
		if _, err := l.cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			return err
		}
	}
	if _, err := l.cs.CoreV1().Secrets(ctlNamespace).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "bystander"}, StringData: map[string]string{"v": "1"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	if _, err := l.cs.RbacV1().ClusterRoles().Create(ctx, &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "chaos-bystander"}}, metav1.CreateOptions{}); err != nil {
		return err
	}
	var err error
	l.bystanderVersions, err = l.bystanderState()
	return err
}

func (l *lab) bystanderState() (map[string]string, error) {
	ctx := context.Background()
	out := map[string]string{}
	for _, c := range []struct{ ns, name string }{{ctlNamespace, "bystander"}, {"default", "other-set"}} {
		cm, err := l.cs.CoreV1().ConfigMaps(c.ns).Get(ctx, c.name, metav1.GetOptions{})
		if err != nil {
			return nil, fmt.Errorf("configmap %s/%s: %w", c.ns, c.name, err)
		}
		out["configmap/"+c.ns+"/"+c.name] = cm.ResourceVersion
	}
	s, err := l.cs.CoreV1().Secrets(ctlNamespace).Get(ctx, "bystander", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("secret %s/bystander: %w", ctlNamespace, err)
	}
	out["secret/"+ctlNamespace+"/bystander"] = s.ResourceVersion
	cr, err := l.cs.RbacV1().ClusterRoles().Get(ctx, "chaos-bystander", metav1.GetOptions{})
	if err != nil {
		return nil, fmt.Errorf("clusterrole chaos-bystander: %w", err)
	}
	out["clusterrole/chaos-bystander"] = cr.ResourceVersion
	return out, nil
}

// run is one run of the cronsync binary as it ended.
type run struct {
	Tag        string
	Args       []string
	Code       int
	Signal     string
	Start, End time.Time
	Stdout     string
	Stderr     string
	Summary    *summary
}

// summary is the part of --output json the harness reads.
type summary struct {
	Result   string         `json:"result"`
	ExitCode int            `json:"exitCode"`
	Commit   string         `json:"commit"`
	Counts   map[string]int `json:"counts"`
	Objects  []struct {
		Ref            string `json:"ref"`
		Action         string `json:"action"`
		WithoutRequest bool   `json:"withoutRequest"`
		Error          string `json:"error"`
	} `json:"objects"`
	Errors []string `json:"errors"`
}

// runOpts is how one run is started.
type runOpts struct {
	prune  bool
	dryRun bool
	// other sends the run through the second proxy, as otherUser.
	other   bool
	timeout time.Duration
}

func (l *lab) args(o runOpts) []string {
	kc := l.kubeconfig
	if o.other {
		kc = l.kc2
	}
	args := []string{
		"--kubeconfig", kc, "--repo", l.repoURL, "--path", "apps",
		"--applyset", ctlNamespace + "/" + setName, "--lease", ctlNamespace + "/" + setName,
		"--lease-duration", leaseDuration.String(), "--fast-data-bytes", "2048",
		"--sops-age-key-file", l.ageKey, "--git-timeout", "20s", "--timeout", o.timeout.String(),
		"--output", "json", "--work-dir", filepath.Join(l.dir, "work"),
	}
	if o.prune {
		args = append(args, "--prune", "--prune-namespaces-and-crds")
	}
	if o.dryRun {
		args = append(args, "--dry-run=server")
	}
	return args
}

// started is a run under way.
type started struct {
	r    *run
	cmd  *exec.Cmd
	out  bytes.Buffer
	err  bytes.Buffer
	done chan struct{}
	show io.Writer
}

// start starts a run, tagged in the proxies' records and the audit log.
func (l *lab) start(o runOpts) (*started, error) {
	l.runs++
	tag := fmt.Sprintf("r%d", l.runs)
	if o.timeout == 0 {
		o.timeout = l.cleanRunTimeout
	}
	s := &started{r: &run{Tag: tag, Args: l.args(o)}, done: make(chan struct{})}
	if l.verbose {
		s.show = l.log
	}
	if o.other {
		l.other.SetTag(tag)
	} else {
		l.api.SetTag(tag)
	}
	l.git.SetTag(tag)
	if err := os.MkdirAll(filepath.Join(l.dir, "work"), 0o755); err != nil {
		return nil, err
	}
	s.cmd = exec.Command(l.binary, s.r.Args...)
	env := []string{"CRONSYNC_WAIT=false"}
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "KUBECONFIG=") && !strings.HasPrefix(e, "POD_NAME=") && !strings.HasPrefix(e, "CRONSYNC_") {
			env = append(env, e)
		}
	}
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = &s.out, &s.err
	s.r.Start = time.Now()
	if err := s.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		_ = s.cmd.Wait()
		s.r.End = time.Now()
		close(s.done)
	}()
	return s, nil
}

// wait waits for the run to end, killing it after limit.
func (s *started) wait(limit time.Duration) (*run, error) {
	select {
	case <-s.done:
	case <-time.After(limit):
		_ = s.cmd.Process.Kill()
		<-s.done
		return s.finish(), fmt.Errorf("run %s still running after %s: killed", s.r.Tag, limit)
	}
	return s.finish(), nil
}

func (s *started) finish() *run {
	r := s.r
	r.Stdout, r.Stderr = s.out.String(), s.err.String()
	st := s.cmd.ProcessState
	r.Code = st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		r.Signal = ws.Signal().String()
	}
	var sum summary
	if json.Unmarshal([]byte(r.Stdout), &sum) == nil {
		r.Summary = &sum
	}
	if s.show != nil {
		fmt.Fprintf(s.show, "--- run %s: %s\nexit %d %s in %s\n--- stderr\n%s", r.Tag, strings.Join(r.Args, " "), r.Code, r.Signal, r.End.Sub(r.Start).Round(time.Millisecond), r.Stderr)
		if r.Summary != nil {
			fmt.Fprintf(s.show, "--- result %s counts %v\n", r.Summary.Result, r.Summary.Counts)
		}
	}
	return r
}

// sync runs cronsync without faults and wants exit 0.
func (l *lab) sync(o runOpts) (*run, error) {
	s, err := l.start(o)
	if err != nil {
		return nil, err
	}
	r, err := s.wait(l.cleanRunTimeout + 30*time.Second)
	if err != nil {
		return r, err
	}
	if r.Code != 0 {
		return r, fmt.Errorf("run %s exited %d:\n%s", r.Tag, r.Code, lastLines(r.Stderr, 20))
	}
	return r, nil
}

func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// keepBody picks the requests whose bodies the proxies keep: the Lease's
// writes (who held it, until when) and DELETEs (their dryRun).
func keepBody(r *http.Request) bool {
	return r.Method == http.MethodDelete || (r.Method != http.MethodGet && isLeaseRequest(r))
}

// leaseFree says no one holds the Lease now.
func (l *lab) leaseFree() bool {
	le, err := l.cs.CoordinationV1().Leases(ctlNamespace).Get(context.Background(), setName, metav1.GetOptions{})
	return err == nil && (le.Spec.HolderIdentity == nil || *le.Spec.HolderIdentity == "")
}

// waitLease waits until the Lease is free or expired, up to limit, and
// says how it stood.
func (l *lab) waitLease(limit time.Duration) (holder string, err error) {
	deadline := time.Now().Add(limit)
	for {
		le, err := l.cs.CoordinationV1().Leases(ctlNamespace).Get(context.Background(), setName, metav1.GetOptions{})
		if err != nil {
			var status interface{ Status() metav1.Status }
			if errors.As(err, &status) && status.Status().Code == http.StatusNotFound {
				return "", nil
			}
			return "", err
		}
		h := ""
		if le.Spec.HolderIdentity != nil {
			h = *le.Spec.HolderIdentity
		}
		if h == "" || le.Spec.RenewTime == nil || le.Spec.LeaseDurationSeconds == nil {
			return "", nil
		}
		until := le.Spec.RenewTime.Add(time.Duration(*le.Spec.LeaseDurationSeconds) * time.Second)
		if time.Now().After(until) {
			return "", nil
		}
		if time.Now().After(deadline) {
			return h, fmt.Errorf("lease held by %s until %s", h, until.Format(time.RFC3339Nano))
		}
		time.Sleep(200 * time.Millisecond)
	}
}
