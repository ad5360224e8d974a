package apiserver

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/cli-runtime/pkg/genericclioptions"
	"k8s.io/client-go/kubernetes"
	kubectlapply "k8s.io/kubectl/pkg/cmd/apply"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/internal/testenv"
)

func TestPrune(t *testing.T) {
	// Names of this run's own (go test -count=2 runs it again).
	ns, other, system := testenv.Unique("prune"), testenv.Unique("prune-other"), testenv.Unique("cronsync-system")
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	set := []string{"--applyset", system + "/prune-test", "--prune"}
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: system}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	r := testenv.NewRepo(t)
	r.Write("apps/ns.yaml", namespace(ns))
	r.Write("apps/keep.yaml", configMap(ns, "keep", "v"))
	r.Write("apps/gone.yaml", configMap(ns, "gone", "v")+"---\n"+deployment(ns, "gone", 1))
	r.Write("apps/other-ns.yaml", namespace(other)+"---\n"+configMap(other, "gone-too", "v"))
	r.Commit("first")
	mustSync(t, append([]string{"--repo", r.Dir, "--path", "apps"}, set...)...)

	// Objects that look like members but are not: same name pattern and
	// labels without part-of, and part-of another set.
	for name, labels := range map[string]map[string]string{
		"lookalike":      {"app": "gone"},
		"other-set":      {"applyset.kubernetes.io/part-of": "applyset-someone-else-v1"},
		"hand-made-gone": nil,
	} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("readable by kubectl", func(t *testing.T) {
		got := kubectlMembers(t, system, "prune-test")
		want := []string{"ConfigMap/" + other + "/gone-too", "ConfigMap/" + ns + "/gone", "ConfigMap/" + ns + "/keep",
			"Deployment/" + ns + "/gone", "Namespace//" + ns, "Namespace//" + other}
		slices.Sort(want)
		if !slices.Equal(got, want) {
			t.Errorf("kubectl finds members\n%v\nwant\n%v", got, want)
		}
	})

	t.Run("empty commit refused", func(t *testing.T) {
		r.Write("empty/README.md", "nothing here\n")
		r.Commit("empty path")
		before := snapshot(t)
		out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "empty"}, set...)...)
		if out.code != exitConfig || !hasLineWith(out.stderr, "pruning would delete all 6 objects", "--prune-allow-empty") {
			t.Errorf("exit %d; want %d and the refusal explained", out.code, exitConfig)
		}
		if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
			t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
		}
	})

	r.Remove("apps/gone.yaml")
	r.Remove("apps/other-ns.yaml")
	r.Commit("remove gone.yaml and the other namespace")

	t.Run("failed apply skips prune", func(t *testing.T) {
		r.Write("apps/bad.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: bad, namespace: "+ns+"}\nspec: {ports: [{port: 0}]}\n")
		r.Commit("bad")
		before := snapshot(t)
		if out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps"}, set...)...); out.code != exitContent {
			t.Errorf("exit %d, want %d", out.code, exitContent)
		}
		if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
			t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
		}
		r.Remove("apps/bad.yaml")
		r.Commit("fix")
	})

	t.Run("dry run shows what would be pruned", func(t *testing.T) {
		before := snapshot(t)
		out := mustSync(t, append([]string{"--repo", r.Dir, "--path", "apps", "--dry-run", "--prune-namespaces-and-crds"}, set...)...)
		for _, line := range []string{
			"configmap/gone -n " + ns + " pruned (server dry run)",
			"deployment.apps/gone -n " + ns + " pruned (server dry run)",
			"namespace/" + other + " pruned (server dry run)",
		} {
			if !strings.Contains(out.stdout, line) {
				t.Errorf("output lacks %q", line)
			}
		}
		if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
			t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
		}
	})

	t.Run("removing a file prunes exactly its objects", func(t *testing.T) {
		out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps"}, set...)...)
		// Without the flag the Namespace stays, and says why: exit 2.
		if out.code != exitConfig || !hasLineWith(out.stderr, "namespace/"+other+" (not in the commit): not pruned: deleting a Namespace deletes everything in it") {
			t.Errorf("exit %d; want %d and the Namespace refusal", out.code, exitConfig)
		}
		for _, gone := range [][2]string{{"configmaps", "gone"}, {"deployments", "gone"}} {
			gvr := configMaps
			if gone[0] == "deployments" {
				gvr = deployments
			}
			if got := get(t, gvr, ns, gone[1], "metadata", "name"); got != "<absent>" {
				t.Errorf("%s/%s was not pruned", gone[0], gone[1])
			}
		}
		if got := get(t, configMaps, other, "gone-too", "metadata", "name"); got != "<absent>" {
			t.Errorf("configmap gone-too in another namespace of the set was not pruned")
		}
		for _, name := range []string{"keep", "lookalike", "other-set", "hand-made-gone"} {
			if got := get(t, configMaps, ns, name, "metadata", "name"); got != name {
				t.Errorf("configmap %s was deleted; it is not a member that left Git", name)
			}
		}
		if got := get(t, namespaces, "", other, "metadata", "name"); got != other {
			t.Errorf("the Namespace was deleted without --prune-namespaces-and-crds")
		}
		// The refused Namespace stays a member, so the next run sees it.
		if got := kubectlMembers(t, system, "prune-test"); !slices.Contains(got, "Namespace//"+other) {
			t.Errorf("the Namespace left the set: %v", got)
		}

		out = mustSync(t, append([]string{"--repo", r.Dir, "--path", "apps", "--prune-namespaces-and-crds"}, set...)...)
		if !strings.Contains(out.stdout, "namespace/"+other+" pruned\n") {
			t.Errorf("the Namespace was not pruned with --prune-namespaces-and-crds")
		}
		if ts := get(t, namespaces, "", other, "metadata", "deletionTimestamp"); ts == "<unset>" {
			t.Errorf("namespace %s is not being deleted", other)
		}
		want := []string{"ConfigMap/" + ns + "/keep", "Namespace//" + ns}
		slices.Sort(want)
		if got := kubectlMembers(t, system, "prune-test"); !slices.Equal(got, want) {
			t.Errorf("members after prune: %v, want %v", got, want)
		}
	})
}

// kubectlMembers lists the members of an ApplySet the way `kubectl apply
// --prune --applyset` finds them, as Kind/namespace/name, sorted. Objects
// already being deleted are left out: without kube-controller-manager here,
// a deleted Namespace stays Terminating.
func kubectlMembers(t *testing.T, ns, name string) []string {
	t.Helper()
	flags := genericclioptions.NewConfigFlags(false)
	flags.KubeConfig = &cluster.Kubeconfig
	f := cmdutil.NewFactory(flags)
	mapper, err := f.ToRESTMapper()
	if err != nil {
		t.Fatal(err)
	}
	parent, err := kubectlapply.ParseApplySetParentRef("secrets/"+name, mapper)
	if err != nil {
		t.Fatal(err)
	}
	parent.Namespace = ns
	client, err := f.UnstructuredClientForMapping(parent.RESTMapping)
	if err != nil {
		t.Fatal(err)
	}
	set := kubectlapply.NewApplySet(parent, kubectlapply.ApplySetTooling{Name: "cronsync", Version: "devel"}, mapper, client)
	if err := set.BeforeApply(nil, cmdutil.DryRunServer, metav1.FieldValidationStrict); err != nil {
		t.Fatalf("kubectl reading the ApplySet parent: %v", err)
	}
	dyn, err := f.DynamicClient()
	if err != nil {
		t.Fatal(err)
	}
	objs, err := set.FindAllObjectsToPrune(context.Background(), dyn, sets.New[types.UID]())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, o := range objs {
		if m, err := meta.Accessor(o.Object); err == nil && m.GetDeletionTimestamp() != nil {
			continue
		}
		out = append(out, o.Mapping.GroupVersionKind.Kind+"/"+o.Namespace+"/"+o.Name)
	}
	slices.Sort(out)
	return out
}

// An ApplySet parent another tool manages is refused, and not taken over by
// recording the run on it either.
func TestApplySetOfAnotherTool(t *testing.T) {
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	name := testenv.Unique("theirs")
	theirs := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: "default",
		Labels:      map[string]string{"applyset.kubernetes.io/id": "applyset-x-v1"},
		Annotations: map[string]string{"applyset.kubernetes.io/tooling": "kubectl/v1.37.2", "applyset.kubernetes.io/contains-group-kinds": ""}}}
	if _, err := cs.CoreV1().Secrets("default").Create(ctx, theirs, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "not-theirs", "v"))
	r.Commit("one")
	out := cronsync(t, nil, "--repo", r.Dir, "--applyset", "default/"+name, "--prune")
	if out.code != exitConfig || !strings.Contains(out.stderr, `is managed by "kubectl/v1.37.2", not cronsync`) {
		t.Errorf("exit %d; want %d and the other tool named", out.code, exitConfig)
	}
	got, err := cs.CoreV1().Secrets("default").Get(ctx, name, metav1.GetOptions{})
	if err != nil || got.Annotations["applyset.kubernetes.io/tooling"] != "kubectl/v1.37.2" || got.Annotations["cronsync.dev/last-sync-result"] != "" {
		t.Errorf("the other tool's parent was changed: %v (%v)", got.GetAnnotations(), err)
	}
}

// A deletion that fails keeps the object in the set, so that the next run
// with enough rights prunes it.
func TestFailedPruneStaysInSet(t *testing.T) {
	const ns = "prune-retry"
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("keep.yaml", configMap(ns, "keep", "v"))
	r.Write("gone.yaml", configMap(ns, "gone", "v"))
	r.Commit("first")
	set := []string{"--applyset", ns + "/set", "--lease", "", "--prune"}
	mustSync(t, append([]string{"--repo", r.Dir}, set...)...)

	// A user that may do everything a sync needs here except delete.
	rbac := testenv.NewRepo(t)
	rbac.Write("role.yaml", `apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: no-delete, namespace: prune-retry}
rules:
- apiGroups: [""]
  resources: [configmaps, secrets, events]
  verbs: [get, list, create, patch]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: no-delete, namespace: prune-retry}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: no-delete}
subjects: [{kind: User, name: no-delete}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: read-namespaces}
rules: [{apiGroups: [""], resources: [namespaces], verbs: [get, list, patch]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: no-delete-reads-namespaces}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: read-namespaces}
subjects: [{kind: User, name: no-delete}]
`)
	rbac.Commit("rbac")
	mustSync(t, "--repo", rbac.Dir, "--applyset", "", "--lease", "")
	kc, err := cluster.WriteKubeconfig("no-delete")
	if err != nil {
		t.Fatal(err)
	}

	r.Remove("gone.yaml")
	r.Commit("remove gone")
	out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--kubeconfig", kc}, set...)...)
	if out.code != exitConfig || !hasLineWith(out.stderr, "configmap/gone -n prune-retry (not in the commit): pruning:", `cannot delete resource "configmaps"`) {
		t.Errorf("exit %d; want %d and the refused deletion named", out.code, exitConfig)
	}
	if got := kubectlMembers(t, ns, "set"); !slices.Contains(got, "ConfigMap/prune-retry/gone") {
		t.Errorf("the object whose deletion failed left the set: %v", got)
	}
	out = mustSync(t, append([]string{"--repo", r.Dir}, set...)...)
	if !strings.Contains(out.stdout, "configmap/gone -n prune-retry pruned") {
		t.Errorf("the next run did not prune it")
	}
	if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "gone", metav1.GetOptions{}); err == nil {
		t.Errorf("configmap gone still exists")
	}
}

// A namespace whose objects the check lists whole is not listed again to
// find what to prune: that LIST already said which members are there. The
// members it finds are pruned; objects that only look like members are not.
func TestPruneReusesTheCheckList(t *testing.T) {
	ns := testenv.Unique("prune-listed")
	ctx := context.Background()
	set := []string{"--applyset", "default/" + ns, "--prune"}
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	for i := range 6 {
		r.Write(fmt.Sprintf("cm-%d.yaml", i), configMap(ns, fmt.Sprintf("cm-%d", i), "v"))
	}
	r.Commit("first")
	mustSync(t, append([]string{"--repo", r.Dir}, set...)...)
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	for name, labels := range map[string]map[string]string{
		"other-set": {"applyset.kubernetes.io/part-of": "applyset-someone-else-v1"},
		"unlabeled": nil,
	} {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns, Labels: labels}}
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, cm, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	r.Remove("cm-0.yaml")
	r.Remove("cm-1.yaml")
	r.Commit("two fewer")
	mark := cluster.AuditMark()
	out := mustSync(t, append([]string{"--repo", r.Dir}, set...)...)
	for _, want := range []string{"configmap/cm-0 -n " + ns + " pruned", "configmap/cm-1 -n " + ns + " pruned", "2 pruned"} {
		if !strings.Contains(out.stdout, want) {
			t.Errorf("output lacks %q", want)
		}
	}
	for _, name := range []string{"cm-2", "cm-5", "other-set", "unlabeled"} {
		if _, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, name, metav1.GetOptions{}); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	events, err := cluster.AuditSince(mark, "admin")
	if err != nil {
		t.Fatal(err)
	}
	lists := 0
	for _, ev := range events {
		if ev.Verb == "list" && strings.HasPrefix(ev.RequestURI, "/api/v1/namespaces/"+ns+"/configmaps?") {
			lists++
		}
	}
	if lists != 1 {
		t.Errorf("%d LISTs of the namespace's ConfigMaps, want 1", lists)
	}
}

// A kind the set holds in many namespaces is searched for members with one
// LIST across namespaces, leaving out those a check lists whole, and prune
// finds the same members as per-namespace LISTs would: a member made by
// hand in a namespace of the set is pruned; one outside the set's
// namespaces is not, as kubectl would not find it. Where RBAC stops at the
// namespaces, the refused wide LIST falls back to one per namespace.
func TestPruneListsMembersAcrossNamespaces(t *testing.T) {
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	// Names of this run's own (go test -count=2 runs it again).
	pw := testenv.Unique("pw")
	team := pw + "-team"
	nss := []string{pw + "-0", pw + "-1", pw + "-2", pw + "-3", pw + "-4", pw + "-outside"}
	for _, ns := range nss {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	// A user whose Roles cover the set's namespaces and nothing else.
	rbac := testenv.NewRepo(t)
	for _, ns := range nss[:5] {
		rbac.Write(ns+".yaml", fmt.Sprintf(`apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: pw, namespace: %[1]s}
rules:
- apiGroups: ["", apps]
  resources: [configmaps, secrets, events, deployments]
  verbs: [get, list, create, patch, delete]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: pw, namespace: %[1]s}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: pw}
subjects: [{kind: User, name: %[2]s}]
`, ns, team))
	}
	rbac.Commit("rbac")
	mustSync(t, "--repo", rbac.Dir, "--applyset", "", "--lease", "")
	teamKC, err := cluster.WriteKubeconfig(team)
	if err != nil {
		t.Fatal(err)
	}

	r := testenv.NewRepo(t)
	for _, ns := range nss[:5] {
		r.Write(ns+".yaml", configMap(ns, "c", "v"))
	}
	r.Write("web.yaml", deployment(nss[0], "web", 1))
	r.Commit("first")
	set := []string{"--repo", r.Dir, "--applyset", nss[0] + "/set", "--lease", "", "--prune"}
	mustSync(t, set...)

	// handMember makes a Deployment carrying the set's label, as a member
	// made by hand.
	setID := get(t, configMaps, nss[0], "c", "metadata", "labels", "applyset.kubernetes.io/part-of")
	handMember := func(ns, name string) {
		t.Helper()
		var d map[string]any
		if err := yaml.Unmarshal([]byte(deployment(ns, name, 1)), &d); err != nil {
			t.Fatal(err)
		}
		u := &unstructured.Unstructured{Object: d}
		u.SetLabels(map[string]string{"applyset.kubernetes.io/part-of": setID})
		if _, err := kube.Resource(deployments).Namespace(ns).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	memberLists := func(mark int64, user string) (wide, scoped int) {
		t.Helper()
		events, err := cluster.AuditSince(mark, user)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range events {
			switch {
			case ev.Verb != "list" || !strings.Contains(ev.RequestURI, "labelSelector=applyset.kubernetes.io"):
			case strings.HasPrefix(ev.RequestURI, "/apis/apps/v1/deployments?"):
				wide++
			case strings.HasPrefix(ev.RequestURI, "/apis/apps/v1/namespaces/"):
				scoped++
			}
		}
		return wide, scoped
	}

	t.Run("one LIST across namespaces", func(t *testing.T) {
		handMember(nss[3], "hand-made")
		handMember(nss[5], "outside")
		mark := cluster.AuditMark()
		out := mustSync(t, set...)
		if !strings.Contains(out.stdout, "deployment.apps/hand-made -n "+nss[3]+" pruned") {
			t.Errorf("the member made by hand in %s was not pruned:\n%s", nss[3], out.stdout)
		}
		if get(t, deployments, nss[3], "hand-made", "metadata", "name") != "<absent>" {
			t.Errorf("deployment hand-made -n %s still exists", nss[3])
		}
		if get(t, deployments, nss[5], "outside", "metadata", "name") != "outside" {
			t.Errorf("a labelled Deployment outside the set's namespaces was pruned")
		}
		// A run that first tries the last run's record lists twice.
		if wide, scoped := memberLists(mark, "admin"); wide == 0 || scoped != 0 {
			t.Errorf("Deployment members listed by %d LISTs across namespaces and %d in one, want some and none", wide, scoped)
		}
	})

	t.Run("RBAC that stops at the namespaces", func(t *testing.T) {
		handMember(nss[2], "hand-made")
		r.Remove("web.yaml")
		r.Commit("no web")
		mark := cluster.AuditMark()
		out := mustSync(t, append(set, "--kubeconfig", teamKC)...)
		for _, want := range []string{"deployment.apps/hand-made -n " + nss[2] + " pruned", "deployment.apps/web -n " + nss[0] + " pruned"} {
			if !strings.Contains(out.stdout, want) {
				t.Errorf("output lacks %q:\n%s", want, out.stdout)
			}
		}
		if wide, scoped := memberLists(mark, team); wide == 0 || scoped != 5*wide {
			t.Errorf("Deployment members listed by %d LISTs across namespaces and %d in one, want each refused one followed by 5", wide, scoped)
		}
		if get(t, deployments, nss[5], "outside", "metadata", "name") != "outside" {
			t.Errorf("a labelled Deployment outside the set's namespaces was pruned")
		}
	})
}

// A member already being deleted (a finalizer holds it, as one does a
// Namespace being emptied) is not pruned again: the run after the one
// that pruned it says nothing of it, sends it no DELETE, and, the commit
// unchanged, is decided from the LISTs. (The chaos harness found each run
// after a Namespace was pruned deleting it again, "pruned" every time,
// while the namespace controller emptied it: bench/chaos, seed 11.)
func TestPruneLeavesWhatIsBeingDeleted(t *testing.T) {
	ns := testenv.Unique("prune-terminating")
	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	set := []string{"--applyset", "default/" + ns, "--prune", "--lease", ""}
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("keep.yaml", configMap(ns, "keep", "v"))
	r.Write("held.yaml", strings.Replace(configMap(ns, "held", "v"), "metadata:\n", "metadata:\n  finalizers: [example.com/hold]\n", 1))
	r.Commit("first")
	mustSync(t, append([]string{"--repo", r.Dir}, set...)...)
	t.Cleanup(func() {
		// Let it go once the test is over.
		patch := []byte(`{"metadata":{"finalizers":null}}`)
		cs.CoreV1().ConfigMaps(ns).Patch(ctx, "held", types.MergePatchType, patch, metav1.PatchOptions{}) //nolint:errcheck // best effort
	})

	r.Remove("held.yaml")
	r.Commit("without held")
	out := mustSync(t, append([]string{"--repo", r.Dir}, set...)...)
	if !strings.Contains(out.stdout, "configmap/held -n "+ns+" pruned") {
		t.Fatalf("the member was not pruned:\n%s", out.stdout)
	}
	held, err := cs.CoreV1().ConfigMaps(ns).Get(ctx, "held", metav1.GetOptions{})
	if err != nil || held.DeletionTimestamp == nil {
		t.Fatalf("the finalizer should hold it, being deleted: %v", err)
	}

	mark := cluster.AuditMark()
	out = mustSync(t, append([]string{"--repo", r.Dir, "--output", "json"}, set...)...)
	if strings.Contains(out.stdout, "pruned") || strings.Contains(out.stderr, "pruned") {
		t.Errorf("the member being deleted was pruned again:\n%s", out.stderr)
	}
	if !strings.Contains(out.stderr, "deciding from the LISTs, without reading its files") {
		t.Errorf("the run after the prune was not decided from the LISTs:\n%s", out.stderr)
	}
	events, err := cluster.AuditSince(mark, "admin")
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range events {
		if ev.Verb == "delete" {
			t.Errorf("the run deleted %s", ev.RequestURI)
		}
	}
}
