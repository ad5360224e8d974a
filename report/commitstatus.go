package report

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/cronsync/cronsync/internal/redact"
)

// The forges a commit status can be posted to, as --commit-status names
// them.
const (
	// GitHub is github.com and GitHub Enterprise Server.
	GitHub = "github"
	// GitLab is gitlab.com and self-managed GitLab.
	GitLab = "gitlab"
	// Gitea is Gitea and Forgejo, whose API is Gitea's.
	Gitea = "gitea"
	// Bitbucket is Bitbucket Cloud.
	Bitbucket = "bitbucket"
	// BitbucketServer is Bitbucket Server and Data Center.
	BitbucketServer = "bitbucketserver"
	// AzureDevOps is Azure DevOps Services and Server.
	AzureDevOps = "azuredevops"
)

// Providers lists the forges in the order --help names them.
var Providers = []string{GitHub, GitLab, Gitea, Bitbucket, BitbucketServer, AzureDevOps}

// CommitStatusAnnotation is where the ApplySet parent records the status
// this sync posted last, and whether the forge took it: the next run
// posts only when its own differs, so a run that changes nothing sends the
// forge nothing.
const CommitStatusAnnotation = "cronsync.dev/last-commit-status"

// Commit status states, as cronsync decides them; each forge has its own
// words for them (see providerState).
const (
	StateSuccess = "success"
	StateFailure = "failure"
	StateError   = "error"
	StatePending = "pending"
)

// URLVariables are what --commit-status-url may hold, each as {name}. They
// are all the same on every run at one commit with one result, so that the
// link never makes a status differ from the one posted last.
var URLVariables = []string{"cluster", "namespace", "applyset", "commit", "result", "path"}

// CommitStatus posts each run's outcome as a status of the commit it
// synced, one status per cluster and sync.
type CommitStatus struct {
	// Provider is one of Providers.
	Provider string
	// Repo is --repo. The repository's name on the forge (owner and
	// name, project path, workspace and slug) comes from its path, and
	// the API's address, unless API is set, from its host.
	Repo string
	// API is the root the provider's documented paths are relative to
	// (https://api.github.com, https://HOST/api/v3, https://HOST/api/v4,
	// https://HOST/api/v1, https://api.bitbucket.org/2.0, https://HOST,
	// https://dev.azure.com/ORG); "" derives it from Repo.
	API string
	// Cluster names the cluster in each status's context.
	Cluster string
	// Path is --path, for the link's {path}.
	Path string
	// URLTemplate is the status's link, with URLVariables replaced; ""
	// links nothing where the forge allows it, and the commit's own page
	// on Bitbucket, which requires a link.
	URLTemplate string
	// TokenFile holds the token, read at the start of every run, so that
	// a rotated token is used without a restart.
	TokenFile string
	// UserAgent is sent with every request (GitHub refuses a request
	// without one).
	UserAgent string
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Attempts is how many times a post is tried in all, when what
	// failed may pass: a connection, a timeout, a 5xx, a short rate
	// limit.
	Attempts int
	// Budget bounds all attempts of one post together, waits included: a
	// forge never holds the run longer.
	Budget time.Duration
	// MaxRetryAfter is the longest Retry-After waited for; a forge that
	// asks for a longer wait is tried again on the next run.
	MaxRetryAfter time.Duration
	// Client sends the requests; nil is http.DefaultClient.
	Client *http.Client

	// What Check resolved: the API root, the web root for default links,
	// and the repository's name in the provider's terms (see parsePath).
	api, web    *url.URL
	owner, name string
}

// DefaultCommitStatus is a CommitStatus with its timeouts: a forge that
// hangs delays the end of a run by Budget at most.
func DefaultCommitStatus() CommitStatus {
	return CommitStatus{Timeout: 5 * time.Second, Attempts: 2, Budget: 12 * time.Second, MaxRetryAfter: 3 * time.Second}
}

// Check validates c and resolves the API's address and the repository's
// name. Its errors are faults of the Job's configuration.
func (c *CommitStatus) Check() error {
	known := false
	for _, p := range Providers {
		known = known || c.Provider == p
	}
	if !known {
		return fmt.Errorf("--commit-status must be one of %s, not %q", strings.Join(Providers, ", "), c.Provider)
	}
	if !validCluster.MatchString(c.Cluster) {
		return fmt.Errorf("--cluster-name %q must be letters, digits, '.', '_' and '-' (it names the cluster in the status's context)", c.Cluster)
	}
	rem, err := parseRemote(c.Repo)
	if err != nil {
		return fmt.Errorf("--commit-status %s: %w", c.Provider, err)
	}
	api, err := rem.resolve(c)
	if err != nil {
		return fmt.Errorf("--commit-status %s: --repo %s: %w", c.Provider, rem.shown, err)
	}
	if c.API != "" {
		u, err := url.Parse(strings.TrimSuffix(c.API, "/"))
		switch {
		case err != nil:
			return fmt.Errorf("--commit-status-api: %w", err)
		case u.Scheme != "https" && u.Scheme != "http" || u.Host == "":
			return fmt.Errorf("--commit-status-api %q must be an http(s) URL", redact.Userinfo(c.API))
		case u.User != nil:
			return fmt.Errorf("--commit-status-api must hold no credentials: put the token in --commit-status-token-file")
		case u.RawQuery != "" || u.Fragment != "":
			return fmt.Errorf("--commit-status-api %q must have no query or fragment", c.API)
		}
		api = u
		if c.Provider == BitbucketServer {
			c.web = u // the server's own address, its pages' too
		}
	}
	if api == nil {
		return fmt.Errorf("--commit-status %s: the API's address cannot be told from --repo %s; set --commit-status-api", c.Provider, rem.shown)
	}
	c.api = api
	if c.URLTemplate != "" {
		if !strings.HasPrefix(c.URLTemplate, "https://") && !strings.HasPrefix(c.URLTemplate, "http://") {
			return fmt.Errorf("--commit-status-url %q must start with https:// or http://", c.URLTemplate)
		}
		for _, m := range placeholder.FindAllStringSubmatch(c.URLTemplate, -1) {
			if !isURLVariable(m[1]) {
				return fmt.Errorf("--commit-status-url: unknown variable {%s}; there are {%s}", m[1], strings.Join(URLVariables, "}, {"))
			}
		}
	}
	if c.TokenFile == "" {
		return fmt.Errorf("--commit-status needs --commit-status-token-file: every forge wants a token to set a status")
	}
	return nil
}

var (
	validCluster = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)
	placeholder  = regexp.MustCompile(`\{([^{}]*)\}`)
)

func isURLVariable(name string) bool {
	for _, v := range URLVariables {
		if v == name {
			return true
		}
	}
	return false
}

// remote is --repo taken apart: where the forge's web pages are, and the
// repository's path there.
type remote struct {
	// web is scheme://host[:port] of the forge's web pages: an SSH
	// address's host on https, without the SSH port.
	web *url.URL
	// host is web's host name alone.
	host string
	ssh  bool
	// path holds the path's segments, a final .git removed.
	path []string
	// shown is --repo as it may be printed.
	shown string
}

func parseRemote(repo string) (*remote, error) {
	r := &remote{shown: redact.Userinfo(repo)}
	var p string
	if i := strings.Index(repo, "://"); i > 0 {
		u, err := url.Parse(repo)
		if err != nil {
			return nil, fmt.Errorf("--repo %s: %s", r.shown, redact.CleanLine(err.Error()))
		}
		switch u.Scheme {
		case "https", "http":
			r.web = &url.URL{Scheme: u.Scheme, Host: u.Host}
		case "ssh", "git+ssh", "ssh+git":
			r.ssh, r.web = true, &url.URL{Scheme: "https", Host: u.Hostname()}
		default:
			return nil, fmt.Errorf("--repo %s names no forge: a commit status needs an https or ssh address", r.shown)
		}
		r.host, p = u.Hostname(), u.Path
	} else if at, path, ok := strings.Cut(repo, ":"); ok && len(at) > 1 && !strings.ContainsAny(at, "/\\") {
		// user@host:path, as git reads it when no slash comes first.
		host := at[strings.LastIndex(at, "@")+1:]
		r.ssh, r.host, r.web, p = true, host, &url.URL{Scheme: "https", Host: host}, path
	} else {
		return nil, fmt.Errorf("--repo %s names no forge: a commit status needs an https or ssh address", r.shown)
	}
	for _, s := range strings.Split(strings.TrimSuffix(strings.Trim(p, "/"), ".git"), "/") {
		if s != "" {
			r.path = append(r.path, s)
		}
	}
	return r, nil
}

// resolve finds the repository's name in the provider's terms, and the
// API's root when the address says where it is (nil when it does not).
func (r *remote) resolve(c *CommitStatus) (*url.URL, error) {
	web := *r.web
	c.web = &web
	at := func(path string) *url.URL { u := web; u.Path = path; return &u }
	p := r.path
	switch c.Provider {
	case GitHub, Gitea:
		if len(p) != 2 {
			return nil, errors.New("want the path OWNER/REPO")
		}
		c.owner, c.name = p[0], p[1]
		switch {
		case c.Provider == Gitea:
			return at("/api/v1"), nil
		case r.host == "github.com":
			return &url.URL{Scheme: "https", Host: "api.github.com"}, nil
		}
		return at("/api/v3"), nil // GitHub Enterprise Server
	case GitLab:
		if len(p) < 2 {
			return nil, errors.New("want the path GROUP[/SUBGROUP...]/PROJECT")
		}
		c.owner = strings.Join(p, "/")
		return at("/api/v4"), nil
	case Bitbucket:
		if len(p) != 2 {
			return nil, errors.New("want the path WORKSPACE/REPO")
		}
		c.owner, c.name = p[0], p[1]
		c.web = &url.URL{Scheme: "https", Host: "bitbucket.org"}
		if r.host == "bitbucket.org" {
			return &url.URL{Scheme: "https", Host: "api.bitbucket.org", Path: "/2.0"}, nil
		}
		return nil, nil
	case BitbucketServer:
		// https://HOST[/CONTEXT]/scm/PROJECT/REPO.git, or over SSH
		// ssh://git@HOST:7999/PROJECT/REPO.git.
		prefix := []string{}
		if !r.ssh {
			i := lastIndex(p, "scm")
			if i < 0 {
				return nil, errors.New("want the path [/CONTEXT]/scm/PROJECT/REPO, as Bitbucket's clone URLs are")
			}
			prefix, p = p[:i], p[i+1:]
		}
		if len(p) != 2 {
			return nil, errors.New("want the path PROJECT/REPO after /scm/ (https) or the host (ssh)")
		}
		c.owner, c.name = p[0], p[1]
		root := at(joinPath(prefix))
		c.web = root
		return root, nil
	case AzureDevOps:
		// https://dev.azure.com/ORG/PROJECT/_git/REPO,
		// https://ORG.visualstudio.com/[COLLECTION/]PROJECT/_git/REPO,
		// https://HOST/COLLECTION/PROJECT/_git/REPO (Server), and over
		// SSH git@ssh.dev.azure.com:v3/ORG/PROJECT/REPO.
		if r.ssh && len(p) == 4 && p[0] == "v3" {
			c.owner, c.name = p[2], p[3]
			c.web = &url.URL{Scheme: "https", Host: "dev.azure.com", Path: "/" + p[1]}
			return c.web, nil
		}
		i := lastIndex(p, "_git")
		if i < 1 || i != len(p)-2 {
			return nil, errors.New("want the path [ORG/]PROJECT/_git/REPO")
		}
		c.owner, c.name = p[i-1], p[i+1]
		c.web = at(joinPath(p[:i-1]))
		return c.web, nil
	}
	return nil, fmt.Errorf("unknown provider %q", c.Provider)
}

func lastIndex(s []string, v string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == v {
			return i
		}
	}
	return -1
}

func joinPath(segs []string) string {
	if len(segs) == 0 {
		return ""
	}
	return "/" + strings.Join(segs, "/")
}

// StatusRun is one run's commit status: what this sync posted last, as
// its ApplySet parent records it, and the pending status of a new commit
// while it is applied.
type StatusRun struct {
	c *CommitStatus
	// namespace and applySet name the sync; context is its status's
	// name on the forge.
	namespace, applySet, context string
	token                        string
	tokenErr                     error

	mu sync.Mutex
	// known: the parent was read (or found absent), so last says what
	// was posted last; lastRaw is the annotation as it was.
	known   bool
	last    *statusRecord
	lastRaw string
	// pending delivers the pending post's outcome; nil if none was sent.
	pending chan error
}

// Start begins a run's commit status for the sync whose ApplySet parent
// is namespace/applySet. It reads the token, and registers it with
// secrets so that no output can show it.
func (c *CommitStatus) Start(namespace, applySet string, secrets *redact.Secrets) *StatusRun {
	r := &StatusRun{c: c, namespace: namespace, applySet: applySet,
		context: "cronsync/" + c.Cluster + "/" + namespace + "/" + applySet}
	b, err := os.ReadFile(c.TokenFile)
	r.token = strings.TrimSpace(string(b))
	switch {
	case err != nil:
		r.tokenErr = fmt.Errorf("reading --commit-status-token-file: %w", err)
	case r.token == "":
		r.tokenErr = fmt.Errorf("--commit-status-token-file %s is empty", c.TokenFile)
	case strings.ContainsAny(r.token, "\r\n"):
		r.tokenErr = fmt.Errorf("--commit-status-token-file %s holds more than one line", c.TokenFile)
	}
	secrets.Add(r.token)
	if _, pw, ok := strings.Cut(r.token, ":"); ok {
		secrets.Add(pw)
	}
	return r
}

// Known says whether ParentRead was called.
func (r *StatusRun) Known() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.known
}

// ParentRead takes the ApplySet parent's annotations as the run read them
// (none when it does not exist yet). When commit is not the one this sync
// last posted a status for, it posts that commit as pending, beside the
// apply: a run at the commit posted last sends nothing here.
func (r *StatusRun) ParentRead(ctx context.Context, annotations map[string]string, commit string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.known {
		return
	}
	r.known = true
	r.lastRaw = annotations[CommitStatusAnnotation]
	r.last = parseStatusRecord(r.lastRaw)
	if commit == "" || r.tokenErr != nil || (r.last != nil && r.last.Commit == commit && r.last.Context == r.context) {
		return
	}
	st := r.record(commit, StatePending, "applying commit "+commit[:min(12, len(commit))], "")
	ch := make(chan error, 1)
	r.pending = ch
	// Not stopped with the run: a SIGTERM ends the apply, and the status
	// that says so comes after this one.
	ctx = context.WithoutCancel(ctx)
	go func() { ch <- r.post(ctx, st) }()
}

// Finish posts the run's outcome unless this sync posted the same status
// (commit, state, description, link) last, and returns the record to keep
// on the ApplySet parent ("" when nothing is known to keep). Its error,
// one line, is a warning: a forge that is down, slow, rate-limited or
// refuses the token never changes the run's exit status, and the record
// says the status was not posted, so that the next run tries again.
func (r *StatusRun) Finish(ctx context.Context, s *Summary) (string, error) {
	r.mu.Lock()
	pending, known, last, raw := r.pending, r.known, r.last, r.lastRaw
	r.mu.Unlock()
	var err error
	if pending != nil {
		select {
		case err = <-pending:
		case <-ctx.Done():
			err = context.Cause(ctx)
		}
	}
	// A run that did not sync a commit has no status to set.
	if s.Commit == "" || s.Result == "skipped" || s.Result == "dry run" {
		return raw, nil
	}
	fail := func(err error) error {
		return fmt.Errorf("commit status %s (%s) not posted, the next run tries again: %w", r.context, r.c.Provider, err)
	}
	if !known {
		return "", fail(errors.New("what this sync posted last could not be read from its ApplySet parent"))
	}
	state := stateOf(s)
	want := r.record(s.Commit, state, s.StatusLine(), s.Result)
	if last != nil && last.Posted && last.same(want) {
		return raw, nil
	}
	// A forge that just failed the pending status is not asked again:
	// one warning, and no second wait.
	if r.tokenErr != nil {
		err = r.tokenErr
	}
	if err == nil {
		err = r.post(ctx, want)
	}
	want.Posted = err == nil
	if err != nil {
		want.Error = redact.CleanLine(err.Error())
		err = fail(err)
	}
	return want.encode(), err
}

// stateOf is the status a run's exit code makes: 0 synced and healthy, 1
// could not finish (retryable), anything else (2, 3, 4, 6) failed.
func stateOf(s *Summary) string {
	switch s.ExitCode {
	case 0:
		return StateSuccess
	case 1:
		return StateError
	}
	return StateFailure
}

// StatusLine is the run's one-line summary as a commit status shows it:
// what it would say again on every run at this commit with this result.
// Duration and the counts of what changed are left out: a run that
// changes nothing would otherwise always have something new to say.
func (s *Summary) StatusLine() string {
	total := 0
	for a, n := range s.Counts {
		if a != "pruned" {
			total += n
		}
	}
	first := ""
	if len(s.Errors) > 0 {
		first = firstLine(s.Errors[0])
	}
	switch {
	case s.ExitCode == 0:
		line := fmt.Sprintf("synced: %d objects", total)
		if s.Path != "." && s.Path != "" {
			line = fmt.Sprintf("synced %s: %d objects", s.Path, total)
		}
		if s.Health != nil {
			line += fmt.Sprintf(", %d ready", s.Health.Ready)
		}
		return line
	case s.Result == "unhealthy":
		if s.Health != nil && s.Health.Unhealthy != "" {
			first = firstLine(s.Health.Unhealthy)
		}
		return "not healthy: " + first
	case s.ExitCode == 1:
		return "could not finish: " + first
	}
	return "failed: " + first
}

// statusRecord is a status as the ApplySet parent records it.
type statusRecord struct {
	// API and Context say where it went; a status for another forge or
	// context is not the one posted.
	API         string `json:"api"`
	Context     string `json:"context"`
	Commit      string `json:"commit"`
	State       string `json:"state"`
	Description string `json:"description"`
	URL         string `json:"url,omitempty"`
	// Posted: the forge took it. A status that was not posted is tried
	// again by the next run.
	Posted bool `json:"posted"`
	// Error is why it was not posted.
	Error string `json:"error,omitempty"`
}

func (r *StatusRun) record(commit, state, description, result string) statusRecord {
	return statusRecord{
		API: r.c.api.String(), Context: r.context, Commit: commit, State: state,
		Description: cut(description, descriptionLimit(r.c.Provider)),
		URL:         r.link(commit, result),
	}
}

func (a statusRecord) same(b statusRecord) bool {
	return a.API == b.API && a.Context == b.Context && a.Commit == b.Commit && a.State == b.State &&
		a.Description == b.Description && a.URL == b.URL
}

func (a statusRecord) encode() string {
	b, _ := json.Marshal(a)
	return string(b)
}

func parseStatusRecord(s string) *statusRecord {
	if s == "" {
		return nil
	}
	var r statusRecord
	if json.Unmarshal([]byte(s), &r) != nil {
		return nil
	}
	return &r
}

// descriptionLimit is the longest description the provider takes, in
// characters: GitHub refuses more than 140; 255 is the others' column
// size, or short enough to read where they set none.
func descriptionLimit(provider string) int {
	if provider == GitHub {
		return 140
	}
	return 255
}

// bitbucketKeyLimit is the longest key Bitbucket takes.
const bitbucketKeyLimit = 40

// cut shortens s to n characters, an ellipsis showing where.
func cut(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}

// link is the status's target URL: the template with its variables
// replaced, or for Bitbucket, which requires one, the commit's page.
func (r *StatusRun) link(commit, result string) string {
	if r.c.URLTemplate == "" {
		switch r.c.Provider {
		case Bitbucket:
			return r.c.web.JoinPath(r.c.owner, r.c.name, "commits", commit).String()
		case BitbucketServer:
			return r.c.web.JoinPath("projects", r.c.owner, "repos", r.c.name, "commits", commit).String()
		}
		return ""
	}
	if result == "" {
		result = "pending"
	}
	vars := map[string]string{"cluster": r.c.Cluster, "namespace": r.namespace, "applyset": r.applySet,
		"commit": commit, "result": result, "path": r.c.Path}
	// Escaped for a query, and so for a path too: a space is %20, not +.
	return placeholder.ReplaceAllStringFunc(r.c.URLTemplate, func(m string) string {
		return strings.ReplaceAll(url.QueryEscape(vars[m[1:len(m)-1]]), "+", "%20")
	})
}

// providerState is state in the provider's words. GitLab and Bitbucket
// have no "error": a run that could not finish is a failure there, and its
// description says which.
func providerState(provider, state string) string {
	switch provider {
	case GitLab:
		return map[string]string{StateSuccess: "success", StateFailure: "failed", StateError: "failed", StatePending: "running"}[state]
	case Bitbucket, BitbucketServer:
		return map[string]string{StateSuccess: "SUCCESSFUL", StateFailure: "FAILED", StateError: "FAILED", StatePending: "INPROGRESS"}[state]
	case AzureDevOps:
		return map[string]string{StateSuccess: "succeeded", StateFailure: "failed", StateError: "error", StatePending: "pending"}[state]
	}
	return state // GitHub's and Gitea's words are cronsync's
}

// azureAPIVersion is the oldest version of the Statuses API that Azure
// DevOps Services and Server 2020 and later all serve.
const azureAPIVersion = "6.0"

// request is the provider's documented call to set st.
func (r *StatusRun) request(st statusRecord) (string, http.Header, []byte, error) {
	c := r.c
	h := http.Header{}
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "application/json")
	h.Set("User-Agent", c.UserAgent)
	state := providerState(c.Provider, st.State)
	var path string
	var body any
	esc := url.PathEscape
	switch c.Provider {
	case GitHub:
		// https://docs.github.com/rest/commits/statuses#create-a-commit-status
		path = "/repos/" + esc(c.owner) + "/" + esc(c.name) + "/statuses/" + st.Commit
		h.Set("Accept", "application/vnd.github+json")
		h.Set("X-GitHub-Api-Version", "2022-11-28")
		h.Set("Authorization", "Bearer "+r.token)
		body = githubStatus{State: state, TargetURL: st.URL, Description: st.Description, Context: st.Context}
	case Gitea:
		// Gitea's swagger: POST /repos/{owner}/{repo}/statuses/{sha}.
		path = "/repos/" + esc(c.owner) + "/" + esc(c.name) + "/statuses/" + st.Commit
		h.Set("Authorization", "token "+r.token)
		body = githubStatus{State: state, TargetURL: st.URL, Description: st.Description, Context: st.Context}
	case GitLab:
		// https://docs.gitlab.com/api/commits/#set-the-pipeline-status-of-a-commit;
		// the project is its URL-encoded path.
		path = "/projects/" + esc(c.owner) + "/statuses/" + st.Commit
		h.Set("PRIVATE-TOKEN", r.token)
		body = gitlabStatus{State: state, Name: st.Context, Description: st.Description, TargetURL: st.URL}
	case Bitbucket:
		// https://developer.atlassian.com/cloud/bitbucket/rest/api-group-commit-statuses/
		path = "/repositories/" + esc(c.owner) + "/" + esc(c.name) + "/commit/" + st.Commit + "/statuses/build"
		r.atlassianAuth(h)
		body = bitbucketStatus{Key: bitbucketKey(st.Context), State: state, Name: st.Context, URL: st.URL, Description: st.Description}
	case BitbucketServer:
		// Bitbucket Server's build status API, 1.0.
		path = "/rest/build-status/1.0/commits/" + st.Commit
		r.atlassianAuth(h)
		body = bitbucketStatus{Key: bitbucketKey(st.Context), State: state, Name: st.Context, URL: st.URL, Description: st.Description}
	case AzureDevOps:
		// https://learn.microsoft.com/rest/api/azure/devops/git/statuses/create;
		// a personal access token goes as Basic, with no user.
		path = "/" + esc(c.owner) + "/_apis/git/repositories/" + esc(c.name) + "/commits/" + st.Commit + "/statuses?api-version=" + azureAPIVersion
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(":"+r.token)))
		name, _ := strings.CutPrefix(st.Context, "cronsync/")
		body = azureStatus{State: state, Description: st.Description, TargetURL: st.URL, Context: azureContext{Name: name, Genre: "cronsync"}}
	}
	b, err := json.Marshal(body)
	return strings.TrimSuffix(c.api.String(), "/") + path, h, b, err
}

// atlassianAuth sends a token as Bearer (Bitbucket's access tokens), or a
// USER:PASSWORD token (an app password, or a user's API token) as Basic.
func (r *StatusRun) atlassianAuth(h http.Header) {
	if user, pw, ok := strings.Cut(r.token, ":"); ok {
		h.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(user+":"+pw)))
		return
	}
	h.Set("Authorization", "Bearer "+r.token)
}

// bitbucketKey is the context as a Bitbucket key, which holds 40
// characters at most: a longer context is hashed (its name still shows
// it whole).
func bitbucketKey(context string) string {
	if len(context) <= bitbucketKeyLimit {
		return context
	}
	sum := sha256.Sum256([]byte(context))
	return "cronsync-" + hex.EncodeToString(sum[:])[:bitbucketKeyLimit-len("cronsync-")]
}

type githubStatus struct {
	State       string `json:"state"`
	TargetURL   string `json:"target_url,omitempty"`
	Description string `json:"description"`
	Context     string `json:"context"`
}

type gitlabStatus struct {
	State       string `json:"state"`
	Name        string `json:"name"`
	Description string `json:"description"`
	TargetURL   string `json:"target_url,omitempty"`
}

type bitbucketStatus struct {
	Key         string `json:"key"`
	State       string `json:"state"`
	Name        string `json:"name"`
	URL         string `json:"url"`
	Description string `json:"description"`
}

type azureStatus struct {
	State       string       `json:"state"`
	Description string       `json:"description"`
	TargetURL   string       `json:"targetUrl,omitempty"`
	Context     azureContext `json:"context"`
}

type azureContext struct {
	Name  string `json:"name"`
	Genre string `json:"genre"`
}

// post sends st, trying again within Budget when what failed may pass.
func (r *StatusRun) post(ctx context.Context, st statusRecord) error {
	target, header, body, err := r.request(st)
	if err != nil {
		return err
	}
	c := r.c
	ctx, cancel := context.WithTimeout(ctx, c.Budget)
	defer cancel()
	var last error
	for attempt := range max(c.Attempts, 1) {
		wait, err := r.try(ctx, target, header, body)
		if err == nil {
			return nil
		}
		last = err
		if wait < 0 || attempt == max(c.Attempts, 1)-1 {
			break
		}
		// Another attempt only if there is time left for it after the
		// wait; it gets what remains, up to Timeout.
		if deadline, _ := ctx.Deadline(); time.Until(deadline) < wait+c.Timeout/5 {
			break
		}
		select {
		case <-ctx.Done():
			return last
		case <-time.After(wait):
		}
	}
	return last
}

// try sends one request. It returns how long to wait before another
// attempt, or a negative wait when another would fail the same way.
func (r *StatusRun) try(ctx context.Context, target string, header http.Header, body []byte) (time.Duration, error) {
	c := r.c
	shown := "POST " + strings.SplitN(target, "?", 2)[0]
	actx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(actx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return -1, err
	}
	req.Header = header.Clone()
	client := c.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		var ne net.Error
		if actx.Err() != nil || (errors.As(err, &ne) && ne.Timeout()) {
			return 500 * time.Millisecond, fmt.Errorf("%s: no answer within %s", shown, c.Timeout)
		}
		return 500 * time.Millisecond, fmt.Errorf("%s: %w", shown, err)
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return 0, nil
	}
	err = fmt.Errorf("%s: %s%s", shown, resp.Status, forgeMessage(msg))
	retryAfter, hasRetryAfter := parseRetryAfter(resp.Header.Get("Retry-After"))
	switch {
	case resp.StatusCode == http.StatusTooManyRequests || (resp.StatusCode == http.StatusForbidden && hasRetryAfter):
		// Rate-limited: worth waiting for only if the wait is short.
		if !hasRetryAfter {
			retryAfter = time.Second
		}
		if retryAfter > c.MaxRetryAfter {
			return -1, fmt.Errorf("%w (rate-limited for %s)", err, retryAfter)
		}
		return retryAfter, err
	case resp.StatusCode >= 500:
		if hasRetryAfter && retryAfter <= c.MaxRetryAfter {
			return retryAfter, err
		}
		return 500 * time.Millisecond, err
	}
	// 401, 403, 404, 422: the token, its scope or the request; another
	// try would be refused alike.
	return -1, err
}

// parseRetryAfter reads Retry-After in seconds or as an HTTP date.
func parseRetryAfter(v string) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n >= 0 {
		return time.Duration(n) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0), true
	}
	return 0, false
}

// forgeMessage is the reason a forge gave for refusing, one line and
// short: GitHub, GitLab, Gitea and Azure say it in "message", Bitbucket
// in "error.message".
func forgeMessage(body []byte) string {
	var m struct {
		Message any `json:"message"`
		Error   struct {
			Message string `json:"message"`
		} `json:"error"`
		Errors []struct {
			Message string `json:"message"`
		} `json:"errors"`
	}
	if json.Unmarshal(body, &m) != nil {
		return ""
	}
	var msg string
	switch v := m.Message.(type) {
	case string:
		msg = v
	case nil:
	default:
		b, _ := json.Marshal(v)
		msg = string(b)
	}
	if msg == "" {
		msg = m.Error.Message
	}
	if msg == "" && len(m.Errors) > 0 {
		msg = m.Errors[0].Message
	}
	if msg == "" {
		return ""
	}
	return ": " + cut(redact.CleanLine(msg), 200)
}
