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

	"github.com/spf13/pflag"

	"github.com/cronsync/cronsync/internal/redact"
	"github.com/cronsync/cronsync/status"
)

// statusEnvPrefix is the environment of `cronsync status`'s flags: apart
// from the sync's, whose CRONSYNC_NAMESPACE and CRONSYNC_OUTPUT mean
// something else.
const statusEnvPrefix = "CRONSYNC_STATUS_"

const statusHelpIntro = `cronsync status lists the syncs cronsync has recorded, one row per ApplySet
parent it owns: repository, path, the last run's commit, result and age, its
object and drift counts and first error, and, when a CronJob runs the sync,
its schedule and whether the sync is stale (the CronJob has come due three
times since the last successful sync). It only reads: the parents' metadata,
CronJobs, and the ConfigMaps they take CRONSYNC_APPLYSET from. It is
cronsync's one subcommand. Every flag can also be set as
CRONSYNC_STATUS_<FLAG_NAME> (-A is CRONSYNC_STATUS_ALL_NAMESPACES).

Usage:
  cronsync status [-n NAMESPACE | -A] [--context NAME]... [--all-contexts] [-o wide|json|yaml]

Examples:
  # Which sync is failing right now?
  cronsync status -A

  # The fleet: every context of the kubeconfig, read at once.
  cronsync status -A --all-contexts

  # A cron check that pages when a sync failed, is unhealthy or stale.
  cronsync status -A > /dev/null || page-oncall "a cronsync sync needs a look"

Flags:
`

const statusHelpOutro = `
Exit status: 0 every sync listed last synced and none is stale, 1 one failed,
is unhealthy or stale, has no record, or a cluster could not be read, 2 bad
flags or kubeconfig.
`

// statusConfig is what `cronsync status`'s command line decided.
type statusConfig struct {
	// kubeconfig, contexts and allContexts say which clusters to read.
	kubeconfig  string
	contexts    []string
	allContexts bool
	opts        status.Options
}

// parseStatusFlags reads the flags of `cronsync status` (args after the
// word), then the environment for those not given.
func parseStatusFlags(args []string, lookupEnv func(string) (string, bool), helpOut io.Writer) (*statusConfig, error) {
	cfg := &statusConfig{}
	fs := statusFlags(cfg)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			fmt.Fprint(helpOut, statusHelpIntro+fs.FlagUsagesWrapped(100)+statusHelpOutro)
			return nil, errHelp
		}
		return nil, usageErrorf("%w (see cronsync status --help)", err)
	}
	if fs.NArg() > 0 {
		return nil, usageErrorf("cronsync status: unexpected arguments: %s", strings.Join(fs.Args(), " "))
	}
	if err := fillFromEnv(fs, statusEnvPrefix, lookupEnv); err != nil {
		return nil, err
	}
	switch {
	case cfg.opts.Output != "" && cfg.opts.Output != "wide" && cfg.opts.Output != "json" && cfg.opts.Output != "yaml":
		return nil, usageErrorf(`--output must be "wide", "json" or "yaml", not %q`, cfg.opts.Output)
	case cfg.allContexts && len(cfg.contexts) > 0:
		return nil, usageErrorf("--context and --all-contexts cannot both be set")
	case cfg.opts.AllNamespaces && cfg.opts.Namespace != "":
		return nil, usageErrorf("--namespace and --all-namespaces cannot both be set")
	case cfg.opts.Timeout <= 0:
		return nil, usageErrorf("--timeout must be positive")
	}
	return cfg, nil
}

// statusFlags defines `cronsync status`'s flags into cfg.
func statusFlags(cfg *statusConfig) *pflag.FlagSet {
	fs := pflag.NewFlagSet("cronsync status", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	fs.SortFlags = false
	fs.StringVarP(&cfg.opts.Namespace, "namespace", "n", "", "namespace to list (default: the context's)")
	fs.BoolVarP(&cfg.opts.AllNamespaces, "all-namespaces", "A", false, "list every namespace")
	fs.StringVarP(&cfg.opts.Output, "output", "o", "", `"wide" (more columns, nothing cut), "json" or "yaml" (default: a table)`)
	fs.StringArrayVar(&cfg.contexts, "context", nil, "`NAME` of a kubeconfig context to read; several are read at once, with a CLUSTER column (repeatable; default: the current context)")
	fs.BoolVar(&cfg.allContexts, "all-contexts", false, "read every context of the kubeconfig at once; one that cannot be read is a row saying why")
	fs.StringVar(&cfg.kubeconfig, "kubeconfig", "", "kubeconfig file (default: KUBECONFIG, then ~/.kube/config; in a pod without one, its service account)")
	fs.DurationVar(&cfg.opts.Timeout, "timeout", 20*time.Second, "how long each cluster may take to answer")
	return fs
}

// runStatus is `cronsync status`: flags, kubeconfig, then package status.
func runStatus(args []string, stdout, stderr io.Writer) error {
	cfg, err := parseStatusFlags(args, os.LookupEnv, stdout)
	if errors.Is(err, errHelp) {
		return nil
	}
	if err == nil {
		var clusters []status.Cluster
		if clusters, err = status.Clusters(cfg.kubeconfig, cfg.contexts, cfg.allContexts); err != nil {
			err = usageErrorf("%w", err)
		} else {
			ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP)
			defer stop()
			cfg.opts.Out, cfg.opts.Warn = stdout, stderr
			err = status.Run(ctx, clusters, cfg.opts)
		}
	}
	var attention *status.AttentionError
	switch {
	case errors.As(err, &attention):
		fmt.Fprintln(stderr, redact.CleanLine(err.Error()))
	case err != nil:
		fmt.Fprintf(stderr, "error: %s\n", redact.CleanLine(err.Error()))
	}
	return err
}
