package apiserver

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A Jsonnet directory syncs like any other: created, then unchanged from
// the LISTs alone, reconfigured when a top-level argument changes, and what
// it no longer renders is pruned.
func TestJsonnetSync(t *testing.T) {
	ns := testenv.Unique("jsonnet")
	r := testenv.NewRepo(t)
	r.Write("vendor/k/k.libsonnet", `{
  configMap(ns, name, data):: { apiVersion: 'v1', kind: 'ConfigMap', metadata: { name: name, namespace: ns }, data: data },
}`)
	r.Write("env/main.jsonnet", `local k = import 'k/k.libsonnet';
function(replicas=2, env='dev') {
  namespace: { apiVersion: 'v1', kind: 'Namespace', metadata: { name: '`+ns+`' } },
  configs: [k.configMap('`+ns+`', 'cfg-' + i, { env: env, region: std.extVar('region') }) for i in std.range(1, replicas)],
}`)
	r.Write("env/README.md", "not read\n")
	r.Commit("jsonnet")
	args := []string{"--repo", r.Dir, "--path", "env", "--applyset", "default/" + ns, "--prune", "--jsonnet-lib-path", "vendor", "--jsonnet-ext-str", "region=eu"}

	got, out := syncJSON(t, args...)
	for _, ref := range []string{"namespace/" + ns, "configmap/cfg-1 -n " + ns, "configmap/cfg-2 -n " + ns} {
		if got[ref].Action != "created" {
			t.Errorf("%s: %q, want created\n%s", ref, got[ref].Action, out.stderr)
		}
	}
	if !strings.Contains(out.stdout, `"source": "env/main.jsonnet"`) {
		t.Errorf("the objects do not name their file:\n%s", out.stdout)
	}
	cm, err := kube.Resource(configMaps).Namespace(ns).Get(context.Background(), "cfg-2", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := cm.Object["data"].(map[string]any); data["env"] != "dev" || data["region"] != "eu" {
		t.Errorf("cfg-2 holds %v", data)
	}

	// The same commit and flags: nothing read, nothing asked.
	got, out = syncJSON(t, args...)
	for ref, o := range got {
		if o.Action != "unchanged" || !o.WithoutRequest {
			t.Errorf("%s: %s (without a request: %v) on a second run", ref, o.Action, o.WithoutRequest)
		}
	}
	if !strings.Contains(out.stderr, "without reading its files") {
		t.Errorf("the same commit with the same variables was evaluated again:\n%s", out.stderr)
	}
	// A changed argument shapes the objects anew: the run cannot go by the
	// last run's record, and writes what changed.
	got, out = syncJSON(t, append(args, "--jsonnet-tla-str", "env=prod", "--jsonnet-tla-code", "replicas=1")...)
	if got["configmap/cfg-1 -n "+ns].Action != "configured" || got["namespace/"+ns].Action != "unchanged" || got["configmap/cfg-2 -n "+ns].Action != "pruned" {
		t.Errorf("after changing the arguments: %+v\n%s", got, out.stderr)
	}
	if _, err := kube.Resource(configMaps).Namespace(ns).Get(context.Background(), "cfg-2", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("cfg-2 not pruned: %v", err)
	}
	cm, err = kube.Resource(configMaps).Namespace(ns).Get(context.Background(), "cfg-1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if data, _ := cm.Object["data"].(map[string]any); data["env"] != "prod" {
		t.Errorf("cfg-1 holds %v", data)
	}
}
