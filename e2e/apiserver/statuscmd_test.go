package apiserver

import (
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/cronsync/cronsync/internal/testenv"
)

// statusDoc is `cronsync status -o json`, as a script reads it.
type statusDoc struct {
	Syncs []statusRow `json:"syncs"`
}

type statusRow struct {
	Cluster     string `json:"cluster"`
	Namespace   string `json:"namespace"`
	Name        string `json:"name"`
	Repo        string `json:"repo"`
	Path        string `json:"path"`
	Revision    string `json:"revision"`
	Result      string `json:"result"`
	LastSync    string `json:"lastSyncTime"`
	LastSuccess string `json:"lastSuccessTime"`
	Objects     int    `json:"objects"`
	Drifted     int    `json:"drifted"`
	Message     string `json:"message"`
	Stale       bool   `json:"stale"`
	CronJob     *struct {
		Namespace    string `json:"namespace"`
		Name         string `json:"name"`
		Schedule     string `json:"schedule"`
		Suspended    bool   `json:"suspended"`
		LastSchedule string `json:"lastScheduleTime"`
	} `json:"cronJob"`
}

// cronsyncStatus runs `cronsync status` with kubeconfig and args.
func cronsyncStatus(t *testing.T, kubeconfig string, args ...string) result {
	t.Helper()
	r := testenv.RunBinary(t, exec.Command(binary, append([]string{"status", "--kubeconfig", kubeconfig}, args...)...))
	return result{code: r.Code, stdout: r.Stdout, stderr: r.Stderr}
}

// statusJSON runs cronsync status -o json and returns its rows by
// cluster:namespace/name, with the exit status.
func statusJSON(t *testing.T, kubeconfig string, args ...string) (map[string]statusRow, int) {
	t.Helper()
	out := cronsyncStatus(t, kubeconfig, append(args, "-o", "json")...)
	var doc statusDoc
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("-o json: %v", err)
	}
	rows := map[string]statusRow{}
	for _, r := range doc.Syncs {
		rows[r.Cluster+":"+r.Namespace+"/"+r.Name] = r
	}
	return rows, out.code
}

// cronsync status against the real API server: three syncs (succeeded,
// failed, unhealthy) in two namespaces, two of them run by CronJobs (found
// from a ConfigMap and from the arguments); the succeeded one made stale by
// its schedule; every output format; a kubeconfig of three contexts, one of
// them unreachable and one a user holding only manifests/status's
// ClusterRole, whose requests are exactly the reads the README names; and
// the exit statuses.
func TestStatusCommand(t *testing.T) {
	ctx := context.Background()
	cs := clientset()
	nsA, nsB := testenv.Unique("status-a"), testenv.Unique("status-b")
	for _, ns := range []string{nsA, nsB} {
		if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}

	// Succeeded, after repairing drift in one of its two objects.
	good := testenv.NewRepo(t)
	good.Write("app/greeting.yaml", configMap(nsA, "greeting", "hello"))
	good.Write("app/other.yaml", configMap(nsA, "other", "x"))
	goodCommit := good.Commit("good")
	goodArgs := []string{"--repo", good.Dir, "--path", "app", "--applyset", nsA + "/good", "--lease", ""}
	mustSync(t, goodArgs...)
	if _, err := kube.Resource(configMaps).Namespace(nsA).Patch(ctx, "greeting", types.MergePatchType,
		[]byte(`{"data":{"value":"by hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	mustSync(t, goodArgs...)

	// Failed: a Service whose port is out of range.
	bad := testenv.NewRepo(t)
	bad.Write("cm.yaml", configMap(nsB, "bad-cm", "v"))
	bad.Write("svc.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: api, namespace: "+nsB+"}\nspec:\n  ports: [{port: 99999}]\n")
	badCommit := bad.Commit("bad")
	if out := cronsync(t, nil, "--repo", bad.Dir, "--applyset", nsB+"/bad", "--lease", ""); out.code != exitContent {
		t.Fatalf("the bad commit exited %d, want %d", out.code, exitContent)
	}

	// Unhealthy: no controller runs here, so a Deployment never rolls out.
	sick := testenv.NewRepo(t)
	sick.Write("web.yaml", deployment(nsB, "web", 1))
	sick.Commit("sick")
	if out := cronsync(t, nil, "--repo", sick.Dir, "--applyset", nsB+"/sick", "--lease", "", "--wait=true", "--wait-timeout", "2s"); out.code != exitUnhealthy {
		t.Fatalf("the Deployment's sync exited %d, want %d", out.code, exitUnhealthy)
	}

	// The CronJobs: good's takes its set from a ConfigMap (as manifests/
	// configures cronsync), bad's from its arguments; a backup CronJob's
	// ConfigMap is none of status's business.
	cronJob := func(ns, name, schedule string, suspend bool, c corev1.Container) {
		t.Helper()
		c.Name = "main"
		cj := &batchv1.CronJob{
			ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns},
			Spec: batchv1.CronJobSpec{Schedule: schedule, Suspend: &suspend, JobTemplate: batchv1.JobTemplateSpec{Spec: batchv1.JobSpec{
				Template: corev1.PodTemplateSpec{Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever, Containers: []corev1.Container{c}}},
			}}},
		}
		if _, err := cs.BatchV1().CronJobs(ns).Create(ctx, cj, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	configMapOf := func(ns, name string, data map[string]string) {
		t.Helper()
		if _, err := cs.CoreV1().ConfigMaps(ns).Create(ctx, &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Data: data}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	envFrom := func(name string) []corev1.EnvFromSource {
		return []corev1.EnvFromSource{{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}}
	}
	configMapOf(nsA, "good-config", map[string]string{"CRONSYNC_REPO": good.Dir, "CRONSYNC_APPLYSET": "good"})
	cronJob(nsA, "good-sync", "*/5 * * * *", false, corev1.Container{Image: "registry.example.com:5000/ops/cronsync:v1", EnvFrom: envFrom("good-config")})
	configMapOf(nsA, "backup-config", map[string]string{"TARGET": "s3://backups"})
	cronJob(nsA, "backup", "0 3 * * *", false, corev1.Container{Image: "busybox", EnvFrom: envFrom("backup-config")})
	cronJob(nsB, "bad-sync", "0 * * * *", true, corev1.Container{Image: "cronsync", Args: []string{"--work-dir=/work", "--applyset=bad"}})
	// What the CronJob controller would have written on good-sync.
	scheduled := metav1.NewTime(time.Now().Add(-30 * time.Minute).Truncate(time.Second))
	cj, err := cs.BatchV1().CronJobs(nsA).Get(ctx, "good-sync", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cj.Status.LastScheduleTime = &scheduled
	if _, err := cs.BatchV1().CronJobs(nsA).UpdateStatus(ctx, cj, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	admin := cluster.Kubeconfig
	t.Run("table", func(t *testing.T) {
		out := cronsyncStatus(t, admin, "-n", nsA)
		if out.code != exitOK {
			t.Fatalf("exit %d with every sync of %s synced and none stale, want 0", out.code, nsA)
		}
		lines := strings.Split(strings.TrimSpace(out.stdout), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d lines, want a header and one row", len(lines))
		}
		if got := strings.Join(strings.Fields(lines[0]), " "); got != "NAMESPACE NAME REPO PATH REVISION RESULT AGE OBJECTS DRIFT SCHEDULE SUSPENDED LAST-SCHEDULE STALE MESSAGE" {
			t.Errorf("header %q", got)
		}
		if got, want := strings.Join(strings.Fields(lines[1]), " "), strings.Join([]string{nsA, "good", good.Dir, "app", goodCommit[:12], "synced"}, " "); !strings.HasPrefix(got, want) {
			t.Errorf("row %q, want it to start %q", got, want)
		}
		if !strings.Contains(strings.Join(strings.Fields(lines[1]), " "), " 2 1 */5 * * * * false 30m no -") {
			t.Errorf("row %q: want 2 objects, 1 drifted, the schedule, not suspended, scheduled 30m ago, not stale, no message", lines[1])
		}

		out = cronsyncStatus(t, admin, "-n", nsB)
		if out.code != 1 {
			t.Errorf("exit %d with a failed and an unhealthy sync, want 1", out.code)
		}
		if want := "2 of 2 syncs need a look: " + nsB + "/bad failed, " + nsB + "/sick unhealthy\n"; out.stderr != want {
			t.Errorf("stderr %q, want %q", out.stderr, want)
		}
		if !hasLineWith(out.stdout, nsB, "bad", "failed", "service/api -n "+nsB+" (svc.yaml)") {
			t.Error("the failed sync's row does not start its message with the object and file")
		}
		if !hasLineWith(out.stdout, nsB, "sick", "unhealthy", "deployment.apps/web -n "+nsB) {
			t.Error("the unhealthy sync's row does not name the Deployment")
		}
		// -o wide: nothing cut.
		out = cronsyncStatus(t, admin, "-n", nsB, "-o", "wide")
		if !hasLineWith(out.stdout, badCommit) || !hasLineWith(out.stdout, nsB+"/bad-sync", "0 * * * *", "true") {
			t.Error("-o wide lacks the whole commit, or the CronJob")
		}

		out = cronsyncStatus(t, admin, "-n", testenv.Unique("status-empty"))
		if out.code != exitOK || out.stdout != "" || !strings.Contains(out.stderr, "no cronsync syncs found in namespace status-empty-") {
			t.Errorf("a namespace without syncs: exit %d, stdout %q, stderr %q", out.code, out.stdout, out.stderr)
		}
	})

	t.Run("json and yaml", func(t *testing.T) {
		rows, code := statusJSON(t, admin, "-A")
		if code != 1 {
			t.Errorf("exit %d, want 1", code)
		}
		g, b, s := rows[":"+nsA+"/good"], rows[":"+nsB+"/bad"], rows[":"+nsB+"/sick"]
		if g.Repo != good.Dir || g.Path != "app" || g.Revision != goodCommit || g.Result != "synced" || g.Objects != 2 || g.Drifted != 1 ||
			g.Message != "" || g.Stale || g.LastSync == "" || g.LastSuccess != g.LastSync {
			t.Errorf("good: %+v", g)
		}
		if c := g.CronJob; c == nil || c.Namespace != nsA || c.Name != "good-sync" || c.Schedule != "*/5 * * * *" || c.Suspended || c.LastSchedule != scheduled.UTC().Format(time.RFC3339) {
			t.Errorf("good's CronJob: %+v", c)
		}
		if b.Result != "failed" || b.Revision != badCommit || !strings.HasPrefix(b.Message, "service/api -n "+nsB+" (svc.yaml)") || b.LastSuccess != "" || b.Stale {
			t.Errorf("bad: %+v", b)
		}
		if c := b.CronJob; c == nil || c.Name != "bad-sync" || !c.Suspended {
			t.Errorf("bad's CronJob: %+v", c)
		}
		if s.Result != "unhealthy" || s.Objects != 1 || s.CronJob != nil || !strings.Contains(s.Message, "deployment.apps/web") {
			t.Errorf("sick: %+v", s)
		}

		out := cronsyncStatus(t, admin, "-A", "-o", "yaml")
		var doc statusDoc
		if err := yaml.Unmarshal([]byte(out.stdout), &doc); err != nil {
			t.Fatalf("-o yaml: %v", err)
		}
		fromYAML := map[string]statusRow{}
		for _, r := range doc.Syncs {
			fromYAML[":"+r.Namespace+"/"+r.Name] = r
		}
		for _, k := range []string{":" + nsA + "/good", ":" + nsB + "/bad", ":" + nsB + "/sick"} {
			if !reflect.DeepEqual(fromYAML[k], rows[k]) {
				t.Errorf("%s: -o yaml says %+v, -o json %+v", k, fromYAML[k], rows[k])
			}
		}
	})

	// A kubeconfig of three contexts: the cluster as admin, the cluster as
	// a person holding only manifests/status's ClusterRole, and a server
	// that is gone.
	readerKC, err := cluster.WriteKubeconfig(testenv.Unique("status-reader"))
	if err != nil {
		t.Fatal(err)
	}
	reader := userOf(t, readerKC)
	grantStatusReader(t, reader)
	kc := fleetKubeconfig(t, nsA, map[string]string{"here": admin, "reader": readerKC})

	t.Run("contexts", func(t *testing.T) {
		out := cronsyncStatus(t, kc, "--context", "here")
		if out.code != exitOK || strings.Contains(out.stdout, "CLUSTER") || !hasLineWith(out.stdout, nsA, "good", "synced") {
			t.Errorf("one context: exit %d; want 0, its namespace's sync and no CLUSTER column", out.code)
		}
		mark := cluster.AuditMark()
		start := time.Now()
		rows, code := statusJSON(t, kc, "--all-contexts")
		if code != 1 {
			t.Errorf("exit %d with a context unreachable, want 1", code)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Errorf("took %s", d)
		}
		gone := rows["gone:/"]
		if gone.Result != "unreachable" || !strings.Contains(gone.Message, "connection refused") {
			t.Errorf("the unreachable context's row: %+v", gone)
		}
		here, asReader := rows["here:"+nsA+"/good"], rows["reader:"+nsA+"/good"]
		here.Cluster, asReader.Cluster = "", ""
		if here.Result != "synced" || !reflect.DeepEqual(here, asReader) {
			t.Errorf("the sync read as admin %+v, as the status reader %+v", here, asReader)
		}
		if len(rows) != 3 {
			t.Errorf("%d rows, want 3: %v", len(rows), rows)
		}
		// The reader's requests are exactly the reads the README names:
		// no other kind, and no ConfigMap of a CronJob that does not run
		// cronsync.
		events, err := cluster.AuditSince(mark, reader)
		if err != nil {
			t.Fatal(err)
		}
		var seen []string
		for _, ev := range events {
			path, query, _ := strings.Cut(ev.RequestURI, "?")
			switch {
			case ev.Verb == "list" && path == "/api/v1/namespaces/"+nsA+"/secrets" && strings.Contains(query, "labelSelector=applyset.kubernetes.io%2Fid"):
			case ev.Verb == "list" && path == "/apis/batch/v1/namespaces/"+nsA+"/cronjobs":
			case ev.Verb == "get" && path == "/api/v1/namespaces/"+nsA+"/configmaps/good-config":
			default:
				t.Errorf("the status reader sent %s %s", ev.Verb, ev.RequestURI)
				continue
			}
			seen = append(seen, ev.Verb+" "+path)
		}
		if len(seen) != 3 {
			t.Errorf("the status reader's requests: %v; want a list of parents, a list of CronJobs, a get of good-config", seen)
		}

		out = cronsyncStatus(t, kc, "--context", "here", "--context", "gone")
		if out.code != 1 || !hasLineWith(out.stdout, "CLUSTER", "NAMESPACE") || !hasLineWith(out.stdout, "gone", "unreachable", "connection refused") ||
			!hasLineWith(out.stdout, "here", nsA, "good", "synced") || !strings.Contains(out.stderr, "context gone unreachable") {
			t.Errorf("two contexts, one gone: exit %d; want 1, a CLUSTER column, a row for each", out.code)
		}
		// With one context, one that cannot be read is the error itself.
		out = cronsyncStatus(t, kc, "--context", "gone")
		if out.code != 1 || out.stdout != "" || !strings.HasPrefix(out.stderr, "error: reading context gone, namespace "+nsA+": ") {
			t.Errorf("the gone context alone: exit %d, stderr %q", out.code, out.stderr)
		}
	})

	t.Run("rbac", func(t *testing.T) {
		// The reader across namespaces, with the ClusterRole bound
		// cluster-wide: no warning, no error.
		out := cronsyncStatus(t, kc, "--context", "reader", "-A")
		if strings.Contains(out.stderr, "warning") || strings.Contains(out.stderr, "error") || !hasLineWith(out.stdout, nsB, "bad", "failed") {
			t.Errorf("the status reader across namespaces: exit %d, stderr %q", out.code, out.stderr)
		}
		// Someone with no grant is told what is missing, exit 2.
		nobody, err := cluster.WriteKubeconfig(testenv.Unique("status-nobody"))
		if err != nil {
			t.Fatal(err)
		}
		out = cronsyncStatus(t, nobody, "-n", nsA)
		if out.code != exitConfig || !strings.Contains(out.stderr, `cannot list resource "secrets" in API group "" in the namespace "`+nsA+`"`) {
			t.Errorf("without RBAC: exit %d, stderr %q; want %d naming the list of secrets", out.code, out.stderr, exitConfig)
		}
	})

	t.Run("stale", func(t *testing.T) {
		// The last successful run 20 minutes ago, at */5: the CronJob has
		// come due three times since.
		then := time.Now().Add(-20 * time.Minute).UTC().Format(time.RFC3339)
		patch := `{"metadata":{"annotations":{"cronsync.dev/last-sync-time":"` + then + `","cronsync.dev/last-sync-success":"` + then + `"}}}`
		if _, err := cs.CoreV1().Secrets(nsA).Patch(ctx, "good", types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
			t.Fatal(err)
		}
		out := cronsyncStatus(t, admin, "-n", nsA)
		if out.code != 1 || !strings.Contains(strings.Join(strings.Fields(out.stdout), " "), " synced 20m 2 1 */5 * * * * false 30m yes -") ||
			out.stderr != "1 of 1 syncs need a look: "+nsA+"/good stale\n" {
			t.Errorf("stale: exit %d, stderr %q; want 1, STALE yes", out.code, out.stderr)
		}
		rows, _ := statusJSON(t, admin, "-n", nsA)
		if g := rows[":"+nsA+"/good"]; !g.Stale || g.LastSuccess != then {
			t.Errorf("JSON: %+v", g)
		}
		// A run that fails keeps the last success, so the sync stays
		// stale; the next success clears it.
		good.Write("app/broken.yaml", "apiVersion: v1\nkind: Service\nmetadata: {name: broken, namespace: "+nsA+"}\nspec:\n  ports: [{port: 0}]\n")
		good.Commit("broken")
		if out := cronsync(t, nil, goodArgs...); out.code != exitContent {
			t.Fatalf("exit %d, want %d", out.code, exitContent)
		}
		if g := rowsOf(t, admin, nsA)[":"+nsA+"/good"]; g.Result != "failed" || g.LastSuccess != then || !g.Stale {
			t.Errorf("after a failed run: %+v; want failed, the last success kept, stale", g)
		}
		good.Remove("app/broken.yaml")
		good.Commit("fixed")
		mustSync(t, goodArgs...)
		if g := rowsOf(t, admin, nsA)[":"+nsA+"/good"]; g.Result != "synced" || g.LastSuccess == then || g.Stale {
			t.Errorf("after a successful run: %+v", g)
		}
	})

	t.Run("bad flags", func(t *testing.T) {
		for _, args := range [][]string{
			{"-o", "xml"}, {"--context", "nope"}, {"stray"}, {"--all-contexts", "--context", "here"}, {"-A", "-n", "x"}, {"--timeout", "0s"},
		} {
			out := cronsyncStatus(t, kc, args...)
			if out.code != exitConfig || !strings.HasPrefix(out.stderr, "error: ") || strings.Count(out.stderr, "\n") != 1 {
				t.Errorf("%v: exit %d, stderr %q; want %d and one error line", args, out.code, out.stderr, exitConfig)
			}
		}
		cmd := exec.Command(binary, "status", "--kubeconfig", kc, "--context", "here")
		cmd.Env = append(os.Environ(), "CRONSYNC_STATUS_OUTPUT=xml")
		if r := testenv.RunBinary(t, cmd); r.Code != exitConfig || !strings.Contains(r.Stderr, `--output must be "wide", "json" or "yaml", not "xml"`) {
			t.Errorf("CRONSYNC_STATUS_OUTPUT=xml: exit %d, stderr %q", r.Code, r.Stderr)
		}
	})
}

func rowsOf(t *testing.T, kubeconfig, ns string) map[string]statusRow {
	t.Helper()
	rows, _ := statusJSON(t, kubeconfig, "-n", ns)
	return rows
}

// userOf is the user a kubeconfig that WriteKubeconfig wrote authenticates
// as (the audit log's name for it).
func userOf(t *testing.T, kubeconfig string) string {
	t.Helper()
	base := filepath.Base(kubeconfig)
	return strings.TrimSuffix(base, ".kubeconfig")
}

// grantStatusReader binds manifests/status's ClusterRole to user
// cluster-wide, as its comment says to.
func grantStatusReader(t *testing.T, user string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testenv.ModuleRoot(), "manifests", "status", "clusterrole.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	var role rbacv1.ClusterRole
	if err := yaml.UnmarshalStrict(b, &role); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	cs := clientset()
	if _, err := cs.RbacV1().ClusterRoles().Update(ctx, &role, metav1.UpdateOptions{}); err != nil {
		if _, err := cs.RbacV1().ClusterRoles().Create(ctx, &role, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	binding := &rbacv1.ClusterRoleBinding{
		ObjectMeta: metav1.ObjectMeta{Name: user},
		RoleRef:    rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: role.Name},
		Subjects:   []rbacv1.Subject{{APIGroup: "rbac.authorization.k8s.io", Kind: "User", Name: user}},
	}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
}

// fleetKubeconfig writes a kubeconfig holding the current context of each
// of files under its name, each with namespace ns, and a context "gone"
// whose server refuses connections.
func fleetKubeconfig(t *testing.T, ns string, files map[string]string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	for name, file := range files {
		from, err := clientcmd.LoadFromFile(file)
		if err != nil {
			t.Fatal(err)
		}
		c := from.Contexts[from.CurrentContext]
		cfg.Clusters[name] = from.Clusters[c.Cluster]
		cfg.AuthInfos[name] = from.AuthInfos[c.AuthInfo]
		cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: ns}
	}
	cfg.CurrentContext = "here"
	// A port that was just free: nothing listens there.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cfg.Clusters["gone"] = &clientcmdapi.Cluster{Server: "https://" + addr, InsecureSkipTLSVerify: true}
	cfg.AuthInfos["gone"] = &clientcmdapi.AuthInfo{Token: "unused"}
	cfg.Contexts["gone"] = &clientcmdapi.Context{Cluster: "gone", AuthInfo: "gone", Namespace: ns}
	path := filepath.Join(t.TempDir(), "fleet.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}
