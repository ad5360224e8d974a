package chart

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
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
// Helm's own spreads a call stack over several, and names templates by the
// chart's name rather than its directory.
func locate(err error, chartName, shown string) error {
	msg := oneLine(err.Error())
	m := location.FindStringSubmatchIndex(msg)
	if m == nil || !strings.HasPrefix(msg[m[2]:m[3]], chartName+"/") {
		return errors.New(relocate(msg, chartName, shown))
	}
	line, _ := strconv.Atoi(msg[m[4]:m[5]])
	return &LocatedError{
		Source: source(shown, msg[m[2]:m[3]]),
		Line:   line,
		Err:    errors.New(relocate(reason(msg, m[1]), chartName, shown)),
	}
}

// reason is what went wrong, without the location already given (which
// ends at end) and the chain of templates that led there.
func reason(msg string, end int) string {
	rest := msg
	if strings.HasPrefix(msg, "parse error at (") || strings.HasPrefix(msg, "execution error at (") {
		rest = strings.TrimLeft(msg[end:], "): ")
	} else if all := location.FindAllStringIndex(msg, -1); len(all) > 0 {
		rest = strings.TrimLeft(msg[all[len(all)-1][1]:], "): ")
	}
	if i := strings.Index(rest, "error calling "); i > 0 {
		rest = rest[i:]
	}
	if rest == "" {
		return msg
	}
	return rest
}

// relocate names every template in msg by its path as users see it.
func relocate(msg, chartName, shown string) string {
	return location.ReplaceAllStringFunc(msg, func(loc string) string {
		if !strings.HasPrefix(loc, chartName+"/") {
			return loc
		}
		return source(shown, loc)
	})
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// Location is the template's path and line, for callers that place the
// error themselves.
func (e *LocatedError) Location() (string, int) { return e.Source, e.Line }
