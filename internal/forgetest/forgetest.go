// Package forgetest is a forge for tests: an HTTP server that implements
// the commit status endpoint of GitHub, GitLab, Gitea, Bitbucket Cloud,
// Bitbucket Server and Azure DevOps as each provider documents it, and
// refuses, as the provider would, any request that is off the
// documentation: another method or path, a missing or wrong header, an
// unknown or missing field, a state the provider does not have, a value
// over its limit, or a token it does not know. It keeps what it accepted,
// and can be told to fail the next requests the ways a forge fails.
package forgetest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// Status is one status the forge accepted.
type Status struct {
	// Repo is the repository as the path named it: OWNER/REPO, the GitLab
	// project's path, WORKSPACE/SLUG, PROJECT/REPO (Azure); empty for
	// Bitbucket Server, whose endpoint names the commit alone.
	Repo   string
	Commit string
	// Context is the status's context, name (GitLab) or key (Bitbucket);
	// GENRE/NAME for Azure.
	Context string
	// Name is Bitbucket's display name; empty elsewhere.
	Name string
	// State is in the provider's own words.
	State       string
	Description string
	URL         string
}

// Fault is how the forge answers one request instead of taking it.
type Fault struct {
	// Code is the status to answer with (500, 429, 401, ...).
	Code int
	// RetryAfter, if set, is sent as the Retry-After header.
	RetryAfter string
	// Hang holds the request this long before answering 504; the client
	// is expected to give up first.
	Hang time.Duration
}

// Server is one forge of one provider.
type Server struct {
	*httptest.Server
	// Provider is the report package's name for it.
	Provider string

	mu       sync.Mutex
	token    string
	requests int
	accepted []Status
	rejected []string
	faults   []Fault
}

// New starts a forge of provider that accepts token, until the test ends.
func New(t testing.TB, provider, token string) *Server {
	s := &Server{Provider: provider, token: token}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	t.Cleanup(s.Close)
	return s
}

// API is the root the provider's documented paths are relative to, as
// --commit-status-api takes it.
func (s *Server) API() string {
	switch s.Provider {
	case "gitlab":
		return s.URL + "/api/v4"
	case "gitea":
		return s.URL + "/api/v1"
	case "bitbucket":
		return s.URL + "/2.0"
	case "bitbucketserver":
		return s.URL + "/bitbucket" // a context path, as Server allows
	case "azuredevops":
		return s.URL + "/acme"
	}
	return s.URL
}

// SetToken changes the token the forge accepts.
func (s *Server) SetToken(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.token = token
}

// Fail makes the next requests, one each, answer as faults say.
func (s *Server) Fail(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, faults...)
}

// Requests is how many requests the forge got, of any kind.
func (s *Server) Requests() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests
}

// Accepted is every status the forge took, in order.
func (s *Server) Accepted() []Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.accepted)
}

// Rejected says why each request off the documentation was refused (a
// wrong token aside).
func (s *Server) Rejected() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rejected)
}

// Latest is the last status accepted for commit and context, as the
// commit's page shows it; ok is false if there is none.
func (s *Server) Latest(commit, context string) (Status, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i := len(s.accepted) - 1; i >= 0; i-- {
		if a := s.accepted[i]; a.Commit == commit && a.Context == context {
			return a, true
		}
	}
	return Status{}, false
}

// refusal is an answer the provider documents for a request it will not
// take.
type refusal struct {
	code int
	msg  string
}

func refuse(code int, format string, args ...any) *refusal {
	return &refusal{code, fmt.Sprintf(format, args...)}
}

func (s *Server) serve(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	s.mu.Lock()
	s.requests++
	var fault *Fault
	if len(s.faults) > 0 {
		fault = &s.faults[0]
		s.faults = s.faults[1:]
	}
	token := s.token
	s.mu.Unlock()
	if fault != nil {
		if fault.Hang > 0 {
			select {
			case <-req.Context().Done():
			case <-time.After(fault.Hang):
			}
			w.WriteHeader(http.StatusGatewayTimeout)
			return
		}
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(fault.Code)
		fmt.Fprintf(w, `{"message":%q}`, http.StatusText(fault.Code))
		return
	}
	st, code, ref := s.check(req, body, token)
	if ref != nil {
		// A token the forge does not know is refused as it would be, but
		// the request is not off the documentation.
		if ref.code != http.StatusUnauthorized {
			s.mu.Lock()
			s.rejected = append(s.rejected, fmt.Sprintf("%s %s: %d %s", req.Method, req.URL.RequestURI(), ref.code, ref.msg))
			s.mu.Unlock()
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(ref.code)
		json.NewEncoder(w).Encode(map[string]string{"message": ref.msg})
		return
	}
	s.mu.Lock()
	s.accepted = append(s.accepted, st)
	s.mu.Unlock()
	if code == http.StatusNoContent {
		w.WriteHeader(code)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]any{"id": len(s.accepted), "state": st.State, "description": st.Description})
}

var sha = `([0-9a-f]{40})`

// Paths as each provider documents them, after its API root (see API).
var (
	githubPath    = regexp.MustCompile(`^/repos/([^/]+)/([^/]+)/statuses/` + sha + `$`)
	giteaPath     = regexp.MustCompile(`^/api/v1/repos/([^/]+)/([^/]+)/statuses/` + sha + `$`)
	gitlabPath    = regexp.MustCompile(`^/api/v4/projects/([^/]+)/statuses/` + sha + `$`)
	bitbucketPath = regexp.MustCompile(`^/2\.0/repositories/([^/]+)/([^/]+)/commit/` + sha + `/statuses/build/?$`)
	bbServerPath  = regexp.MustCompile(`^/bitbucket/rest/build-status/1\.0/commits/` + sha + `$`)
	azurePath     = regexp.MustCompile(`^/acme/([^/]+)/_apis/git/repositories/([^/]+)/commits/` + sha + `/statuses$`)
)

// azureVersions are the api-versions Azure DevOps documents Statuses -
// Create for.
var azureVersions = []string{"5.0", "5.1", "6.0", "7.0", "7.1", "7.2-preview.1"}

// check holds req to the provider's documentation: the status it sets,
// the code the provider answers success with, or why it refuses.
func (s *Server) check(req *http.Request, body []byte, token string) (Status, int, *refusal) {
	var st Status
	if req.Method != http.MethodPost {
		return st, 0, refuse(http.StatusMethodNotAllowed, "method %s", req.Method)
	}
	if ct := req.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		return st, 0, refuse(http.StatusUnsupportedMediaType, "Content-Type %q, want application/json", ct)
	}
	path := req.URL.EscapedPath()
	unescape := func(v string) string { u, _ := url.PathUnescape(v); return u }
	auth := req.Header.Get("Authorization")
	switch s.Provider {
	case "github":
		// docs.github.com: Authorization "Bearer" or "token"; a
		// User-Agent is required; the media type and API version are
		// recommended, and a wrong one is refused.
		m := githubPath.FindStringSubmatch(path)
		if m == nil {
			return st, 0, refuse(http.StatusNotFound, "Not Found")
		}
		if auth != "Bearer "+token && auth != "token "+token {
			return st, 0, refuse(http.StatusUnauthorized, "Bad credentials")
		}
		if ua := req.Header.Get("User-Agent"); !strings.HasPrefix(ua, "cronsync/") {
			return st, 0, refuse(http.StatusForbidden, "Request forbidden by administrative rules. Please make sure your request has a User-Agent header (got %q)", ua)
		}
		if a := req.Header.Get("Accept"); a != "" && a != "application/vnd.github+json" && a != "application/json" {
			return st, 0, refuse(http.StatusUnsupportedMediaType, "Unsupported media type %q", a)
		}
		if v := req.Header.Get("X-GitHub-Api-Version"); v != "" && v != "2022-11-28" && v != "2026-03-10" {
			return st, 0, refuse(http.StatusBadRequest, "API version %q is not supported", v)
		}
		var b struct {
			State       *string `json:"state"`
			TargetURL   *string `json:"target_url"`
			Description *string `json:"description"`
			Context     *string `json:"context"`
		}
		if r := strict(body, &b); r != nil {
			return st, 0, r
		}
		if b.State == nil || !slices.Contains([]string{"error", "failure", "pending", "success"}, *b.State) {
			return st, 0, refuse(http.StatusUnprocessableEntity, "Validation Failed: state %v", deref(b.State))
		}
		if n := utf8.RuneCountInString(deref(b.Description)); n > 140 {
			return st, 0, refuse(http.StatusUnprocessableEntity, "description is too long (maximum is 140 characters)")
		}
		if r := checkURL(deref(b.TargetURL), false); r != nil {
			return st, 0, r
		}
		ctx := deref(b.Context)
		if ctx == "" {
			ctx = "default"
		}
		return Status{Repo: m[1] + "/" + m[2], Commit: m[3], Context: ctx, State: *b.State, Description: deref(b.Description), URL: deref(b.TargetURL)}, http.StatusCreated, nil

	case "gitea":
		// Gitea's swagger: token in "Authorization: token" (or Bearer).
		m := giteaPath.FindStringSubmatch(path)
		if m == nil {
			return st, 0, refuse(http.StatusNotFound, "Not Found")
		}
		if auth != "token "+token && auth != "Bearer "+token {
			return st, 0, refuse(http.StatusUnauthorized, "token is required")
		}
		var b struct {
			State       *string `json:"state"`
			TargetURL   *string `json:"target_url"`
			Description *string `json:"description"`
			Context     *string `json:"context"`
		}
		if r := strict(body, &b); r != nil {
			return st, 0, r
		}
		if b.State == nil || !slices.Contains([]string{"pending", "success", "error", "failure", "warning"}, *b.State) {
			return st, 0, refuse(http.StatusUnprocessableEntity, "invalid state %v", deref(b.State))
		}
		if r := checkURL(deref(b.TargetURL), false); r != nil {
			return st, 0, r
		}
		return Status{Repo: m[1] + "/" + m[2], Commit: m[3], Context: deref(b.Context), State: *b.State, Description: deref(b.Description), URL: deref(b.TargetURL)}, http.StatusCreated, nil

	case "gitlab":
		// docs.gitlab.com, Commits API: the project is its ID or its
		// URL-encoded path; a PRIVATE-TOKEN header (or Bearer).
		m := gitlabPath.FindStringSubmatch(path)
		if m == nil {
			return st, 0, refuse(http.StatusNotFound, "404 Not Found")
		}
		project := unescape(m[1])
		if !strings.Contains(project, "/") && !regexp.MustCompile(`^\d+$`).MatchString(project) {
			return st, 0, refuse(http.StatusNotFound, "404 Project Not Found")
		}
		if req.Header.Get("PRIVATE-TOKEN") != token && auth != "Bearer "+token {
			return st, 0, refuse(http.StatusUnauthorized, "401 Unauthorized")
		}
		var b struct {
			State       *string  `json:"state"`
			Ref         *string  `json:"ref"`
			Name        *string  `json:"name"`
			Context     *string  `json:"context"`
			TargetURL   *string  `json:"target_url"`
			Description *string  `json:"description"`
			Coverage    *float64 `json:"coverage"`
			PipelineID  *int     `json:"pipeline_id"`
		}
		if r := strict(body, &b); r != nil {
			return st, 0, r
		}
		if b.State == nil || !slices.Contains([]string{"pending", "running", "success", "failed", "canceled", "skipped"}, *b.State) {
			return st, 0, refuse(http.StatusBadRequest, "state does not have a valid value")
		}
		if utf8.RuneCountInString(deref(b.Description)) > 255 || utf8.RuneCountInString(deref(b.Name)) > 255 {
			return st, 0, refuse(http.StatusBadRequest, "name or description is too long (maximum is 255 characters)")
		}
		if r := checkURL(deref(b.TargetURL), false); r != nil {
			return st, 0, r
		}
		name := deref(b.Name)
		if name == "" {
			name = deref(b.Context)
		}
		if name == "" {
			name = "default"
		}
		return Status{Repo: project, Commit: m[2], Context: name, State: *b.State, Description: deref(b.Description), URL: deref(b.TargetURL)}, http.StatusCreated, nil

	case "bitbucket", "bitbucketserver":
		// Bitbucket Cloud's commit statuses and Server's build status
		// 1.0: an access token as Bearer, or Basic; key, state and url
		// are required; Cloud keys hold 40 characters at most.
		var m []string
		var repo string
		if s.Provider == "bitbucket" {
			if m = bitbucketPath.FindStringSubmatch(path); m == nil {
				return st, 0, refuse(http.StatusNotFound, "Resource not found")
			}
			repo, m = m[1]+"/"+m[2], m[2:]
		} else if m = bbServerPath.FindStringSubmatch(path); m == nil {
			return st, 0, refuse(http.StatusNotFound, "Resource not found")
		}
		if !atlassianAuth(auth, token) {
			return st, 0, refuse(http.StatusUnauthorized, "Authentication failed")
		}
		var b struct {
			Key         *string `json:"key"`
			State       *string `json:"state"`
			Name        *string `json:"name"`
			URL         *string `json:"url"`
			Description *string `json:"description"`
			Refname     *string `json:"refname"`
		}
		if r := strict(body, &b); r != nil {
			return st, 0, r
		}
		states := []string{"SUCCESSFUL", "FAILED", "INPROGRESS", "STOPPED"}
		if s.Provider == "bitbucketserver" {
			states = []string{"SUCCESSFUL", "FAILED", "INPROGRESS"}
		}
		switch {
		case b.State == nil || !slices.Contains(states, *b.State):
			return st, 0, refuse(http.StatusBadRequest, "state: %v is not a valid choice", deref(b.State))
		case deref(b.Key) == "":
			return st, 0, refuse(http.StatusBadRequest, "key: This field is required.")
		case s.Provider == "bitbucket" && len(*b.Key) > 40:
			return st, 0, refuse(http.StatusBadRequest, "key: Ensure this value has at most 40 characters (it has %d).", len(*b.Key))
		case deref(b.URL) == "":
			return st, 0, refuse(http.StatusBadRequest, "url: This field is required.")
		case utf8.RuneCountInString(deref(b.Description)) > 255 || utf8.RuneCountInString(deref(b.Name)) > 255 || len(*b.Key) > 255:
			return st, 0, refuse(http.StatusBadRequest, "a field holds more than 255 characters")
		}
		if r := checkURL(*b.URL, true); r != nil {
			return st, 0, r
		}
		code := http.StatusCreated
		if s.Provider == "bitbucketserver" {
			code = http.StatusNoContent
		}
		return Status{Repo: repo, Commit: m[1], Context: *b.Key, Name: deref(b.Name), State: *b.State, Description: deref(b.Description), URL: *b.URL}, code, nil

	case "azuredevops":
		// learn.microsoft.com, Git Statuses - Create: api-version in the
		// query; a personal access token as Basic with any user.
		m := azurePath.FindStringSubmatch(path)
		if m == nil {
			return st, 0, refuse(http.StatusNotFound, "The requested resource does not exist")
		}
		if v := req.URL.Query()["api-version"]; len(v) != 1 || !slices.Contains(azureVersions, v[0]) {
			return st, 0, refuse(http.StatusBadRequest, "api-version %v is not supported", v)
		}
		if !strings.HasPrefix(auth, "Basic ") {
			return st, 0, refuse(http.StatusUnauthorized, "a personal access token goes as Basic")
		}
		dec, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(auth, "Basic "))
		if _, pat, _ := strings.Cut(string(dec), ":"); err != nil || pat != token {
			return st, 0, refuse(http.StatusUnauthorized, "TF400813: The user is not authorized to access this resource.")
		}
		var b struct {
			State       *string `json:"state"`
			Description *string `json:"description"`
			TargetURL   *string `json:"targetUrl"`
			Context     *struct {
				Name  *string `json:"name"`
				Genre *string `json:"genre"`
			} `json:"context"`
		}
		if r := strict(body, &b); r != nil {
			return st, 0, r
		}
		if b.State == nil || !slices.Contains([]string{"notSet", "pending", "succeeded", "failed", "error", "notApplicable"}, *b.State) {
			return st, 0, refuse(http.StatusBadRequest, "invalid state %v", deref(b.State))
		}
		if b.Context == nil || deref(b.Context.Name) == "" {
			return st, 0, refuse(http.StatusBadRequest, "context.name is required")
		}
		if r := checkURL(deref(b.TargetURL), false); r != nil {
			return st, 0, r
		}
		ctx := *b.Context.Name
		if g := deref(b.Context.Genre); g != "" {
			ctx = g + "/" + ctx
		}
		return Status{Repo: unescape(m[1]) + "/" + unescape(m[2]), Commit: m[3], Context: ctx, State: *b.State, Description: deref(b.Description), URL: deref(b.TargetURL)}, http.StatusOK, nil
	}
	return st, 0, refuse(http.StatusInternalServerError, "unknown provider %q", s.Provider)
}

// strict decodes body as one JSON object of v's fields and no others.
func strict(body []byte, v any) *refusal {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return refuse(http.StatusBadRequest, "Problems parsing JSON: %v", err)
	}
	if dec.More() {
		return refuse(http.StatusBadRequest, "Problems parsing JSON: trailing data")
	}
	return nil
}

func checkURL(u string, required bool) *refusal {
	if u == "" && !required {
		return nil
	}
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" {
		return refuse(http.StatusBadRequest, "url %q is not a valid http(s) URL", u)
	}
	return nil
}

func atlassianAuth(auth, token string) bool {
	if auth == "Bearer "+token {
		return true
	}
	if b, ok := strings.CutPrefix(auth, "Basic "); ok {
		dec, err := base64.StdEncoding.DecodeString(b)
		return err == nil && string(dec) == token
	}
	return false
}

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
