package render

import "fmt"

// ManifestError is a fault in the commit's content found before anything
// was sent for it: a file that does not parse, a document that is not an
// object, a kind the cluster does not serve, a symlink that leaves the
// repository. Retrying the same commit cannot succeed.
type ManifestError struct {
	// Source is the file, relative to the repository root.
	Source string
	// Doc is the 1-based document index within Source; 0 when the fault is
	// the file's as a whole.
	Doc int
	// Ref names the object when the document parsed far enough to have one.
	Ref string
	Err error
}

func (e *ManifestError) Error() string {
	where := e.Source
	if e.Doc > 0 {
		where = fmt.Sprintf("%s, document %d", e.Source, e.Doc)
	}
	if e.Ref != "" {
		return fmt.Sprintf("%s (%s): %v", e.Ref, where, e.Err)
	}
	return fmt.Sprintf("%s: %v", where, e.Err)
}

func (e *ManifestError) Unwrap() error { return e.Err }
