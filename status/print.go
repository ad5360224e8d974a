package status

import (
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/internal/redact"
)

// document is what -o json and -o yaml print: an object, so that fields
// can be added beside the list later without breaking a script.
type document struct {
	Syncs []Sync `json:"syncs"`
}

// messageWidth is where the table cuts MESSAGE (-o wide does not).
const messageWidth = 60

// write prints syncs in the format opts.Output names, with a CLUSTER column
// when several clusters were read.
func write(w io.Writer, syncs []Sync, fleet bool, opts Options) error {
	switch opts.Output {
	case "json", "yaml":
		doc := document{Syncs: syncs}
		if doc.Syncs == nil {
			doc.Syncs = []Sync{}
		}
		var b []byte
		var err error
		if opts.Output == "json" {
			b, err = json.MarshalIndent(doc, "", "  ")
			b = append(b, '\n')
		} else {
			b, err = yaml.Marshal(doc)
		}
		if err != nil {
			return err
		}
		_, err = w.Write(b)
		return err
	}
	if len(syncs) == 0 {
		return nil
	}
	wide := opts.Output == "wide"
	// The CronJob's columns when one runs any of the syncs: without, they
	// would be a row of dashes.
	scheduled := wide
	for _, s := range syncs {
		scheduled = scheduled || s.CronJob != nil
	}
	var header []string
	if fleet {
		header = append(header, "CLUSTER")
	}
	header = append(header, "NAMESPACE", "NAME", "REPO", "PATH", "REVISION", "RESULT", "AGE")
	if wide {
		header = append(header, "LAST-SUCCESS")
	}
	header = append(header, "OBJECTS", "DRIFT")
	if wide {
		header = append(header, "CRONJOB")
	}
	if scheduled {
		header = append(header, "SCHEDULE", "SUSPENDED", "LAST-SCHEDULE", "STALE")
	}
	header = append(header, "MESSAGE")

	tw := tabwriter.NewWriter(w, 6, 4, 3, ' ', 0)
	io.WriteString(tw, strings.Join(header, "\t")+"\n")
	for _, s := range syncs {
		var row []string
		if fleet {
			row = append(row, s.Cluster)
		}
		revision := s.Revision
		if !wide {
			revision = revision[:min(12, len(revision))]
		}
		row = append(row, s.Namespace, s.Name, s.Repo, s.Path, revision, s.Result, age(s.LastSync, opts.Now))
		if wide {
			row = append(row, age(s.LastSuccess, opts.Now))
		}
		objects, drift := strconv.Itoa(s.Objects), strconv.Itoa(s.Drifted)
		if s.Counts == "" {
			objects, drift = "", ""
		}
		row = append(row, objects, drift)
		if wide {
			cronJob := ""
			if s.CronJob != nil {
				cronJob = s.CronJob.Namespace + "/" + s.CronJob.Name
			}
			row = append(row, cronJob)
		}
		if scheduled {
			if cj := s.CronJob; cj != nil {
				schedule := cj.Schedule
				if cj.TimeZone != "" {
					schedule += " (" + cj.TimeZone + ")"
				}
				stale := "no"
				if s.Stale {
					stale = "yes"
				}
				row = append(row, schedule, strconv.FormatBool(cj.Suspended), age(cj.LastSchedule, opts.Now), stale)
			} else {
				row = append(row, "", "", "", "")
			}
		}
		msg := s.Message
		if !wide && len([]rune(msg)) > messageWidth {
			msg = string([]rune(msg)[:messageWidth-1]) + "…"
		}
		row = append(row, msg)
		for i, cell := range row {
			// What the parents hold is any writer's text: one line each,
			// no terminal escapes, and no tab to break the columns.
			cell = strings.ReplaceAll(redact.CleanLine(cell), "\t", " ")
			if cell == "" {
				cell = "-"
			}
			row[i] = cell
		}
		io.WriteString(tw, strings.Join(row, "\t")+"\n")
	}
	return tw.Flush()
}

// age is how long ago t was, as kubectl shows ages; "" when unknown.
func age(t *time.Time, now time.Time) string {
	if t == nil {
		return ""
	}
	return duration.HumanDuration(now.Sub(*t))
}
