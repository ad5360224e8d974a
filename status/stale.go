package status

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
	batchv1 "k8s.io/api/batch/v1"
)

// staleAfter is how many times a CronJob may come due after the last
// successful sync before the sync is called stale: two runs in a row that
// failed are the RESULT column's business; three due times with no success
// mean the schedule is not producing syncs (suspended, jobs not starting,
// runs that never finish).
const staleAfter = 3

// isStale says whether cj has come due staleAfter times since lastSuccess,
// reading its schedule with the parser the CronJob controller uses, in its
// time zone. A sync that never succeeded is not called stale: its RESULT
// says what is wrong.
func isStale(cj *batchv1.CronJob, lastSuccess *time.Time, now time.Time) (bool, error) {
	spec := cj.Spec.Schedule
	// As the controller: a schedule that names its own zone keeps it.
	if cj.Spec.TimeZone != nil && !strings.Contains(spec, "TZ") {
		if _, err := time.LoadLocation(*cj.Spec.TimeZone); err != nil {
			return false, fmt.Errorf("time zone %q: %w", *cj.Spec.TimeZone, err)
		}
		spec = "TZ=" + *cj.Spec.TimeZone + " " + spec
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return false, fmt.Errorf("schedule %q: %w", cj.Spec.Schedule, err)
	}
	if lastSuccess == nil {
		return false, nil
	}
	due := *lastSuccess
	for range staleAfter {
		if due = sched.Next(due); due.IsZero() {
			return false, nil // a date that never comes (30 February)
		}
	}
	return now.After(due), nil
}
