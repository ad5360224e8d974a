package apiserver

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	batchv1 "k8s.io/api/batch/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"

	"github.com/cronsync/cronsync/internal/testenv"
)

// manifests/ is how users deploy cronsync: it must build with kustomize, be
// accepted by a real API server (cronsync itself applies it here), pass the
// restricted Pod Security level, and yield a Job the way
// `kubectl create job --from=cronjob/cronsync` makes one.
func TestManifestsDeployCronsync(t *testing.T) {
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), filepath.Join(testenv.ModuleRoot(), "manifests"))
	if err != nil {
		t.Fatalf("kustomize build manifests: %v", err)
	}
	built, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("cronsync.yaml", string(built))
	r.Commit("deploy cronsync")
	// TestRBACVariants deploys the same objects under its own set.
	out := mustSync(t, "--repo", r.Dir, "--adopt-from", "default/rbac-cronsync")
	if strings.Contains(out.stderr, "PodSecurity") || strings.Contains(out.stderr, "Warning") {
		t.Errorf("the API server warned about the manifests:\n%s", out.stderr)
	}

	ctx := context.Background()
	cs := kubernetes.NewForConfigOrDie(cluster.Config)
	cj, err := cs.BatchV1().CronJobs("cronsync").Get(ctx, "cronsync", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := cj.Spec.JobTemplate
	annotations := map[string]string{"cronjob.kubernetes.io/instantiate": "manual"}
	for k, v := range tmpl.Annotations {
		annotations[k] = v
	}
	job := &batchv1.Job{
		ObjectMeta: metav1.ObjectMeta{
			Name:        testenv.Unique("cronsync-manual"),
			Namespace:   "cronsync",
			Labels:      tmpl.Labels,
			Annotations: annotations,
			OwnerReferences: []metav1.OwnerReference{{
				APIVersion: "batch/v1", Kind: "CronJob", Name: cj.Name, UID: cj.UID, Controller: new(true),
			}},
		},
		Spec: tmpl.Spec,
	}
	if _, err := cs.BatchV1().Jobs("cronsync").Create(ctx, job, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating a Job from the CronJob's template: %v", err)
	}

	// The podFailurePolicy must fail the Job on exactly the permanent
	// statuses, and the container it names must exist.
	rules := tmpl.Spec.PodFailurePolicy.Rules
	var failOn []int32
	for _, rule := range rules {
		if rule.Action == batchv1.PodFailurePolicyActionFailJob && rule.OnExitCodes != nil {
			failOn = append(failOn, rule.OnExitCodes.Values...)
			if c := rule.OnExitCodes.ContainerName; c == nil || *c != tmpl.Spec.Template.Spec.Containers[0].Name {
				t.Errorf("FailJob rule names container %v, not the cronsync container", c)
			}
		}
	}
	slices.Sort(failOn)
	if want := []int32{exitConfig, exitContent, exitUnverified, exitUnhealthy}; !slices.Equal(failOn, want) {
		t.Errorf("podFailurePolicy fails the Job on exit codes %v, want %v", failOn, want)
	}
	// Rules apply in order, first match wins: a pod that a node drain
	// interrupted must be ignored (and retried) whatever code it exited
	// with, so the DisruptionTarget rule comes before any FailJob rule.
	for _, rule := range rules {
		if rule.Action == batchv1.PodFailurePolicyActionFailJob {
			t.Error("a FailJob rule comes before the rule that ignores disrupted pods: a drain that stops a run with exit 1-6 would fail the Job")
			break
		}
		if rule.Action == batchv1.PodFailurePolicyActionIgnore && slices.ContainsFunc(rule.OnPodConditions, func(c batchv1.PodFailurePolicyOnPodConditionsPattern) bool {
			return c.Type == "DisruptionTarget"
		}) {
			break
		}
	}
}

// The credential patches in manifests/git-auth, the key patch in
// manifests/sops and the fleet patch in manifests/fleet build on top of
// manifests/ and are accepted by the API server, with the example
// cluster-vars.
func TestManifestsGitAuthPatches(t *testing.T) {
	overlay := t.TempDir()
	abs, err := filepath.Abs(filepath.Join(testenv.ModuleRoot(), "manifests"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.CopyFS(filepath.Join(overlay, "base"), os.DirFS(abs)); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(overlay, "kustomization.yaml"), []byte(
		"resources: [base]\npatches:\n- path: base/git-auth/https-token.yaml\n- path: base/git-auth/ssh-key.yaml\n- path: base/sops/age-key.yaml\n- path: base/fleet/substitute.yaml\n"), 0o644)
	resMap, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), overlay)
	if err != nil {
		t.Fatalf("kustomize build with the git-auth patches: %v", err)
	}
	built, err := resMap.AsYaml()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"CRONSYNC_GIT_PASSWORD_FILE", "CRONSYNC_SSH_KNOWN_HOSTS_FILE", "secretName: cronsync-ssh", "secretName: cronsync-git",
		"CRONSYNC_SOPS_AGE_KEY_FILE", "secretName: cronsync-sops-age", "CRONSYNC_SUBSTITUTE_FROM: configmap/cluster-vars"} {
		if !strings.Contains(string(built), want) {
			t.Errorf("built manifests lack %q", want)
		}
	}
	// The dry run checks the patched CronJob only in a namespace that
	// exists: made here, so that this test alone proves it too.
	ns := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Namespace", "metadata": map[string]any{"name": "cronsync"}}}
	if _, err := kube.Resource(namespaces).Create(context.Background(), ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	r := testenv.NewRepo(t)
	r.Write("cronsync.yaml", string(built))
	vars, err := os.ReadFile(filepath.Join(abs, "fleet", "cluster-vars.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	r.Write("cluster-vars.yaml", string(vars))
	r.Commit("with credentials")
	out := mustSync(t, "--repo", r.Dir, "--dry-run")
	if !hasLineWith(out.stdout, "cronjob.batch/cronsync -n cronsync ") || hasLineWith(out.stdout, "cronjob.batch/cronsync -n cronsync not validated") {
		t.Error("the server did not check the patched CronJob")
	}
}
