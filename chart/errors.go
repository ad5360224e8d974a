package chart

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// location finds the first template position in one of Helm's messages:
// "execution error at (web/templates/deployment.yaml:14:3): ..." or
// "template: web/templates/x.yaml:3: ...".
var location = regexp.MustCompile(`([A-Za-z0-9_.\-]+(?:/[^\s():"]+)+\.(?:yaml|yml|tpl|txt|json)):(\d+)(?::\d+)?`)

// LocatedError is a rendering error at a known template and line.
type LocatedError struct {
	// Source is the template as users see it, joined to the chart's
	// directory: deploy/chart/templates/deployment.yaml.
	Source string
	// Line is the template's line, 0 when Helm did not say.
	Line int
	Err  error
}

func (e *LocatedError) Error() string {
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d: %v", e.Source, e.Line, e.Err)
	}
	return fmt.Sprintf("%s: %v", e.Source, e.Err)
}

func (e *LocatedError) Unwrap() error { return e.Err }

// locate rewrites one of Helm's rendering errors so that it starts with the
// template's path as users see it, and keeps the message on one line:
// Helm's own spreads a call stack over several.
func locate(err error, chartName, shown string) error {
	msg := err.Error()
	m := location.FindStringSubmatchIndex(msg)
	if m == nil || !strings.HasPrefix(msg[m[2]:m[3]], chartName+"/") {
		return errors.New(oneLine(msg))
	}
	file := msg[m[2]:m[3]]
	line := 0
	fmt.Sscanf(msg[m[4]:m[5]], "%d", &line)
	return &LocatedError{Source: source(shown, file), Line: line, Err: errors.New(oneLine(reason(msg)))}
}

// reason is the part of a Helm error after its last location: what went
// wrong, without the chain of templates that led there.
func reason(msg string) string {
	all := location.FindAllStringIndex(msg, -1)
	rest := msg[all[len(all)-1][1]:]
	rest = strings.TrimLeft(rest, "): \n\t")
	for _, p := range []string{"error calling ", "executing "} {
		if i := strings.LastIndex(rest, p); i > 0 {
			rest = rest[i:]
		}
	}
	if rest == "" {
		return msg
	}
	return rest
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Location is the template's path and line, for callers that place the
// error themselves.
func (e *LocatedError) Location() (string, int) { return e.Source, e.Line }
