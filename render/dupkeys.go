package render

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	yamlv2 "go.yaml.in/yaml/v2"
	yamlv3 "go.yaml.in/yaml/v3"
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
	if e.First == 0 {
		// Found by the conversion alone, which knows no lines.
		return fmt.Sprintf("key %q appears twice", e.Path)
	}
	msg := fmt.Sprintf("key %q appears twice, on lines %d and %d", e.Path, e.First, e.Second)
	if e.Path == "apiVersion" || e.Path == "kind" {
		// What the first key of an object repeated means.
		msg += `: is a "---" missing between two objects?`
	}
	return msg
}

// toJSON converts one YAML or JSON document to JSON, refusing duplicate
// keys: two equal keys, and two keys that JSON would read as one (`1` and
// "1", `true` and "true", `1.0` and `1`: YAML types keys, JSON keys are
// strings, and the lenient conversion keeps the last). It decodes as
// sigs.k8s.io/yaml's YAMLToJSONStrict does, at the same cost; only a
// document it refuses is parsed again, to name both lines.
func toJSON(raw []byte) ([]byte, error) {
	var obj any
	if err := yamlv2.UnmarshalStrict(raw, &obj); err != nil {
		if strings.Contains(err.Error(), "already set in map") {
			if dup := findDuplicate(raw); dup != nil {
				return nil, dup
			}
		}
		return nil, oneLine(err)
	}
	v, err := jsonable(obj)
	if err != nil {
		if _, ok := errors.AsType[*DuplicateKeyError](err); ok {
			if dup := findDuplicate(raw); dup != nil {
				return nil, dup
			}
		}
		return nil, err
	}
	return json.Marshal(v)
}

// jsonable turns what yaml.v2 decoded into what encoding/json writes, as
// sigs.k8s.io/yaml converts it (keys written the same way), but refusing a
// key that another key of the mapping already became.
func jsonable(v any) (any, error) {
	switch v := v.(type) {
	case map[any]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			key, ok := jsonKey(k)
			if !ok {
				return nil, fmt.Errorf("a mapping key of type %T (%v): JSON keys are strings", k, k)
			}
			if _, dup := m[key]; dup {
				return nil, &DuplicateKeyError{Path: key}
			}
			var err error
			if m[key], err = jsonable(e); err != nil {
				if dup, ok := err.(*DuplicateKeyError); ok {
					dup.Path = joinPath(key, dup.Path)
				}
				return nil, err
			}
		}
		return m, nil
	case []any:
		l := make([]any, len(v))
		for i, e := range v {
			var err error
			if l[i], err = jsonable(e); err != nil {
				if dup, ok := err.(*DuplicateKeyError); ok {
					dup.Path = joinPath(fmt.Sprintf("[%d]", i), dup.Path)
				}
				return nil, err
			}
		}
		return l, nil
	}
	return v, nil
}

func joinPath(parent, child string) string {
	if strings.HasPrefix(child, "[") {
		return parent + child
	}
	return parent + "." + child
}

// jsonKey is the JSON key yaml.v2's decoded key k becomes, as
// sigs.k8s.io/yaml writes it.
func jsonKey(k any) (string, bool) {
	switch k := k.(type) {
	case string:
		return k, true
	case int:
		return strconv.Itoa(k), true
	case int64:
		return strconv.FormatInt(k, 10), true
	case float64:
		s := strconv.FormatFloat(k, 'g', -1, 32)
		switch s {
		case "+Inf":
			s = ".inf"
		case "-Inf":
			s = "-.inf"
		case "NaN":
			s = ".nan"
		}
		return s, true
	case bool:
		return strconv.FormatBool(k), true
	}
	return "", false
}

// nodeKey is the JSON key a mapping key of the yaml.v3 tree becomes once
// yaml.v2 has typed it: a quoted key is a string, a plain one is resolved
// as YAML 1.1 resolves it (01 is 1, yes is true).
func nodeKey(n *yamlv3.Node) string {
	if n.Kind != yamlv3.ScalarNode || n.Style&(yamlv3.DoubleQuotedStyle|yamlv3.SingleQuotedStyle|yamlv3.LiteralStyle|yamlv3.FoldedStyle) != 0 || n.Tag == "!!str" && n.Style&yamlv3.TaggedStyle != 0 {
		return n.Value
	}
	var v any
	if yamlv2.Unmarshal([]byte(n.Value), &v) == nil {
		if k, ok := jsonKey(v); ok {
			return k
		}
	}
	return n.Value
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
				key := nodeKey(k)
				p := key
				if path != "" {
					p = path + "." + key
				}
				if line, ok := seen[key]; ok {
					return &DuplicateKeyError{Path: p, First: line, Second: k.Line}
				}
				seen[key] = k.Line
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
