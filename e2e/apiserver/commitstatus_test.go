package apiserver

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/cronsync/cronsync/internal/forgetest"
	"github.com/cronsync/cronsync/internal/testenv"
)

// TestCommitStatus runs the binary against a forge that holds every
// request to GitHub's documentation: one status per run that has
// something new to say (a pending one while a new commit applies), none
// from a run that would say the same again, and a forge that fails (500,
// no answer, 429, a refused token) never changes the exit status or holds
// the run: one warning, and the next run posts what this one could not.
func TestCommitStatus(t *testing.T) {
	const token = "ghp_e2eForgeToken0123456789abcdef"
	ns := testenv.Unique("forge")
	set := testenv.Unique("forge")
	root := t.TempDir()
	r := testenv.NewRepoAt(t, filepath.Join(root, "ops", "cluster"))
	git := testenv.ServeHTTP(t, root, nil)
	forge := forgetest.New(t, "github", token)
	tokenFile := filepath.Join(t.TempDir(), "token")
	writeToken := func(tok string) {
		if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeToken(token)
	context := "cronsync/e2e-1/default/" + set
	args := []string{"--repo", git.URL + "/ops/cluster", "--applyset", "default/" + set, "--lease", "",
		"--commit-status", "github", "--commit-status-api", forge.URL, "--commit-status-token-file", tokenFile,
		"--cluster-name", "e2e-1", "--commit-status-url", "https://dash.example.com/d/{cluster}?ns={namespace}&set={applyset}&commit={commit}"}
	var outputs []string
	// sync runs cronsync with args and more, checks its exit status and
	// how many requests the forge got, and returns its stderr.
	sync := func(wantCode, wantRequests int, more ...string) string {
		t.Helper()
		before := forge.Requests()
		out := cronsync(t, nil, append(append([]string{}, args...), more...)...)
		outputs = append(outputs, out.stdout, out.stderr)
		if out.code != wantCode {
			t.Fatalf("exit %d, want %d:\n%s", out.code, wantCode, out.stderr)
		}
		if n := forge.Requests() - before; n != wantRequests {
			t.Errorf("the forge got %d requests, want %d", n, wantRequests)
		}
		if rej := forge.Rejected(); len(rej) > 0 {
			t.Fatalf("the forge refused requests off its documentation: %v", rej)
		}
		return out.stderr
	}
	latest := func(commit, state, description string) {
		t.Helper()
		st, ok := forge.Latest(commit, context)
		if !ok || st.State != state || !strings.HasPrefix(st.Description, description) || st.Repo != "ops/cluster" ||
			st.URL != "https://dash.example.com/d/e2e-1?ns=default&set="+set+"&commit="+commit {
			t.Errorf("the commit's status is %+v (found %v), want %s %q...", st, ok, state, description)
		}
	}
	// warned checks that the forge's failure is one warning line.
	warned := func(stderr, what string) {
		t.Helper()
		var lines []string
		for l := range strings.SplitSeq(stderr, "\n") {
			if strings.Contains(l, "commit status") {
				lines = append(lines, l)
			}
		}
		if len(lines) != 1 || !strings.HasPrefix(lines[0], "warning: commit status "+context+" (github) not posted, the next run tries again: ") || !strings.Contains(lines[0], what) {
			t.Errorf("want one warning line saying %q, got %q", what, lines)
		}
	}
	record := func() map[string]any {
		t.Helper()
		raw := get(t, schema.GroupVersionResource{Version: "v1", Resource: "secrets"}, "default", set, "metadata", "annotations", "cronsync.dev/last-commit-status")
		var m map[string]any
		if err := json.Unmarshal([]byte(raw), &m); err != nil {
			t.Fatalf("the parent's record %q: %v", raw, err)
		}
		return m
	}

	// A new commit: pending while it applies, then success.
	r.Write("ns.yaml", namespace(ns))
	r.Write("cm.yaml", configMap(ns, "settings", "one"))
	good := r.Commit("one")
	sync(exitOK, 2)
	if got := forge.Accepted(); len(got) != 2 || got[0].State != "pending" || got[0].Commit != good {
		t.Errorf("want pending first, got %+v", got)
	}
	latest(good, "success", "synced: 2 objects")
	// The same commit, the same result: nothing.
	sync(exitOK, 0)
	if rec := record(); rec["posted"] != true || rec["commit"] != good || rec["state"] != "success" {
		t.Errorf("record %v", rec)
	}

	// A bad commit fails (3), once on the forge.
	r.Write("bad.yaml", "apiVersion: v1\nkind: NoSuchKind\nmetadata: {name: x, namespace: "+ns+"}\n")
	bad := r.Commit("bad")
	sync(exitContent, 2)
	latest(bad, "failure", "failed: ")
	sync(exitContent, 0)

	// Applied but not healthy (6): no controller rolls the Deployment out.
	r.Remove("bad.yaml")
	r.Write("web.yaml", deployment(ns, "web", 1))
	web := r.Commit("web")
	unhealthy := []string{"--wait=true", "--wait-timeout", "2s", "--timeout", "40s"}
	sync(exitUnhealthy, 2, unhealthy...)
	latest(web, "failure", "not healthy: deployment.apps/web -n "+ns)
	sync(exitUnhealthy, 0, unhealthy...)

	// Stopped while it waits (1, retryable): "error", and no pending at
	// a commit already posted.
	before := forge.Requests()
	cmd := cronsyncCmd(append(append([]string{}, args...), "--wait=true", "--wait-timeout", "30s", "--timeout", "40s")...)
	res := testenv.RunBinaryWhen(t, cmd, func(l string) bool { return strings.HasPrefix(l, "waiting up to") }, func() {
		cmd.Process.Signal(syscall.SIGTERM)
	})
	outputs = append(outputs, res.Stdout, res.Stderr)
	if res.Code != exitRetry || forge.Requests()-before != 1 {
		t.Errorf("SIGTERM: exit %d, %d requests; want %d, 1", res.Code, forge.Requests()-before, exitRetry)
	}
	latest(web, "error", "could not finish: ")

	// A forge that fails. Each run's result differs from the one posted
	// last (synced, not healthy, in turn), so each has a status to post.
	forge.Fail(forgetest.Fault{Code: 500}, forgetest.Fault{Code: 500})
	warned(sync(exitOK, 2, "--wait=false"), "500 Internal Server Error")
	if rec := record(); rec["posted"] != false || rec["state"] != "success" {
		t.Errorf("after a 500 the record is %v", rec)
	}
	sync(exitOK, 1, "--wait=false")
	latest(web, "success", "synced: 3 objects")

	start := time.Now()
	forge.Fail(forgetest.Fault{Hang: time.Minute}, forgetest.Fault{Hang: time.Minute})
	warned(sync(exitUnhealthy, 2, unhealthy...), "no answer within 5s")
	// 2s of waiting for the Deployment, two attempts of 5s, the rest.
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("a forge that does not answer held the run %s", took)
	}
	sync(exitUnhealthy, 1, unhealthy...)
	latest(web, "failure", "not healthy: ")

	start = time.Now()
	forge.Fail(forgetest.Fault{Code: 429, RetryAfter: "120"})
	warned(sync(exitOK, 1, "--wait=false"), "rate-limited for 2m0s")
	if took := time.Since(start); took > 15*time.Second {
		t.Errorf("a Retry-After of 2m held the run %s", took)
	}
	sync(exitOK, 1, "--wait=false")
	latest(web, "success", "synced: 3 objects")

	// A refused token; the file, read on every run, is fixed after.
	writeToken("ghp_revokedToken0123456789abcdef")
	warned(sync(exitUnhealthy, 1, unhealthy...), "401 Unauthorized: Bad credentials")
	writeToken(token)
	sync(exitUnhealthy, 1, unhealthy...)
	latest(web, "failure", "not healthy: ")
	sync(exitUnhealthy, 0, unhealthy...)

	// An unsigned commit (4) is refused before anything is read from the
	// cluster: the parent's record is read at the end, and the failure
	// posted once.
	keys := filepath.Join(t.TempDir(), "allowed_signers")
	signer, _ := testenv.NewEd25519(t)
	os.WriteFile(keys, append([]byte("ops@example.com "), ssh.MarshalAuthorizedKey(signer.PublicKey())...), 0o600)
	sync(exitUnverified, 1, "--verify-keys-file", keys)
	latest(web, "failure", "failed: commit "+web+" is not signed")
	sync(exitUnverified, 0, "--verify-keys-file", keys)

	for _, o := range outputs {
		if strings.Contains(o, token) || strings.Contains(o, "ghp_revoked") {
			t.Fatalf("a token shows in the output:\n%s", o)
		}
	}
}
