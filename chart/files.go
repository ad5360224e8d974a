package chart

import (
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"

	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
)

// fileRead matches a .Files call with a literal path.
var fileRead = regexp.MustCompile("\\.Files\\.(Get|GetBytes|Lines|Glob)\\s+(\"(?:[^\"\\\\]|\\\\.)*\"|`[^`]*`)")

// checkFileReads refuses a template that asks .Files for a path outside its
// chart. Helm would quietly render an empty string there; a chart that
// means to read a file it cannot have is a fault in the commit, and saying
// so beats syncing a ConfigMap with nothing in it. A path built at render
// time is not seen here and gets Helm's empty string.
func checkFileReads(ch *chartv2.Chart, shown string) error {
	for _, c := range append([]*chartv2.Chart{ch}, allDependencies(ch)...) {
		for _, t := range c.Templates {
			for _, m := range fileRead.FindAllStringSubmatchIndex(string(t.Data), -1) {
				lit := string(t.Data[m[4]:m[5]])
				p, err := strconv.Unquote(lit)
				if err != nil {
					continue
				}
				if clean := path.Clean(p); path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
					line := 1 + strings.Count(string(t.Data[:m[0]]), "\n")
					return &LocatedError{
						Source: source(shown, path.Join(c.ChartFullPath(), t.Name)),
						Line:   line,
						Err:    fmt.Errorf(".Files.%s %s reads outside the chart; a chart sees only its own files", t.Data[m[2]:m[3]], lit),
					}
				}
			}
		}
	}
	return nil
}

func allDependencies(ch *chartv2.Chart) []*chartv2.Chart {
	var all []*chartv2.Chart
	for _, d := range ch.Dependencies() {
		all = append(all, d)
		all = append(all, allDependencies(d)...)
	}
	return all
}
