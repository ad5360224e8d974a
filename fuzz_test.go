package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/health"
	"github.com/cronsync/cronsync/render"
)

// errorTree builds an error chain from the fuzzer's bytes: the errors the
// packages return, wrapped and joined as they wrap and join them.
type errorTree []byte

func (b *errorTree) next() int {
	if len(*b) == 0 {
		return 0
	}
	v := (*b)[0]
	*b = (*b)[1:]
	return int(v)
}

var fuzzStatusCodes = []int32{400, 401, 403, 404, 409, 413, 415, 422, 429, 500, 502, 503, 504}

var fuzzStatusMessages = []string{
	`User "system:serviceaccount:cronsync:cronsync" cannot patch resource "configmaps" in API group "" in the namespace "shop"`,
	`unable to create new content in namespace shop because it is being terminated`,
	`failed to create typed patch object (/v1, Kind=ConfigMap): .spec.x: field not declared in schema`,
	`admission webhook "policy.example.com" denied the request: no`,
	`exceeded quota: objects`,
	`etcdserver: request timed out`,
	``,
}

func (b *errorTree) build(depth int) error {
	op := b.next() % 22
	if depth > 6 {
		op %= 12 // leaves only
	}
	switch op {
	case 0:
		return errors.New("something")
	case 1:
		return context.Canceled
	case 2:
		return context.DeadlineExceeded
	case 3:
		return []error{gitsrc.ErrNotFound, gitsrc.ErrAuth, gitsrc.ErrUnsafe, gitsrc.ErrTooLarge, gitsrc.ErrUnverified}[b.next()%5]
	case 4:
		code := fuzzStatusCodes[b.next()%len(fuzzStatusCodes)]
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: code, Message: fuzzStatusMessages[b.next()%len(fuzzStatusMessages)]}}
	case 5:
		return &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	case 6:
		return usageErrorf("bad flag")
	case 7:
		return &health.UnhealthyError{First: health.State{Verdict: health.Failed, Reason: "ProgressDeadlineExceeded"}}
	case 8:
		return errChangesPending
	case 9:
		return render.ErrKMSUnavailable
	case 10:
		return &net.DNSError{Err: "no such host", Name: "x", IsNotFound: true}
	case 11:
		return &gitsrc.TooLargeError{Path: "a.bin", Size: 2, Limit: 1, What: "--max-object-bytes"}
	case 12, 13:
		return fmt.Errorf("context: %w", b.build(depth+1))
	case 14:
		var errs []error
		for range 1 + b.next()%3 {
			errs = append(errs, b.build(depth+1))
		}
		return errors.Join(errs...)
	case 15:
		return &render.ManifestError{Source: "a.yaml", Doc: 1, Err: b.build(depth + 1)}
	case 16:
		return &render.SopsKeyError{Source: "s.yaml", Err: b.build(depth + 1)}
	case 17:
		return &apply.ObjectError{Ref: "configmap/x -n a", Source: "a.yaml", Err: b.build(depth + 1)}
	case 18:
		return &apply.WriteRefusedError{Err: b.build(depth + 1)}
	case 19:
		return fmt.Errorf("%w and %w", b.build(depth+1), b.build(depth+1))
	case 20:
		return &apierrors.StatusError{ErrStatus: metav1.Status{Status: metav1.StatusFailure, Code: 500, Message: b.build(depth + 1).Error()}}
	}
	return &render.ManifestError{Source: "k/kustomization.yaml", Err: fmt.Errorf("kustomize: %w", b.build(depth+1))}
}

// The one place errors become exit statuses, over any chain the packages
// can make: an error never exits 0; wrapping an error with context does
// not change its status; a joined error exits with the worst of its parts,
// in any order; 5 (changes pending) only ever comes of a dry run's
// errChangesPending.
func FuzzExitCode(f *testing.F) {
	for _, seed := range [][]byte{
		{0}, {1}, {4, 0, 2}, {4, 2, 0}, {15, 1}, {15, 5}, {17, 4, 2, 1}, {14, 1, 8, 7},
		{19, 3, 0, 3, 1}, {16, 9}, {16, 0}, {18, 4, 9, 5}, {21, 5}, {12, 14, 2, 3, 2, 4, 3, 0},
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		b := errorTree(data)
		err := b.build(0)
		if err == nil {
			return
		}
		code := exitCode(err)
		switch {
		case code < exitRetry || code > exitUnhealthy:
			t.Fatalf("exit %d for %v", code, err)
		case code == exitChanges && !errors.Is(err, errChangesPending):
			t.Fatalf("exit %d for %v", code, err)
		}
		if wrapped := exitCode(fmt.Errorf("running: %w", err)); wrapped != code {
			t.Errorf("exit %d, but %d wrapped: %v", code, wrapped, err)
		}
		other := errorTree(append([]byte{}, data...))
		other.next() // another error of the same bytes
		if o := other.build(0); o != nil {
			ab, ba := exitCode(errors.Join(err, o)), exitCode(errors.Join(o, err))
			if ab != ba || ab != worse(code, exitCode(o)) {
				t.Errorf("joined: %d one way, %d the other, of %d and %d", ab, ba, code, exitCode(o))
			}
		}
	})
}
