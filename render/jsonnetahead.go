package render

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf8"
)

// A Jsonnet file is evaluated in a process of its own, which reads its
// imports from disk and cannot ask for a file of a partial checkout (see
// Commit.Need). So before it starts, the files it may import are made
// present here: Jsonnet's imports are string literals (a computed import
// is a static error), so a scan of each file's text finds them, and they
// are looked up as the evaluation will look them up (next to the importing
// file, then in the library paths), each candidate made present or found
// absent on the way. The evaluation may look at those paths only
// (JsonnetRequest.Present); one the scan missed fails it, saying which,
// and it is made present and the file evaluated again. No candidate is
// ever looked at before it was asked for: none can be found absent on disk
// while the commit holds it.

// notFetchedAhead ends the error of an import the scan missed.
const notFetchedAhead = "was not fetched ahead of the evaluation"

// maxJsonnetRounds bounds the evaluations of one file that end on such an
// import.
const maxJsonnetRounds = 32

// maxJsonnetScan bounds the imports one file's scan follows.
const maxJsonnetScan = 10000

var missedRe = regexp.MustCompile(`import ("(?:[^"\\]|\\.)*") from ("(?:[^"\\]|\\.)*") ` + notFetchedAhead)

// missedImport finds, in an evaluation's error, the import the scan ahead
// did not see: what it imports, and from which file.
func missedImport(err error) (path, from string, ok bool) {
	m := missedRe.FindStringSubmatch(err.Error())
	if m == nil {
		return "", "", false
	}
	path, err1 := strconv.Unquote(m[1])
	from, err2 := strconv.Unquote(m[2])
	return path, from, err1 == nil && err2 == nil
}

// missedError is the error of an import whose candidates were not all
// made present.
func missedError(path, from string) error {
	return fmt.Errorf("import %s from %s %s", strconv.Quote(path), strconv.Quote(from), notFetchedAhead)
}

// jsonnetAhead is the scan ahead of one file's evaluation.
type jsonnetAhead struct {
	im      *confinedImporter
	present []string
	seen    map[string]bool
	done    map[string]bool
}

func (r *reader) newJsonnetAhead(source string) *jsonnetAhead {
	a := &jsonnetAhead{present: []string{}, seen: map[string]bool{}, done: map[string]bool{}}
	a.im = &confinedImporter{
		req:   JsonnetRequest{Root: r.root, File: source, Jsonnet: r.opts.Jsonnet, MaxFileBytes: r.opts.MaxFileBytes},
		cache: map[string]*imported{},
		need: func(p string) {
			if !a.seen[p] {
				a.seen[p] = true
				a.present = append(a.present, p)
				r.need(filepath.Join(r.root, filepath.FromSlash(p)), false)
			}
		},
	}
	return a
}

// scan makes present every candidate of the import of path from the file
// from, and, for code, of the imports of what it finds, and so on.
func (a *jsonnetAhead) scan(from, path string, code bool) {
	type job struct {
		from, path string
		code       bool
	}
	queue := []job{{from, path, code}}
	for n := 0; len(queue) > 0 && n < maxJsonnetScan; n++ {
		j := queue[0]
		queue = queue[1:]
		key := j.from + "\x00" + j.path
		if a.done[key] {
			continue
		}
		a.done[key] = true
		contents, found, err := a.im.Import(j.from, j.path)
		if err != nil || !j.code {
			continue // the evaluation says why, as it would have
		}
		for _, imp := range scanImports(contents.String()) {
			queue = append(queue, job{found, imp.path, imp.code})
		}
	}
}

// jsonnetImport is one import a file's text makes: code is an import, not
// an importstr or importbin, whose file has imports of its own.
type jsonnetImport struct {
	path string
	code bool
}

// scanImports finds the imports in Jsonnet source as its lexer would:
// outside comments and string literals, the keyword and then a string
// literal. It may find one too many (never a harm); one it misses is
// found by the evaluation.
func scanImports(src string) []jsonnetImport {
	var out []jsonnetImport
	i := 0
	for i < len(src) {
		c := src[i]
		switch {
		case c == '#' || c == '/' && strings.HasPrefix(src[i:], "//"):
			i = skipLine(src, i)
		case c == '/' && strings.HasPrefix(src[i:], "/*"):
			if end := strings.Index(src[i+2:], "*/"); end >= 0 {
				i += end + 4
			} else {
				i = len(src)
			}
		case c == '"' || c == '\'' || c == '@' || c == '|' && strings.HasPrefix(src[i:], "|||"):
			_, n := stringLiteral(src[i:])
			i += max(n, 1)
		case isIdentStart(c):
			j := i
			for j < len(src) && isIdentPart(src[j]) {
				j++
			}
			word := src[i:j]
			i = j
			if word != "import" && word != "importstr" && word != "importbin" {
				continue
			}
			k := skipSpace(src, i)
			if k < len(src) && (src[k] == '"' || src[k] == '\'' || src[k] == '@') {
				if s, n := stringLiteral(src[k:]); n > 0 {
					out = append(out, jsonnetImport{path: s, code: word == "import"})
					i = k + n
				}
			}
		default:
			i++
		}
	}
	return out
}

func isIdentStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
func isIdentPart(c byte) bool  { return isIdentStart(c) || c >= '0' && c <= '9' }

func skipLine(src string, i int) int {
	if nl := strings.IndexByte(src[i:], '\n'); nl >= 0 {
		return i + nl + 1
	}
	return len(src)
}

// skipSpace skips white space and comments.
func skipSpace(src string, i int) int {
	for i < len(src) {
		switch {
		case src[i] == ' ' || src[i] == '\t' || src[i] == '\n' || src[i] == '\r':
			i++
		case src[i] == '#' || strings.HasPrefix(src[i:], "//"):
			i = skipLine(src, i)
		case strings.HasPrefix(src[i:], "/*"):
			end := strings.Index(src[i+2:], "*/")
			if end < 0 {
				return len(src)
			}
			i += end + 4
		default:
			return i
		}
	}
	return i
}

// stringLiteral reads the string literal at the start of src and returns
// its value and length; a text block's value is not needed, nor returned.
// n is 0 when src holds none.
func stringLiteral(src string) (string, int) {
	switch {
	case strings.HasPrefix(src, "|||"):
		// To the first line that starts, past its indentation, with |||.
		for i := skipLine(src, 0); i < len(src); i = skipLine(src, i) {
			if strings.HasPrefix(strings.TrimLeft(src[i:], " \t"), "|||") {
				j := i + strings.Index(src[i:], "|||") + 3
				return "", j
			}
		}
		return "", len(src)
	case strings.HasPrefix(src, `@"`), strings.HasPrefix(src, "@'"):
		q := src[1]
		var b strings.Builder
		for i := 2; i < len(src); i++ {
			if src[i] != q {
				b.WriteByte(src[i])
				continue
			}
			if i+1 < len(src) && src[i+1] == q {
				b.WriteByte(q)
				i++
				continue
			}
			return b.String(), i + 1
		}
		return "", len(src)
	case src != "" && (src[0] == '"' || src[0] == '\''):
		q := src[0]
		var b strings.Builder
		for i := 1; i < len(src); i++ {
			switch c := src[i]; {
			case c == q:
				return b.String(), i + 1
			case c == '\\' && i+1 < len(src):
				i++
				switch e := src[i]; e {
				case 'n':
					b.WriteByte('\n')
				case 't':
					b.WriteByte('\t')
				case 'r':
					b.WriteByte('\r')
				case 'b':
					b.WriteByte('\b')
				case 'f':
					b.WriteByte('\f')
				case 'u':
					if i+4 < len(src) {
						if v, err := strconv.ParseUint(src[i+1:i+5], 16, 32); err == nil {
							b.WriteRune(rune(v))
							i += 4
							continue
						}
					}
					b.WriteRune(utf8.RuneError)
				default:
					b.WriteByte(e)
				}
			default:
				b.WriteByte(c)
			}
		}
		return "", len(src)
	}
	return "", 0
}
