package apiserver

import (
	"context"
	"fmt"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// refusedUnchanged runs cronsync, which must exit 3 with a line of stderr
// holding every one of parts, and must leave the cluster as it was (but for
// what the run itself keeps: parents and the Lease named skip).
func refusedUnchanged(t *testing.T, skip string, parts []string, args ...string) result {
	t.Helper()
	before := snapshot(t)
	out := cronsync(t, nil, args...)
	if out.code != exitContent || !hasLineWith(out.stderr, parts...) {
		t.Errorf("exit %d; want %d and a line naming %q:\n%s", out.code, exitContent, parts, out.stderr)
	}
	after := snapshot(t)
	delete(before, skip)
	delete(after, skip)
	if diff := diffSnapshots(before, after); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
	return out
}

// A commit may not hold what cronsync keeps for itself, nor any ApplySet
// parent: each is refused before anything is written, naming the object
// and its file, and the run after a good commit works.
func TestCommitMayNotHoldCronsyncsRecords(t *testing.T) {
	ctx := context.Background()
	cs := clientset()
	ns := testenv.Unique("self")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	leaseName := "sync-lease"
	leaseKey := "leases/" + ns + "/" + leaseName
	r := testenv.NewRepo(t)
	r.Write("apps/keep.yaml", configMap(ns, "keep", "v"))
	r.Write("apps/gone.yaml", configMap(ns, "gone", "v"))
	r.Commit("first")
	args := []string{"--repo", r.Dir, "--path", "apps", "--applyset", ns + "/set", "--lease", ns + "/" + leaseName, "--prune"}
	mustSync(t, args...)
	gks := get(t, secrets, ns, "set", "metadata", "annotations", "applyset.kubernetes.io/contains-group-kinds")

	t.Run("its ApplySet parent", func(t *testing.T) {
		r.Write("apps/parent.yaml", fmt.Sprintf(`apiVersion: v1
kind: Secret
metadata:
  name: set
  namespace: %s
  annotations: {applyset.kubernetes.io/contains-group-kinds: ""}
`, ns))
		r.Commit("overwrite the parent")
		refusedUnchanged(t, leaseKey, []string{"secret/set -n " + ns, "apps/parent.yaml", "ApplySet parent", "refused"}, args...)
		if got := get(t, secrets, ns, "set", "metadata", "annotations", "applyset.kubernetes.io/contains-group-kinds"); got != gks {
			t.Errorf("the parent's group-kinds became %q, were %q", got, gks)
		}
		// A server dry run (what CI runs) refuses it the same way.
		refusedUnchanged(t, leaseKey, []string{"secret/set -n " + ns, "apps/parent.yaml"}, append(args, "--dry-run=server")...)
		r.Remove("apps/parent.yaml")
	})

	t.Run("its Lease", func(t *testing.T) {
		r.Write("apps/lease.yaml", fmt.Sprintf(`apiVersion: coordination.k8s.io/v1
kind: Lease
metadata: {name: %s, namespace: %s}
spec: {holderIdentity: evil, leaseDurationSeconds: 30, renewTime: "2093-05-18T00:00:00.000000Z"}
`, leaseName, ns))
		r.Commit("hold the lease forever")
		refusedUnchanged(t, leaseKey, []string{"lease.coordination.k8s.io/" + leaseName + " -n " + ns, "apps/lease.yaml", "--lease", "refused"}, args...)
		l, err := cs.CoordinationV1().Leases(ns).Get(ctx, leaseName, metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" || l.Spec.RenewTime.Year() == 2093 {
			t.Errorf("the commit's Lease was applied: holder %v, renewed %v", l.Spec.HolderIdentity, l.Spec.RenewTime)
		}
		for _, f := range l.ManagedFields {
			if f.Operation == metav1.ManagedFieldsOperationApply {
				t.Errorf("the Lease was server-side applied by %s", f.Manager)
			}
		}
		r.Remove("apps/lease.yaml")
		r.Write("apps/new.yaml", configMap(ns, "new", "v"))
		r.Commit("a good commit")
		if out := mustSync(t, args...); !strings.Contains(out.stdout, "configmap/new -n "+ns+" created") {
			t.Errorf("the good commit after it was not applied:\n%s", out.stdout)
		}
	})

	t.Run("a shard of its parent", func(t *testing.T) {
		r.Write("apps/shard.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: set-fd-0123456789ab, namespace: %s}\n", ns))
		r.Commit("a shard by name")
		refusedUnchanged(t, leaseKey, []string{"secret/set-fd-0123456789ab -n " + ns, "apps/shard.yaml", "fingerprint shard"}, args...)
		r.Write("apps/shard.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\ntype: cronsync.dev/fast-data\nmetadata: {name: data, namespace: %s}\n", ns))
		r.Commit("a shard by type")
		refusedUnchanged(t, leaseKey, []string{"secret/data -n " + ns, "apps/shard.yaml", "cronsync.dev/fast-data"}, args...)
		// One that the commit does not say is a shard, but the cluster does.
		live := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "looks-plain", Namespace: ns, Labels: map[string]string{"cronsync.dev/fast-data-of": "applyset-x-v1"}}}
		if _, err := cs.CoreV1().Secrets(ns).Create(ctx, live, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		r.Write("apps/shard.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: looks-plain, namespace: %s}\nstringData: {a: b}\n", ns))
		r.Commit("a live shard")
		refusedUnchanged(t, leaseKey, []string{"secret/looks-plain -n " + ns, "apps/shard.yaml", "the live object", "fingerprint shard"}, args...)
		r.Remove("apps/shard.yaml")
	})

	t.Run("another ApplySet's parent", func(t *testing.T) {
		other := testenv.NewRepo(t)
		other.Write("cm.yaml", configMap(ns, "theirs", "v"))
		other.Commit("theirs")
		mustSync(t, "--repo", other.Dir, "--applyset", ns+"/other", "--lease", "")
		otherGKs := get(t, secrets, ns, "other", "metadata", "annotations", "applyset.kubernetes.io/contains-group-kinds")

		// Named in the commit without any ApplySet label: the live object
		// says what it is.
		r.Write("apps/theirs.yaml", fmt.Sprintf("apiVersion: v1\nkind: Secret\nmetadata: {name: other, namespace: %s}\n", ns))
		r.Commit("take the other set's parent")
		refusedUnchanged(t, leaseKey, []string{"secret/other -n " + ns, "apps/theirs.yaml", "the live object", "ApplySet parent"}, args...)
		if got := get(t, secrets, ns, "other", "metadata", "labels", "applyset.kubernetes.io/part-of"); got != "<unset>" {
			t.Errorf("the other set's parent was made a member: part-of %s", got)
		}
		if got := get(t, secrets, ns, "other", "metadata", "annotations", "applyset.kubernetes.io/contains-group-kinds"); got != otherGKs {
			t.Errorf("the other set's group-kinds became %q", got)
		}
		// A new object that says it is a parent.
		r.Write("apps/theirs.yaml", fmt.Sprintf(`apiVersion: v1
kind: ConfigMap
metadata:
  name: a-parent
  namespace: %s
  labels: {applyset.kubernetes.io/id: applyset-x-v1}
`, ns))
		r.Commit("a parent of our own")
		refusedUnchanged(t, leaseKey, []string{"configmap/a-parent -n " + ns, "apps/theirs.yaml", "ApplySet parent (label applyset.kubernetes.io/id"}, args...)
		r.Remove("apps/theirs.yaml")
	})

	// The records were never touched: removing a member prunes it.
	r.Remove("apps/gone.yaml")
	r.Commit("remove gone")
	if out := mustSync(t, args...); !strings.Contains(out.stdout, "configmap/gone -n "+ns+" pruned") {
		t.Errorf("the member removed after the attacks was not pruned:\n%s", out.stdout)
	}
}

// Two syncs whose commits name one object: the second does not take it
// over (exit 3, both sets named, the object untouched) unless its commit
// says so; then it moves, and neither prune deletes what the other holds.
func TestTwoSetsOneObject(t *testing.T) {
	ctx := context.Background()
	cs := clientset()
	ns := testenv.Unique("two-sets")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	a, b := testenv.NewRepo(t), testenv.NewRepo(t)
	a.Write("shared.yaml", configMap(ns, "shared", "from-a"))
	a.Write("a.yaml", configMap(ns, "a-only", "v"))
	a.Commit("a")
	b.Write("shared.yaml", configMap(ns, "shared", "from-b"))
	b.Write("b.yaml", configMap(ns, "b-only", "v"))
	b.Commit("b")
	argsA := []string{"--repo", a.Dir, "--applyset", ns + "/a", "--lease", "", "--prune"}
	argsB := []string{"--repo", b.Dir, "--applyset", ns + "/b", "--lease", "", "--prune"}
	mustSync(t, argsA...)
	idA := get(t, secrets, ns, "a", "metadata", "labels", "applyset.kubernetes.io/id")

	t.Run("not taken over", func(t *testing.T) {
		refusedUnchanged(t, "", []string{"configmap/shared -n " + ns, "shared.yaml", "secret/a -n " + ns, idA, "secret/b -n " + ns, "cronsync.dev/adopt-from: " + ns + "/a"}, argsB...)
		if got := get(t, configMaps, ns, "shared", "metadata", "labels", "applyset.kubernetes.io/part-of"); got != idA {
			t.Errorf("shared is labelled %s, want %s", got, idA)
		}
		if got := get(t, configMaps, ns, "b-only", "metadata", "name"); got != "<absent>" {
			t.Errorf("b's other object was applied although its commit was refused")
		}
		// A dry run refuses it too, and so does a run with no ApplySet.
		refusedUnchanged(t, "", []string{"configmap/shared -n " + ns, "secret/a -n " + ns}, append(argsB, "--dry-run=server")...)
		refusedUnchanged(t, "", []string{"configmap/shared -n " + ns, "--applyset"}, "--repo", b.Dir, "--applyset", "", "--lease", "")
	})

	b.Write("shared.yaml", strings.Replace(configMap(ns, "shared", "from-b"), "metadata:\n", "metadata:\n  annotations: {cronsync.dev/adopt-from: "+ns+"/a}\n", 1))
	b.Commit("take shared from a")

	t.Run("moved with the opt-in", func(t *testing.T) {
		out := mustSync(t, argsB...)
		if !strings.Contains(out.stdout, "configmap/shared -n "+ns+" configured") {
			t.Errorf("shared was not taken over:\n%s", out.stdout)
		}
		idB := get(t, secrets, ns, "b", "metadata", "labels", "applyset.kubernetes.io/id")
		if got := get(t, configMaps, ns, "shared", "metadata", "labels", "applyset.kubernetes.io/part-of"); got != idB {
			t.Errorf("shared is labelled %s, want b's %s", got, idB)
		}
		// a still declares it: a is refused now, and leaves it to b.
		refusedUnchanged(t, "", []string{"configmap/shared -n " + ns, "secret/b -n " + ns, "secret/a -n " + ns}, argsA...)
		if got := get(t, configMaps, ns, "shared", "data", "value"); got != "from-b" {
			t.Errorf("a rewrote shared: %s", got)
		}
	})

	t.Run("neither prunes the other's", func(t *testing.T) {
		a.Remove("shared.yaml")
		a.Commit("a lets go")
		mustSync(t, argsA...)
		if got := get(t, configMaps, ns, "shared", "metadata", "name"); got != "shared" {
			t.Errorf("a pruned shared, which b holds")
		}
		b.Remove("b.yaml")
		b.Commit("b lets go of b-only")
		out := mustSync(t, argsB...)
		if !strings.Contains(out.stdout, "configmap/b-only -n "+ns+" pruned\n") || strings.Count(out.stdout, " pruned\n") != 1 {
			t.Errorf("b pruned other than b-only:\n%s", out.stdout)
		}
		for _, name := range []string{"shared", "a-only"} {
			if got := get(t, configMaps, ns, name, "metadata", "name"); got != name {
				t.Errorf("%s is gone after b's prune", name)
			}
		}
		// Once a no longer declares it, b's commit may drop it, and b
		// prunes what is its own.
		b.Remove("shared.yaml")
		b.Write("b.yaml", configMap(ns, "b-only", "v"))
		b.Commit("b lets go of shared")
		if out := mustSync(t, argsB...); !strings.Contains(out.stdout, "configmap/shared -n "+ns+" pruned") {
			t.Errorf("b did not prune shared:\n%s", out.stdout)
		}
		if got := get(t, configMaps, ns, "a-only", "metadata", "name"); got != "a-only" {
			t.Errorf("a-only is gone after b's prune")
		}
	})
}

// A set renamed (--applyset changed) finds its objects labelled for the old
// name: refused until the run is told to take them over with --adopt-from.
func TestRenamedSetAdoptsWithTheFlag(t *testing.T) {
	ns := testenv.Unique("renamed")
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("cm.yaml", configMap(ns, "c", "v"))
	r.Commit("one")
	mustSync(t, "--repo", r.Dir, "--applyset", "default/"+ns+"-old", "--lease", "")
	renamed := []string{"--repo", r.Dir, "--applyset", "default/" + ns + "-new", "--lease", ""}
	refusedUnchanged(t, "", []string{"namespace/" + ns, "secret/" + ns + "-old -n default", "--adopt-from"}, renamed...)
	mustSync(t, append(renamed, "--adopt-from", "default/"+ns+"-old")...)
	want := get(t, secrets, "default", ns+"-new", "metadata", "labels", "applyset.kubernetes.io/id")
	if got := get(t, configMaps, ns, "c", "metadata", "labels", "applyset.kubernetes.io/part-of"); got != want {
		t.Errorf("configmap c is labelled %s, want the new set's %s", got, want)
	}
}
