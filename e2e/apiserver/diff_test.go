package apiserver

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cronsync/cronsync/internal/testenv"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// A server dry run prints a unified diff per changed object, without the
// fields the server maintains, and with Secret values masked.
func TestDryRunDiff(t *testing.T) {
	const ns = "diffs"
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("web.yaml", deployment(ns, "web", 2))
	r.Write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: diffs}\n"+
		"stringData: {password: hunter2, user: admin}\n")
	r.Commit("first")
	mustSync(t, "--repo", r.Dir)

	r.Write("web.yaml", strings.Replace(deployment(ns, "web", 3), "app:1", "app:2", 1))
	r.Write("secret.yaml", "apiVersion: v1\nkind: Secret\nmetadata: {name: creds, namespace: diffs}\n"+
		"stringData: {password: correct-horse, user: admin, token: t0k3n}\n")
	r.Commit("second")
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", r.Dir, "--dry-run", "--detailed-exit-code")
	if out.code != exitChanges {
		t.Errorf("exit %d with changes pending and --detailed-exit-code, want %d", out.code, exitChanges)
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the dry run changed the cluster:\n%s", strings.Join(diff, "\n"))
	}
	for _, secret := range []string{"hunter2", "correct-horse", "t0k3n", "aHVudGVyMg", "Y29ycmVjdC1ob3Jz", "dDBrM24"} {
		if strings.Contains(out.stdout+out.stderr, secret) {
			t.Errorf("the output shows a Secret value (%s)", secret)
		}
	}
	golden(t, "dryrun-deployment.diff", diffBlock(out.stdout, "deployment.apps/web -n diffs"))
	golden(t, "dryrun-secret.diff", diffBlock(out.stdout, "secret/creds -n diffs"))

	// Nothing to change: exit 0 even with --detailed-exit-code.
	mustSync(t, "--repo", r.Dir)
	if out := cronsync(t, nil, "--repo", r.Dir, "--dry-run", "--detailed-exit-code"); out.code != exitOK {
		t.Errorf("exit %d with nothing to change, want 0", out.code)
	}
}

// diffBlock cuts the unified diff for ref out of a run's output.
func diffBlock(out, ref string) string {
	start := strings.Index(out, "--- "+ref+" (live)")
	if start < 0 {
		return "(no diff for " + ref + ")\n"
	}
	var b strings.Builder
	for i, line := range strings.SplitAfter(out[start:], "\n") {
		if i > 1 && !strings.ContainsAny(line[:min(1, len(line))], " +-@") {
			break
		}
		b.WriteString(line)
	}
	return b.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -run %s -update to write it)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs from the golden file:\n--- got\n%s--- want\n%s", name, got, want)
	}
}
