package main

import (
	"bytes"
	"io"
	"strings"
	"testing"
)

// --commit-status and its flags are checked before anything runs: a
// mistake is exit 2 with one line, as every other flag's.
func TestCommitStatusFlags(t *testing.T) {
	repo := []string{"--repo", "https://github.com/ops/cluster.git", "--commit-status-token-file", "/token"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{append(repo, "--commit-status", "github"), "--commit-status needs --cluster-name (or CRONSYNC_CLUSTER_NAME)"},
		{append(repo, "--commit-status", "gogs", "--cluster-name", "eu"), "--commit-status must be one of github, gitlab, gitea, bitbucket, bitbucketserver, azuredevops, not \"gogs\""},
		{append(repo, "--commit-status", "github", "--cluster-name", "eu", "--applyset", ""), "--commit-status needs --applyset"},
		{append(repo, "--commit-status", "bitbucketserver", "--cluster-name", "eu"), "want the path [/CONTEXT]/scm/PROJECT/REPO"},
		{append(repo, "--commit-status", "github", "--cluster-name", "eu", "--commit-status-url", "https://x/{run}"), "unknown variable {run}"},
		{[]string{"--repo", "/srv/cluster", "--commit-status", "gitlab", "--cluster-name", "eu", "--commit-status-token-file", "/t"}, "names no forge"},
		{repo, "--commit-status-token-file means nothing without --commit-status"},
	} {
		var stdout, stderr bytes.Buffer
		if code := exitCode(mainErr(tc.args, &stdout, &stderr)); code != exitConfig {
			t.Errorf("%v: exit %d, want 2", tc.args, code)
		}
		if got := stderr.String(); !strings.HasPrefix(got, "error: ") || strings.Count(got, "\n") != 1 || !strings.Contains(got, tc.want) {
			t.Errorf("%v: stderr %q, want one line with %q", tc.args, got, tc.want)
		}
	}

	// Every one of them falls back to its environment variable.
	env := map[string]string{
		"CRONSYNC_COMMIT_STATUS": "gitlab", "CRONSYNC_CLUSTER_NAME": "eu-1", "CRONSYNC_COMMIT_STATUS_TOKEN_FILE": "/var/run/forge/token",
		"CRONSYNC_COMMIT_STATUS_API": "https://gitlab.internal/api/v4", "CRONSYNC_COMMIT_STATUS_URL": "https://grafana/d/x?var-cluster={cluster}",
	}
	cfg, err := parseFlags([]string{"--repo", "git@gitlab.example.com:ops/cluster.git"}, func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	cs := cfg.commitStatus
	if cs == nil || cs.Provider != "gitlab" || cs.Cluster != "eu-1" || cs.TokenFile != "/var/run/forge/token" || cs.API != "https://gitlab.internal/api/v4" ||
		cs.URLTemplate != "https://grafana/d/x?var-cluster={cluster}" || !strings.HasPrefix(cs.UserAgent, "cronsync/") {
		t.Errorf("got %+v", cs)
	}
}
