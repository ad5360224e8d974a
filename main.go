// Command cronsync makes a cluster match one commit of a Git repository, once,
// and exits with a status a Kubernetes Job can act on. See README.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/chart"
	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/health"
	"github.com/cronsync/cronsync/internal/budget"
	"github.com/cronsync/cronsync/internal/redact"
	"github.com/cronsync/cronsync/lease"
	"github.com/cronsync/cronsync/render"
	"github.com/cronsync/cronsync/report"
)

func main() {
	tuneMemory(os.LookupEnv, "/sys/fs/cgroup")
	os.Exit(exitCode(mainErr(os.Args[1:], os.Stdout, os.Stderr)))
}

// mainErr is main without the exit, so that every path out of the program
// goes through exitCode once.
func mainErr(args []string, stdout, stderr io.Writer) error {
	if len(args) == 1 && args[0] == budget.ChildArg {
		return budget.Serve(os.Stdin, stdout, map[string]budget.Task{render.JsonnetTask: render.ServeJsonnet, chart.Task: chart.Serve})
	}
	if len(args) > 0 && args[0] == "status" {
		return runStatus(args[1:], stdout, stderr)
	}
	// Every line printed goes through secrets (see package redact). The
	// JSON document is built from a Summary already cleaned and written as
	// it is: masking its text could break its syntax.
	secrets := redact.New()
	jsonOut := stdout
	cleanOut, cleanErr := secrets.Writer(stdout), secrets.Writer(stderr)
	defer cleanOut.Flush()
	defer cleanErr.Flush()
	stdout, stderr = cleanOut, cleanErr
	cfg, err := parseFlags(args, os.LookupEnv, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return err
	}
	if cfg.version {
		fmt.Fprintln(stdout, "cronsync", version())
		return nil
	}
	// --repo's credentials are masked wherever they show, in a URL that
	// parses or not, or on their own.
	secrets.Add(redact.URLSecrets(cfg.repo)...)
	cfg.render.Secrets, cfg.apply.Secrets = secrets, secrets
	// client-go logs through klog what cronsync reports itself, as errors
	// that name the object; the duplicates would only bury them.
	klog.SetLogger(logr.Discard())
	// SIGHUP too: a run started by hand over SSH whose connection drops
	// would otherwise die between two writes, its Lease held until it
	// expires. For the same reason output nobody reads any more (`| head`)
	// does not end the run: its writes fail, and the sync goes on. (Caught
	// rather than ignored, SIGPIPE would also come from a broken
	// connection, which client-go retries.)
	signal.Ignore(syscall.SIGPIPE)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
	defer stop()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("--timeout %s exceeded: %w", cfg.timeout, context.DeadlineExceeded))
	defer cancel()

	// With --output json, stdout holds the JSON document only; the lines
	// people read go to stderr.
	human := stdout
	if cfg.outputJSON {
		human = stderr
	}
	sum := &report.Summary{Repo: gitsrc.Redact(cfg.repo), Path: cfg.path, DryRun: string(cfg.apply.DryRun), Started: time.Now(), Counts: map[string]int{}}
	err = run(ctx, cfg, human, stderr, sum)
	finish(cfg, sum, err, human, jsonOut, stderr)
	if errors.Is(err, errChangesPending) {
		return err // not a failure: the output said what would change
	}
	if err != nil {
		// Masked whole before it is split: a multi-line value spans lines.
		for line := range strings.SplitSeq(secrets.Clean(err.Error()), "\n") {
			fmt.Fprintf(stderr, "error: %s\n", line)
		}
	}
	return err
}

// restConfig loads the cluster connection the way kubectl does, except that
// having none is an error: kubectl would quietly try http://localhost:8080.
func restConfig(kube *genericclioptions.ConfigFlags) (*rest.Config, error) {
	raw, err := kube.ToRawKubeConfigLoader().RawConfig()
	if err != nil {
		return nil, usageErrorf("loading kubeconfig: %w", err)
	}
	inCluster := os.Getenv("KUBERNETES_SERVICE_HOST") != ""
	if len(raw.Clusters) == 0 && *kube.APIServer == "" && !inCluster {
		return nil, usageErrorf("no cluster to sync to: not running in a pod, and no kubeconfig (set --kubeconfig or KUBECONFIG)")
	}
	restCfg, err := kube.ToRESTConfig()
	if err != nil {
		return nil, usageErrorf("loading cluster credentials: %w", err)
	}
	return restCfg, nil
}

// run does one sync: lease, clone, read, apply. It fills sum as it goes.
func run(ctx context.Context, cfg *config, out, stderr io.Writer, sum *report.Summary) error {
	restCfg, err := restConfig(cfg.kube)
	if err != nil {
		return err
	}
	cfg.restConfig = restCfg
	rest.SetDefaultWarningHandler(lineWarnings{rest.NewWarningWriter(stderr, rest.WarningWriterOptions{Deduplicate: true})})
	opts := cfg.apply
	if cfg.applySet != "" {
		if opts.ApplySet.Namespace, opts.ApplySet.Name, err = namespacedName(cfg.applySet, cfg.kube); err != nil {
			return err
		}
	}
	cfg.parent = opts.ApplySet
	if cfg.commitStatus != nil && opts.DryRun == apply.DryRunNone {
		cfg.statusRun = cfg.commitStatus.Start(opts.ApplySet.Namespace, opts.ApplySet.Name, cfg.apply.Secrets)
	}
	if cfg.lease != "" {
		// Named to apply even in a dry run, which takes no Lease: a commit
		// holding it is refused either way.
		if opts.Lease.Namespace, opts.Lease.Name, err = namespacedName(cfg.lease, cfg.kube); err != nil {
			return err
		}
	}

	// A fleet on one schedule spreads its requests to Git (see splay.go).
	if err := splayWait(ctx, cfg, restCfg, opts.ApplySet, out); err != nil {
		return err
	}

	// The clone reads nothing from the cluster, so it goes beside taking
	// the Lease; a Lease held by another run, or not taken, stops it.
	// Each step that talks to the Git server is bounded by --git-timeout.
	gitCtx := func(ctx context.Context) (context.Context, context.CancelFunc) {
		return context.WithTimeoutCause(ctx, cfg.gitTimeout, fmt.Errorf("--git-timeout %s exceeded: %w", cfg.gitTimeout, context.DeadlineExceeded))
	}
	cloneCtx, cancelClone := gitCtx(ctx)
	defer cancelClone()
	type taken struct {
		l    *lease.Lease
		held *lease.HeldError
		err  error
	}
	leased := make(chan taken, 1)
	go func() {
		var t taken
		if cfg.lease != "" && opts.DryRun == apply.DryRunNone {
			t.l, t.held, t.err = takeLease(ctx, cfg, restCfg)
		}
		if t.held != nil || t.err != nil {
			cancelClone()
		}
		leased <- t
	}()
	// Only the files the run reads are fetched, when the server can (see
	// gitsrc/partial.go); a line says which fetch was made, and why.
	co, cloneErr := gitsrc.Clone(cloneCtx, gitsrc.Options{
		URL: cfg.repo, Ref: cfg.ref, RefSemver: cfg.refSemver, WorkDir: cfg.workDir,
		Credentials: cfg.git, VerifyKeysFile: cfg.verifyKeysFile, Lazy: true,
		Submodules: cfg.submodules == "recursive", Limits: cfg.gitLimits,
		Partial: true, Path: path.Clean(filepath.ToSlash(cfg.path)),
		Log: func(line string) { fmt.Fprintf(out, "cronsync: %s\n", redact.CleanLine(line)) },
	})
	cancelClone()
	if cloneErr == nil {
		defer co.Close()
	}
	t := <-leased
	switch {
	case t.err != nil && ctx.Err() != nil:
		// Stopped (a signal, --timeout) while the Lease was being taken:
		// say why, not the "context canceled" the request ended with.
		return fmt.Errorf("stopped while taking lease %s: %w", cfg.lease, context.Cause(ctx))
	case t.err != nil:
		return t.err
	case t.held != nil:
		sum.Result, sum.Message = "skipped", t.held.Error()+"; another sync is running, so this one applies nothing"
		return nil
	case t.l != nil:
		// finish releases it, once the run's record is written.
		cfg.releaseLease = t.l.Release
		// Every write to the cluster's set goes only while the Lease is
		// surely this run's.
		cfg.fence, opts.Fence = t.l.Fence, t.l.Fence
		// Losing the lease stops the run the way SIGTERM does.
		var cancel context.CancelCauseFunc
		ctx, cancel = context.WithCancelCause(ctx)
		defer cancel(nil)
		go func() {
			select {
			case <-t.l.Lost():
				cancel(fmt.Errorf("%w; another run may be syncing", t.l.Why()))
			case <-ctx.Done():
			}
		}()
	}
	if cloneErr != nil {
		// A commit refused (unsigned) is still the run's commit: its
		// failure is recorded, and posted, on it.
		var ce *gitsrc.CommitError
		if errors.As(cloneErr, &ce) {
			sum.Commit, sum.Message = ce.Commit, "nothing applied"
		}
		return cloneErr
	}
	sum.Ref, sum.Commit = co.Ref, co.Commit
	// The ref's name is the server's: one line, whatever it holds.
	fmt.Fprintf(out, "cronsync: %s %s is commit %s\n", sum.Repo, redact.CleanLine(co.Ref), co.Commit)

	// The variables are read on every run, the commit's record aside: a
	// changed value must reach the cluster at the same commit.
	if cfg.substitute != nil || cfg.substituteFrom != nil {
		if cfg.render.Substitute.Vars, err = substituteVars(ctx, restCfg, cfg.kube, cfg.substituteFrom, cfg.substitute, cfg.apply.Secrets, stderr); err != nil {
			return err
		}
	}
	// The commit is fetched and its files written only if the run reads
	// them: one that finds this commit applied completely last time is
	// decided from its SHA alone.
	commit := &render.Commit{Path: path.Clean(filepath.ToSlash(cfg.path)), Options: cfg.render}
	// Repository text that runs (Jsonnet, chart templates, nameTemplate)
	// runs in processes of this command, within its budgets.
	exe, exeErr := os.Executable()
	if exeErr == nil {
		commit.Options.Jsonnet.Evaluate = render.JsonnetInChild(exe)
	}
	opts.Commit = commit
	opts.Revision = co.Commit + ":" + commit.Path
	if sr := cfg.statusRun; sr != nil {
		// What this sync posted last is on the parent the run reads; a
		// new commit is posted as pending beside the apply.
		opts.ParentRead = func(ctx context.Context, anns map[string]string) { sr.ParentRead(ctx, anns, co.Commit) }
	}
	if cfg.submodules == "off" {
		// The same commit holds other objects without its submodules.
		opts.Revision += " without submodules"
	}
	commit.Tree = func(ctx context.Context) (*render.Tree, error) {
		ctx, cancel := gitCtx(ctx)
		defer cancel()
		entries, err := co.Entries(ctx)
		if err != nil {
			return nil, err
		}
		t := &render.Tree{Files: map[string]string{}, Read: co.ReadBlob, Fetch: func(ctx context.Context, hashes []string) error {
			ctx, cancel := gitCtx(ctx)
			defer cancel()
			return co.FetchBlobs(ctx, hashes)
		}}
		for _, e := range entries {
			if e.File {
				t.Files[e.Path] = e.Hash
			} else {
				t.Others = append(t.Others, e.Path)
			}
		}
		return t, nil
	}
	commit.Need = func(ctx context.Context, p string, whole bool) error {
		ctx, cancel := gitCtx(ctx)
		defer cancel()
		return co.Need(ctx, p, whole)
	}
	warnedSkipped := false
	commit.Files = func(ctx context.Context) (string, string, error) {
		ctx, cancel := gitCtx(ctx)
		defer cancel()
		if err := co.Write(ctx); err != nil {
			return "", "", err
		}
		for _, sub := range co.Skipped {
			if warnedSkipped {
				break
			}
			if commit.Path == "." || sub == commit.Path || strings.HasPrefix(sub, commit.Path+"/") || strings.HasPrefix(commit.Path, sub+"/") {
				fmt.Fprintf(stderr, "warning: submodule %s is not read (--submodules=off): its manifests are not applied\n", redact.CleanLine(sub))
			}
		}
		warnedSkipped = true
		dir, err := co.Sub(cfg.path)
		return co.Dir, dir, err
	}
	opts.Out = out
	opts.Warn = func(msg string) { warn(stderr, cfg.apply.Secrets, msg) }
	commit.Options.Warn = opts.Warn
	chartOpts := cfg.chart
	if exeErr == nil {
		chartOpts.Child = exe
	}
	if commit.Options.RenderChart, err = newChartRenderer(restCfg, chartOpts, co.Dir); err != nil {
		return err
	}
	waiter, err := newWaiter(restCfg, cfg.health, out)
	if err != nil {
		return err
	}
	opts.Ready = func(ctx context.Context, objs []apply.ObjectResult) error {
		_, err := waiter(ctx, objs)
		return err
	}
	if cfg.wait {
		opts.BlockedRetry = cfg.health.Timeout
	}
	res, err := apply.Run(ctx, restCfg, opts)
	if res != nil {
		cfg.parentChecked, cfg.parentRead = res.ParentChecked, res.ParentAnnotations
		for _, o := range res.Objects {
			sum.Counts[o.Action]++
			ro := report.Object{Ref: o.Ref, Source: o.Source, Action: o.Action, WithoutRequest: o.WithoutRequest}
			if o.WithoutRequest {
				sum.WithoutRequest++
			}
			if o.Err != nil {
				ro.Error = o.Err.Error()
			}
			if o.Drift != nil {
				ro.Drift = &report.Drift{Summary: o.Drift.Line(), Detail: o.Drift}
				sum.Drifted++
			}
			sum.Objects = append(sum.Objects, ro)
		}
	}
	changes := sum.Counts[apply.ActionCreated] + sum.Counts[apply.ActionConfigured] + sum.Counts[apply.ActionRecreated] + sum.Counts[apply.ActionPruned]
	if err == nil && cfg.detailedExitCode && changes > 0 {
		return errChangesPending
	}
	// A failed apply already says what is wrong, and a dry run changed
	// nothing that could become ready.
	if err != nil || !cfg.wait || opts.DryRun != apply.DryRunNone {
		return err
	}
	return waitHealthy(ctx, waiter, res, sum)
}

// waitHealthy waits for every object the run applied, changed or not, and
// records the verdict in sum.
func waitHealthy(ctx context.Context, waiter func(context.Context, []apply.ObjectResult) (*health.Result, error), res *apply.Result, sum *report.Summary) error {
	var applied []apply.ObjectResult
	for _, o := range res.Objects {
		switch o.Action {
		case apply.ActionCreated, apply.ActionConfigured, apply.ActionRecreated, apply.ActionUnchanged:
			applied = append(applied, o)
		}
	}
	hres, err := waiter(ctx, applied)
	if hres != nil {
		sum.Health = &report.Health{Ready: hres.Ready, NotReady: hres.NotReady}
		var unhealthy *health.UnhealthyError
		if errors.As(err, &unhealthy) {
			sum.Health.Unhealthy = unhealthy.Error()
		}
	}
	return err
}

// newWaiter returns the health wait for apply's results: every wait of a
// run (depends-on and the final one) is bounded by --wait-timeout.
func newWaiter(restCfg *rest.Config, opts health.Options, out io.Writer) (func(context.Context, []apply.ObjectResult) (*health.Result, error), error) {
	restCfg = rest.CopyConfig(restCfg)
	restCfg.QPS, restCfg.Burst = -1, 0 // as apply: priority and fairness protect the server
	client, err := health.RESTClientFor(restCfg)
	if err != nil {
		return nil, err
	}
	opts.Out = out
	return func(ctx context.Context, objs []apply.ObjectResult) (*health.Result, error) {
		targets := make([]health.Object, 0, len(objs))
		for _, o := range objs {
			if o.Resource.Resource == "" {
				continue
			}
			targets = append(targets, health.Object{Resource: o.Resource, Namespace: o.Namespace, Name: o.Name, Ref: o.Ref, Source: o.Source, Seen: o.Live})
		}
		return health.Wait(ctx, client, targets, opts)
	}, nil
}

// newChartRenderer returns apply's way to render a Helm chart: Helm's SDK,
// with the cluster's discovery for .Capabilities.
func newChartRenderer(restCfg *rest.Config, opts chart.Options, root string) (func(context.Context, render.ChartRequest) (*render.ChartOutput, error), error) {
	dc, err := discovery.NewDiscoveryClientForConfig(restCfg)
	if err != nil {
		return nil, err
	}
	opts.Discovery = memory.NewMemCacheClient(dc)
	r := chart.New(opts)
	return func(ctx context.Context, req render.ChartRequest) (*render.ChartOutput, error) {
		creq := chart.Request{
			Root: root, Dir: req.Dir, Shown: req.Shown,
			ReleaseName: req.ReleaseName, NameTemplate: req.NameTemplate, Namespace: req.Namespace, Values: req.Values, ValuesFor: req.ValuesFor,
			IncludeCRDs: req.IncludeCRDs, SkipTests: req.SkipTests,
			KubeVersion: req.KubeVersion, APIVersions: req.APIVersions,
		}
		if req.Dir == "" {
			creq.Remote = &chart.Remote{Repo: req.Repo, Name: req.Name, Version: req.Version}
		}
		res, err := r.Render(ctx, creq)
		if err != nil {
			return nil, err
		}
		out := &render.ChartOutput{Hooks: res.Hooks}
		for _, d := range res.Docs {
			out.Docs = append(out.Docs, render.ChartDoc{Source: d.Source, YAML: d.YAML, Doc: d.Index})
		}
		return out, nil
	}, nil
}

// errChangesPending ends a dry run with --detailed-exit-code that found
// something to change.
var errChangesPending = errors.New("changes pending")
