package apiserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A repository goes through the life a GitOps repo has: first sync, a change,
// a hand edit in the cluster (drift), and a git revert. After each run the
// cluster holds exactly what the commit says.
func TestSyncFollowsGit(t *testing.T) {
	ns := testenv.Unique("lifecycle")
	r := testenv.NewRepo(t)
	// The Namespace's file sorts after its contents: ordering is cronsync's
	// job, not the file names'.
	r.Write("apps/config.yaml", configMap(ns, "app-config", "v1"))
	r.Write("apps/web.yaml", deployment(ns, "web", 2))
	r.Write("apps/zz-namespace.yaml", namespace(ns))
	r.Write("README.md", "not a manifest\n")
	first := r.Commit("first")

	out := mustSync(t, "--repo", r.Dir, "--path", "apps")
	if got := get(t, configMaps, ns, "app-config", "data", "value"); got != "v1" {
		t.Fatalf("after first sync, app-config value = %s, want v1", got)
	}
	if got := get(t, deployments, ns, "web", "spec", "replicas"); got != "2" {
		t.Fatalf("after first sync, web replicas = %s, want 2", got)
	}
	for _, line := range []string{
		"namespace/" + ns + " created\n",
		"configmap/app-config -n " + ns + " created\n",
		"deployment.apps/web -n " + ns + " created\n",
		"refs/heads/main is commit " + first,
		"synced " + r.Dir + "@" + first[:12] + " path apps: 3 objects: 3 created, 0 configured, 0 unchanged, 0 failed in ",
	} {
		if !strings.Contains(out.stdout, line) {
			t.Errorf("output lacks %q", line)
		}
	}
	// Namespaces go first whatever the file order.
	if strings.Index(out.stdout, "namespace/"+ns) > strings.Index(out.stdout, "configmap/app-config") {
		t.Errorf("the Namespace was not applied before its contents")
	}

	r.Write("apps/config.yaml", configMap(ns, "app-config", "v2"))
	r.Commit("second")
	out = mustSync(t, "--repo", r.Dir, "--path", "apps")
	if got := get(t, configMaps, ns, "app-config", "data", "value"); got != "v2" {
		t.Fatalf("after second commit, app-config value = %s, want v2", got)
	}
	for _, line := range []string{
		"configmap/app-config -n " + ns + " configured\n",
		"3 objects: 0 created, 1 configured, 2 unchanged (2 without a request), 0 failed in ",
	} {
		if !strings.Contains(out.stdout, line) {
			t.Errorf("output lacks %q", line)
		}
	}
	// The unchanged ones are counted, not listed.
	if strings.Contains(out.stdout, " unchanged\n") {
		t.Errorf("an unchanged object has a line of its own:\n%s", out.stdout)
	}

	// Drift: someone scales by hand with another field manager, and edits
	// the ConfigMap. The next run puts Git's values back.
	ctx := context.Background()
	if _, err := kube.Resource(deployments).Namespace(ns).Patch(ctx, "web", types.MergePatchType,
		[]byte(`{"spec":{"replicas":5}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.Resource(configMaps).Namespace(ns).Patch(ctx, "app-config", types.MergePatchType,
		[]byte(`{"data":{"value":"hand-edited"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	out = mustSync(t, "--repo", r.Dir, "--path", "apps")
	if !strings.Contains(out.stdout, "deployment.apps/web -n "+ns+" configured (drift repaired)\n  spec.replicas: 5 → 2 (changed by kubectl-edit at ") {
		t.Errorf("the drifted Deployment is not reported as drift repaired")
	}
	if got := get(t, deployments, ns, "web", "spec", "replicas"); got != "2" {
		t.Errorf("drift: web replicas = %s after sync, want 2", got)
	}
	if got := get(t, configMaps, ns, "app-config", "data", "value"); got != "v2" {
		t.Errorf("drift: app-config value = %s after sync, want v2", got)
	}

	// Rolling back is a git revert.
	r.Git("revert", "--no-edit", "HEAD")
	mustSync(t, "--repo", r.Dir, "--path", "apps")
	if got := get(t, configMaps, ns, "app-config", "data", "value"); got != "v1" {
		t.Errorf("after revert, app-config value = %s, want v1", got)
	}
}

// A run over a commit the cluster already matches writes none of its
// objects: every object is reported unchanged and the API server's audit log
// shows reads and dry runs only, besides the run's own bookkeeping (the
// Lease, the last-run annotations on the ApplySet parent, the Event).
func TestNoChangeRunSendsNoWrite(t *testing.T) {
	for _, tc := range []struct {
		name string
		// fast: the run decides from the LISTs; otherwise it dry-runs
		// every object.
		fast bool
	}{{"decided from the LIST", true}, {"dry run of every object", false}} {
		t.Run(tc.name, func(t *testing.T) {
			// Both sets hold the same CRD, cluster-wide: each takes it
			// from the other when it runs.
			ns := "nochange"
			flags := []string{"--fast-unchanged=true", "--applyset", "default/nochange-fast", "--adopt-from", "default/nochange-slow"}
			if !tc.fast {
				ns, flags = "nochange-slow", []string{"--fast-unchanged=false", "--applyset", "default/nochange-slow", "--adopt-from", "default/nochange-fast"}
			}
			noChangeRun(t, ns, tc.fast, flags)
		})
	}
}

// TestChangedObjectsCostADryRunAndAnApply: an object the commit changed
// carries a new digest, which the metadata LIST already shows differs from
// the live one's; the run sends it its dry run and its apply and reads
// nothing more of it. Before, one changed object was read again with a GET
// and several with a second, whole LIST of their namespace's ConfigMaps.
func TestChangedObjectsCostADryRunAndAnApply(t *testing.T) {
	ns := "changedcost"
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	for i := range 6 {
		r.Write(fmt.Sprintf("cm-%d.yaml", i), configMap(ns, fmt.Sprintf("cm-%d", i), "v1"))
	}
	r.Commit("first")
	args := []string{"--repo", r.Dir, "--applyset", "default/changedcost"}
	mustSync(t, args...)

	for _, tc := range []struct {
		name    string
		changed int
	}{{"one of six", 1}, {"five of six", 5}} {
		t.Run(tc.name, func(t *testing.T) {
			value := fmt.Sprintf("v%d", tc.changed+1)
			for i := range tc.changed {
				r.Write(fmt.Sprintf("cm-%d.yaml", i), configMap(ns, fmt.Sprintf("cm-%d", i), value))
			}
			r.Commit(tc.name)
			mark := cluster.AuditMark()
			out := mustSync(t, args...)
			if want := fmt.Sprintf("%d configured, %d unchanged (%d without a request)", tc.changed, 7-tc.changed, 7-tc.changed); !strings.Contains(out.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, out.stdout)
			}
			// Before this test reads anything itself.
			events, err := cluster.AuditSince(mark, "admin")
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.changed {
				if got := get(t, configMaps, ns, fmt.Sprintf("cm-%d", i), "data", "value"); got != value {
					t.Errorf("cm-%d holds %q, want %q", i, got, value)
				}
			}
			prefix := "/api/v1/namespaces/" + ns + "/configmaps"
			var lists, dryRuns, applies int
			for _, ev := range events {
				if !strings.HasPrefix(ev.RequestURI, prefix) {
					continue
				}
				switch {
				case ev.Verb == "list":
					lists++
				case ev.Verb == "get":
					t.Errorf("a ConfigMap read on its own: %s", ev.RequestURI)
				case ev.Verb == "patch" && strings.Contains(ev.RequestURI, "dryRun=All"):
					dryRuns++
				case ev.Verb == "patch":
					applies++
				}
			}
			if lists != 1 || dryRuns != tc.changed || applies != tc.changed {
				t.Errorf("%d LISTs of the namespace's ConfigMaps, %d dry runs, %d applies; want 1, %d, %d", lists, dryRuns, applies, tc.changed, tc.changed)
			}
		})
	}
}

func noChangeRun(t *testing.T, ns string, fast bool, flags []string) {
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("config.yaml", configMap(ns, "config", "v1"))
	r.Write("web.yaml", deployment(ns, "web", 1))
	r.Write("crd.yaml", testenv.CRD("Sprocket"))
	r.Write("sprocket.yaml", "apiVersion: example.com/v1\nkind: Sprocket\nmetadata: {name: s, namespace: "+ns+"}\nspec: {size: 1}\n")
	// Enough ConfigMaps in one namespace to be read with one LIST.
	for i := range 5 {
		r.Write(fmt.Sprintf("many/cm-%d.yaml", i), configMap(ns, fmt.Sprintf("many-%d", i), "v"))
	}
	r.Commit("first")
	mustSync(t, append([]string{"--repo", r.Dir}, flags...)...)

	mark := cluster.AuditMark()
	out := mustSync(t, append([]string{"--repo", r.Dir}, flags...)...)
	want, wantDryRuns := "10 objects: 0 created, 0 configured, 10 unchanged, 0 failed", 10
	if fast {
		want, wantDryRuns = "10 objects: 0 created, 0 configured, 10 unchanged (10 without a request), 0 failed", 0
	}
	if !strings.Contains(out.stdout, want) {
		t.Errorf("output lacks %q", want)
	}
	events, err := cluster.AuditSince(mark, "admin")
	if err != nil {
		t.Fatal(err)
	}
	var writes, dryRuns, cmLists, parentGets, leaseGets int
	set := flags[slices.Index(flags, "--applyset")+1] // namespace/name
	parent := "/api/v1/namespaces/" + strings.Replace(set, "/", "/secrets/", 1)
	for _, ev := range events {
		switch {
		case ev.Verb == "list" && strings.HasPrefix(ev.RequestURI, "/api/v1/namespaces/"+ns+"/configmaps?"):
			cmLists++
			continue
		case ev.Verb == "get" && strings.HasPrefix(ev.RequestURI+"?", parent+"?"):
			parentGets++
			continue
		case ev.Verb == "get" && strings.Contains(ev.RequestURI, "/leases/"):
			leaseGets++
			continue
		case ev.Verb == "get" && strings.HasPrefix(ev.RequestURI, "/api/v1/namespaces/"+ns+"/configmaps/"):
			t.Errorf("ConfigMap read one by one: %s", ev.RequestURI)
			continue
		case ev.Verb == "get", ev.Verb == "list", ev.Verb == "watch":
			continue
		case strings.Contains(ev.RequestURI, "/leases/"), strings.HasSuffix(ev.RequestURI, "/events"),
			strings.Contains(ev.RequestURI, "fieldManager=cronsync-status&"):
			continue
		}
		if strings.Contains(ev.RequestURI, "dryRun=All") {
			dryRuns++
			continue
		}
		writes++
		t.Errorf("write request sent: %s %s", ev.Verb, ev.RequestURI)
	}
	if dryRuns != wantDryRuns {
		t.Errorf("%d dry-run requests, want %d", dryRuns, wantDryRuns)
	}
	if cmLists != 1 {
		t.Errorf("%d LISTs of the namespace's ConfigMaps, want 1", cmLists)
	}
	// The run's record and the Lease's release write what the run read.
	if parentGets != 1 || leaseGets != 1 {
		t.Errorf("the ApplySet parent read %d times and the Lease %d, want once each", parentGets, leaseGets)
	}

	// A hand edit to one listed object is still seen.
	if _, err := kube.Resource(configMaps).Namespace(ns).Patch(context.Background(), "many-3", types.MergePatchType,
		[]byte(`{"data":{"value":"drifted"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	out = mustSync(t, append([]string{"--repo", r.Dir}, flags...)...)
	if !strings.Contains(out.stdout, "configmap/many-3 -n "+ns+" configured (drift repaired)\n") || !strings.Contains(out.stdout, "1 configured (1 drift repaired), 9 unchanged") {
		t.Errorf("the drifted ConfigMap is not reported as drift repaired")
	}
	if got := get(t, configMaps, ns, "many-3", "data", "value"); got != "v" {
		t.Errorf("many-3 value = %s after sync, want v", got)
	}
}

// A CRD and resources of its kind in one commit, with the resource's file
// sorting first, converge in one run.
func TestCRDAndCustomResourceInOneRun(t *testing.T) {
	// A kind of its own, so that the CRD is new each time the test runs.
	kind := strings.ReplaceAll(testenv.Unique("Widget"), "-", "")
	r := testenv.NewRepo(t)
	r.Write("a-widget.yaml", "apiVersion: example.com/v1\nkind: "+kind+"\nmetadata:\n  name: first\n  namespace: default\nspec:\n  size: 3\n")
	r.Write("crd.yaml", testenv.CRD(kind))
	r.Commit("crd and widget")
	out := mustSync(t, "--repo", r.Dir)
	widgets := crdGVR("example.com", "v1", strings.ToLower(kind)+"s")
	if got := get(t, widgets, "default", "first", "spec", "size"); got != "3" {
		t.Fatalf("widget size = %s, want 3", got)
	}
	if !strings.Contains(out.stdout, "customresourcedefinition.apiextensions.k8s.io/"+strings.ToLower(kind)+"s.example.com created") ||
		!strings.Contains(out.stdout, strings.ToLower(kind)+".example.com/first -n default created") {
		t.Errorf("no line for the CRD or the widget")
	}
}

// Dry runs change nothing in the cluster, whatever the commit holds.
func TestDryRunChangesNothing(t *testing.T) {
	const ns = "dryrun"
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("config.yaml", configMap(ns, "config", "v1"))
	r.Commit("first")
	mustSync(t, "--repo", r.Dir)

	r.Write("config.yaml", configMap(ns, "config", "v2"))
	r.Write("new.yaml", configMap(ns, "new", "v1"))
	r.Write("crd.yaml", testenv.CRD("Gadget"))
	r.Write("gadget.yaml", "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: dryrun}\n")
	r.Commit("second")

	for _, mode := range []struct{ flag, suffix string }{
		{"--dry-run", "(server dry run)"},
		{"--dry-run=server", "(server dry run)"},
		{"--dry-run=client", "(dry run)"},
	} {
		t.Run(mode.flag, func(t *testing.T) {
			before := snapshot(t)
			out := mustSync(t, "--repo", r.Dir, mode.flag)
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("dry run changed the cluster:\n%s", strings.Join(diff, "\n"))
			}
			for _, line := range []string{
				"configmap/new -n dryrun created " + mode.suffix,
				"configmap/config -n dryrun configured " + mode.suffix,
			} {
				if !strings.Contains(out.stdout, line) {
					t.Errorf("output lacks %q", line)
				}
			}
			if !strings.Contains(out.stdout, "gadget.example.com/g -n dryrun not validated") {
				t.Errorf("output does not say the new CRD's resource could not be checked")
			}
		})
	}
}

// Objects without a namespace land in --namespace, and every flag can come
// from its CRONSYNC_ environment variable.
func TestEnvironmentConfiguresEverything(t *testing.T) {
	const ns = "fromenv"
	r := testenv.NewRepo(t)
	r.Write("deploy/ns.yaml", namespace(ns))
	r.Write("deploy/config.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: no-namespace\ndata: {value: env}\n")
	r.Write("other/config.yaml", "this: is not applied\n")
	r.Commit("first")
	out := cronsync(t, []string{
		"CRONSYNC_REPO=file://" + r.Dir,
		"CRONSYNC_REF=main",
		"CRONSYNC_PATH=deploy",
		"CRONSYNC_NAMESPACE=" + ns,
		"CRONSYNC_FIELD_MANAGER=env-manager",
	})
	if out.code != 0 {
		t.Fatalf("exit %d", out.code)
	}
	if got := get(t, configMaps, ns, "no-namespace", "data", "value"); got != "env" {
		t.Fatalf("value = %s, want env", got)
	}
	if got := get(t, configMaps, ns, "no-namespace", "metadata", "managedFields"); !strings.Contains(got, "env-manager") {
		t.Errorf("managedFields do not name env-manager: %s", got)
	}
	// A flag wins over its variable.
	if out := cronsync(t, []string{"CRONSYNC_REPO=/does/not/exist"}, "--repo", r.Dir, "--path", "deploy", "-n", ns); out.code != 0 {
		t.Errorf("--repo did not win over CRONSYNC_REPO: exit %d", out.code)
	}
}

func crdGVR(group, version, resource string) schema.GroupVersionResource {
	return schema.GroupVersionResource{Group: group, Version: version, Resource: resource}
}
