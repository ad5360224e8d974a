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
	"strings"
	"syscall"
	"time"

	"github.com/go-logr/logr"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/rest"
	"k8s.io/klog/v2"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/gitsrc"
)

func main() {
	os.Exit(exitCode(mainErr(os.Args[1:], os.Stdout, os.Stderr)))
}

// mainErr is main without the exit, so that every path out of the program
// goes through exitCode once.
func mainErr(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseFlags(args, os.LookupEnv, stderr)
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
	// client-go logs through klog what cronsync reports itself, as errors
	// that name the object; the duplicates would only bury them.
	klog.SetLogger(logr.Discard())
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.timeout, fmt.Errorf("--timeout %s exceeded: %w", cfg.timeout, context.DeadlineExceeded))
	defer cancel()

	err = run(ctx, cfg, stdout)
	if errors.Is(err, errChangesPending) {
		return err // not a failure: run has said what would change
	}
	if err != nil {
		for line := range strings.SplitSeq(err.Error(), "\n") {
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

// run does one sync: clone, read, apply, summarize.
func run(ctx context.Context, cfg *config, stdout io.Writer) error {
	start := time.Now()
	restCfg, err := restConfig(cfg.kube)
	if err != nil {
		return err
	}
	rest.SetDefaultWarningHandler(rest.NewWarningWriter(os.Stderr, rest.WarningWriterOptions{Deduplicate: true}))

	cloneCtx, cancelClone := context.WithTimeoutCause(ctx, cfg.gitTimeout, fmt.Errorf("--git-timeout %s exceeded: %w", cfg.gitTimeout, context.DeadlineExceeded))
	co, err := gitsrc.Clone(cloneCtx, gitsrc.Options{
		URL: cfg.repo, Ref: cfg.ref, WorkDir: cfg.workDir,
		Credentials: cfg.git, VerifyKeysFile: cfg.verifyKeysFile,
	})
	cancelClone()
	if err != nil {
		return err
	}
	defer co.Close()
	repo := gitsrc.Redact(cfg.repo)
	fmt.Fprintf(stdout, "cronsync: %s %s is commit %s\n", repo, co.Ref, co.Commit)

	dir, err := co.Sub(cfg.path)
	if err != nil {
		return err
	}
	opts := cfg.apply
	opts.Root, opts.Dir, opts.Out = co.Dir, dir, stdout
	if opts.ApplySet, err = applySetParent(cfg.applySet, cfg.kube); err != nil {
		return err
	}
	res, err := apply.Run(ctx, restCfg, opts)
	if cause := context.Cause(ctx); err != nil && cause != nil {
		err = fmt.Errorf("%w\n%w", cause, err)
	}

	outcome := "synced"
	if err != nil {
		outcome = "sync failed"
	}
	if opts.DryRun != apply.DryRunNone {
		outcome += fmt.Sprintf(" (dry run: %s)", opts.DryRun)
	}
	counts := "nothing applied"
	if res != nil {
		counts = summarize(res)
	}
	fmt.Fprintf(stdout, "cronsync: %s %s@%s path %s: %s in %s\n",
		outcome, repo, co.Commit[:min(12, len(co.Commit))], cfg.path, counts, time.Since(start).Round(time.Millisecond))
	if err == nil && cfg.detailedExitCode && res.Count(apply.ActionCreated)+res.Count(apply.ActionConfigured)+res.Count(apply.ActionPruned) > 0 {
		return errChangesPending
	}
	return err
}

// errChangesPending ends a dry run with --detailed-exit-code that found
// something to change.
var errChangesPending = errors.New("changes pending")

// summarize counts a run's objects by action: created, configured, unchanged
// and failed always (scripts grep for them), the rarer ones when they occur.
func summarize(res *apply.Result) string {
	c := fmt.Sprintf("%d objects: %d created, %d configured, %d unchanged, %d failed", len(res.Objects),
		res.Count(apply.ActionCreated), res.Count(apply.ActionConfigured), res.Count(apply.ActionUnchanged), res.Count(apply.ActionFailed))
	for _, a := range []string{apply.ActionPruned, apply.ActionSkipped, apply.ActionNotValidated} {
		if n := res.Count(a); n > 0 {
			c += fmt.Sprintf(", %d %s", n, a)
		}
	}
	return c
}
