package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/health"
	"github.com/cronsync/cronsync/render"
	"github.com/cronsync/cronsync/status"
)

// Exit statuses. The Job's podFailurePolicy in manifests/ fails the Job at
// once on the permanent ones (2, 3) and lets backoff retry 1.
const (
	exitOK = 0
	// exitRetry: something outside the commit and the configuration went
	// wrong (network, API server load, deadline, SIGTERM). Running again
	// may succeed.
	exitRetry = 1
	// exitConfig: the Job's own configuration is wrong (flags, credentials,
	// unknown repository, ref or path, RBAC). Fix the CronJob.
	exitConfig = 2
	// exitContent: the commit is wrong (unparseable, unknown kind, rejected
	// as invalid). Fix the commit.
	exitContent = 3
	// exitUnverified: --verify-keys-file is set and the commit is not
	// signed by one of its keys. Nothing was applied.
	exitUnverified = 4
	// exitChanges: a dry run with --detailed-exit-code found changes to
	// make. Only for pipelines; a real run never exits with it.
	exitChanges = 5
	// exitUnhealthy: the commit was applied, but what it holds is not
	// running: an object failed (a rollout past its progress deadline, a
	// failed Job) or was not ready by --wait-timeout. Retrying the Job
	// cannot fix a rollout; the next scheduled run checks again.
	exitUnhealthy = 6
	// exitAttention: `cronsync status` listed a sync that failed, is
	// unhealthy or stale, or has no record, or could not read a cluster.
	exitAttention = 1
)

// exitCode is the one place errors become exit statuses. When a run fails
// for several reasons at once, a permanent status wins over a retryable one,
// because retrying cannot fix the permanent fault; configuration comes before
// content because a wrong configuration may be why the content looks wrong.
func exitCode(err error) int {
	if err == nil {
		return exitOK
	}
	if err == errChangesPending {
		return exitChanges
	}
	if joined, ok := err.(interface{ Unwrap() []error }); ok {
		code := exitOK
		for _, e := range joined.Unwrap() {
			code = worse(code, exitCode(e))
		}
		if code == exitOK {
			// An error that holds none (fmt.Errorf("%w %w", nil, nil))
			// is still an error: never exit 0 on it.
			return exitRetry
		}
		return code
	}

	// Only this link of the chain is looked at before unwrapping, so that a
	// joined error further down is judged as a whole, not by its first part.
	switch e := err.(type) {
	case *usageError:
		return exitConfig
	case *render.ManifestError:
		// Rendering and kustomize builds wrap whatever stopped them, and
		// not all of that is the commit's fault.
		if interrupted(e.Err) {
			return exitRetry
		}
		return exitContent
	case *render.SopsKeyError:
		// The Job lacks the key; a KMS that cannot be reached for now is
		// another matter.
		if interrupted(e.Err) {
			return exitRetry
		}
		return exitConfig
	case *apply.WriteRefusedError:
		return exitRetry
	case *health.UnhealthyError:
		return exitUnhealthy
	case *status.AttentionError:
		return exitAttention
	case apierrors.APIStatus:
		return apiStatusCode(e)
	}
	switch {
	case is(err, gitsrc.ErrUnverified):
		return exitUnverified
	case is(err, gitsrc.ErrNotFound), is(err, gitsrc.ErrAuth), is(err, apply.ErrRefused):
		return exitConfig
	case is(err, gitsrc.ErrUnsafe), is(err, gitsrc.ErrTooLarge):
		return exitContent
	}
	if next := errors.Unwrap(err); next != nil {
		return exitCode(next)
	}
	// Network failures, deadlines and cancellation (SIGTERM) land here:
	// what we cannot recognise as permanent is worth another try.
	return exitRetry
}

// is is errors.Is for one link of a chain only.
func is(err, target error) bool {
	if err == target {
		return true
	}
	x, ok := err.(interface{ Is(error) bool })
	return ok && x.Is(target)
}

func apiStatusCode(status apierrors.APIStatus) int {
	s := status.Status()
	switch s.Code {
	case http.StatusUnauthorized:
		return exitConfig
	case http.StatusForbidden:
		switch {
		case strings.Contains(s.Message, "because it is being terminated"):
			// A namespace being deleted refuses new content with 403
			// until it is gone: that passes.
			return exitRetry
		case rbacDenied(s.Message):
			return exitConfig
		}
		// Admission answers 403 too: Pod Security, a
		// ValidatingAdmissionPolicy with reason Forbidden, a webhook's
		// denial, LimitRange, and ResourceQuota ("exceeded quota": the
		// commit asks for more than the namespace allows, which no retry
		// changes). Each is a verdict on the object: fix the commit (or
		// the policy).
		return exitContent
	case http.StatusBadRequest, http.StatusNotFound, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType:
		return exitContent
	case http.StatusInternalServerError:
		// Server-side apply answers a field the schema does not declare, or
		// one of the wrong type, with a 500 ("failed to create typed patch
		// object ...: .spec.replicaz: field not declared in schema"): the
		// commit's fault, the same on every try.
		if strings.Contains(s.Message, "failed to create typed patch object") {
			return exitContent
		}
	}
	return exitRetry
}

// rbacDenied recognises the authorizer's refusal, which names who asked
// and what it may not do (`User "..." cannot patch resource "configmaps"
// in API group "" in the namespace "shop"`), among the 403s.
func rbacDenied(msg string) bool {
	i := strings.Index(msg, `User "`)
	return i >= 0 && strings.Contains(msg[i:], `" cannot `)
}

// interrupted says that err, wrapped in a verdict on the commit, was in fact
// the run being stopped (SIGTERM, --timeout), a deadline, a connection that
// failed, or an API server answer that passes, none of which a new commit
// would change.
func interrupted(err error) bool {
	var op *net.OpError
	var dns *net.DNSError
	var status apierrors.APIStatus
	switch {
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, render.ErrKMSUnavailable), errors.As(err, &op), errors.As(err, &dns):
		return true
	case errors.As(err, &status):
		return apiStatusCode(status) == exitRetry
	}
	return false
}

// worse orders statuses by how permanent they are: 4 over 2 over 3 over 6
// over 1 over 5 over 0. An unhealthy object ranks below a bad commit or
// configuration, which explain more, and above a retryable fault, which a
// rerun may clear while the rollout stays broken. Changes pending is no
// failure, but it is not nothing: joined with nothing else, it stays 5.
func worse(a, b int) int {
	rank := func(c int) int {
		switch c {
		case exitUnverified:
			return 6
		case exitConfig:
			return 5
		case exitContent:
			return 4
		case exitUnhealthy:
			return 3
		case exitRetry:
			return 2
		case exitChanges:
			return 1
		}
		return 0
	}
	if rank(b) > rank(a) {
		return b
	}
	return a
}
