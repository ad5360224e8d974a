package report

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/forgetest"
	"github.com/cronsync/cronsync/internal/redact"
)

const (
	commitA = "0123456789abcdef0123456789abcdef01234567"
	commitB = "89abcdef0123456789abcdef0123456789abcdef"
	token   = "s3cr3t-forge-token-0123456789"
)

// forges are the providers with a --repo of theirs, and what the status's
// path names the repository as.
var forges = []struct {
	provider, repo, repoOnForge string
}{
	{GitHub, "https://github.com/ops/cluster.git", "ops/cluster"},
	{GitLab, "git@gitlab.example.com:platform/k8s/cluster.git", "platform/k8s/cluster"},
	{Gitea, "https://git.example.com/ops/cluster", "ops/cluster"},
	{Bitbucket, "git@bitbucket.org:acme/cluster.git", "acme/cluster"},
	{BitbucketServer, "https://bitbucket.example.com/bitbucket/scm/OPS/cluster.git", ""},
	{AzureDevOps, "https://dev.azure.com/acme/Platform%20Team/_git/cluster", "Platform Team/cluster"},
}

// newStatus is a CommitStatus for provider posting to srv, with a token
// file holding tok, and short timeouts.
func newStatus(t *testing.T, provider, repo string, srv *forgetest.Server, tok string) *CommitStatus {
	t.Helper()
	tokenFile := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(tokenFile, []byte(tok+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := DefaultCommitStatus()
	c.Provider, c.Repo, c.API, c.Cluster, c.Path, c.TokenFile, c.UserAgent = provider, repo, srv.API(), "prod-eu", "clusters/prod", tokenFile, "cronsync/test"
	c.Timeout, c.Budget, c.MaxRetryAfter = 300*time.Millisecond, 2*time.Second, time.Second
	if err := c.Check(); err != nil {
		t.Fatal(err)
	}
	return &c
}

func synced(commit string) *Summary {
	return &Summary{Result: "synced", ExitCode: 0, Commit: commit, Path: "clusters/prod",
		Counts: map[string]int{"created": 2, "unchanged": 1, "pruned": 1}, Health: &Health{Ready: 3}, Duration: "1.2s"}
}

func unhealthy(commit string) *Summary {
	return &Summary{Result: "unhealthy", ExitCode: 6, Commit: commit, Path: "clusters/prod", Counts: map[string]int{"unchanged": 3},
		Health: &Health{Ready: 2, NotReady: 1, Unhealthy: "deployment.apps/web -n shop (web.yaml): not ready after 5m0s"},
		Errors: []string{"deployment.apps/web -n shop (web.yaml): not ready after 5m0s"}}
}

func stopped(commit string) *Summary {
	return &Summary{Result: "failed", ExitCode: 1, Commit: commit, Path: "clusters/prod", Counts: map[string]int{},
		Errors: []string{"stopped with 3 objects not applied: SIGTERM\nsecond line"}}
}

// run is one run of cronsync as far as the commit status goes: the parent
// read (holding record), the outcome, and the record it leaves.
func run(t *testing.T, c *CommitStatus, record string, s *Summary) (string, error) {
	t.Helper()
	r := c.Start("cronsync", "web", redact.New())
	r.ParentRead(context.Background(), map[string]string{CommitStatusAnnotation: record}, s.Commit)
	return r.Finish(context.Background(), s)
}

// Every provider gets its documented request (the forge refuses anything
// else), a pending status while a new commit applies, the outcome after,
// and nothing at all from a run that would say the same again.
func TestCommitStatusEveryProvider(t *testing.T) {
	for _, f := range forges {
		t.Run(f.provider, func(t *testing.T) {
			srv := forgetest.New(t, f.provider, token)
			c := newStatus(t, f.provider, f.repo, srv, token)
			// For Azure, genre/name as the forge shows it: the same.
			context := "cronsync/prod-eu/cronsync/web"

			rec, err := run(t, c, "", synced(commitA))
			if err != nil {
				t.Fatal(err)
			}
			got := srv.Accepted()
			if rej := srv.Rejected(); len(rej) > 0 {
				t.Fatalf("the forge refused: %v", rej)
			}
			if len(got) != 2 {
				t.Fatalf("want pending and success, got %+v", got)
			}
			pending, success := got[0], got[1]
			want := map[string][2]string{
				GitHub: {"pending", "success"}, Gitea: {"pending", "success"}, GitLab: {"running", "success"},
				Bitbucket: {"INPROGRESS", "SUCCESSFUL"}, BitbucketServer: {"INPROGRESS", "SUCCESSFUL"}, AzureDevOps: {"pending", "succeeded"},
			}[f.provider]
			if pending.State != want[0] || success.State != want[1] {
				t.Errorf("states %s, %s; want %v", pending.State, success.State, want)
			}
			for _, st := range got {
				if st.Repo != f.repoOnForge || st.Commit != commitA || st.Context != context {
					t.Errorf("status on %q@%s context %q; want %q@%s %q", st.Repo, st.Commit, st.Context, f.repoOnForge, commitA, context)
				}
			}
			if pending.Description != "applying commit 0123456789ab" || success.Description != "synced clusters/prod: 3 objects, 3 ready" {
				t.Errorf("descriptions %q, %q", pending.Description, success.Description)
			}
			switch f.provider {
			case Bitbucket:
				if success.URL != "https://bitbucket.org/acme/cluster/commits/"+commitA || success.Name != context {
					t.Errorf("url %q name %q", success.URL, success.Name)
				}
			case BitbucketServer:
				if success.URL != srv.API()+"/projects/OPS/repos/cluster/commits/"+commitA {
					t.Errorf("url %q", success.URL)
				}
			default:
				if success.URL != "" {
					t.Errorf("a link with no --commit-status-url: %q", success.URL)
				}
			}

			// The same commit and result again: not one request.
			before := srv.Requests()
			rec2, err := run(t, c, rec, synced(commitA))
			if err != nil || rec2 != rec {
				t.Fatalf("second run: %v, record %q, want %q", err, rec2, rec)
			}
			if n := srv.Requests() - before; n != 0 {
				t.Errorf("a run that changed nothing sent the forge %d requests", n)
			}

			// Unhealthy at the same commit: one request, no pending.
			rec, err = run(t, c, rec, unhealthy(commitA))
			if err != nil {
				t.Fatal(err)
			}
			last, _ := srv.Latest(commitA, context)
			wantFailure := map[string]string{GitHub: "failure", Gitea: "failure", GitLab: "failed", Bitbucket: "FAILED", BitbucketServer: "FAILED", AzureDevOps: "failed"}[f.provider]
			if n := srv.Requests() - before; n != 1 || last.State != wantFailure ||
				last.Description != "not healthy: deployment.apps/web -n shop (web.yaml): not ready after 5m0s" {
				t.Errorf("unhealthy: %d requests, latest %+v", n, last)
			}

			// A run that could not finish, on a new commit: pending, then
			// the provider's "error" (or its nearest word), first line only.
			if _, err = run(t, c, rec, stopped(commitB)); err != nil {
				t.Fatal(err)
			}
			last, _ = srv.Latest(commitB, context)
			wantError := map[string]string{GitHub: "error", Gitea: "error", GitLab: "failed", Bitbucket: "FAILED", BitbucketServer: "FAILED", AzureDevOps: "error"}[f.provider]
			if last.State != wantError || last.Description != "could not finish: stopped with 3 objects not applied: SIGTERM" {
				t.Errorf("error: latest %+v", last)
			}
			if rej := srv.Rejected(); len(rej) > 0 {
				t.Errorf("the forge refused: %v", rej)
			}
		})
	}
}

// The forge refuses what its documentation does not allow: the checking
// server is not a stub that takes anything.
func TestForgeRefusesOffSpecRequests(t *testing.T) {
	srv := forgetest.New(t, GitHub, token)
	c := newStatus(t, GitHub, "https://github.com/ops/cluster", srv, "wrong-token-0123456789")
	if _, err := run(t, c, "", synced(commitA)); err == nil || !strings.Contains(err.Error(), "401 Unauthorized: Bad credentials") {
		t.Errorf("a wrong token: %v", err)
	}
	c = newStatus(t, GitHub, "https://github.com/ops/cluster", srv, token)
	c.UserAgent = ""
	if _, err := run(t, c, "", synced(commitA)); err == nil || !strings.Contains(err.Error(), "403") {
		t.Errorf("no User-Agent: %v", err)
	}
	gl := forgetest.New(t, GitLab, token)
	c = newStatus(t, GitLab, "https://gitlab.example.com/a/b", gl, token)
	c.api.Path = "/api/v4/x" // a path the API does not have
	if _, err := run(t, c, "", synced(commitA)); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("wrong path: %v", err)
	}
	if len(srv.Accepted())+len(gl.Accepted()) != 0 {
		t.Errorf("accepted %v %v", srv.Accepted(), gl.Accepted())
	}
}

// A description is cut to the provider's limit, and a context too long
// for a Bitbucket key becomes a key that fits, the name showing it whole.
func TestCommitStatusLimits(t *testing.T) {
	long := unhealthy(commitA)
	long.Health.Unhealthy = strings.Repeat("é", 300)
	for _, p := range []string{GitHub, Bitbucket} {
		srv := forgetest.New(t, p, token)
		repo := map[string]string{GitHub: "https://github.com/o/r", Bitbucket: "https://bitbucket.org/w/r"}[p]
		c := newStatus(t, p, repo, srv, token)
		c.Cluster = "a-cluster-with-a-rather-long-name"
		if _, err := run(t, c, "", long); err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		st := srv.Accepted()[1]
		limit := map[string]int{GitHub: 140, Bitbucket: 255}[p]
		if n := len([]rune(st.Description)); n != limit || !strings.HasSuffix(st.Description, "…") {
			t.Errorf("%s: description of %d characters: %q", p, n, st.Description)
		}
		if p == Bitbucket && (len(st.Context) != 40 || st.Name != "cronsync/a-cluster-with-a-rather-long-name/cronsync/web") {
			t.Errorf("key %q, name %q", st.Context, st.Name)
		}
	}
}

// A forge that fails never makes the run fail: Finish says so in one line,
// the record says the status was not posted, and the next run posts it.
func TestCommitStatusForgeFailures(t *testing.T) {
	cases := []struct {
		name   string
		faults []forgetest.Fault
		// posted: the status got through in the same run (a fault that
		// passed within the retry).
		posted   bool
		requests int
		msg      string
		maxTime  time.Duration
	}{
		{"500 once", []forgetest.Fault{{Code: 500}}, true, 2, "", time.Second},
		{"500 twice", []forgetest.Fault{{Code: 500}, {Code: 502}}, false, 2, "502 Bad Gateway", 2 * time.Second},
		{"timeout", []forgetest.Fault{{Hang: time.Minute}, {Hang: time.Minute}}, false, 2, "no answer within 300ms", 2 * time.Second},
		{"short Retry-After", []forgetest.Fault{{Code: 429, RetryAfter: "1"}}, true, 2, "", 2 * time.Second},
		{"long Retry-After", []forgetest.Fault{{Code: 429, RetryAfter: "3600"}}, false, 1, "rate-limited for 1h0m0s", 200 * time.Millisecond},
		{"secondary rate limit", []forgetest.Fault{{Code: 403, RetryAfter: "60"}}, false, 1, "403 Forbidden", 200 * time.Millisecond},
		{"refused token", []forgetest.Fault{{Code: 401}}, false, 1, "401 Unauthorized", 200 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := forgetest.New(t, GitHub, token)
			c := newStatus(t, GitHub, "https://github.com/ops/cluster", srv, token)
			// The commit was posted as pending by an earlier run: this
			// one sends the outcome only.
			first, err := run(t, c, "", stopped(commitA))
			if err != nil {
				t.Fatal(err)
			}
			srv.Fail(tc.faults...)
			before := srv.Requests()
			start := time.Now()
			rec, err := run(t, c, first, synced(commitA))
			took := time.Since(start)
			if n := srv.Requests() - before; n != tc.requests {
				t.Errorf("%d requests, want %d", n, tc.requests)
			}
			if took > tc.maxTime {
				t.Errorf("the forge held the run %s", took)
			}
			r := parseStatusRecord(rec)
			if r == nil || r.Posted != tc.posted || r.State != StateSuccess || r.Commit != commitA {
				t.Fatalf("record %q", rec)
			}
			if tc.posted {
				if err != nil {
					t.Errorf("posted, but: %v", err)
				}
				return
			}
			if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), tc.msg) ||
				!strings.HasPrefix(err.Error(), "commit status cronsync/prod-eu/cronsync/web (github) not posted, the next run tries again: ") {
				t.Errorf("error %q, want one line with %q", err, tc.msg)
			}
			if strings.Contains(err.Error()+rec, token) {
				t.Error("the token shows")
			}
			// The next run, the forge well again, posts it.
			before = srv.Requests()
			rec, err = run(t, c, rec, synced(commitA))
			if err != nil || srv.Requests()-before != 1 || !parseStatusRecord(rec).Posted {
				t.Errorf("next run: %v, %d requests, record %q", err, srv.Requests()-before, rec)
			}
			if last, _ := srv.Latest(commitA, "cronsync/prod-eu/cronsync/web"); last.State != "success" {
				t.Errorf("latest %+v", last)
			}
		})
	}
}

// A forge that fails the pending status is not asked again in that run.
func TestCommitStatusPendingFailedSkipsTheOutcome(t *testing.T) {
	srv := forgetest.New(t, GitHub, token)
	c := newStatus(t, GitHub, "https://github.com/ops/cluster", srv, token)
	srv.Fail(forgetest.Fault{Code: 503}, forgetest.Fault{Code: 503})
	rec, err := run(t, c, "", synced(commitA))
	if err == nil || !strings.Contains(err.Error(), "503") || srv.Requests() != 2 {
		t.Fatalf("%v after %d requests", err, srv.Requests())
	}
	if r := parseStatusRecord(rec); r.Posted || r.State != StateSuccess {
		t.Errorf("record %q", rec)
	}
	// The next run sees the commit attempted: no pending, the outcome.
	if _, err := run(t, c, rec, synced(commitA)); err != nil || srv.Requests() != 3 {
		t.Errorf("%v after %d requests", err, srv.Requests())
	}
}

// The token is read on every run: one that cannot be read is a warning,
// and a token fixed in the file is used by the next run.
func TestCommitStatusTokenFile(t *testing.T) {
	srv := forgetest.New(t, Gitea, token)
	c := newStatus(t, Gitea, "https://git.example.com/ops/cluster", srv, "old-token-0123456789")
	secrets := redact.New()
	r := c.Start("cronsync", "web", secrets)
	if got := secrets.Clean("x old-token-0123456789 y"); strings.Contains(got, "old-token") {
		t.Errorf("the token is not registered: %q", got)
	}
	r.ParentRead(context.Background(), nil, commitA)
	rec, err := r.Finish(context.Background(), synced(commitA))
	if err == nil || !strings.Contains(err.Error(), "401") || srv.Requests() != 1 {
		t.Fatalf("%v after %d requests", err, srv.Requests())
	}
	if err := os.WriteFile(c.TokenFile, []byte(token), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, c, rec, synced(commitA)); err != nil || len(srv.Accepted()) != 1 {
		t.Errorf("%v, accepted %v", err, srv.Accepted())
	}
	os.Remove(c.TokenFile)
	if _, err := run(t, c, rec, unhealthy(commitA)); err == nil || !strings.Contains(err.Error(), "reading --commit-status-token-file") {
		t.Errorf("missing token file: %v", err)
	}
}

// What is not known is not posted: a parent never read leaves nothing to
// compare with, and a run that synced no commit has nothing to post.
func TestCommitStatusNothingToPost(t *testing.T) {
	srv := forgetest.New(t, GitHub, token)
	c := newStatus(t, GitHub, "https://github.com/ops/cluster", srv, token)
	r := c.Start("cronsync", "web", redact.New())
	if _, err := r.Finish(context.Background(), synced(commitA)); err == nil || !strings.Contains(err.Error(), "could not be read") {
		t.Errorf("unknown record: %v", err)
	}
	rec := `{"api":"x","context":"cronsync/prod-eu/cronsync/web","commit":"` + commitA + `","posted":true}`
	for _, s := range []*Summary{{Result: "failed", ExitCode: 2, Errors: []string{"cloning: auth"}}, {Result: "skipped", Commit: commitA}} {
		r := c.Start("cronsync", "web", redact.New())
		r.ParentRead(context.Background(), map[string]string{CommitStatusAnnotation: rec}, s.Commit)
		got, err := r.Finish(context.Background(), s)
		if err != nil || got != rec {
			t.Errorf("%s: %v, record %q (want it kept)", s.Result, err, got)
		}
	}
	if srv.Requests() != 0 {
		t.Errorf("%d requests", srv.Requests())
	}
}

// The link's variables are replaced, escaped.
func TestCommitStatusURLTemplate(t *testing.T) {
	srv := forgetest.New(t, GitHub, token)
	c := newStatus(t, GitHub, "https://github.com/ops/cluster", srv, token)
	c.URLTemplate = "https://grafana.example.com/explore?q={cluster}/{namespace}/{applyset}&c={commit}&r={result}&p={path}"
	if _, err := run(t, c, "", unhealthy(commitA)); err != nil {
		t.Fatal(err)
	}
	got := srv.Accepted()
	want := "https://grafana.example.com/explore?q=prod-eu/cronsync/web&c=" + commitA + "&r=%s&p=clusters%2Fprod"
	if got[0].URL != strings.Replace(want, "%s", "pending", 1) || got[1].URL != strings.Replace(want, "%s", "unhealthy", 1) {
		t.Errorf("links %q, %q", got[0].URL, got[1].URL)
	}
}

// The API's address and the repository's name come from --repo, https or
// SSH.
func TestCommitStatusFromRepo(t *testing.T) {
	for _, tc := range []struct{ provider, repo, api, owner, name string }{
		{GitHub, "https://github.com/ops/cluster.git", "https://api.github.com", "ops", "cluster"},
		{GitHub, "git@github.com:ops/cluster.git", "https://api.github.com", "ops", "cluster"},
		{GitHub, "https://x-access-token:abc@ghe.example.com/ops/cluster", "https://ghe.example.com/api/v3", "ops", "cluster"},
		{GitHub, "ssh://git@ghe.example.com:2222/ops/cluster.git", "https://ghe.example.com/api/v3", "ops", "cluster"},
		{GitLab, "https://gitlab.com/group/sub/project.git", "https://gitlab.com/api/v4", "group/sub/project", ""},
		{GitLab, "ssh://git@gitlab.example.com/group/project.git", "https://gitlab.example.com/api/v4", "group/project", ""},
		{Gitea, "http://gitea.local:3000/ops/cluster.git", "http://gitea.local:3000/api/v1", "ops", "cluster"},
		{Gitea, "git@codeberg.org:ops/cluster.git", "https://codeberg.org/api/v1", "ops", "cluster"},
		{Bitbucket, "https://user@bitbucket.org/acme/cluster.git", "https://api.bitbucket.org/2.0", "acme", "cluster"},
		{Bitbucket, "git@bitbucket.org:acme/cluster.git", "https://api.bitbucket.org/2.0", "acme", "cluster"},
		{BitbucketServer, "https://bb.example.com/scm/OPS/cluster.git", "https://bb.example.com", "OPS", "cluster"},
		{BitbucketServer, "https://bb.example.com/bitbucket/scm/OPS/cluster.git", "https://bb.example.com/bitbucket", "OPS", "cluster"},
		{BitbucketServer, "ssh://git@bb.example.com:7999/ops/cluster.git", "https://bb.example.com", "ops", "cluster"},
		{AzureDevOps, "https://acme@dev.azure.com/acme/Platform/_git/cluster", "https://dev.azure.com/acme", "Platform", "cluster"},
		{AzureDevOps, "git@ssh.dev.azure.com:v3/acme/Platform/cluster", "https://dev.azure.com/acme", "Platform", "cluster"},
		{AzureDevOps, "https://acme.visualstudio.com/DefaultCollection/Platform/_git/cluster", "https://acme.visualstudio.com/DefaultCollection", "Platform", "cluster"},
		{AzureDevOps, "https://tfs.example.com/tfs/Main/Platform/_git/cluster", "https://tfs.example.com/tfs/Main", "Platform", "cluster"},
	} {
		c := CommitStatus{Provider: tc.provider, Repo: tc.repo, Cluster: "c", TokenFile: "t"}
		if err := c.Check(); err != nil {
			t.Errorf("%s %s: %v", tc.provider, tc.repo, err)
			continue
		}
		if c.api.String() != tc.api || c.owner != tc.owner || c.name != tc.name {
			t.Errorf("%s %s: api %s, %q %q; want %s, %q %q", tc.provider, tc.repo, c.api, c.owner, c.name, tc.api, tc.owner, tc.name)
		}
	}
	for _, tc := range []struct {
		c    CommitStatus
		want string
	}{
		{CommitStatus{Provider: "jira", Repo: "https://github.com/o/r", Cluster: "c", TokenFile: "t"}, "--commit-status must be one of github, gitlab"},
		{CommitStatus{Provider: GitHub, Repo: "https://github.com/o/r", Cluster: "eu prod", TokenFile: "t"}, `--cluster-name "eu prod" must be letters`},
		{CommitStatus{Provider: GitHub, Repo: "/srv/git/cluster", Cluster: "c", TokenFile: "t"}, "names no forge"},
		{CommitStatus{Provider: GitHub, Repo: "https://github.com/o", Cluster: "c", TokenFile: "t"}, "want the path OWNER/REPO"},
		{CommitStatus{Provider: Bitbucket, Repo: "https://git.example.com/o/r", Cluster: "c", TokenFile: "t"}, "set --commit-status-api"},
		{CommitStatus{Provider: BitbucketServer, Repo: "https://bb.example.com/o/r", Cluster: "c", TokenFile: "t"}, "/scm/PROJECT/REPO"},
		{CommitStatus{Provider: GitHub, Repo: "https://github.com/o/r", Cluster: "c", TokenFile: "t", API: "https://u:p@ghe/api/v3"}, "must hold no credentials"},
		{CommitStatus{Provider: GitHub, Repo: "https://github.com/o/r", Cluster: "c", TokenFile: "t", URLTemplate: "https://x/{sha}"}, "unknown variable {sha}"},
		{CommitStatus{Provider: GitHub, Repo: "https://github.com/o/r", Cluster: "c"}, "needs --commit-status-token-file"},
	} {
		if err := tc.c.Check(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.c, err, tc.want)
		}
	}
}

// The record is JSON a person can read on the parent.
func TestStatusRecordIsJSON(t *testing.T) {
	srv := forgetest.New(t, GitHub, token)
	c := newStatus(t, GitHub, "https://github.com/ops/cluster", srv, token)
	rec, _ := run(t, c, "", synced(commitA))
	var m map[string]any
	if err := json.Unmarshal([]byte(rec), &m); err != nil || m["posted"] != true || m["context"] != "cronsync/prod-eu/cronsync/web" {
		t.Errorf("record %q: %v", rec, err)
	}
}
