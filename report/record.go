package report

import (
	"strconv"
	"strings"
)

// The annotations on the ApplySet parent that record the last run, which
// `kubectl get secret -o yaml` shows and `cronsync status` reads.
const (
	AnnotationCommit = "cronsync.dev/last-sync-commit"
	// AnnotationTime is when the last run started (RFC 3339, UTC).
	AnnotationTime   = "cronsync.dev/last-sync-time"
	AnnotationResult = "cronsync.dev/last-sync-result"
	// AnnotationCounts is the run's CountsLine.
	AnnotationCounts = "cronsync.dev/last-sync-counts"
	// AnnotationError is the run's first error, cut to 1 KiB.
	AnnotationError = "cronsync.dev/last-sync-error"
	// AnnotationRepo is --repo without credentials, AnnotationPath --path.
	AnnotationRepo = "cronsync.dev/last-sync-repo"
	AnnotationPath = "cronsync.dev/last-sync-path"
	// AnnotationSuccess is when the last run that ended "synced" started;
	// a run that did not succeed leaves it as it was.
	AnnotationSuccess = "cronsync.dev/last-sync-success"
)

// ParseCounts reads back from a CountsLine how many objects the run had,
// and how many of them had drifted; ok is false for a line that is not one.
func ParseCounts(line string) (objects, drifted int, ok bool) {
	total, rest, found := strings.Cut(line, " objects: ")
	objects, err := strconv.Atoi(total)
	if !found || err != nil {
		return 0, 0, false
	}
	// "5 configured (4 drift repaired)", or "(4 drifted)" in a dry run.
	if _, after, found := strings.Cut(rest, " configured ("); found {
		n, _, _ := strings.Cut(after, " drift")
		drifted, _ = strconv.Atoi(n)
	}
	return objects, drifted, true
}
