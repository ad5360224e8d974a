package apiserver

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// varsConfigMap creates a ConfigMap of variables in default, as a cluster's
// cluster-vars is created with the cluster.
func varsConfigMap(t *testing.T, name string, data map[string]string) {
	t.Helper()
	_, err := clientset().CoreV1().ConfigMaps("default").Create(context.Background(), &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name}, Data: data}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
}

func cmData(t *testing.T, ns, name string) map[string]any {
	t.Helper()
	cm, err := kube.Resource(configMaps).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	data, _ := cm.Object["data"].(map[string]any)
	return data
}

// Variables from a ConfigMap, a Secret and the command line, in Flux's
// order, reach plain manifests and a kustomize build alike; defaults,
// $${} escapes, a bare $var and the opt-outs behave as in Flux; a key that
// is no variable name is skipped with a warning; the Secret's value shows
// in no output; a changed ConfigMap value reaches the cluster on the next
// run of the same commit, and the run after it decides from the LISTs.
func TestSubstituteSources(t *testing.T) {
	ns := testenv.Unique("subst")
	token := "tok-" + testenv.Unique("secret-value")
	cmName, secretName := ns+"-vars", ns+"-svars"
	varsConfigMap(t, cmName, map[string]string{"CLUSTER": "edge-1", "PREC": "from-configmap", "REGION": "eu", "ID": `"1234"`, "bad-key": "x", "MULTI": "a\nb"})
	_, err := clientset().CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName},
		Data: map[string][]byte{"PREC": []byte("from-secret"), "TOKEN": []byte(token), "REGION": []byte("eu-secret")}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("apps/ns.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: \"${NS}\"}\n")
	r.Write("apps/cm.yaml", `apiVersion: v1
kind: ConfigMap
metadata:
  name: app-${CLUSTER}
  namespace: ${NS}
  labels: {cluster: "${CLUSTER}"}
data:
  cluster: ${CLUSTER}
  prec: ${PREC}
  region: ${REGION}
  id: ${ID}
  token: ${TOKEN}
  multi: ${MULTI}
  def1: ${UNSET:=fallback}
  def2: ${UNSET:-dash}
  def3: ${REGION:-ignored}
  escaped: $${CLUSTER}
  bare: $CLUSTER and $$
`)
	r.Write("apps/disabled.yaml", `apiVersion: v1
kind: ConfigMap
metadata:
  name: disabled
  namespace: `+ns+`
  labels: {cronsync.dev/substitute: disabled}
data: {script: "echo ${HOME}"}
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: flux-disabled
  namespace: `+ns+`
  annotations: {kustomize.toolkit.fluxcd.io/substitute: disabled}
data: {script: "echo ${HOME} $${X}"}
`)
	r.Write("apps/overlay/kustomization.yaml", "namespace: "+ns+"\nnameSuffix: -k\nresources: [cm.yaml]\nlabels:\n- pairs: {region: \"${REGION}\"}\n")
	r.Write("apps/overlay/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: kust}\ndata: {cluster: \"${CLUSTER}\"}\n")
	r.Write("apps/gen.jsonnet", "{ apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: 'jsonnet', namespace: '"+ns+"' }, data: { cluster: '${CLUSTER}' } }\n")
	r.Commit("fleet")
	sinks := newSinks(t)
	args := append([]string{"--repo", r.Dir, "--path", "apps", "--output", "json",
		"--substitute-from", "configmap/" + cmName, "--substitute-from", "secret/default/" + secretName + "?",
		"--substitute-from", "configmap/absent-" + ns + "?",
		"--substitute", "NS=" + ns}, sinks.args...)
	args = append(args, "--substitute", "PREC=inline")

	out := cronsync(t, nil, args...)
	if out.code != 0 {
		t.Fatalf("exit %d:\n%s", out.code, out.stderr)
	}
	want := map[string]any{"cluster": "edge-1", "prec": "inline", "region": "eu-secret", "id": "1234", "token": token, "multi": "ab",
		"def1": "fallback", "def2": "dash", "def3": "eu-secret", "escaped": "${CLUSTER}", "bare": "$CLUSTER and $"}
	data := cmData(t, ns, "app-edge-1")
	for k, v := range want {
		if data[k] != v {
			t.Errorf("app-edge-1 %s = %q, want %q", k, data[k], v)
		}
	}
	if got := get(t, configMaps, ns, "app-edge-1", "metadata", "labels", "cluster"); got != "edge-1" {
		t.Errorf("label cluster = %q", got)
	}
	if d := cmData(t, ns, "disabled"); d["script"] != "echo ${HOME}" {
		t.Errorf("the opted-out object was substituted: %v", d)
	}
	if d := cmData(t, ns, "flux-disabled"); d["script"] != "echo ${HOME} $${X}" {
		t.Errorf("the object opted out with Flux's annotation was substituted: %v", d)
	}
	for _, name := range []string{"kust-k", "jsonnet"} {
		if d := cmData(t, ns, name); d["cluster"] != "edge-1" {
			t.Errorf("%s was not substituted: %v", name, d)
		}
	}
	if got := get(t, configMaps, ns, "kust-k", "metadata", "labels", "region"); got != "eu-secret" {
		t.Errorf("kustomize label region = %q", got)
	}
	if n := strings.Count(out.stderr, "bad-key"); n != 1 || !hasLineWith(out.stderr, "warning:", cmName, "skipped", "bad-key") {
		t.Errorf("want one warning naming bad-key, got %d:\n%s", n, out.stderr)
	}
	sinks.absent(out, token)

	// The same commit, a changed value: the run reads the commit again
	// and applies it.
	cm, err := clientset().CoreV1().ConfigMaps("default").Get(context.Background(), cmName, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["REGION"] = "us"
	if _, err := clientset().CoreV1().Secrets("default").Patch(context.Background(), secretName, "application/merge-patch+json", []byte(`{"data":{"REGION":null}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := clientset().CoreV1().ConfigMaps("default").Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	out = cronsync(t, nil, args...)
	if out.code != 0 {
		t.Fatalf("exit %d:\n%s", out.code, out.stderr)
	}
	if d := cmData(t, ns, "app-edge-1"); d["region"] != "us" {
		t.Errorf("the changed variable did not reach the cluster: %v\n%s", d, out.stderr)
	}
	if got := get(t, configMaps, ns, "kust-k", "metadata", "labels", "region"); got != "us" {
		t.Errorf("kustomize label region = %q after the change", got)
	}
	// Unchanged variables: decided from the LISTs, no request per object.
	out = cronsync(t, nil, args...)
	if out.code != 0 {
		t.Fatalf("exit %d:\n%s", out.code, out.stderr)
	}
	var doc struct{ Objects []objectOutcome }
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Objects) != 6 {
		t.Errorf("%d objects, want 6", len(doc.Objects))
	}
	for _, o := range doc.Objects {
		if o.Action != "unchanged" || !o.WithoutRequest {
			t.Errorf("%s: %s (without a request: %v) with unchanged variables", o.Ref, o.Action, o.WithoutRequest)
		}
	}
	if !strings.Contains(out.stderr, "without reading its files") {
		t.Errorf("the same commit with the same variables was read again:\n%s", out.stderr)
	}
	sinks.absent(out, token)

	// A hand edit of the field holding the Secret's value: the dry run's
	// diff and the drift the real run repairs show it masked.
	if _, err := clientset().CoreV1().ConfigMaps(ns).Patch(context.Background(), "app-edge-1", "application/merge-patch+json", []byte(`{"data":{"token":"hand-edited"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	out = cronsync(t, nil, append(args, "--dry-run=server")...)
	if out.code != 0 || !strings.Contains(out.stderr+out.stdout, "hand-edited") {
		t.Errorf("dry run: exit %d, or its diff does not show the hand edit:\n%s\n%s", out.code, out.stdout, out.stderr)
	}
	sinks.absent(out, token)
	out = cronsync(t, nil, args...)
	if out.code != 0 || cmData(t, ns, "app-edge-1")["token"] != token {
		t.Errorf("the drift was not repaired: exit %d\n%s", out.code, out.stderr)
	}
	sinks.absent(out, token)
}

// Strict by default: a reference with no value and no default is exit 3
// naming the file, the object and the variable, and nothing is applied;
// --substitute-strict=false makes it empty. A variable set to "" is set.
func TestSubstituteStrict(t *testing.T) {
	ns := testenv.Unique("strict")
	r := testenv.NewRepo(t)
	r.Write("apps/a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n---\n"+
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: "+ns+"}\ndata: {a: \"x${EMPTY}y\", b: \"[${NOPE}]\"}\n")
	r.Commit("strict")
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", r.Dir, "--path", "apps", "--substitute", "EMPTY=")
	if out.code != exitContent || !hasLineWith(out.stderr, "configmap/c -n "+ns, "apps/a.yaml", "${NOPE}") {
		t.Errorf("exit %d, want %d naming the object, file and variable:\n%s", out.code, exitContent, out.stderr)
	}
	if strings.Contains(out.stderr, "${EMPTY}") {
		t.Errorf("a variable set to \"\" was called unset:\n%s", out.stderr)
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
	mustSync(t, "--repo", r.Dir, "--path", "apps", "--substitute", "EMPTY=", "--substitute-strict=false")
	if d := cmData(t, ns, "c"); d["a"] != "xy" || d["b"] != "[]" {
		t.Errorf("non-strict: %v", d)
	}
}

// A source the CronJob names but the cluster lacks is the CronJob's fault
// (exit 2), unless it is marked optional; and without any source a
// repository's own ${...} is left alone.
func TestSubstituteSourceFaults(t *testing.T) {
	ns := testenv.Unique("srcfault")
	r := testenv.NewRepo(t)
	r.Write("apps/a.yaml", "apiVersion: v1\nkind: Namespace\nmetadata: {name: "+ns+"}\n---\n"+
		"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: "+ns+"}\ndata: {a: \"${A:=dflt}\"}\n")
	r.Commit("faults")
	before := snapshot(t)
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"--substitute-from", "configmap/missing-" + ns}, []string{"--substitute-from configmap/missing-" + ns, "not found"}},
		{[]string{"--substitute-from", "secret/default/missing-" + ns}, []string{"secret missing-" + ns + " -n default not found"}},
		{[]string{"--substitute-from", "deployment/x"}, []string{"--substitute-from takes"}},
		{[]string{"--substitute", "a-b=1"}, []string{"a-b", "variable name"}},
	} {
		out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps"}, tc.args...)...)
		if out.code != exitConfig || !hasLineWith(out.stderr, tc.want...) {
			t.Errorf("%v: exit %d, want %d and a line with %q:\n%s", tc.args, out.code, exitConfig, tc.want, out.stderr)
		}
	}
	// Not allowed to read it: the CronJob's RBAC, exit 2. No API server:
	// exit 1, as any other unreachable request.
	varsConfigMap(t, ns+"-vars", map[string]string{"A": "a"})
	src := "configmap/default/" + ns + "-vars"
	out := cronsync(t, nil, "--repo", r.Dir, "--path", "apps", "--lease", "", "--as", "nobody-"+ns, "--substitute-from", src)
	if out.code != exitConfig || !hasLineWith(out.stderr, src, `cannot get resource "configmaps"`) {
		t.Errorf("forbidden: exit %d, want %d naming the source:\n%s", out.code, exitConfig, out.stderr)
	}
	out = cronsync(t, nil, "--repo", r.Dir, "--path", "apps", "--lease", "", "--server", "https://127.0.0.1:1", "--substitute-from", src)
	if out.code != exitRetry || !hasLineWith(out.stderr, src) {
		t.Errorf("unreachable: exit %d, want %d naming the source:\n%s", out.code, exitRetry, out.stderr)
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) != 1 || !strings.Contains(diff[0], ns+"-vars") {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
	mustSync(t, "--repo", r.Dir, "--path", "apps", "--substitute-from", "configmap/missing-"+ns+"?")
	if d := cmData(t, ns, "c"); d["a"] != "dflt" {
		t.Errorf("with an optional missing source: %v", d)
	}
	mustSync(t, "--repo", r.Dir, "--path", "apps")
	if d := cmData(t, ns, "c"); d["a"] != "${A:=dflt}" {
		t.Errorf("without any source the text was substituted: %v", d)
	}
}

// A Secret's value that the server quotes back (an invalid label value) is
// masked in every sink: stdout, stderr, the JSON document, the termination
// message, the parent's annotations and Events, the webhook.
func TestSubstituteSecretValueIsMasked(t *testing.T) {
	ns := testenv.Unique("substmask")
	secretName := ns + "-vars"
	value := "not a label " + testenv.Unique("value")
	_, err := clientset().CoreV1().Secrets("default").Create(context.Background(), &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: secretName},
		Data: map[string][]byte{"V": []byte(value)}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	setup := testenv.NewRepo(t)
	setup.Write("ns.yaml", namespace(ns))
	setup.Commit("namespace")
	mustSync(t, "--repo", setup.Dir)

	s := newSinks(t)
	r := testenv.NewRepo(t)
	r.Write("apps/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: labelled\n  namespace: "+ns+"\n  labels: {v: \"${V}\"}\ndata: {v: \"${V}\"}\n")
	r.Commit("a secret value in a label")
	before := snapshot(t)
	out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps", "--output", "json", "--substitute-from", "secret/" + secretName}, s.args...)...)
	if out.code != exitContent || !hasLineWith(out.stderr, "configmap/labelled -n "+ns, "***") {
		t.Errorf("exit %d, want %d and the refusal named, masked:\n%s", out.code, exitContent, out.stderr)
	}
	s.absent(out, value)
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}

	// In a Helm chart's output, applied, edited by hand, shown in a dry
	// run's diff and repaired: masked everywhere.
	r = testenv.NewRepo(t)
	r.Write("apps/chart/Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
	r.Write("apps/chart/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: helm\n  namespace: "+ns+"\ndata:\n  v: \"${V}\"\n")
	r.Commit("a secret value in a chart's output")
	args := append([]string{"--repo", r.Dir, "--path", "apps", "--output", "json", "--substitute-from", "secret/" + secretName}, s.args...)
	out = cronsync(t, nil, args...)
	if out.code != 0 || cmData(t, ns, "helm")["v"] != value {
		t.Fatalf("exit %d, or the chart's object does not hold the value:\n%s", out.code, out.stderr)
	}
	s.absent(out, value)
	if _, err := clientset().CoreV1().ConfigMaps(ns).Patch(context.Background(), "helm", "application/merge-patch+json", []byte(`{"data":{"v":"hand-edited"}}`), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{{"--dry-run=server"}, nil} {
		out = cronsync(t, nil, append(args, extra...)...)
		if out.code != 0 || !strings.Contains(out.stdout+out.stderr, "hand-edited") {
			t.Errorf("%v: exit %d, or the hand edit is not shown:\n%s\n%s", extra, out.code, out.stdout, out.stderr)
		}
		s.absent(out, value)
	}
	if cmData(t, ns, "helm")["v"] != value {
		t.Errorf("the drift in the chart's object was not repaired")
	}
}

// Two "clusters" (two sets, Leases and cluster-vars) sync the same path of
// the same repository, each with its own values, a Helm chart's output
// included.
func TestSubstituteTwoClusters(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("fleet/cm.yaml", "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: ${NS}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: site\n  namespace: ${NS}\ndata:\n  site: ${SITE}\n")
	r.Write("fleet/chart/Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
	r.Write("fleet/chart/templates/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: helm\n  namespace: ${NS}\ndata:\n  site: \"${SITE}\"\n  release: {{ .Release.Name | quote }}\n")
	r.Commit("fleet")
	for _, site := range []string{"north", "south"} {
		ns := testenv.Unique("site-" + site)
		varsConfigMap(t, ns+"-vars", map[string]string{"NS": ns, "SITE": site})
		mustSync(t, "--repo", r.Dir, "--path", "fleet", "--applyset", "default/"+ns, "--lease", "default/"+ns, "--substitute-from", "configmap/default/"+ns+"-vars")
		for _, name := range []string{"site", "helm"} {
			if d := cmData(t, ns, name); d["site"] != site {
				t.Errorf("%s %s: %v", ns, name, d)
			}
		}
	}
}

// A SOPS-encrypted Secret is substituted after it is decrypted.
func TestSubstituteSops(t *testing.T) {
	ns := testenv.Unique("substsops")
	keyFile, recipient := ageKey(t)
	r := testenv.NewRepo(t)
	r.Write("apps/ns.yaml", namespace(ns))
	r.Write("apps/secret.yaml", sopsEncrypt(t, "secret.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: "+ns+"\nstringData:\n  url: postgres://${DB_HOST}:5432/app\n",
		nil, "--age", recipient, "--encrypted-regex", "^(data|stringData)$"))
	r.Commit("sops")
	mustSync(t, "--repo", r.Dir, "--path", "apps", "--sops-age-key-file", keyFile, "--substitute", "DB_HOST=db.edge-1")
	if got := secretValue(t, ns, "db", "url"); got != "postgres://db.edge-1:5432/app" {
		t.Errorf("url = %q", got)
	}
}
