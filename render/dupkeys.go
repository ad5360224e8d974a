package render

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
	"sigs.k8s.io/yaml"
)

// A file holding two objects with the "---" between them forgotten is one
// YAML mapping with every key twice. Read leniently, as kubectl does, the
// last value of each key wins: one object is applied, the run says synced,
// and prune deletes the other from the cluster. YAML forbids duplicate keys
// (and so does JSON's interoperable subset), so cronsync refuses them.

// DuplicateKeyError is a mapping that holds the same key twice.
type DuplicateKeyError struct {
	// Path is the key from the document's top, dotted ("spec.replicas").
	Path string
	// First and Second are the lines of the two keys, counted from the
	// start of the file once Read knows where the document starts.
	First, Second int
}

func (e *DuplicateKeyError) Error() string {
	msg := fmt.Sprintf("key %q appears twice, on lines %d and %d", e.Path, e.First, e.Second)
	if e.Path == "apiVersion" || e.Path == "kind" {
		// What the first key of an object repeated means.
		msg += `: is a "---" missing between two objects?`
	}
	return msg
}

// toJSON converts one YAML or JSON document to JSON, refusing duplicate
// keys. The strict conversion costs no more than the lenient one; only a
// document it refuses is parsed again, to name both lines.
func toJSON(raw []byte) ([]byte, error) {
	j, err := yaml.YAMLToJSONStrict(raw)
	if err != nil && strings.Contains(err.Error(), "already set in map") {
		if dup := findDuplicate(raw); dup != nil {
			return nil, dup
		}
	}
	return j, err
}

// findDuplicate returns the first duplicate key of raw, in document order,
// with lines counted from the start of raw.
func findDuplicate(raw []byte) *DuplicateKeyError {
	var doc yamlv3.Node
	if err := yamlv3.Unmarshal(raw, &doc); err != nil {
		return nil
	}
	var walk func(n *yamlv3.Node, path string) *DuplicateKeyError
	walk = func(n *yamlv3.Node, path string) *DuplicateKeyError {
		switch n.Kind {
		case yamlv3.DocumentNode, yamlv3.SequenceNode:
			for i, c := range n.Content {
				p := path
				if n.Kind == yamlv3.SequenceNode {
					p = fmt.Sprintf("%s[%d]", path, i)
				}
				if d := walk(c, p); d != nil {
					return d
				}
			}
		case yamlv3.MappingNode:
			seen := map[string]int{}
			for i := 0; i+1 < len(n.Content); i += 2 {
				k := n.Content[i]
				p := k.Value
				if path != "" {
					p = path + "." + k.Value
				}
				if line, ok := seen[k.Value]; ok {
					return &DuplicateKeyError{Path: p, First: line, Second: k.Line}
				}
				seen[k.Value] = k.Line
				if d := walk(n.Content[i+1], p); d != nil {
					return d
				}
			}
		}
		return nil
	}
	return walk(&doc, "")
}

// docStartLine returns the line of data on which the n-th document (1 for
// the first) that utilyaml.YAMLReader returns begins: it splits on lines
// starting with "---" and skips empty stretches between them, as it does.
func docStartLine(data []byte, n int) int {
	doc, line, start := 0, 0, 0
	for len(data) > 0 {
		line++
		l := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			l, data = data[:i+1], data[i+1:]
		} else {
			data = nil
		}
		if bytes.HasPrefix(l, []byte("---")) {
			start = 0
			continue
		}
		if start == 0 {
			start = line
			if doc++; doc == n {
				return start
			}
		}
	}
	return 0
}

// inFile moves a duplicate key error's lines from its document's to its
// file's, the document being the doc-th of data.
func inFile(err error, data []byte, doc int) error {
	var dup *DuplicateKeyError
	if errors.As(err, &dup) {
		if start := docStartLine(data, doc); start > 0 {
			dup.First += start - 1
			dup.Second += start - 1
		}
	}
	return err
}

// duplicateIn returns the first duplicate key in any document of data, a
// file that something other than Read parses (kustomize), as a
// ManifestError naming source.
func duplicateIn(data []byte, source string) error {
	_, errs := parseDocs(data, source, 1)
	for _, err := range errs {
		if _, ok := errors.AsType[*DuplicateKeyError](err); ok {
			return err
		}
	}
	return nil
}
