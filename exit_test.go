package main

import (
	"context"
	"errors"
	"fmt"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/health"
)

func TestExitCode(t *testing.T) {
	cm := schema.GroupResource{Resource: "configmaps"}
	invalid := apierrors.NewInvalid(schema.GroupKind{Kind: "ConfigMap"}, "x", field.ErrorList{field.Invalid(field.NewPath("data"), "x", "bad")})
	obj := func(err error) error { return &apply.ObjectError{Ref: "configmap/x", Source: "x.yaml", Err: err} }
	unhealthy := &health.UnhealthyError{First: health.State{Verdict: health.Failed, Reason: "ProgressDeadlineExceeded: too slow"}}
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"nil", nil, exitOK},
		{"usage", usageErrorf("bad flag"), exitConfig},
		{"ref not found", fmt.Errorf("cloning: %w", gitsrc.ErrNotFound), exitConfig},
		{"git auth", fmt.Errorf("cloning: %w", gitsrc.ErrAuth), exitConfig},
		{"unsafe repository", gitsrc.ErrUnsafe, exitContent},
		{"manifest", &apply.ManifestError{Source: "a.yaml", Err: errors.New("yaml")}, exitContent},
		{"invalid", obj(invalid), exitContent},
		{"bad request", obj(apierrors.NewBadRequest("no")), exitContent},
		{"namespace missing", obj(apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x")), exitContent},
		{"forbidden", obj(apierrors.NewForbidden(cm, "x", errors.New(`User "u" cannot patch resource "configmaps"`))), exitConfig},
		{"namespace terminating", obj(apierrors.NewForbidden(cm, "x", errors.New("unable to create new content in namespace x because it is being terminated"))), exitRetry},
		{"unauthorized", obj(apierrors.NewUnauthorized("who")), exitConfig},
		{"conflict", obj(apierrors.NewConflict(cm, "x", errors.New("changed"))), exitRetry},
		{"too many requests", obj(apierrors.NewTooManyRequests("slow down", 1)), exitRetry},
		{"unavailable", obj(apierrors.NewServiceUnavailable("later")), exitRetry},
		{"internal", obj(apierrors.NewInternalError(errors.New("etcd"))), exitRetry},
		{"undeclared field", obj(apierrors.NewInternalError(errors.New("failed to create typed patch object (x/c; /v1, Kind=ConfigMap): .bogus: field not declared in schema"))), exitContent},
		{"invalid on write after a passing dry run", obj(&apply.WriteRefusedError{Err: invalid}), exitRetry},
		{"refused write beside a bad commit", errors.Join(obj(&apply.WriteRefusedError{Err: invalid}), obj(invalid)), exitContent},
		{"deadline", obj(context.DeadlineExceeded), exitRetry},
		{"cancelled", context.Canceled, exitRetry},
		{"unknown", errors.New("connection reset"), exitRetry},
		{"retry and content", errors.Join(obj(context.Canceled), obj(invalid)), exitContent},
		{"content and config", errors.Join(obj(invalid), obj(apierrors.NewUnauthorized("who"))), exitConfig},
		{"joined under a wrapper", fmt.Errorf("run: %w", errors.Join(obj(invalid), obj(apierrors.NewUnauthorized("who")))), exitConfig},
		{"nested joins", fmt.Errorf("run: %w", errors.Join(errors.Join(context.Canceled), obj(invalid))), exitContent},
		{"unhealthy", unhealthy, exitUnhealthy},
		{"dependent skipped for an unhealthy dependency", obj(fmt.Errorf("not written: %w", unhealthy)), exitUnhealthy},
		{"unhealthy and retry", errors.Join(obj(context.Canceled), unhealthy), exitUnhealthy},
		{"unhealthy and content", errors.Join(unhealthy, obj(invalid)), exitContent},
		{"unhealthy and config", errors.Join(unhealthy, usageErrorf("bad flag")), exitConfig},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}
