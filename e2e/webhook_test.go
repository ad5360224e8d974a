package e2e

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	admissionv1 "k8s.io/api/admission/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// webhookServer is a validating admission webhook for ConfigMaps that
// denies the value "deny-me", served over TLS on a port fixed before it
// starts, so the cluster can be told where it is while it is down.
type webhookServer struct {
	addr     string
	caBundle string
	srv      *httptest.Server
}

func newWebhookServer(t *testing.T) *webhookServer {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w := &webhookServer{addr: l.Addr().String()}
	l.Close()
	// httptest serves one fixed certificate for 127.0.0.1: read it once.
	probe := httptest.NewTLSServer(http.NotFoundHandler())
	w.caBundle = base64.StdEncoding.EncodeToString(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: probe.Certificate().Raw}))
	probe.Close()
	t.Cleanup(w.stop)
	return w
}

func (w *webhookServer) start(t *testing.T) {
	t.Helper()
	l, err := net.Listen("tcp", w.addr)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = httptest.NewUnstartedServer(http.HandlerFunc(validate))
	w.srv.Listener = l
	w.srv.StartTLS()
}

func (w *webhookServer) stop() {
	if w.srv != nil {
		w.srv.Close()
		w.srv = nil
	}
}

func validate(rw http.ResponseWriter, r *http.Request) {
	var review admissionv1.AdmissionReview
	if err := json.NewDecoder(r.Body).Decode(&review); err != nil {
		http.Error(rw, err.Error(), http.StatusBadRequest)
		return
	}
	var cm corev1.ConfigMap
	_ = json.Unmarshal(review.Request.Object.Raw, &cm)
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	if cm.Data["value"] == "deny-me" {
		resp.Allowed = false
		resp.Result = &metav1.Status{Message: "value deny-me is not allowed"}
	}
	review.Response, review.Request = resp, nil
	_ = json.NewEncoder(rw).Encode(review)
}

func (w *webhookServer) config(ns string) string {
	return fmt.Sprintf(`apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingWebhookConfiguration
metadata:
  name: %[1]s-validate
webhooks:
- name: validate.%[1]s.example.com
  admissionReviewVersions: [v1]
  sideEffects: None
  failurePolicy: Fail
  timeoutSeconds: 2
  clientConfig:
    url: https://%[2]s/validate
    caBundle: %[3]s
  namespaceSelector:
    matchLabels: {kubernetes.io/metadata.name: %[1]s}
  rules:
  - apiGroups: [""]
    apiVersions: [v1]
    operations: [CREATE, UPDATE]
    resources: [configmaps]
`, ns, w.addr, w.caBundle)
}

// A webhook whose own Deployment is broken must not block the commit that
// fixes it: what it blocks is set aside, the rest is written, and the set-
// aside objects are retried while the webhook comes back.
func TestUnreachableWebhookDoesNotBlockItsFix(t *testing.T) {
	ns := "whk"
	hook := newWebhookServer(t)
	t.Cleanup(func() {
		_ = kube.Resource(webhooks).Delete(context.Background(), ns+"-validate", metav1.DeleteOptions{})
	})
	r := repoWith(t, map[string]string{
		"ns.yaml":      namespace(ns),
		"cfg.yaml":     configMap(ns, "cfg", "v1"),
		"hook.yaml":    deployment(ns, "hook", 1, "", unschedulable),
		"old.yaml":     deployment(ns, "old", 1, "", ""),
		"webhook.yaml": hook.config(ns),
	})
	// One worker: the ConfigMap is written before the webhook that would
	// refuse it (files are applied in path order).
	wantExit(t, cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--wait=false", "--workers", "1"), 0)

	// The fix, and a change the webhook must see, while it is down.
	r.Write("hook.yaml", deployment(ns, "hook", 1, "", ""))
	r.Write("cfg.yaml", configMap(ns, "cfg", "v2"))
	r.Remove("old.yaml")
	r.Commit("fix the webhook's image")
	out := cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--prune", "--wait-timeout", "6s")
	wantExit(t, out, 1)
	wantLine(t, out.stdout, "configmap/cfg -n "+ns+" set aside until the rest is written")
	wantLine(t, out.stderr, `configmap/cfg -n `+ns+` (cfg.yaml): set aside and not written: admission webhook "validate.whk.example.com" could not be called`)
	if sel := live(t, deployments, ns, "hook").Object["spec"].(map[string]any)["template"].(map[string]any)["spec"].(map[string]any)["nodeSelector"]; sel != nil {
		t.Errorf("the webhook's fixed Deployment was not written: nodeSelector %v", sel)
	}
	if v := live(t, configMaps, ns, "cfg").Object["data"].(map[string]any)["value"]; v != "v1" {
		t.Errorf("cfg = %v", v)
	}
	if old := live(t, deployments, ns, "old"); old == nil || old.GetDeletionTimestamp() != nil {
		t.Error("a run that left objects set aside pruned")
	}

	// --wait=false still sets aside, and tries once more.
	out = cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--prune", "--wait=false")
	wantExit(t, out, 1)
	wantLine(t, out.stdout, "trying 1 objects set aside once more")
	wantLine(t, out.stderr, `set aside and not written: admission webhook "validate.whk.example.com" could not be called`)

	// The webhook comes up during the wait, once the run has found it down
	// and set the ConfigMap aside (its output is read as it comes): the
	// run tries again and converges.
	out = cronsyncStarting(t, "set aside until the rest is written", func() { hook.start(t) },
		"--repo", r.Dir, "--applyset", ns+"/cs", "--prune", "--wait-timeout", "90s")
	wantExit(t, out, 0)
	wantLine(t, out.stdout, "trying 1 objects set aside again")
	wantLine(t, out.stdout, "configmap/cfg -n "+ns+" configured")
	if v := live(t, configMaps, ns, "cfg").Object["data"].(map[string]any)["value"]; v != "v2" {
		t.Errorf("cfg = %v after the webhook came back", v)
	}
	if old := live(t, deployments, ns, "old"); old != nil && old.GetDeletionTimestamp() == nil {
		t.Error("old was not pruned once everything was written")
	}

	// A webhook that answers and denies is a verdict on the commit.
	r.Write("cfg.yaml", configMap(ns, "cfg", "deny-me"))
	r.Write("hook.yaml", strings.Replace(deployment(ns, "hook", 1, "", ""), "app:1", "app:2", 1))
	r.Commit("a value the webhook denies")
	before := snapshot(t, ns)
	out = cronsync(t, "--repo", r.Dir, "--applyset", ns+"/cs", "--prune")
	wantExit(t, out, 3)
	wantLine(t, out.stderr, `admission webhook "validate.whk.example.com" denied the request: value deny-me is not allowed`)
	wantUnchanged(t, before, snapshot(t, ns))
}
