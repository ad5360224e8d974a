package apply

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
)

// An API server that dies after sending an answer's headers leaves the
// request without an answer: the breaker counts a broken-off body as it
// counts a refused connection, so the object is reported as not attempted
// rather than as failed, and the run stops after unreachableAfter of them.
func TestBreakerCountsABrokenOffBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/whole" {
			io.WriteString(w, `{"kind":"Status"}`)
			return
		}
		w.Header().Set("Content-Length", "1000")
		io.WriteString(w, `{"kind":`)
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	var stopped error
	b := &breaker{next: http.DefaultTransport, stop: func(err error) { stopped = err }}
	get := func(path string) error {
		req, _ := http.NewRequest(http.MethodGet, srv.URL+path, nil)
		resp, err := b.RoundTrip(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		return err
	}
	for i := range unreachableAfter {
		err := get("/cut")
		if !isTransport(err) || !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("broken-off body %d: %v; want a transport error", i, err)
		}
		if i == 0 {
			// A whole answer in between ends the streak.
			if err := get("/whole"); err != nil {
				t.Fatal(err)
			}
			if err := get("/cut"); !isTransport(err) {
				t.Fatal(err)
			}
		}
		if (stopped != nil) != (i == unreachableAfter-1) {
			t.Fatalf("after %d broken-off bodies in a row: stopped = %v", i+1, stopped)
		}
	}
	var u *unreachableError
	if !errors.As(stopped, &u) || !errors.Is(u, io.ErrUnexpectedEOF) {
		t.Errorf("stopped with %v", stopped)
	}
}
