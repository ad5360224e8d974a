package apiserver

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	authenticationv1 "k8s.io/api/authentication/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/cronsync/cronsync/internal/testenv"
)

// Each RBAC variant in manifests/ is exactly enough: cronsync, running as
// its ServiceAccount with a token from the TokenRequest API, syncs, holds its
// Lease, records the run on its ApplySet parent and emits Events on it and
// on its Job; a kind outside the grant fails with exit 2 naming the verb and
// resource refused.
func TestRBACVariants(t *testing.T) {
	for _, v := range []struct {
		dir, ns string
		// files is the repository the ServiceAccount syncs.
		files map[string]string
		// outside is a file with a kind the grant does not cover, and the
		// refusal it must produce; empty when the grant covers everything.
		outside, refusal string
		// applied are the objects of files, read back after the run.
		applied []applied
	}{{
		dir: "manifests", ns: "cronsync",
		files: map[string]string{
			"crd.yaml":    testenv.CRD("Gizmo"),
			"ns.yaml":     namespace("rbac-cluster-wide"),
			"gizmo.yaml":  "apiVersion: example.com/v1\nkind: Gizmo\nmetadata: {name: g, namespace: rbac-cluster-wide}\n",
			"config.yaml": configMap("rbac-cluster-wide", "c", "v"),
		},
		applied: []applied{
			{crdGVR("apiextensions.k8s.io", "v1", "customresourcedefinitions"), "", "gizmos.example.com"},
			{namespaces, "", "rbac-cluster-wide"},
			{crdGVR("example.com", "v1", "gizmos"), "rbac-cluster-wide", "g"},
			{configMaps, "rbac-cluster-wide", "c"},
		},
	}, {
		dir: "manifests/namespaced", ns: "team-a",
		files: map[string]string{
			"config.yaml": "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata: {v: x}\n",
			"web.yaml":    deployment("team-a", "web", 1),
		},
		outside: "apiVersion: rbac.authorization.k8s.io/v1\nkind: ClusterRole\nmetadata: {name: team-a-wants-more}\nrules: []\n",
		refusal: `cannot get resource "clusterroles"`,
		applied: []applied{{configMaps, "team-a", "c"}, {deployments, "team-a", "web"}},
	}} {
		t.Run(v.dir, func(t *testing.T) {
			ctx := context.Background()
			cs := clientset()
			cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: v.ns}}, metav1.CreateOptions{})

			// Deploy the variant as an administrator would.
			resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(testenv.ModuleRoot(), v.dir))
			if err != nil {
				t.Fatal(err)
			}
			built, _ := resMap.AsYaml()
			admin := testenv.NewRepo(t)
			admin.Write("cronsync.yaml", string(built))
			admin.Commit("deploy")
			// TestManifestsDeployCronsync deploys the same objects under
			// the default set.
			mustSync(t, "--repo", admin.Dir, "--applyset", "default/rbac-"+v.ns, "--lease", "", "--adopt-from", "default/cronsync")

			// A Job and its pod, as the CronJob would make them (no
			// controllers run here), so that the run can find its Job.
			cj, err := cs.BatchV1().CronJobs(v.ns).Get(ctx, "cronsync", metav1.GetOptions{})
			if err != nil {
				t.Fatal(err)
			}
			job, err := cs.BatchV1().Jobs(v.ns).Create(ctx, &batchv1.Job{
				ObjectMeta: metav1.ObjectMeta{Name: testenv.Unique("cronsync-rbac-test"), Namespace: v.ns},
				Spec:       cj.Spec.JobTemplate.Spec,
			}, metav1.CreateOptions{})
			if err != nil {
				t.Fatal(err)
			}
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: job.Name + "-x1", Namespace: v.ns, OwnerReferences: []metav1.OwnerReference{
					{APIVersion: "batch/v1", Kind: "Job", Name: job.Name, UID: job.UID, Controller: new(true)},
				}},
				Spec: *job.Spec.Template.Spec.DeepCopy(),
			}
			if _, err := cs.CoreV1().Pods(v.ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}

			kc := serviceAccountKubeconfig(t, v.ns, "cronsync")
			r := testenv.NewRepo(t)
			for p, c := range v.files {
				r.Write(p, c)
			}
			r.Commit("team content")
			// The parent is the manifests' own, so a run before this one
			// (go test -count=2) left its Events: count this run's.
			synced := func(obj string) (int, error) {
				evs, err := cs.CoreV1().Events(v.ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + obj + ",reason=Synced"})
				if err != nil {
					return 0, err
				}
				return len(evs.Items), nil
			}
			before, err := synced("cronsync")
			if err != nil {
				t.Fatal(err)
			}
			env := []string{"POD_NAME=" + pod.Name, "POD_NAMESPACE=" + v.ns}
			out := cronsync(t, env, "--kubeconfig", kc, "--repo", r.Dir, "-n", v.ns, "--prune")
			if out.code != exitOK {
				t.Fatalf("exit %d as the %s ServiceAccount", out.code, v.dir)
			}
			for _, a := range v.applied {
				if got := get(t, a.gvr, a.ns, a.name, "metadata", "name"); got != a.name {
					t.Errorf("%s %s/%s was not applied: %s", a.gvr.Resource, a.ns, a.name, got)
				}
			}
			if h := leaseHolder(t, v.ns, "cronsync"); h != "" {
				t.Errorf("lease %s/cronsync still held by %q", v.ns, h)
			}
			parent, err := cs.CoreV1().Secrets(v.ns).Get(ctx, "cronsync", metav1.GetOptions{})
			if err != nil || parent.Annotations["cronsync.dev/last-sync-result"] != "synced" {
				t.Errorf("ApplySet parent: %v (%v)", parent.GetAnnotations(), err)
			}
			for obj, had := range map[string]int{"cronsync": before, job.Name: 0} {
				n, err := synced(obj)
				if err != nil || n != had+1 {
					t.Errorf("Synced events on %s: %d, want %d (%v)", obj, n, had+1, err)
				}
			}

			if v.outside == "" {
				return
			}
			r.Write("outside.yaml", v.outside)
			r.Commit("wants more")
			out = cronsync(t, env, "--kubeconfig", kc, "--repo", r.Dir, "-n", v.ns, "--prune")
			if out.code != exitConfig || !hasLineWith(out.stderr, "(outside.yaml)", v.refusal) {
				t.Errorf("exit %d; want %d and a line naming outside.yaml with %q", out.code, exitConfig, v.refusal)
			}
		})
	}
}

// applied names an object a test reads back.
type applied struct {
	gvr      schema.GroupVersionResource
	ns, name string
}

// serviceAccountKubeconfig writes a kubeconfig that authenticates as a
// ServiceAccount with a token from the TokenRequest API, with ns as the
// context's namespace (where cronsync then keeps its Lease and parent).
func serviceAccountKubeconfig(t *testing.T, ns, sa string) string {
	t.Helper()
	tok, err := clientset().CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), sa,
		&authenticationv1.TokenRequest{Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: new(int64(3600))}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, sa, err)
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["test"] = &clientcmdapi.Cluster{Server: cluster.Config.Host, CertificateAuthorityData: cluster.Config.CAData}
	cfg.AuthInfos["sa"] = &clientcmdapi.AuthInfo{Token: tok.Status.Token}
	cfg.Contexts["sa"] = &clientcmdapi.Context{Cluster: "test", AuthInfo: "sa", Namespace: ns}
	cfg.CurrentContext = "sa"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "token") {
		t.Fatal("kubeconfig without a token")
	}
	return path
}
