package apply

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
)

// unreachableAfter is how many requests in a row must fail at the transport
// level before the API server counts as gone: one reset connection must not
// end a run, but two thousand "connection refused" must not be printed.
const unreachableAfter = 3

// transportError marks a request that got no HTTP answer at all (connection
// refused or reset, no route, TLS handshake, DNS), as opposed to an answer
// from the API server, however unwelcome.
type transportError struct{ err error }

func (e *transportError) Error() string { return e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

// unreachableError stops a run whose API server stopped answering.
type unreachableError struct{ first error }

func (e *unreachableError) Error() string {
	return fmt.Sprintf("the API server is unreachable: %v", e.first)
}
func (e *unreachableError) Unwrap() error { return e.first }

// breaker watches every request the run sends. After unreachableAfter
// transport failures in a row it stops the run, so that no new request
// starts.
type breaker struct {
	next   http.RoundTripper
	stop   context.CancelCauseFunc
	inARow atomic.Int32
	once   sync.Once
	first  atomic.Pointer[error]
}

func (b *breaker) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := b.next.RoundTrip(req)
	switch {
	case err == nil:
		// The body decides whether this was an answer.
		resp.Body = &cutBody{ReadCloser: resp.Body, b: b, req: req}
	case req.Context().Err() != nil:
		// Cancelled by the run itself (SIGTERM, --timeout): not the server.
	default:
		err = b.failed(err)
	}
	return resp, err
}

// failed counts a request that got no answer, and stops the run once
// unreachableAfter of them came in a row.
func (b *breaker) failed(err error) error {
	b.first.CompareAndSwap(nil, &err)
	if b.inARow.Add(1) >= unreachableAfter {
		first := err
		if p := b.first.Load(); p != nil {
			first = *p
		}
		b.once.Do(func() { b.stop(&unreachableError{first: first}) })
	}
	return &transportError{err}
}

// cutBody is an answer's body. One that breaks off (the server went away
// after the headers) is no answer either: what the request did is as
// unknown as if the connection had been refused.
type cutBody struct {
	io.ReadCloser
	b   *breaker
	req *http.Request
}

func (c *cutBody) Read(p []byte) (int, error) {
	n, err := c.ReadCloser.Read(p)
	switch {
	case err == io.EOF:
		// A whole answer ends the streak; the error reported is its first.
		c.b.inARow.Store(0)
		c.b.first.Store(nil)
	case err != nil && c.req.Context().Err() == nil:
		err = c.b.failed(err)
	}
	return n, err
}

// isTransport says err (or what it wraps) got no answer from the server.
func isTransport(err error) bool {
	var t *transportError
	return errors.As(err, &t)
}

// unreachable returns why the run stopped if the API server went away.
func (s *syncer) unreachable() *unreachableError {
	var u *unreachableError
	if errors.As(context.Cause(s.stop), &u) {
		return u
	}
	return nil
}

// collapseUnreachable turns a run the API server left into three facts: it
// is unreachable (with the first error), how many objects were not
// attempted, and the answers the server did give before it went. The
// objects whose requests got no answer count as not attempted.
func (s *syncer) collapseUnreachable(res *Result, err error) error {
	u := s.unreachable()
	if u == nil {
		return err
	}
	n := 0
	var answered []error
	for i := range res.Objects {
		o := &res.Objects[i]
		switch {
		case o.Action == ActionSkipped || isTransport(o.Err):
			o.Action, o.Err = ActionSkipped, nil
			n++
		case o.Err != nil:
			answered = append(answered, o.Err)
		}
	}
	return errors.Join(append([]error{u, fmt.Errorf("%d objects not attempted; nothing was pruned", n)}, answered...)...)
}
