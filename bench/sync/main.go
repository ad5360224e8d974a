// Command sync measures cronsync against `kubectl apply --server-side` and
// against the physical floors, in one run, on a local kube-apiserver and etcd
// (the ones the tests use).
//
//	go run ./bench/sync [-objects 1000] [-runs 3] [-kubectl=false] [-controllers=false] [-hold]
//
// It generates a repository of ConfigMaps, Services, Deployments,
// ServiceAccounts and Roles across 10 namespaces, five objects a file, and
// reports wall time, requests the API server served (from its own
// apiserver_request_total; with controllers running, theirs are counted
// too), peak RSS and minor page faults (with what one costs on the
// machine), for:
//   - cronsync's first sync; a sync where nothing changed, decided from the
//     LISTs and again with --fast-unchanged=false (a dry run per object);
//     with controllers, scheduler and kwok's fake node beside the API server
//     (the default), the same no-change run with --wait once everything has
//     rolled out; one at a new commit that changes no manifest file; and
//     one where one object changed (validation and prune on); and the
//     no-change run of the same repository with a ${CLUSTER} reference in
//     every ConfigMap and substitution on, right after the plain one;
//   - a repository shaped like kube-prometheus (ten CRDs of about 600 KB,
//     about a hundred objects), first and unchanged;
//   - kubectl apply --server-side -R -f, first and unchanged;
//   - the write floor: every object server-side-applied once by 8 parallel
//     workers with no throttling, no validation and no prune; and the read
//     floor: one LIST per resource and namespace the commit uses, measured
//     in turns with the no-change run, the new commit that changes no object
//     and the one that changes one (five of each a round), each row the
//     median of its turns; and, beside the no-change run's turns, the same
//     LISTs from bench/listfloor, a program that links client-go and
//     nothing else, started as a process (not a target: what starting one
//     adds to the LISTs); and, in each turn of the one-object change, one
//     dry run and one apply of one ConfigMap, which with twice the read
//     floor make that run's target.
//
// Each tool gets its own namespaces, so every "first" run creates everything.
package main

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/bench/floorlist"
	"github.com/cronsync/cronsync/internal/testenv"
)

const namespaces = 10

// readFloorRow names the read floor's measures.
const readFloorRow = "read floor: one LIST per resource and namespace"

// pairs is how many samples a round takes of each run measured in turns
// with the read floor (each right after a floor of its own): a single run
// of 200 ms moves by a third with the controllers' work, so one sample a
// round is too few to compare.
const pairs = 5

func main() {
	objects := flag.Int("objects", 1000, "objects in the generated repository, besides its namespaces")
	runs := flag.Int("runs", 3, "repetitions of each measurement; the median is reported")
	withKubectl := flag.Bool("kubectl", true, "also measure kubectl apply --server-side (minutes at 10,000 objects)")
	controllers := flag.Bool("controllers", true, "run controllers, scheduler and kwok, and measure --wait (heavy at 10,000 objects)")
	writeFloor := flag.Bool("write-floor", true, "measure the write floor (every object applied by 8 workers, first and unchanged): at 50,000 objects that alone takes a quarter of an hour")
	hold := flag.Bool("hold", false, "measure nothing: start the cluster, write the generated repository, print its path and the kubeconfig's, and wait for an interrupt (for profiling by hand)")
	flag.Parse()
	if *hold {
		if err := holdCluster(*objects); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*objects, *runs, *withKubectl, *controllers, *writeFloor); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

type measure struct {
	name     string
	wall     time.Duration
	requests int
	// base is what this run is compared with, measured right before it:
	// the read floor of its turn, or for --wait the same run without it.
	base time.Duration
	// processBase is the read floor as a process of its turn, for the
	// no-change run.
	processBase time.Duration
	// allowance is the one-object change's target in its turn: twice the
	// read floor, plus one dry run and one apply of one object (oneWrite).
	allowance time.Duration
	rss       int64 // bytes; 0 when not measured
	// cpu is the process's user and system time: on a loaded machine it
	// moves far less than the wall time does.
	cpu time.Duration
	// baseCPU is base's CPU time, where base is a process.
	baseCPU time.Duration
	// faults is the process's minor page faults (for the read floor, the
	// benchmark's own while it lists): on a VM whose faults are dear, they
	// are a large part of what a run costs.
	faults int64
	// withoutRequest is how many objects cronsync decided from its LISTs
	// alone, of total; -1 when the run did not say.
	withoutRequest, total int
}

func run(objects, runs int, withKubectl, controllers, writeFloor bool) error {
	root := testenv.ModuleRoot()
	work, err := os.MkdirTemp("", "cronsync-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	binary, listfloor := filepath.Join(work, "cronsync"), filepath.Join(work, "listfloor")
	if err := shippedBuild(root, binary, root); err != nil {
		return err
	}
	if err := shippedBuild(root, listfloor, filepath.Join(root, "bench", "listfloor")); err != nil {
		return err
	}
	rusageBin = filepath.Join(work, "rusage")
	if err := shippedBuild(root, rusageBin, filepath.Join(root, "bench", "rusage")); err != nil {
		return err
	}
	kubectl := ""
	if withKubectl {
		kubectl = findKubectl(root)
	}

	fmt.Fprintln(os.Stderr, "starting kube-apiserver and etcd (and, unless -controllers=false, controllers, scheduler and kwok) ...")
	c, err := testenv.StartClusterUnaudited()
	if err != nil {
		return err
	}
	defer c.Stop()
	// Deployments roll out, as on a real cluster, so that --wait has
	// something to wait for.
	if controllers {
		if err := c.StartControllers(); err != nil {
			return err
		}
	}

	var results []measure
	for i := range runs {
		fmt.Fprintf(os.Stderr, "round %d of %d ...\n", i+1, runs)
		round, err := oneRound(c, work, binary, listfloor, kubectl, objects, i, controllers, writeFloor)
		if err != nil {
			return err
		}
		results = append(results, round...)
	}
	fault, err := faultCost()
	if err != nil {
		return err
	}
	report(results, objects, kubectl != "", fault)
	return nil
}

// holdCluster starts a cluster without controllers and a generated
// repository of objects, and keeps them until interrupted, so that a run
// can be profiled by hand against them.
func holdCluster(objects int) error {
	work, err := os.MkdirTemp("", "cronsync-hold-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	c, err := testenv.StartClusterUnaudited()
	if err != nil {
		return err
	}
	defer c.Stop()
	repo := filepath.Join(work, "repo")
	if err := writeRepo(repo, generate("hold", objects)); err != nil {
		return err
	}
	fmt.Printf("--kubeconfig %s --repo %s --prune --applyset default/hold --wait=false\n", c.Kubeconfig, repo)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	<-sig
	return nil
}

// faultCost is what this machine charges for one minor page fault: the
// median, over five fresh 16 MiB mappings, of the time to touch each 4 KiB
// page once. It varies between machines far more than CPU speed does (in
// a VM such as this one a fault can cost a trip through the hypervisor),
// and every page a new process touches pays it.
func faultCost() (time.Duration, error) {
	const size, page = 16 << 20, 4 << 10
	var per []time.Duration
	for range 5 {
		b, err := syscall.Mmap(-1, 0, size, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return 0, fmt.Errorf("measuring a page fault: %w", err)
		}
		start := time.Now()
		for i := 0; i < size; i += page {
			b[i] = 1
		}
		per = append(per, time.Since(start)/(size/page))
		if err := syscall.Munmap(b); err != nil {
			return 0, fmt.Errorf("measuring a page fault: %w", err)
		}
	}
	slices.Sort(per)
	return per[len(per)/2], nil
}

// oneRound measures every scenario once, in namespaces of its own (suffix
// round), so that first runs always create.
func oneRound(c *testenv.Cluster, work, binary, listfloor, kubectl string, objects, round int, controllers, writeFloor bool) ([]measure, error) {
	var out []measure
	prefix := func(tool string) string { return fmt.Sprintf("%s%d", tool, round) }

	// The floor.
	objs := generate(prefix("floor"), objects)
	for _, label := range []string{"floor: first apply", "floor: unchanged"} {
		if !writeFloor {
			break
		}
		m, err := floor(c, objs)
		if err != nil {
			return nil, err
		}
		m.name = label
		out = append(out, m)
	}

	// cronsync.
	repo := filepath.Join(work, prefix("cs"))
	if err := writeRepo(repo, generate(prefix("cs"), objects)); err != nil {
		return nil, err
	}
	args := []string{"--kubeconfig", c.Kubeconfig, "--repo", repo, "--prune", "--applyset", "default/" + prefix("cs"), "--wait=false"}
	waitArgs := append(slices.Clone(args[:len(args)-1]), "--wait-timeout", "5m")
	slowArgs := append(slices.Clone(args), "--fast-unchanged=false")
	m, err := timed(c, "cronsync: first sync", exec.Command(binary, args...))
	if err != nil {
		return nil, err
	}
	out = append(out, m)
	// The same repository with a ${CLUSTER} reference in every ConfigMap,
	// synced with substitution from a ConfigMap source, so that its
	// no-change run (taken in the same turns) costs what the source's GET
	// and the variables' part of the record add.
	subRepo := filepath.Join(work, prefix("sub"))
	if err := writeRepo(subRepo, withReference(generate(prefix("sub"), objects))); err != nil {
		return nil, err
	}
	vars := prefix("sub") + "-vars"
	if _, err := dynamic.NewForConfigOrDie(c.Config).Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("default").Create(context.Background(),
		obj(fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s}\ndata: {CLUSTER: bench-1, REGION: eu}\n", vars)), metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	subArgs := []string{"--kubeconfig", c.Kubeconfig, "--repo", subRepo, "--prune", "--applyset", "default/" + prefix("sub"), "--wait=false", "--substitute-from", "configmap/default/" + vars}
	if _, err := timed(c, "cronsync: first sync, with substitution", exec.Command(binary, subArgs...)); err != nil {
		return nil, err
	}
	if controllers {
		// Untimed: let every Deployment roll out, so that the no-change
		// runs meet a settled, healthy cluster, as most scheduled runs do.
		if _, err := timed(c, "cronsync: wait for the rollout", exec.Command(binary, waitArgs...)); err != nil {
			return nil, err
		}
	}
	// The no-change run and the read floor (one LIST per resource and
	// namespace of the commit, which is all a no-change run must read)
	// take turns, floor first and last, so that both meet the cluster in
	// the same state (with controllers, still settling after the rollout)
	// and a burst of the controllers' work lands on either alike. Each
	// turn is a sample of its row (the table shows the rows' medians), and
	// each run is compared with lastFloor, the floor of its own turn, not
	// with floors measured minutes apart.
	var lastFloor time.Duration
	floorTurn := func() error {
		m, err := readFloor(c, generate(prefix("cs"), objects))
		m.name = readFloorRow
		out = append(out, m)
		lastFloor = m.wall
		return err
	}
	floorArgs, err := listFloorArgs(c, generate(prefix("cs"), objects))
	if err != nil {
		return nil, err
	}
	for i := range pairs + 1 {
		if err := floorTurn(); err != nil {
			return nil, err
		}
		if i == pairs {
			break
		}
		pf, err := timed(c, "read floor as a process (client-go and nothing else)", exec.Command(listfloor, floorArgs...))
		if err != nil {
			return nil, err
		}
		out = append(out, pf)
		m, err := timed(c, "cronsync: unchanged", exec.Command(binary, args...))
		if err != nil {
			return nil, err
		}
		m.base, m.processBase = lastFloor, pf.wall
		out = append(out, m)
		plain, plainCPU := m.wall, m.cpu
		if m, err = timed(c, "cronsync: unchanged, with substitution", exec.Command(binary, subArgs...)); err != nil {
			return nil, err
		}
		m.base, m.baseCPU = plain, plainCPU
		out = append(out, m)
		if controllers {
			// Right after the same run without it: what the wait adds.
			without := m.wall
			if m, err = timed(c, "cronsync: unchanged, --wait", exec.Command(binary, waitArgs...)); err != nil {
				return nil, err
			}
			m.base = without
			out = append(out, m)
		}
	}
	if m, err = timed(c, "cronsync: unchanged, --fast-unchanged=false", exec.Command(binary, slowArgs...)); err != nil {
		return nil, err
	}
	out = append(out, m)

	// A new commit that changes no object (a file beside the manifests):
	// the run lists the commit's tree and takes every manifest file from
	// the last run's record, then decides from the LISTs. Then a commit
	// that changes one ConfigMap. Each takes turns with the read floor too.
	cm := filepath.Join(repo, "apps", "file-000.yaml")
	for i := range pairs {
		if err := os.WriteFile(filepath.Join(repo, "NOTES.txt"), fmt.Appendf(nil, "not a manifest (%d)\n", i), 0o644); err != nil {
			return nil, err
		}
		if err := git(repo, "add", "NOTES.txt"); err != nil {
			return nil, err
		}
		if err := git(repo, "commit", "-qm", "notes"); err != nil {
			return nil, err
		}
		b, err := os.ReadFile(cm)
		if err != nil {
			return nil, err
		}
		next := bytes.Replace(b, fmt.Appendf(nil, "revision: \"%d\"", i+1), fmt.Appendf(nil, "revision: \"%d\"", i+2), 1)
		if bytes.Equal(next, b) {
			return nil, fmt.Errorf("%s: no revision %d to change", cm, i+1)
		}
		for _, turn := range []struct {
			label  string
			before func() error
		}{
			{"cronsync: unchanged objects, new commit", nil},
			{"cronsync: one object changed", func() error {
				if err := os.WriteFile(cm, next, 0o644); err != nil {
					return err
				}
				return git(repo, "commit", "-qam", "one change")
			}},
		} {
			if err := floorTurn(); err != nil {
				return nil, err
			}
			if turn.before != nil {
				if err := turn.before(); err != nil {
					return nil, err
				}
			}
			var write time.Duration
			if turn.before != nil {
				if write, err = oneWrite(c, round*pairs+i); err != nil {
					return nil, err
				}
			}
			m, err := timed(c, turn.label, exec.Command(binary, args...))
			if err != nil {
				return nil, err
			}
			m.base = lastFloor
			if write > 0 {
				m.allowance = 2*lastFloor + write
			}
			out = append(out, m)
		}
	}

	// A repository shaped like kube-prometheus: ten CRDs with schemas of
	// several hundred KB, and about a hundred objects, some of them their
	// custom resources.
	kp := filepath.Join(work, prefix("kp"))
	if err := writeKubePrometheusLike(kp, prefix("kp")); err != nil {
		return nil, err
	}
	kpArgs := []string{"--kubeconfig", c.Kubeconfig, "--repo", kp, "--prune", "--applyset", "default/" + prefix("kp"), "--wait=false"}
	for _, label := range []string{"kube-prometheus-like: first sync", "kube-prometheus-like: unchanged"} {
		m, err := timed(c, label, exec.Command(binary, kpArgs...))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}

	// kubectl.
	if kubectl != "" {
		dir := filepath.Join(work, prefix("kc"))
		if err := writeRepo(dir, generate(prefix("kc"), objects)); err != nil {
			return nil, err
		}
		for _, label := range []string{"kubectl apply --server-side: first", "kubectl apply --server-side: unchanged"} {
			cmd := exec.Command(kubectl, "--kubeconfig", c.Kubeconfig, "apply", "--server-side", "-R", "-f", dir)
			m, err := timed(c, label, cmd)
			if err != nil {
				return nil, err
			}
			out = append(out, m)
		}
	}
	return out, nil
}

// shippedFlags is how the Dockerfile builds cronsync. The benchmark times
// that binary, not a development build: a static, stripped binary starts
// about 10 ms sooner here than one linked against libc with its debug
// information. listfloor is built alike, so that the two start alike.
const shippedFlags = `CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X main.buildVersion=${VERSION}"`

// shippedBuild builds pkg to out as the Dockerfile builds cronsync, and
// refuses to if the Dockerfile no longer says shippedFlags.
func shippedBuild(root, out, pkg string) error {
	dockerfile, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		return err
	}
	if !bytes.Contains(dockerfile, []byte(shippedFlags)) {
		return fmt.Errorf("the Dockerfile no longer builds with %s; build the benchmark's binaries as it does", shippedFlags)
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w -X main.buildVersion=bench", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("building %s: %v\n%s", pkg, err, b)
	}
	return nil
}

func findKubectl(root string) string {
	if p, err := exec.LookPath("kubectl"); err == nil {
		return p
	}
	out, err := exec.Command(filepath.Join(root, "hack", "testbin", "build.sh"), "kubectl").Output()
	if err != nil {
		fmt.Fprintln(os.Stderr, "no kubectl (building it failed); its rows are left out")
		return ""
	}
	return filepath.Join(strings.TrimSpace(string(out)), "kubectl")
}

// rusageBin is bench/rusage, built: every timed process is started
// through it, so that its peak RSS is its own and not the benchmark's.
var rusageBin string

// timed runs cmd to completion through rusageBin and measures it.
func timed(c *testenv.Cluster, name string, cmd *exec.Cmd) (measure, error) {
	before, err := requests(c)
	if err != nil {
		return measure{}, err
	}
	r, w, err := os.Pipe()
	if err != nil {
		return measure{}, err
	}
	defer r.Close()
	wrapped := exec.Command(rusageBin, append([]string{cmd.Path}, cmd.Args[1:]...)...)
	wrapped.Env, wrapped.Dir, wrapped.ExtraFiles = cmd.Env, cmd.Dir, []*os.File{w}
	var stdout, stderr bytes.Buffer
	wrapped.Stdout, wrapped.Stderr = &stdout, &stderr
	err = wrapped.Run()
	w.Close()
	if err != nil {
		return measure{}, fmt.Errorf("%s: %v\n%s", name, err, stderr.String())
	}
	var wallNS, maxRSS, faults, cpuNS int64
	if _, err := fmt.Fscan(r, &wallNS, &maxRSS, &faults, &cpuNS); err != nil {
		return measure{}, fmt.Errorf("%s: reading its resource usage: %v", name, err)
	}
	after, err := requests(c)
	if err != nil {
		return measure{}, err
	}
	m := measure{name: name, wall: time.Duration(wallNS), requests: after - before - 1, withoutRequest: -1, rss: maxRSS << 10, faults: faults, cpu: time.Duration(cpuNS)}
	// cronsync's summary: "N objects: ... M unchanged (K without a request)".
	if sub := summaryRE.FindSubmatch(stdout.Bytes()); sub != nil {
		m.total, _ = strconv.Atoi(string(sub[1]))
		m.withoutRequest = 0
		if w := withoutRequestRE.FindSubmatch(sub[2]); w != nil {
			m.withoutRequest, _ = strconv.Atoi(string(w[1]))
		}
	}
	return m, nil
}

var (
	summaryRE        = regexp.MustCompile(`(?m)^cronsync: synced .*: (\d+) objects: (.*)$`)
	withoutRequestRE = regexp.MustCompile(`\((\d+) without a request\)`)
)

// requests is the API server's count of requests served so far.
func requests(c *testenv.Cluster) (int, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = -1, 0
	dc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return 0, err
	}
	body, err := dc.RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		return 0, err
	}
	total := 0.0
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "apiserver_request_total{") {
			continue
		}
		f := strings.Fields(line)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			total += v
		}
	}
	return int(total), nil
}

// floor applies objs (namespaces first) with 8 workers, each object once,
// with no throttling and nothing else.
func floor(c *testenv.Cluster, objs []*unstructured.Unstructured) (measure, error) {
	before, err := requests(c)
	if err != nil {
		return measure{}, err
	}
	start := time.Now()
	dyn, mapper, err := unthrottled(c)
	if err != nil {
		return measure{}, err
	}
	apply := func(objs []*unstructured.Unstructured) error {
		work := make(chan *unstructured.Unstructured)
		errs := make(chan error, len(objs))
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for o := range work {
					gvk := o.GroupVersionKind()
					m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
					if err != nil {
						errs <- err
						continue
					}
					var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
					if m.Scope.Name() == meta.RESTScopeNameNamespace {
						ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
					}
					if _, err := ri.Apply(context.Background(), o.GetName(), o, metav1.ApplyOptions{FieldManager: "floor", Force: true}); err != nil {
						errs <- err
					}
				}
			})
		}
		for _, o := range objs {
			work <- o
		}
		close(work)
		wg.Wait()
		close(errs)
		return <-errs
	}
	isNS := func(o *unstructured.Unstructured) bool { return o.GetKind() == "Namespace" }
	if err := apply(slices.DeleteFunc(slices.Clone(objs), func(o *unstructured.Unstructured) bool { return !isNS(o) })); err != nil {
		return measure{}, err
	}
	if err := apply(slices.DeleteFunc(slices.Clone(objs), isNS)); err != nil {
		return measure{}, err
	}
	return since(c, start, before)
}

// generate makes the benchmark's objects: namespaces prefix-0..9, then n
// objects spread over them, kinds in a fixed mix.
func generate(prefix string, n int) []*unstructured.Unstructured {
	var out []*unstructured.Unstructured
	ns := func(i int) string { return fmt.Sprintf("%s-%d", prefix, i%namespaces) }
	for i := range namespaces {
		out = append(out, obj(fmt.Sprintf("apiVersion: v1\nkind: Namespace\nmetadata: {name: %s}\n", ns(i))))
	}
	for i := range n {
		name := fmt.Sprintf("obj-%04d", i)
		var y string
		switch i % 20 {
		case 0, 1, 2, 3, 4, 5:
			y = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: %s, namespace: %s}\ndata: {revision: \"1\", payload: %q}\n", name, ns(i), strings.Repeat("x", 200))
		case 6, 7, 8, 9:
			y = fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: %s, namespace: %s}\nspec: {selector: {app: %s}, ports: [{port: 80, targetPort: 8080}]}\n", name, ns(i), name)
		case 10, 11, 12, 13:
			y = fmt.Sprintf(`apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: %[2]s}
spec:
  replicas: 1
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      containers:
      - name: app
        image: registry.invalid/app:1
        ports: [{containerPort: 8080}]
        resources: {requests: {cpu: 10m, memory: 16Mi}}
`, name, ns(i))
		case 14, 15, 16:
			y = fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: %s, namespace: %s}\n", name, ns(i))
		default:
			y = fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {name: %s, namespace: %s}\nrules: [{apiGroups: [\"\"], resources: [configmaps], verbs: [get, list]}]\n", name, ns(i))
		}
		out = append(out, obj(y))
	}
	return out
}

// withReference puts a ${CLUSTER} reference in every ConfigMap's data.
func withReference(objs []*unstructured.Unstructured) []*unstructured.Unstructured {
	for _, o := range objs {
		if o.GetKind() == "ConfigMap" {
			if err := unstructured.SetNestedField(o.Object, "${CLUSTER}", "data", "cluster"); err != nil {
				panic(err)
			}
		}
	}
	return objs
}

func obj(y string) *unstructured.Unstructured {
	u := &unstructured.Unstructured{}
	if err := yaml.Unmarshal([]byte(y), &u.Object); err != nil {
		panic(err)
	}
	return u
}

// writeRepo writes objs as a Git repository: the namespaces in
// 00-namespaces.yaml (so that kubectl, which applies in file order, can
// create them first), everything else five objects a file under apps/.
func writeRepo(dir string, objs []*unstructured.Unstructured) error {
	if err := os.MkdirAll(filepath.Join(dir, "apps"), 0o755); err != nil {
		return err
	}
	var nsDocs []string
	var files [][]string
	for _, o := range objs {
		b, err := yaml.Marshal(o.Object)
		if err != nil {
			return err
		}
		if o.GetKind() == "Namespace" {
			nsDocs = append(nsDocs, string(b))
			continue
		}
		if len(files) == 0 || len(files[len(files)-1]) == 5 {
			files = append(files, nil)
		}
		files[len(files)-1] = append(files[len(files)-1], string(b))
	}
	if err := os.WriteFile(filepath.Join(dir, "00-namespaces.yaml"), []byte(strings.Join(nsDocs, "---\n")), 0o644); err != nil {
		return err
	}
	for i, docs := range files {
		if err := os.WriteFile(filepath.Join(dir, "apps", fmt.Sprintf("file-%03d.yaml", i)), []byte(strings.Join(docs, "---\n")), 0o644); err != nil {
			return err
		}
	}
	return commitAll(dir)
}

// commitAll makes dir a repository with everything in it committed.
func commitAll(dir string) error {
	if err := git(dir, "init", "-q", "-b", "main"); err != nil {
		return err
	}
	if err := git(dir, "add", "-A"); err != nil {
		return err
	}
	return git(dir, "commit", "-qm", "generated")
}

func git(dir string, args ...string) error {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1",
		"GIT_AUTHOR_NAME=bench", "GIT_AUTHOR_EMAIL=bench@cronsync.invalid",
		"GIT_COMMITTER_NAME=bench", "GIT_COMMITTER_EMAIL=bench@cronsync.invalid")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("git %s: %v: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// report prints the medians as a Markdown table with the ratios the targets
// are stated in.
func report(all []measure, objects int, haveKubectl bool, fault time.Duration) {
	byName := map[string][]measure{}
	var order []string
	for _, m := range all {
		if _, ok := byName[m.name]; !ok {
			order = append(order, m.name)
		}
		byName[m.name] = append(byName[m.name], m)
	}
	med := map[string]measure{}
	for name, ms := range byName {
		slices.SortFunc(ms, func(a, b measure) int { return int(a.wall - b.wall) })
		med[name] = ms[len(ms)/2]
	}
	fmt.Printf("%d objects in %d files plus %d namespaces; median of %d runs (of %d for the rows taken in turns with the read floor, of %d for the floor); machine: %s\n\n",
		objects, (objects+4)/5, namespaces, len(byName[order[0]]), len(byName["cronsync: unchanged"]), len(byName[readFloorRow]), machine())
	fmt.Println("| run | wall time | CPU | requests | decided without a request | peak RSS | page faults |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, name := range order {
		m := med[name]
		rss, faults, decided, cpu := "-", "-", "-", "-"
		if m.cpu > 0 {
			cpu = m.cpu.Round(time.Millisecond).String()
		}
		if m.rss > 0 {
			rss = fmt.Sprintf("%.0f MiB", float64(m.rss)/(1<<20))
		}
		if m.rss > 0 || name == readFloorRow {
			faults = strconv.FormatInt(m.faults, 10)
		}
		if m.withoutRequest >= 0 && m.total > 0 {
			decided = fmt.Sprintf("%d of %d", m.withoutRequest, m.total)
		}
		fmt.Printf("| %s | %s | %s | %d | %s | %s | %s |\n", name, m.wall.Round(time.Millisecond), cpu, m.requests, decided, rss, faults)
	}
	ratio := func(a, b string) string {
		if med[a].wall == 0 || med[b].wall == 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", float64(med[a].wall)/float64(med[b].wall))
	}
	// paired compares each sample with its own base, so that the cluster
	// settling over a round (the read floor moves from 70 to 240 ms with
	// controllers) does not decide the ratio: the median of the samples'
	// ratios, and their range.
	paired := func(a string, base func(measure) time.Duration) string {
		var rs []float64
		for _, m := range byName[a] {
			if b := base(m); b > 0 {
				rs = append(rs, float64(m.wall)/float64(b))
			}
		}
		if len(rs) == 0 {
			return "-"
		}
		slices.Sort(rs)
		return fmt.Sprintf("%.2fx (of %d turns, %.2fx–%.2fx)", rs[len(rs)/2], len(rs), rs[0], rs[len(rs)-1])
	}
	byBase := func(m measure) time.Duration { return m.base }
	// pairedCPU is paired over CPU time, for a run whose base is a process.
	pairedCPU := func(a string) string {
		var rs []float64
		for _, m := range byName[a] {
			if m.baseCPU > 0 {
				rs = append(rs, float64(m.cpu)/float64(m.baseCPU))
			}
		}
		if len(rs) == 0 {
			return "-"
		}
		slices.Sort(rs)
		return fmt.Sprintf("%.2fx (of %d turns, %.2fx–%.2fx)", rs[len(rs)/2], len(rs), rs[0], rs[len(rs)-1])
	}
	fmt.Println()
	fmt.Printf("- cronsync / floor: first sync %s (target ≤ 2.5x), unchanged %s (≤ 1.5x), one object changed %s (≤ 1.5x)\n",
		ratio("cronsync: first sync", "floor: first apply"),
		ratio("cronsync: unchanged", "floor: unchanged"),
		ratio("cronsync: one object changed", "floor: unchanged"))
	fmt.Printf("- unchanged / read floor of its turn: %s (target ≤ 2x); medians' ratio %s; with --fast-unchanged=false %s\n",
		paired("cronsync: unchanged", byBase),
		ratio("cronsync: unchanged", readFloorRow),
		ratio("cronsync: unchanged, --fast-unchanged=false", readFloorRow))
	fmt.Printf("  - the same against the read floor as a process of its turn (not a target: what starting a process adds): %s\n",
		paired("cronsync: unchanged", func(m measure) time.Duration { return m.processBase }))
	inFaults := func(name string) string {
		m := med[name]
		return fmt.Sprintf("%d faults, about %s of its %s", m.faults, (time.Duration(m.faults) * fault).Round(time.Millisecond), m.wall.Round(time.Millisecond))
	}
	fmt.Printf("  - a minor page fault costs %s on this machine (a fresh 4 KiB page touched once). The read floor: %s; the no-change run: %s; the read floor as a process: %s\n",
		fault, inFaults(readFloorRow), inFaults("cronsync: unchanged"), inFaults("read floor as a process (client-go and nothing else)"))
	fmt.Printf("- unchanged objects at a new commit / read floor of its turn: %s\n", paired("cronsync: unchanged objects, new commit", byBase))
	fmt.Printf("- one object changed / read floor of its turn: %s; against twice that floor plus one dry run and one apply of one object, timed in the same turn: %s (target ≤ 1x)\n",
		paired("cronsync: one object changed", byBase),
		paired("cronsync: one object changed", func(m measure) time.Duration { return m.allowance }))
	fmt.Printf("- kube-prometheus-like, unchanged: %s (target < 1.5 s)\n", med["kube-prometheus-like: unchanged"].wall.Round(time.Millisecond))
	fmt.Printf("- unchanged with substitution (a ${CLUSTER} in every ConfigMap, variables from a ConfigMap) / the same run without it right before: %s (target ≤ 1.10x); in CPU time %s\n",
		paired("cronsync: unchanged, with substitution", byBase),
		pairedCPU("cronsync: unchanged, with substitution"))
	if med["cronsync: unchanged, --wait"].wall > 0 {
		fmt.Printf("- --wait on an unchanged, healthy commit: %s of the run without it right before (target ≤ 1.10x)\n",
			paired("cronsync: unchanged, --wait", byBase))
	}
	if haveKubectl {
		fmt.Printf("- kubectl / cronsync: first %s, unchanged %s\n",
			ratio("kubectl apply --server-side: first", "cronsync: first sync"),
			ratio("kubectl apply --server-side: unchanged", "cronsync: unchanged"))
	}
}

func machine() string {
	model := "unknown CPU"
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				model = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%d cores (%s), %s, %s/%s", runtime.NumCPU(), model, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}

// readFloor lists every resource and namespace objs live in, once each,
// with 8 workers: what any tool must read to know a commit is unchanged.
// floorGroup is one LIST of the read floor: a resource, in a namespace
// unless it is cluster-scoped.
type floorGroup struct {
	m  *meta.RESTMapping
	ns string
}

// floorGroups is the read floor's LISTs for objs: one per resource and
// namespace.
func floorGroups(mapper meta.RESTMapper, objs []*unstructured.Unstructured) ([]floorGroup, error) {
	seen := map[string]bool{}
	var groups []floorGroup
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			return nil, err
		}
		ns := ""
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			ns = o.GetNamespace()
		}
		if k := m.Resource.String() + "/" + ns; !seen[k] {
			seen[k] = true
			groups = append(groups, floorGroup{m, ns})
		}
	}
	return groups, nil
}

// listFloorArgs are bench/listfloor's arguments for the same LISTs.
func listFloorArgs(c *testenv.Cluster, objs []*unstructured.Unstructured) ([]string, error) {
	_, mapper, err := unthrottled(c)
	if err != nil {
		return nil, err
	}
	groups, err := floorGroups(mapper, objs)
	if err != nil {
		return nil, err
	}
	args := []string{c.Kubeconfig}
	for _, g := range groups {
		r := g.m.Resource
		args = append(args, strings.Join([]string{r.Group, r.Version, r.Resource, g.ns}, ","))
	}
	return args, nil
}

func readFloor(c *testenv.Cluster, objs []*unstructured.Unstructured) (measure, error) {
	before, err := requests(c)
	if err != nil {
		return measure{}, err
	}
	dyn, mapper, err := unthrottled(c)
	if err != nil {
		return measure{}, err
	}
	groups, err := floorGroups(mapper, objs)
	if err != nil {
		return measure{}, err
	}
	targets := make([]floorlist.Target, len(groups))
	for i, g := range groups {
		targets[i] = floorlist.Target{Resource: g.m.Resource, Namespace: g.ns}
	}
	var ru0, ru1 syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru0); err != nil {
		return measure{}, err
	}
	start := time.Now()
	if err := floorlist.List(context.Background(), dyn, targets); err != nil {
		return measure{}, err
	}
	m, err := since(c, start, before)
	if err != nil {
		return measure{}, err
	}
	// The faults of this process while it listed: the floor's own, since
	// nothing else in it runs meanwhile.
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru1); err != nil {
		return measure{}, err
	}
	m.faults = ru1.Minflt - ru0.Minflt
	return m, nil
}

// oneWrite times what the one-object target allows beyond the reads: one
// server-side dry run and one apply of one ConfigMap, whose data differs in
// every turn so that the apply writes. It goes through the read floor's
// client, whose connection is already open.
func oneWrite(c *testenv.Cluster, turn int) (time.Duration, error) {
	dyn, _, err := unthrottled(c)
	if err != nil {
		return 0, err
	}
	cms := dyn.Resource(schema.GroupVersionResource{Version: "v1", Resource: "configmaps"}).Namespace("default")
	patch := fmt.Appendf(nil, `{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"bench-one-write"},"data":{"turn":"%d"}}`, turn)
	force := true
	start := time.Now()
	for _, dryRun := range [][]string{{metav1.DryRunAll}, nil} {
		if _, err := cms.Patch(context.Background(), "bench-one-write", types.ApplyPatchType, patch,
			metav1.PatchOptions{FieldManager: "bench", Force: &force, DryRun: dryRun}); err != nil {
			return 0, fmt.Errorf("one write: %w", err)
		}
	}
	return time.Since(start), nil
}

// writeKubePrometheusLike writes a repository shaped like kube-prometheus's
// manifests/: ten CRDs whose schemas are several hundred KB each (deep
// objects with many described properties, as generated CRDs are), and about
// a hundred objects, twenty of them custom resources.
func writeKubePrometheusLike(dir, prefix string) error {
	if err := os.MkdirAll(filepath.Join(dir, "setup"), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "setup", "namespace.yaml"), []byte("apiVersion: v1\nkind: Namespace\nmetadata: {name: "+prefix+"}\n"), 0o644); err != nil {
		return err
	}
	group := prefix + ".example.com"
	for i := range 10 {
		kind := fmt.Sprintf("Thing%d", i)
		var props strings.Builder
		// About 600 KB: 1,500 properties, each an object of a few described
		// fields.
		for p := range 1500 {
			fmt.Fprintf(&props, "                field%04d:\n                  type: object\n                  description: %q\n                  properties:\n                    name: {type: string, description: %q}\n                    value: {type: string, description: %q}\n                    port: {type: integer, format: int32, description: %q}\n",
				p, strings.Repeat("d", 120), strings.Repeat("n", 60), strings.Repeat("v", 60), strings.Repeat("p", 60))
		}
		crd := fmt.Sprintf(`apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: %[1]ss.%[2]s
spec:
  group: %[2]s
  scope: Namespaced
  names: {plural: %[1]ss, singular: %[1]s, kind: %[3]s, listKind: %[3]sList}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
%[4]s`, strings.ToLower(kind), group, kind, props.String())
		if err := os.WriteFile(filepath.Join(dir, "setup", fmt.Sprintf("crd-%d.yaml", i)), []byte(crd), 0o644); err != nil {
			return err
		}
		for j := range 2 {
			cr := fmt.Sprintf("apiVersion: %s/v1\nkind: %s\nmetadata: {name: r%d, namespace: %s}\nspec:\n  field0001: {name: a, value: b, port: 9090}\n", group, kind, j, prefix)
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("cr-%d-%d.yaml", i, j)), []byte(cr), 0o644); err != nil {
				return err
			}
		}
	}
	for i := range 80 {
		var y string
		switch i % 4 {
		case 0:
			y = fmt.Sprintf("apiVersion: v1\nkind: ServiceAccount\nmetadata: {name: sa-%d, namespace: %s}\n", i, prefix)
		case 1:
			y = fmt.Sprintf("apiVersion: v1\nkind: Service\nmetadata: {name: svc-%d, namespace: %s}\nspec: {selector: {app: a%d}, ports: [{port: 9090}]}\n", i, prefix, i)
		case 2:
			y = fmt.Sprintf("apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: %s-role-%d}\nrules: [{apiGroups: [\"\"], resources: [pods, services, endpoints], verbs: [get, list, watch]}]\n", prefix, i)
		default:
			y = fmt.Sprintf("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: cm-%d, namespace: %s}\ndata: {config.yaml: %q}\n", i, prefix, strings.Repeat("key: value\n", 200))
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("obj-%03d.yaml", i)), []byte(y), 0o644); err != nil {
			return err
		}
	}
	return commitAll(dir)
}

// unthrottled is a dynamic client and a mapper with no client-side rate
// limit, as the floors use them.
func unthrottled(c *testenv.Cluster) (dynamic.Interface, *restmapper.DeferredDiscoveryRESTMapper, error) {
	cfg := rest.CopyConfig(c.Config)
	cfg.QPS, cfg.Burst = -1, 0
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, nil, err
	}
	return dyn, restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(discovery.NewDiscoveryClientForConfigOrDie(cfg))), nil
}

// since is a floor's measure: the time since start, and the requests the
// API server served since it counted before (less the count's own).
func since(c *testenv.Cluster, start time.Time, before int) (measure, error) {
	wall := time.Since(start)
	after, err := requests(c)
	if err != nil {
		return measure{}, err
	}
	return measure{wall: wall, requests: after - before - 1}, nil
}
