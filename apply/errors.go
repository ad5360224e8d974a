package apply

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

// ObjectError is a request for one object that failed. Err is what the API
// server (or the connection to it) said; callers classify it.
type ObjectError struct {
	// Ref names the object as kubectl would (deployment.apps/web -n apps).
	Ref string
	// Source is the file the object came from.
	Source string
	Err    error
}

func (e *ObjectError) Error() string { return fmt.Sprintf("%s (%s): %v", e.Ref, e.Source, e.Err) }

func (e *ObjectError) Unwrap() error { return e.Err }

func manifestErr(o *Object, err error) *ManifestError {
	return &ManifestError{Source: o.Source, Doc: o.Doc, Ref: o.Ref(), Err: err}
}

func objectErr(o *Object, err error) *ObjectError {
	return &ObjectError{Ref: o.Ref(), Source: o.Source, Err: err}
}
