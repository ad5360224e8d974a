package apply

import (
	"errors"
	"fmt"
	"net/http"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/cronsync/cronsync/render"
)

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

func manifestErr(o *render.Object, err error) *render.ManifestError {
	return &render.ManifestError{Source: o.Source, Doc: o.Doc, Ref: o.Ref(), Err: err}
}

func objectErr(o *render.Object, err error) *ObjectError {
	return &ObjectError{Ref: o.Ref(), Source: o.Source, Err: err}
}

// WriteRefusedError is the API server's refusal of an object's real write,
// as invalid or bad (400, 404, 413, 415, 422, 500), when the same object
// passed the server's dry run earlier in this run, before anything was
// written. The commit was judged valid by the same server; what changed is
// the cluster: a dying API server answers in-flight writes with such
// errors (a Service's IP allocation that cannot reach etcd is a 422),
// and so do an admission plugin that judges only real writes and another
// writer in between. Running again is the right move, not fixing the
// commit. An object whose dry run had to wait until just before its write
// (a resource of a new CRD or in a new Namespace, a depends-on dependent,
// an object set aside) never gets this: there the write is the check.
type WriteRefusedError struct{ Err error }

func (e *WriteRefusedError) Error() string {
	return fmt.Sprintf("refused when written, although its dry run passed in this run: %v", e.Err)
}

func (e *WriteRefusedError) Unwrap() error { return e.Err }

// refusedAfterCheck wraps a validated object's write error when it is a
// verdict on the object; refusals of who is asking (401, 403) and
// everything else keep their own meaning.
func refusedAfterCheck(err error) error {
	var status apierrors.APIStatus
	if !errors.As(err, &status) {
		return err
	}
	switch status.Status().Code {
	case http.StatusBadRequest, http.StatusNotFound, http.StatusRequestEntityTooLarge,
		http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity, http.StatusInternalServerError:
		return &WriteRefusedError{Err: err}
	}
	return err
}
