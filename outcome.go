package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/lease"
	"github.com/cronsync/cronsync/report"
)

// takeLease acquires --lease. It returns a *lease.HeldError, and no lease,
// when another live run holds it.
func takeLease(ctx context.Context, cfg *config, restCfg *rest.Config) (*lease.Lease, *lease.HeldError, error) {
	ns, name, err := namespacedName(cfg.lease, cfg.kube)
	if err != nil {
		return nil, nil, err
	}
	l, err := lease.Acquire(ctx, restCfg, lease.Options{Namespace: ns, Name: name, Holder: holder(), Duration: cfg.leaseDuration})
	var held *lease.HeldError
	switch {
	case errors.As(err, &held):
		return nil, held, nil
	case apierrors.IsNotFound(err):
		return nil, nil, usageErrorf("lease %s/%s: namespace %s does not exist; create it, or point --lease elsewhere", ns, name, ns)
	}
	return l, nil, err
}

// holder names this run in the Lease: the pod's name in a cluster (manifests/
// sets POD_NAME from the downward API), host and process elsewhere.
func holder() string {
	if pod := os.Getenv("POD_NAME"); pod != "" {
		return pod
	}
	host, _ := os.Hostname()
	return fmt.Sprintf("%s-%d", host, os.Getpid())
}

// finish completes sum from the run's error and shows it everywhere it
// belongs. Reporting failures are warnings: they never change the exit status.
func finish(cfg *config, sum *report.Summary, err error, human, stdout, stderr io.Writer) {
	sum.ExitCode = exitCode(err)
	// The run's registry, which mainErr gave apply and render; an error is
	// masked whole before it is split, since a multi-line value spans lines.
	secrets := cfg.apply.Secrets
	sum.Duration = time.Since(sum.Started).Round(time.Millisecond).String()
	switch {
	case sum.Result == "skipped":
	case sum.ExitCode == exitUnhealthy:
		sum.Result = "unhealthy"
		sum.Errors = strings.Split(secrets.Clean(err.Error()), "\n")
	case err != nil && !errors.Is(err, errChangesPending):
		sum.Result = "failed"
		sum.Errors = strings.Split(secrets.Clean(err.Error()), "\n")
	case cfg.apply.DryRun != apply.DryRunNone:
		sum.Result = "dry run"
	default:
		sum.Result = "synced"
	}
	if sum.Commit == "" && sum.Message == "" {
		sum.Message = "nothing applied"
	}
	// Once, before any sink sees it: the line, the JSON, the termination
	// message, the parent's annotations, the Events and the webhook.
	sum.Redact(secrets)
	fmt.Fprintln(human, sum.Line())
	if cfg.outputJSON {
		if err := sum.WriteJSON(stdout); err != nil {
			fmt.Fprintf(stderr, "warning: writing JSON: %v\n", err)
		}
	}
	warn := func(err error) {
		if err != nil {
			fmt.Fprintf(stderr, "warning: %v\n", err)
		}
	}
	if cfg.terminationLog != "" {
		warn(sum.WriteTerminationLog(cfg.terminationLog))
	}
	// What is left is requests to other parties, each on its own but the
	// Lease's release, which waits for the record: run them side by side,
	// and report their failures in a fixed order.
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var tasks []func() error
	var record func() error
	// The commit status's own warning, printed before the others.
	var statusErr error
	// A run that was to hold the Lease and never did (taking it failed)
	// writes no record: another run may hold it, and writes to the set go
	// only while it is held (bench/chaos seed 2026 trial 192).
	leaseless := cfg.lease != "" && cfg.releaseLease == nil
	if cfg.restConfig != nil && cfg.apply.DryRun == apply.DryRunNone && sum.Result != "skipped" && !leaseless {
		if p := cfg.parent; p.Name != "" {
			recordCfg := cfg.restConfig
			if cfg.fence != nil {
				// The record is a write to the parent: it too is made
				// only while the Lease is surely this run's.
				recordCfg = rest.CopyConfig(recordCfg)
				recordCfg.Wrap(cfg.fence)
			}
			record = func() error {
				rec := runRecord(sum, cfg.parentChecked, cfg.parentRead)
				// Posted before the record is written, which says
				// whether the forge took it.
				if sr := cfg.statusRun; sr != nil {
					var posted string
					posted, statusErr = finishCommitStatus(ctx, cfg, sr, sum)
					if posted != "" {
						rec.Annotations[report.CommitStatusAnnotation] = posted
					}
				}
				return apply.RecordRun(ctx, recordCfg, p, cfg.apply.Version, rec)
			}
		}
	}
	switch {
	case cfg.releaseLease != nil:
		// The Lease is released once the record is written, not beside
		// it: a run waiting for the Lease must not start writing while
		// this one still is.
		tasks = append(tasks, func() error {
			var err error
			if record != nil {
				err = record()
			}
			return errors.Join(err, cfg.releaseLease(ctx))
		})
	case record != nil:
		tasks = append(tasks, record)
	}
	if cfg.restConfig != nil && cfg.apply.DryRun == apply.DryRunNone && sum.Result != "skipped" {
		tasks = append(tasks, func() error {
			return report.Events(ctx, cfg.restConfig, report.Targets{
				ParentNamespace: cfg.parent.Namespace, ParentName: cfg.parent.Name,
				PodNamespace: os.Getenv("POD_NAMESPACE"), PodName: os.Getenv("POD_NAME"),
			}, sum)
		})
	}
	tasks = append(tasks, func() error { return cfg.notify.Notify(ctx, sum) })
	errs := make([]error, len(tasks))
	var wg sync.WaitGroup
	for i, task := range tasks {
		wg.Go(func() { errs[i] = task() })
	}
	wg.Wait()
	warn(statusErr)
	for _, err := range errs {
		if joined, ok := err.(interface{ Unwrap() []error }); ok {
			for _, err := range joined.Unwrap() {
				warn(err)
			}
			continue
		}
		warn(err)
	}
}

// runRecord is what the ApplySet parent keeps of a run: the last run's
// outcome, and when the last successful one started, which only a
// successful run changes (cronsync status judges a sync stale from it).
func runRecord(sum *report.Summary, checked bool, read map[string]string) apply.Record {
	started := sum.Started.UTC().Format(time.RFC3339)
	anns := map[string]string{
		report.AnnotationCommit: sum.Commit,
		report.AnnotationTime:   started,
		report.AnnotationResult: sum.Result,
		report.AnnotationCounts: sum.CountsLine(),
		report.AnnotationError:  firstError(sum),
		report.AnnotationRepo:   sum.Repo,
		report.AnnotationPath:   sum.Path,
	}
	if sum.Result == "synced" {
		anns[report.AnnotationSuccess] = started
	}
	return apply.Record{Annotations: anns, Keep: []string{report.AnnotationSuccess, report.CommitStatusAnnotation}, Checked: checked, Read: read}
}

func firstError(sum *report.Summary) string {
	if len(sum.Errors) == 0 {
		return ""
	}
	return sum.Errors[0][:min(1024, len(sum.Errors[0]))]
}

// finishCommitStatus posts the run's commit status if it differs from the
// one this sync posted last. A run that stopped before reading its
// ApplySet parent reads what was posted last from it now.
func finishCommitStatus(ctx context.Context, cfg *config, sr *report.StatusRun, sum *report.Summary) (string, error) {
	if !sr.Known() {
		if anns, err := apply.ParentAnnotations(ctx, cfg.restConfig, cfg.parent); err == nil {
			sr.ParentRead(ctx, anns, "")
		}
	}
	return sr.Finish(ctx, sum)
}
