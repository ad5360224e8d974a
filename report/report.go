// Package report makes the outcome of one run visible where an operator of
// a CronJob looks: the pod's termination message, Kubernetes Events, a JSON
// document for pipelines, a webhook for alerting, and a status on the
// commit for whoever looks at the forge. A failure to report is
// never a failure of the sync: callers print it and keep the exit status.
package report

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Summary is one run, as every sink shows it.
type Summary struct {
	// Result is "synced", "unhealthy" (applied, but an object failed or was
	// not ready in time), "failed", "skipped" (another run held the lease)
	// or "dry run".
	Result string `json:"result"`
	// ExitCode is the status the process exits with.
	ExitCode int    `json:"exitCode"`
	Repo     string `json:"repo"`
	Ref      string `json:"ref,omitempty"`
	Commit   string `json:"commit,omitempty"`
	Path     string `json:"path"`
	DryRun   string `json:"dryRun,omitempty"`
	// Counts is the number of objects per action (created, configured, ...).
	Counts map[string]int `json:"counts"`
	// WithoutRequest counts the unchanged objects decided from the LIST
	// alone, without a dry run.
	WithoutRequest int `json:"unchangedWithoutRequest,omitempty"`
	// Drifted counts the configured objects that had drifted: the commit
	// did not change them, someone else did (see Object.Drift).
	Drifted int `json:"driftRepaired,omitempty"`
	// Objects is one entry per object, in apply order.
	Objects []Object `json:"objects"`
	// Health is the verdict of waiting for what was applied to be ready;
	// nil when the run did not wait.
	Health *Health `json:"health,omitempty"`
	// Errors holds one line per failure; the first is the headline.
	Errors   []string  `json:"errors,omitempty"`
	Started  time.Time `json:"started"`
	Duration string    `json:"duration"`
	// Message is a note for runs that did nothing, such as who held the lease.
	Message string `json:"message,omitempty"`
}

// Object is what happened to one object.
type Object struct {
	Ref    string `json:"ref"`
	Source string `json:"source"`
	Action string `json:"action"`
	// WithoutRequest: unchanged, decided from the LIST without a dry run.
	WithoutRequest bool   `json:"withoutRequest,omitempty"`
	Error          string `json:"error,omitempty"`
	// Drift is what moved in the object, when it had drifted.
	Drift *Drift `json:"drift,omitempty"`
}

// Drift is what moved in an object since cronsync applied it.
type Drift struct {
	// Summary is the line the run printed under the object.
	Summary string `json:"summary"`
	// Detail is every field that moved, with its values (masked where
	// they are secret) and the field managers that own it.
	Detail any `json:"detail"`
}

// Health is how many applied objects were ready when the wait ended.
type Health struct {
	Ready    int `json:"ready"`
	NotReady int `json:"notReady"`
	// Unhealthy names the first object that failed or was not ready in
	// time, and why.
	Unhealthy string `json:"unhealthy,omitempty"`
}

// ShortCommit is the commit as people quote it.
func (s *Summary) ShortCommit() string { return s.Commit[:min(12, len(s.Commit))] }

// CountsLine is "N objects: a created, b configured, ..." with the common
// actions always present (scripts grep for them) and the rarer ones when
// they occurred.
func (s *Summary) CountsLine() string {
	total := 0
	for _, n := range s.Counts {
		total += n
	}
	unchanged := fmt.Sprint(s.Counts["unchanged"])
	if s.WithoutRequest > 0 {
		unchanged += fmt.Sprintf(" unchanged (%d without a request)", s.WithoutRequest)
	} else {
		unchanged += " unchanged"
	}
	configured := fmt.Sprint(s.Counts["configured"])
	switch {
	case s.Drifted > 0 && s.DryRun != "":
		configured += fmt.Sprintf(" configured (%d drifted)", s.Drifted)
	case s.Drifted > 0:
		configured += fmt.Sprintf(" configured (%d drift repaired)", s.Drifted)
	default:
		configured += " configured"
	}
	c := fmt.Sprintf("%d objects: %d created, %s, %s, %d failed", total-s.Counts["pruned"],
		s.Counts["created"], configured, unchanged, s.Counts["failed"])
	for _, a := range []string{"recreated", "pruned", "skipped", "not validated"} {
		if n := s.Counts[a]; n > 0 {
			c += fmt.Sprintf(", %d %s", n, a)
		}
	}
	if s.Health != nil {
		c += fmt.Sprintf("; %d ready, %d not ready", s.Health.Ready, s.Health.NotReady)
	}
	return c
}

// Line is the one-line summary printed at the end of every run.
func (s *Summary) Line() string {
	outcome := s.Result
	switch s.Result {
	case "failed":
		outcome = "sync failed"
	case "unhealthy":
		outcome = "synced but not healthy"
	case "dry run":
		outcome = "synced (dry run: " + s.DryRun + ")"
	}
	if s.Message != "" {
		return fmt.Sprintf("cronsync: %s %s: %s", outcome, s.Repo, s.Message)
	}
	return fmt.Sprintf("cronsync: %s %s@%s path %s: %s in %s", outcome, s.Repo, s.ShortCommit(), s.Path, s.CountsLine(), s.Duration)
}

// WriteJSON writes s as one JSON document.
func (s *Summary) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(s)
}

// terminationLogLimit is what the kubelet keeps of a termination message.
const terminationLogLimit = 4096

// WriteTerminationLog writes a compact summary where the kubelet reads the
// termination message, so that `kubectl describe pod` says why a run failed.
func (s *Summary) WriteTerminationLog(path string) error {
	msg := fmt.Sprintf("result: %s (exit %d)\ncommit: %s\npath: %s\n%s\n", s.Result, s.ExitCode, s.Commit, s.Path, s.CountsLine())
	if s.Message != "" {
		msg += s.Message + "\n"
	}
	if d := s.DriftLine(); d != "" {
		msg += d + "\n"
	}
	if len(s.Errors) > 0 {
		msg += "first error: " + s.Errors[0] + "\n"
		if n := len(s.Errors) - 1; n > 0 {
			msg += fmt.Sprintf("(%d more errors in the log)\n", n)
		}
	}
	if len(msg) > terminationLogLimit {
		msg = msg[:terminationLogLimit-4] + "...\n"
	}
	return os.WriteFile(path, []byte(msg), 0o644)
}

// DriftLine says how many objects had drifted and names the first ones;
// "" when none had.
func (s *Summary) DriftLine() string {
	if s.Drifted == 0 {
		return ""
	}
	const named = 3
	var names []string
	for _, o := range s.Objects {
		if o.Drift == nil {
			continue
		}
		if len(names) == named {
			names = append(names, fmt.Sprintf("and %d more", s.Drifted-named))
			break
		}
		names = append(names, fmt.Sprintf("%s (%s)", o.Ref, o.Drift.Summary))
	}
	verb := "drift repaired"
	if s.DryRun != "" {
		verb = "drifted"
	}
	return fmt.Sprintf("%s: %d objects: %s", verb, s.Drifted, strings.Join(names, "; "))
}

// firstLine keeps messages that go into Events and annotations to one line.
func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
