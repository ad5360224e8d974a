// Package status is `cronsync status`: it lists the syncs cronsync has
// recorded in one cluster or many, from what every run already writes (the
// ApplySet parent's last-sync annotations) and the CronJobs that run them,
// and says whether any needs a look. It only reads: the parents' metadata
// (never their data, which holds the fingerprints), CronJobs, and the
// ConfigMaps those configure cronsync from.
package status

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/cronsync/cronsync/internal/redact"
	"github.com/cronsync/cronsync/report"
)

// Options say what to read and how to show it.
type Options struct {
	// Namespace is where to look; "" is each context's own namespace.
	Namespace string
	// AllNamespaces looks in every namespace.
	AllNamespaces bool
	// Output is "" (a table), "wide" (more columns, nothing cut), "json"
	// or "yaml".
	Output string
	// Timeout bounds the reading of each cluster, so that one that does
	// not answer costs a row, not the command.
	Timeout time.Duration
	// Now is the time ages and staleness are judged at.
	Now time.Time
	// Out receives the table or document; Warn the warnings (a kind that
	// may not be listed, a ConfigMap that cannot be read).
	Out, Warn io.Writer
}

// Sync is one ApplySet parent cronsync owns, as its last run recorded it.
type Sync struct {
	// Cluster is the kubeconfig context it was read through, when more
	// than one was read.
	Cluster   string `json:"cluster,omitempty"`
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Repo      string `json:"repo,omitempty"`
	Path      string `json:"path,omitempty"`
	// Revision is the commit the last run synced (or tried to).
	Revision string `json:"revision,omitempty"`
	// Result is the last run's: "synced", "failed" or "unhealthy";
	// "unknown" when the parent holds no record of a run, and
	// "unreachable" for a cluster that could not be read.
	Result string `json:"result"`
	// LastSync is when the last run started; LastSuccess when the last
	// run that ended "synced" did.
	LastSync    *time.Time `json:"lastSyncTime,omitempty"`
	LastSuccess *time.Time `json:"lastSuccessTime,omitempty"`
	// Objects and Drifted are the last run's counts: objects of the
	// commit, and how many of them had drifted.
	Objects int `json:"objects"`
	Drifted int `json:"drifted"`
	// Counts is the last run's counts as its summary line said them.
	Counts string `json:"counts,omitempty"`
	// Message is the last run's first error; for an unreachable cluster,
	// why it could not be read.
	Message string `json:"message,omitempty"`
	// CronJob is the CronJob that runs this sync, nil when none was found.
	CronJob *CronJob `json:"cronJob,omitempty"`
	// Stale: a CronJob runs the sync, and it has been due three times
	// since the last successful run.
	Stale bool `json:"stale"`
}

// CronJob is what status shows of the CronJob that runs a sync.
type CronJob struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Schedule  string `json:"schedule"`
	TimeZone  string `json:"timeZone,omitempty"`
	Suspended bool   `json:"suspended"`
	// LastSchedule is when the CronJob last made a Job.
	LastSchedule *time.Time `json:"lastScheduleTime,omitempty"`
}

// Healthy says the sync needs no look: its last run synced, and it is not
// stale.
func (s Sync) Healthy() bool { return s.Result == "synced" && !s.Stale }

// AttentionError is the verdict when a listed sync is failing, unhealthy,
// stale or has no record, or a cluster could not be read: `cronsync
// status` exits 1 on it, for scripts and cron checks.
type AttentionError struct {
	// Listed is how many rows were shown; Names the ones that need a look,
	// with why.
	Listed int
	Names  []string
}

func (e *AttentionError) Error() string {
	const named = 5
	names := e.Names
	if len(names) > named {
		names = append(slices.Clone(names[:named]), fmt.Sprintf("and %d more", len(e.Names)-named))
	}
	return fmt.Sprintf("%d of %d syncs need a look: %s", len(e.Names), e.Listed, strings.Join(names, ", "))
}

// Run reads every cluster at once, prints what it found, and returns an
// *AttentionError when a sync needs a look. With one cluster, one that
// cannot be read is the error itself; with several, it is a row.
func Run(ctx context.Context, clusters []Cluster, opts Options) error {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	type read struct {
		syncs    []Sync
		warnings []string
		err      error
		// why is err as a fleet's row says it: the part that tells one
		// failure from another.
		why string
	}
	reads := make([]read, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Go(func() {
			ctx, cancel := context.WithTimeoutCause(ctx, opts.Timeout, fmt.Errorf("no answer within %s (--timeout)", opts.Timeout))
			defer cancel()
			r := &reads[i]
			r.syncs, r.warnings, r.err = readCluster(ctx, c, opts)
			switch {
			case r.err != nil && ctx.Err() != nil:
				r.err = fmt.Errorf("%w: %w", context.Cause(ctx), r.err)
				r.why = context.Cause(ctx).Error()
			case r.err != nil:
				r.why = reason(r.err)
			}
		})
	}
	wg.Wait()

	fleet := len(clusters) > 1
	var all []Sync
	for i, r := range reads {
		c := clusters[i]
		for _, w := range r.warnings {
			if fleet {
				w = "context " + c.Context + ": " + w
			}
			fmt.Fprintf(opts.Warn, "warning: %s\n", redact.CleanLine(w))
		}
		if r.err != nil && !fleet {
			return fmt.Errorf("reading %s: %w", c.describe(opts), r.err)
		}
		if r.err != nil {
			all = append(all, Sync{Cluster: c.Context, Result: "unreachable", Message: r.why})
			continue
		}
		for _, s := range r.syncs {
			if fleet {
				s.Cluster = c.Context
			}
			all = append(all, s)
		}
	}
	slices.SortFunc(all, func(a, b Sync) int {
		return cmp.Or(cmp.Compare(a.Cluster, b.Cluster), cmp.Compare(a.Namespace, b.Namespace), cmp.Compare(a.Name, b.Name))
	})
	if err := write(opts.Out, all, fleet, opts); err != nil {
		return err
	}
	if len(all) == 0 && opts.Output != "json" && opts.Output != "yaml" {
		where := "namespace " + clusters[0].namespace(opts)
		if opts.AllNamespaces {
			where = "any namespace"
		}
		fmt.Fprintf(opts.Warn, "no cronsync syncs found in %s\n", where)
	}
	var names []string
	for _, s := range all {
		if s.Healthy() {
			continue
		}
		why := s.Result
		if s.Result == "synced" {
			why = "stale"
		}
		name := s.Namespace + "/" + s.Name
		if s.Result == "unreachable" {
			name = "context " + s.Cluster
		} else if fleet {
			name = s.Cluster + ":" + name
		}
		names = append(names, name+" "+why)
	}
	if len(names) > 0 {
		return &AttentionError{Listed: len(all), Names: names}
	}
	return nil
}

// reason is what tells a cluster that could not be read from another: the
// connection's failure (refused, no route, a certificate) without the URL
// around it, or the API server's answer.
func reason(err error) string {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Error()
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err.Error()
	}
	return err.Error()
}

// fromParent is a sync as its parent's annotations record it.
func fromParent(namespace, name string, anns map[string]string) Sync {
	s := Sync{
		Namespace: namespace, Name: name,
		Repo: anns[report.AnnotationRepo], Path: anns[report.AnnotationPath],
		Revision: anns[report.AnnotationCommit], Result: anns[report.AnnotationResult],
		Counts: anns[report.AnnotationCounts], Message: anns[report.AnnotationError],
	}
	if s.Result == "" {
		s.Result = "unknown"
	}
	s.Objects, s.Drifted, _ = report.ParseCounts(s.Counts)
	s.LastSync = parseTime(anns[report.AnnotationTime])
	s.LastSuccess = parseTime(anns[report.AnnotationSuccess])
	if s.LastSuccess == nil && s.Result == "synced" {
		// Recorded by a cronsync from before the success had its own
		// annotation: the last run is the last success.
		s.LastSuccess = s.LastSync
	}
	return s
}

func parseTime(v string) *time.Time {
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return nil
	}
	return &t
}

// errNoCluster is what Clusters says when there is nothing to read.
var errNoCluster = errors.New("no cluster to read: not running in a pod, and no kubeconfig (set --kubeconfig or KUBECONFIG)")
