package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/validation/field"
	"k8s.io/client-go/rest"

	"github.com/cronsync/cronsync/apply"
	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/health"
	"github.com/cronsync/cronsync/internal/testenv"
	"github.com/cronsync/cronsync/render"
	"github.com/cronsync/cronsync/status"
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
		{"an object over --max-object-bytes", fmt.Errorf("writing commit x: %w", &gitsrc.TooLargeError{Path: "a.bin", Size: 2, Limit: 1, What: "--max-object-bytes"}), exitContent},
		{"manifest", &render.ManifestError{Source: "a.yaml", Err: errors.New("yaml")}, exitContent},
		{"invalid", obj(invalid), exitContent},
		{"bad request", obj(apierrors.NewBadRequest("no")), exitContent},
		{"namespace missing", obj(apierrors.NewNotFound(schema.GroupResource{Resource: "namespaces"}, "x")), exitContent},
		{"forbidden by RBAC", obj(apierrors.NewForbidden(cm, "x", errors.New(`User "system:serviceaccount:cronsync:cronsync" cannot patch resource "configmaps" in API group "" in the namespace "shop"`))), exitConfig},
		{"forbidden by Pod Security", obj(apierrors.NewForbidden(schema.GroupResource{Resource: "pods"}, "x", errors.New(`violates PodSecurity "restricted:latest": allowPrivilegeEscalation != false`))), exitContent},
		{"forbidden by a ValidatingAdmissionPolicy", obj(apierrors.NewForbidden(cm, "x", errors.New(`ValidatingAdmissionPolicy 'p' with binding 'b' denied request: no`))), exitContent},
		{"forbidden by a webhook", obj(apierrors.NewForbidden(cm, "x", errors.New(`admission webhook "policy.example.com" denied the request: no latest tags`))), exitContent},
		{"forbidden by a quota", obj(apierrors.NewForbidden(cm, "x", errors.New(`exceeded quota: objects, requested: count/configmaps=1, used: count/configmaps=10, limited: count/configmaps=10`))), exitContent},
		{"render cancelled (SIGTERM)", &render.ManifestError{Source: "chart/Chart.yaml", Err: fmt.Errorf("rendering chart: %w", context.Canceled)}, exitRetry},
		{"render past --timeout", &render.ManifestError{Source: "chart/Chart.yaml", Err: fmt.Errorf("rendering chart: %w", context.DeadlineExceeded)}, exitRetry},
		{"remote resource unreachable", &render.ManifestError{Source: "k/kustomization.yaml", Err: fmt.Errorf("kustomize: %w", &url.Error{Op: "Get", URL: "https://x", Err: &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}})}, exitRetry},
		{"remote host unknown for now", &render.ManifestError{Source: "k/kustomization.yaml", Err: fmt.Errorf("kustomize: %w", &net.DNSError{Err: "server misbehaving", Name: "x", IsTemporary: true})}, exitRetry},
		{"capabilities discovery unavailable", &render.ManifestError{Source: "chart/Chart.yaml", Err: fmt.Errorf("discovery: %w", apierrors.NewServiceUnavailable("later"))}, exitRetry},
		{"render that fails on its own", &render.ManifestError{Source: "chart/Chart.yaml", Err: errors.New(`template: web/templates/cm.yaml:3: function "nope" not defined`)}, exitContent},
		{"no SOPS key opens a file", &render.SopsKeyError{Source: "s.yaml", Recipients: []string{"age age1x"}, Err: errors.New("no identity matched")}, exitConfig},
		{"a KMS answering 503", &render.SopsKeyError{Source: "s.yaml", Recipients: []string{"hc_vault https://v:8200"}, Err: fmt.Errorf("request failed: HTTP 503: %w", render.ErrKMSUnavailable)}, exitRetry},
		{"a KMS unreachable for now", &render.SopsKeyError{Source: "s.yaml", Recipients: []string{"kms arn:aws:kms:x"}, Err: fmt.Errorf("kms: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED})}, exitRetry},
		{"verify failed", fmt.Errorf("commit: %w", gitsrc.ErrUnverified), exitUnverified},
		{"prune refused", fmt.Errorf("pruning: %w", apply.ErrRefused), exitConfig},
		{"changes pending", errChangesPending, exitChanges},
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
		{"cronsync status: a sync needs a look", &status.AttentionError{Listed: 3, Names: []string{"a/b failed"}}, 1},
		{"cronsync status: bad kubeconfig", usageErrorf("%w", errors.New("--context \"x\": no such context")), exitConfig},
	} {
		if got := exitCode(tc.err); got != tc.want {
			t.Errorf("%s: exitCode(%v) = %d, want %d", tc.name, tc.err, got, tc.want)
		}
	}
}

// A LIST that --wait makes after the commit was applied and that the
// server refuses as bad or not found (a CRD deleted since, say) is no
// verdict on the commit: exit 1. RBAC's refusal stays the Job's: exit 2.
func TestExitCodeOfStatusReads(t *testing.T) {
	for code, want := range map[int]int{http.StatusNotFound: exitRetry, http.StatusBadRequest: exitRetry, http.StatusForbidden: exitConfig} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			status := apierrors.NewGenericServerResponse(code, "list", schema.GroupResource{Group: "example.com", Resource: "widgets"}, "", `User "u" cannot list resource "widgets"`, 0, false).Status()
			status.Kind, status.APIVersion = "Status", "v1"
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(code)
			json.NewEncoder(w).Encode(&status)
		}))
		client, err := health.RESTClientFor(&rest.Config{Host: srv.URL})
		if err != nil {
			t.Fatal(err)
		}
		opts := health.DefaultOptions()
		opts.Timeout = time.Second
		_, err = health.Wait(context.Background(), client, []health.Object{{
			Resource:  schema.GroupVersionResource{Group: "example.com", Version: "v1", Resource: "widgets"},
			Namespace: "shop", Name: "w", Ref: "widget.example.com/w -n shop", Source: "w.yaml",
		}}, opts)
		srv.Close()
		if err == nil {
			t.Fatalf("%d: no error", code)
		}
		if got := exitCode(err); got != want {
			t.Errorf("%d: exitCode(%v) = %d, want %d", code, err, got, want)
		}
	}
}

// The Git source's faults, as gitsrc builds them against real
// repositories, map to the README's rows: what the Job names wrongly is 2,
// what the commit holds is 3.
func TestExitCodeOfGitSourceFaults(t *testing.T) {
	root := t.TempDir()
	lib := testenv.NewRepoAt(t, filepath.Join(root, "lib"))
	lib.Write("a.yaml", "a: 1\n")
	libSHA := lib.Commit("lib")
	lib.Git("tag", "v1.0.0")
	srv := testenv.ServeHTTP(t, root, nil)
	parent := func(name, url, sha string) string {
		r := testenv.NewRepoAt(t, filepath.Join(root, name))
		r.Write("b.yaml", "b: 1\n")
		r.Submodule("lib", sha, url)
		r.Commit(name)
		return srv.URL + "/" + name
	}
	for _, tc := range []struct {
		name string
		opts gitsrc.Options
		want int
	}{
		{"no such ref", gitsrc.Options{URL: lib.Dir, Ref: "no-such-branch"}, exitConfig},
		{"no such repository", gitsrc.Options{URL: filepath.Join(root, "nowhere")}, exitConfig},
		{"no tag in the range", gitsrc.Options{URL: srv.URL + "/lib", RefSemver: ">=2"}, exitConfig},
		{"gitlink without .gitmodules entry", gitsrc.Options{URL: parent("no-entry", "", libSHA), Submodules: true}, exitContent},
		{"submodule on this machine under a remote", gitsrc.Options{URL: parent("local", "file://"+lib.Dir, libSHA), Submodules: true}, exitContent},
		{"pinned commit gone", gitsrc.Options{URL: parent("gone", "../lib", strings.Repeat("ef", 20)), Submodules: true}, exitContent},
		{"submodule server unreachable", gitsrc.Options{URL: parent("down", "http://127.0.0.1:1/lib", libSHA), Submodules: true}, exitRetry},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.WorkDir = t.TempDir()
			co, err := gitsrc.Clone(context.Background(), tc.opts)
			if err == nil {
				co.Close()
				t.Fatal("no error")
			}
			if got := exitCode(err); got != tc.want {
				t.Errorf("exitCode(%v) = %d, want %d", err, got, tc.want)
			}
		})
	}
}
