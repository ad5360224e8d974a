package gitsrc

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"path"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
)

// A commit's submodules are part of what it holds: a run that applied the
// commit without them would say "synced" while part of the repository was
// never read. Write therefore fetches each submodule at exactly the commit
// its gitlink pins, shallow, and writes its tree where the gitlink is, with
// the submodules of that commit in turn, to maxSubmoduleDepth. Everything
// about a submodule comes from the commit itself (its gitlinks and
// .gitmodules), so it is checked as the commit's content: whatever cannot
// be followed safely fails the run, naming the submodule, before anything
// is applied.

// maxSubmoduleDepth bounds how deeply submodules may nest.
const maxSubmoduleDepth = 8

// pinnedSearchDepths are the depths at which a server that hands out only
// advertised refs is searched for a pinned commit: shallow first, as
// `git submodule update` ends up doing, then deeper, within a bound.
var pinnedSearchDepths = []int{1, 64, 1024}

// gitlink is a submodule entry of a tree: where it is and what it pins.
type gitlink struct {
	path string
	hash plumbing.Hash
}

// submoduleErr is a fault in the commit's submodules: exit 3.
func submoduleErr(chain []string, format string, args ...any) error {
	return &classed{class: ErrUnsafe, msg: fmt.Sprintf("submodule %s: %s", strings.Join(chain, " → "), fmt.Sprintf(format, args...))}
}

// writeSubmodules fetches and writes the submodules links names, which the
// tree of commit (in repo, fetched from base) holds, under dir; chain names
// the submodules above.
func (c *Checkout) writeSubmodules(ctx context.Context, w *writer, repo *git.Repository, commit *object.Commit, base, dir string, links []gitlink, chain []string) error {
	if len(links) == 0 {
		return nil
	}
	modules, err := readModules(commit)
	if err != nil {
		return submoduleErr(append(chain, links[0].path), ".gitmodules: %v", err)
	}
	for _, l := range links {
		here := append(append([]string(nil), chain...), l.path)
		if len(here) > maxSubmoduleDepth {
			return submoduleErr(here, "nested more than %d deep", maxSubmoduleDepth)
		}
		m := modules[l.path]
		if m == nil {
			return submoduleErr(here, "the commit pins %s here, but .gitmodules has no entry for this path", l.hash)
		}
		if !acceptable(m) {
			return submoduleErr(here, "name %q or path %q is not one git would accept", m.Name, m.Path)
		}
		u, err := c.submoduleURL(base, m.URL)
		if err != nil {
			return submoduleErr(here, "%v", err)
		}
		subRepo, subCommit, err := c.fetchPinned(ctx, u, l.hash, here)
		if err != nil {
			return redactErr(u, err)
		}
		subDir := path.Join(dir, l.path)
		nested, err := w.writeTree(ctx, subRepo.Storer, subCommit, subDir)
		if err != nil {
			return redactErr(u, fmt.Errorf("submodule %s: writing commit %s: %w", strings.Join(here, " → "), l.hash, err))
		}
		if err := c.writeSubmodules(ctx, w, subRepo, subCommit, u, subDir, nested, here); err != nil {
			return err
		}
	}
	return nil
}

// readModules parses the commit's .gitmodules, by path.
func readModules(commit *object.Commit) (map[string]*config.Submodule, error) {
	f, err := commit.File(".gitmodules")
	if errors.Is(err, object.ErrFileNotFound) {
		return nil, nil // every gitlink lacks its entry
	}
	if err != nil {
		return nil, err
	}
	text, err := f.Contents()
	if err != nil {
		return nil, err
	}
	return parseModules([]byte(text))
}

// parseModules reads a .gitmodules file, by path.
func parseModules(text []byte) (map[string]*config.Submodule, error) {
	m := config.NewModules()
	if err := m.Unmarshal(text); err != nil {
		return nil, err
	}
	out := map[string]*config.Submodule{}
	for name, s := range m.Submodules {
		s.Name = name
		out[path.Clean(s.Path)] = s
	}
	return out, nil
}

// acceptable says whether git would follow a .gitmodules entry: a name and
// a path that cannot be taken for an option, and a path inside the tree.
func acceptable(m *config.Submodule) bool {
	return !strings.HasPrefix(m.Name, "-") && !strings.HasPrefix(m.Path, "-") && filepath.IsLocal(m.Path) && m.Validate() == nil
}

// submoduleURL resolves a .gitmodules URL against the URL its repository
// was fetched from, as git does (../lib.git is a sibling of the parent),
// and refuses what git itself would not follow by default.
func (c *Checkout) submoduleURL(base, raw string) (string, error) {
	if raw == "" || strings.HasPrefix(raw, "-") {
		return "", fmt.Errorf("URL %q is not one git would accept", raw)
	}
	u := raw
	if strings.HasPrefix(raw, "./") || strings.HasPrefix(raw, "../") {
		var err error
		if u, err = resolveRelative(base, raw); err != nil {
			return "", err
		}
	}
	_, topLocal := localPath(c.opts.URL)
	if _, local := localPath(u); local {
		// git's protocol.file.allow=user (CVE-2022-39253): a repository
		// from elsewhere must not make us read this machine's files.
		if !topLocal {
			return "", fmt.Errorf("URL %s is on this machine, and --repo is not", Redact(u))
		}
		return u, nil
	}
	if isSCPLike(u) {
		return u, nil
	}
	p, err := url.Parse(u)
	if err != nil {
		// url.Error quotes the whole URL, password and all.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return "", fmt.Errorf("URL %s: %v", Redact(u), err)
	}
	switch p.Scheme {
	case "https", "ssh":
		return u, nil
	case "http":
		if top, err := url.Parse(c.opts.URL); err == nil && top.Scheme == "http" {
			return u, nil
		}
		return "", fmt.Errorf("URL %s is plain http, and --repo is not", Redact(u))
	}
	return "", fmt.Errorf("URL %s: scheme %q is not followed (https, http where --repo is, ssh)", Redact(u), p.Scheme)
}

// resolveRelative joins a ./ or ../ URL to base, treating base as a
// directory, as git does.
func resolveRelative(base, rel string) (string, error) {
	if strings.Contains(base, "://") {
		p, err := url.Parse(base)
		if err != nil {
			// Joined as a path, its "//" would collapse and the URL
			// would become a path on this machine.
			return "", fmt.Errorf("URL %q is relative to %s, which does not parse", rel, Redact(base))
		}
		p.Path = path.Join("/", p.Path, rel)
		return p.String(), nil
	}
	if isSCPLike(base) {
		colon := strings.Index(base, ":")
		return base[:colon+1] + path.Join(base[colon+1:], rel), nil
	}
	local, _ := localPath(base) // neither a URL nor scp-like: a path
	return filepath.Join(local, filepath.FromSlash(rel)), nil
}

// credentialsFor gives a submodule the run's credentials only when it is
// at the same scheme, host and port as --repo, as git scopes credentials;
// elsewhere (another port of the same host is another server) it gets none
// (the CA bundle and known_hosts, which are no secrets, still apply).
func (c *Checkout) credentialsFor(u string) Credentials {
	creds := c.opts.Credentials
	if sameServer(c.opts.URL, u) {
		return creds
	}
	return Credentials{CAFile: creds.CAFile, SSHKnownHostsFile: creds.SSHKnownHostsFile}
}

// defaultPorts are the ports a URL without one means.
var defaultPorts = map[string]int{"https": 443, "http": 80, "ssh": 22}

// sameServer says whether a and b are served by one server: same scheme,
// host and port, a port left out being the scheme's default.
func sameServer(a, b string) bool {
	ea, err1 := transport.NewEndpoint(a)
	eb, err2 := transport.NewEndpoint(b)
	if err1 != nil || err2 != nil || ea.Host == "" {
		return false
	}
	port := func(e *transport.Endpoint) int {
		if e.Port != 0 {
			return e.Port
		}
		return defaultPorts[e.Protocol]
	}
	return ea.Protocol == eb.Protocol && strings.EqualFold(ea.Host, eb.Host) && port(ea) == port(eb)
}

// fetchPinned fetches the commit h of the repository at u, shallow, into an
// object store of its own.
func (c *Checkout) fetchPinned(ctx context.Context, u string, h plumbing.Hash, chain []string) (*git.Repository, *object.Commit, error) {
	missing := func(where string) error {
		return submoduleErr(chain, "commit %s is not in %s%s (force-pushed away?)", h, Redact(u), where)
	}
	if local, ok := localPath(u); ok {
		repo, err := openLocal(local)
		if err != nil {
			return nil, nil, submoduleErr(chain, "repository %s: %v", local, err)
		}
		commit, err := repo.CommitObject(h)
		if err != nil {
			return nil, nil, missing("")
		}
		return repo, commit, nil
	}
	auth, ca, err := c.credentialsFor(u).auth(u)
	if err != nil {
		return nil, nil, fmt.Errorf("submodule %s: %w", strings.Join(chain, " → "), err)
	}
	c.subStores++
	repo, err := newStore(filepath.Join(c.tmp, fmt.Sprintf("submodule-%d", c.subStores)), c.opts.Limits.ObjectBytes)
	if err != nil {
		return nil, nil, fmt.Errorf("creating object store: %w", err)
	}
	remote, err := repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{u}})
	if err != nil {
		return nil, nil, submoduleErr(chain, "URL %s: %v", Redact(u), err)
	}
	fetch := func(depth int, specs ...config.RefSpec) error {
		err := remote.FetchContext(ctx, &git.FetchOptions{RefSpecs: specs, Depth: depth, Tags: git.NoTags, Auth: auth, CABundle: ca})
		if errors.Is(err, git.NoErrAlreadyUpToDate) {
			return nil
		}
		return err
	}
	have := func() *object.Commit {
		commit, err := repo.CommitObject(h)
		if err != nil {
			return nil
		}
		return commit
	}
	wrap := func(err error) error {
		return fmt.Errorf("submodule %s: %w", strings.Join(chain, " → "), classifyTransport(u, err))
	}
	err = fetch(1, config.RefSpec("+"+h.String()+":refs/cronsync/pinned"))
	if err == nil {
		if commit := have(); commit != nil {
			return repo, commit, nil
		}
	}
	// The server hands out advertised refs only (plain git http-backend
	// among them), or refused the SHA: look for the commit on its branches
	// and tags. A server that cannot be reached fails here, classified.
	for _, depth := range pinnedSearchDepths {
		if err := fetch(depth, "+refs/heads/*:refs/cronsync/heads/*", "+refs/tags/*:refs/cronsync/tags/*"); err != nil {
			return nil, nil, wrap(err)
		}
		if commit := have(); commit != nil {
			return repo, commit, nil
		}
	}
	return nil, nil, missing(fmt.Sprintf(", nor within %d commits of any of its branches and tags", pinnedSearchDepths[len(pinnedSearchDepths)-1]))
}
