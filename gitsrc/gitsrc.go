// Package gitsrc turns a repository URL and a ref into the files of exactly one
// commit on local disk, using go-git only (no git binary is needed or run).
//
// Remote repositories are fetched shallow (depth 1, one ref, no tags) into an
// on-disk object store, and with Options.Lazy only once the tree is asked for;
// with Options.Partial, from a server that can, without the files, each of
// which is fetched when it is first read (partial.go). Local repositories are
// read in place. Either way only the tree of the resolved commit is written
// out, so the cost of a sync does not grow with the repository's history.
package gitsrc

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cronsync/cronsync/internal/redact"
)

// Errors the caller branches on, through errors.Is. The messages that carry
// them name the repository, ref or path and read on their own.
var (
	// ErrNotFound: the repository, ref or path does not exist. Retrying the
	// same configuration cannot succeed.
	ErrNotFound = errors.New("not found")
	// ErrAuth: the server refused the credentials, or asked for some and none
	// were given.
	ErrAuth = errors.New("authentication failed")
	// ErrUnsafe: the commit contains something that must not be followed,
	// such as a symlink that leaves the repository.
	ErrUnsafe = errors.New("unsafe repository content")
	// ErrTooLarge: an object of the commit, or the files it holds
	// together, are over a limit (Options.Limits).
	ErrTooLarge = errors.New("too large")
)

// classed is an error of one of the classes above whose message is written
// out in full, so the class's own text is not tacked on.
type classed struct {
	class error
	msg   string
	cause error
}

func (e *classed) Error() string        { return e.msg }
func (e *classed) Is(target error) bool { return target == e.class }
func (e *classed) Unwrap() error        { return e.cause }

func notFound(format string, args ...any) error {
	return &classed{class: ErrNotFound, msg: fmt.Sprintf(format, args...)}
}

// Options says what to fetch. The zero value of every field but URL is usable.
type Options struct {
	// URL is an https:// or http:// URL, a file:// URL, or a local path.
	// Credentials embedded in it are never printed (see Redact).
	URL string
	// Ref is a branch, a tag, a full ref name (refs/...) or a full 40-hex
	// commit SHA. Empty means the remote's HEAD.
	Ref string
	// RefSemver, instead of Ref, is a semantic version range: the highest
	// tag in it is used (see semver.go).
	RefSemver string
	// WorkDir is the parent of the temporary directory the checkout is written
	// to; empty means os.TempDir(). In a pod it is an emptyDir because the
	// root filesystem is read-only.
	WorkDir string
	// Credentials for the remote; the zero value means none.
	Credentials Credentials
	// VerifyKeysFile, when set, is an armored PGP public keyring or an SSH
	// allowed_signers file; the commit (or the signed tag) must carry a
	// valid signature by one of its keys, else Clone fails with
	// ErrUnverified and writes nothing.
	VerifyKeysFile string
	// Lazy leaves what a run may not need until it is asked for. The
	// commit's files are written by Write. From a remote whose ref
	// advertisement names the commit (a branch, a tag, HEAD), the commit's
	// objects are fetched by the first Entries or Write, so Clone costs one
	// request. A run that finds it applied this very commit last time
	// needs its SHA, which the advertisement carries, not its objects.
	// With VerifyKeysFile the objects are fetched at once: the signature
	// is in them.
	Lazy bool
	// Submodules makes Write fetch the commit's submodules, recursively,
	// each at the commit its gitlink pins, and write them where they are
	// (see submodule.go). Without it they are left out and listed in
	// Checkout.Skipped.
	Submodules bool
	// Limits bound the objects fetched and the files written.
	Limits Limits
	// Partial fetches a remote commit with its trees and without its
	// files when the server can leave them out, and each file when it is
	// first read (see partial.go): Write writes the files under Path, and
	// Need what a reader reaches outside it. A server that cannot, or
	// that refuses to hand out a file, gets the whole commit fetched, as
	// without Partial.
	Partial bool
	// Path is the directory, from the repository root, whose files Write
	// writes with Partial; empty is the root.
	Path string
	// Log receives a line saying how a remote commit was fetched, and
	// why, with Partial; nil drops it.
	Log func(string)
}

// Checkout is one commit's tree on disk. Close removes it.
type Checkout struct {
	// Dir holds the commit's files and nothing else (no .git), once they
	// are written.
	Dir string
	// Commit is the full SHA of the commit whose tree is in Dir.
	Commit string
	// Ref is the full name Options.Ref resolved to (refs/heads/main,
	// refs/tags/v1), or the SHA itself when a SHA was asked for.
	Ref string

	// Skipped lists the submodules left out because Options.Submodules
	// is off, once Write has run.
	Skipped []string

	tmp  string
	opts Options
	// subStores counts the object stores made for submodules.
	subStores int
	// mu serialises the use of repo, whose object storage go-git does not
	// document as safe for concurrent reads, and the lazy fetch.
	mu     sync.Mutex
	repo   *git.Repository
	commit *object.Commit
	// fetch gets repo and commit when a lazy Clone left that for later.
	fetch func(context.Context) (*git.Repository, *object.Commit, error)
	// target is what the ref points at (a commit or a tag), once fetched.
	target plumbing.Hash
	// partial is set when the commit was fetched without its files.
	partial *partial
	// remote is where the commit comes from, when it is not local.
	remote *remoteRef
	// written is set once the tree is in Dir; err is why it is not (or why
	// the fetch failed: neither is tried twice).
	written bool
	err     error
}

// load makes sure the commit's objects are here; c.mu is held.
func (c *Checkout) load(ctx context.Context) error {
	if c.commit == nil && c.err == nil {
		c.repo, c.commit, c.err = c.fetch(ctx)
	}
	return c.err
}

// Write writes the commit's files to Dir, once; Clone has done it unless
// Options.Lazy was set.
func (c *Checkout) Write(ctx context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.written || c.load(ctx) != nil {
		return c.err
	}
	if c.partial != nil {
		if err := c.writePartial(ctx); err != nil {
			c.err = fmt.Errorf("writing commit %s: %w", c.Commit, err)
			return c.err
		}
		c.written = true
		return nil
	}
	links, err := c.writeAll(ctx)
	if err != nil {
		c.err = fmt.Errorf("writing commit %s: %w", c.Commit, err)
		return c.err
	}
	if !c.opts.Submodules {
		for _, l := range links {
			c.Skipped = append(c.Skipped, l.path)
		}
	}
	c.written = true
	return nil
}

// writeAll writes the commit's tree, and its submodules when asked to,
// into Dir, through one os.Root so that nothing the commit holds can make
// a write land outside it.
func (c *Checkout) writeAll(ctx context.Context) ([]gitlink, error) {
	if err := os.Mkdir(c.Dir, 0o755); err != nil {
		return nil, err
	}
	root, err := os.OpenRoot(c.Dir)
	if err != nil {
		return nil, err
	}
	defer root.Close()
	w := &writer{root: root, limits: c.opts.Limits}
	links, err := w.writeTree(ctx, c.repo.Storer, c.commit, ".")
	if err == nil && c.opts.Submodules {
		err = c.writeSubmodules(ctx, w, c.repo, c.commit, c.opts.URL, ".", links, nil)
	}
	return links, err
}

// Close removes everything Clone wrote.
func (c *Checkout) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if p := c.partial; p != nil && p.root != nil {
		p.root.Close()
	}
	if c.remote != nil && c.remote.session != nil {
		c.remote.session.Close()
	}
	return os.RemoveAll(c.tmp)
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// Clone resolves opts.Ref in opts.URL and writes that commit's tree to a new
// temporary directory (or, with DeferWrite, leaves that to Write).
func Clone(ctx context.Context, opts Options) (_ *Checkout, err error) {
	if opts.URL == "" {
		return nil, notFound("repository URL is empty")
	}
	tmp, err := os.MkdirTemp(opts.WorkDir, "cronsync-")
	if err != nil {
		return nil, fmt.Errorf("creating work directory: %w", err)
	}
	co := &Checkout{Dir: filepath.Join(tmp, "tree"), tmp: tmp, opts: opts}
	defer func() {
		if err != nil {
			_ = co.Close()
			err = redactErr(opts.URL, err)
		}
	}()

	var repo *git.Repository
	var target plumbing.Hash // what the ref points at: a commit or a tag
	if local, ok := localPath(opts.URL); ok {
		repo, err = openLocal(local)
		if errors.Is(err, git.ErrRepositoryNotExists) || errors.Is(err, os.ErrNotExist) {
			return nil, notFound("repository %s not found", local)
		}
		if err != nil {
			return nil, fmt.Errorf("opening repository %s: %w", local, err)
		}
		ref := opts.Ref
		if opts.RefSemver != "" {
			var tags []plumbing.ReferenceName
			if tags, err = localTags(repo); err == nil {
				ref, err = highestTag(tags, opts.RefSemver)
			}
		}
		if err == nil {
			co.Ref, target, err = resolveLocal(repo, ref)
		}
	} else {
		r, err := listRemote(ctx, filepath.Join(tmp, "objects"), opts)
		if err != nil {
			return nil, err
		}
		co.remote = r
		if opts.Lazy && opts.VerifyKeysFile == "" && !r.commit.IsZero() {
			co.Ref, co.Commit = r.name, r.commit.String()
			co.fetch = func(ctx context.Context) (*git.Repository, *object.Commit, error) {
				commit, err := co.fetchRemote(ctx, r, co.Commit)
				if err != nil {
					return nil, nil, redactErr(opts.URL, err)
				}
				return co.repo, commit, nil
			}
			return co, nil
		}
		if _, err := co.fetchRemote(ctx, r, ""); err != nil {
			return nil, err
		}
		repo, target = co.repo, co.target
	}
	if err == nil && co.Commit == "" {
		co.Commit, err = peel(repo, target)
	}
	if err != nil {
		return nil, err
	}
	commit, err := repo.CommitObject(plumbing.NewHash(co.Commit))
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", co.Commit, err)
	}
	if opts.VerifyKeysFile != "" {
		if err := verify(repo, target, commit, opts.VerifyKeysFile); err != nil {
			return nil, &CommitError{Commit: co.Commit, Err: err}
		}
	}
	co.repo, co.commit = repo, commit
	if opts.Lazy {
		return co, nil
	}
	if err := co.Write(ctx); err != nil {
		return nil, err
	}
	return co, nil
}

// localPath reports whether u names a repository on this machine, and where.
func localPath(u string) (string, bool) {
	if p, ok := strings.CutPrefix(u, "file://"); ok {
		return p, true
	}
	if strings.Contains(u, "://") || isSCPLike(u) {
		return "", false
	}
	return u, true
}

// isSCPLike matches git's user@host:path shorthand, which is never a local path.
func isSCPLike(u string) bool {
	at, colon, slash := strings.Index(u, "@"), strings.Index(u, ":"), strings.Index(u, "/")
	return at > 0 && colon > at && (slash < 0 || colon < slash)
}

func resolveLocal(repo *git.Repository, ref string) (name string, target plumbing.Hash, err error) {
	if fullSHA.MatchString(ref) {
		if _, err := repo.CommitObject(plumbing.NewHash(ref)); err != nil {
			return "", target, notFound("ref %q: no such commit", ref)
		}
		return ref, plumbing.NewHash(ref), nil
	}
	candidates := []plumbing.ReferenceName{plumbing.HEAD}
	if ref != "" {
		candidates = refCandidates(ref)
	}
	for _, c := range candidates {
		r, err := repo.Reference(c, true)
		if err != nil {
			continue
		}
		if c == plumbing.HEAD {
			if head, err := repo.Reference(plumbing.HEAD, false); err == nil && head.Type() == plumbing.SymbolicReference {
				c = head.Target()
			}
		}
		return c.String(), r.Hash(), nil
	}
	return "", target, notFound("ref %q: no such branch or tag", displayRef(ref))
}

// refCandidates lists the full names a short ref may stand for, in the order
// git itself tries them.
func refCandidates(ref string) []plumbing.ReferenceName {
	if strings.HasPrefix(ref, "refs/") {
		return []plumbing.ReferenceName{plumbing.ReferenceName(ref)}
	}
	return []plumbing.ReferenceName{
		plumbing.NewBranchReferenceName(ref),
		plumbing.NewTagReferenceName(ref),
	}
}

func displayRef(ref string) string {
	if ref == "" {
		return "HEAD"
	}
	return ref
}

// peel follows annotated tags down to the commit they point at.
func peel(repo *git.Repository, h plumbing.Hash) (string, error) {
	for range 10 {
		obj, err := repo.Storer.EncodedObject(plumbing.AnyObject, h)
		if err != nil {
			return "", fmt.Errorf("object %s: %w", h, err)
		}
		switch obj.Type() {
		case plumbing.CommitObject:
			return h.String(), nil
		case plumbing.TagObject:
			tag, err := object.DecodeTag(repo.Storer, obj)
			if err != nil {
				return "", err
			}
			h = tag.Target
		default:
			return "", fmt.Errorf("%s is a %s, not a commit", h, obj.Type())
		}
	}
	return "", fmt.Errorf("tag chain at %s is too long", h)
}

// remoteRef is opts.Ref as the remote's ref advertisement shows it, with
// an empty object store to fetch it into.
type remoteRef struct {
	opts   Options
	auth   transport.AuthMethod
	ca     []byte
	repo   *git.Repository
	remote *git.Remote
	// name is the full ref name to fetch, or "" for want, a SHA that no
	// advertised ref points at.
	name, want string
	// tip is what name points at as advertised, and commit what it peels
	// to (for a branch or a lightweight tag, tip itself); both are zero
	// when the advertisement does not say.
	tip, commit plumbing.Hash
	// adv is the advertisement, for the capabilities it offers.
	adv *packp.AdvRefs
	// session is the one the advertisement came over, kept for the
	// fetches when the transport answers each request on its own (smart
	// HTTP); nil otherwise.
	session transport.UploadPackSession
}

// advertise reads the remote's ref advertisement, as go-git's
// Remote.List with AppendPeeled lists it.
func (r *remoteRef) advertise(ctx context.Context) ([]*plumbing.Reference, error) {
	s, err := r.newSession()
	if err != nil {
		return nil, err
	}
	if r.adv, err = s.AdvertisedReferencesContext(ctx); err != nil {
		s.Close()
		return nil, err
	}
	if ep, err := transport.NewEndpoint(r.opts.URL); err == nil && (ep.Protocol == "http" || ep.Protocol == "https") {
		r.session = s
	} else if err := s.Close(); err != nil {
		return nil, err
	}
	all, err := r.adv.AllReferences()
	if err != nil {
		return nil, err
	}
	var refs []*plumbing.Reference
	iter, err := all.IterReferences()
	if err != nil {
		return nil, err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		refs = append(refs, ref)
		return nil
	})
	for k, v := range r.adv.Peeled {
		refs = append(refs, plumbing.NewReferenceFromStrings(k+"^{}", v.String()))
	}
	return refs, err
}

// listRemote reads the remote's ref advertisement (one request) and finds
// opts.Ref in it.
func listRemote(ctx context.Context, dir string, opts Options) (*remoteRef, error) {
	r := &remoteRef{opts: opts}
	var err error
	if r.auth, r.ca, err = opts.Credentials.auth(opts.URL); err != nil {
		return nil, err
	}
	if r.repo, err = newStore(dir, opts.Limits.ObjectBytes); err != nil {
		return nil, fmt.Errorf("creating object store: %w", err)
	}
	r.remote, err = r.repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{opts.URL}})
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", Redact(opts.URL), err)
	}
	refs, err := r.advertise(ctx)
	if err != nil {
		return nil, classifyTransport(opts.URL, err)
	}
	ref := opts.Ref
	if opts.RefSemver != "" {
		names := make([]plumbing.ReferenceName, len(refs))
		for i, r := range refs {
			names[i] = r.Name()
		}
		if ref, err = highestTag(names, opts.RefSemver); err != nil {
			return nil, err
		}
	}
	if r.name, r.want, err = pickRef(refs, ref); err != nil {
		return nil, err
	}
	for _, ref := range refs {
		switch ref.Name().String() {
		case r.name:
			r.tip = ref.Hash()
			if r.commit.IsZero() {
				r.commit = ref.Hash()
			}
		case r.name + "^{}":
			r.commit = ref.Hash() // an annotated tag's commit
		}
	}
	if r.name == "" || r.tip.IsZero() {
		r.tip, r.commit = plumbing.ZeroHash, plumbing.ZeroHash
	}
	return r, nil
}

// fetchAdvertised fetches the ref that listRemote resolved to commit. The
// run has already said which commit it applies, and may have decided from
// that alone: if the ref has moved since, that commit is fetched by its
// SHA, which most Git hosts allow, and failing that the run fails.
func (r *remoteRef) fetchAdvertised(ctx context.Context, commit string) (*object.Commit, error) {
	_, _, target, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	now, err := peel(r.repo, target)
	if err != nil {
		return nil, err
	}
	if now != commit {
		err := r.remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: []config.RefSpec{config.RefSpec("+" + commit + ":refs/cronsync/announced")},
			Depth:    1,
			Tags:     git.NoTags,
			Auth:     r.auth,
			CABundle: r.ca,
		})
		switch {
		case errors.Is(err, git.ErrExactSHA1NotSupported):
			return nil, fmt.Errorf("ref %s moved from commit %s to %s while this run read it, and the server does not hand out %s by its SHA; the next run applies the new one", r.name, commit, now, commit)
		case err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate):
			return nil, classifyTransport(r.opts.URL, err)
		}
	}
	c, err := r.repo.CommitObject(plumbing.NewHash(commit))
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", commit, err)
	}
	return c, nil
}

// fetch fetches the ref at depth 1 (only that ref, no tags) and returns its
// full name and what it points at.
func (r *remoteRef) fetch(ctx context.Context) (*git.Repository, string, plumbing.Hash, error) {
	var none plumbing.Hash
	opts, repo, name, want := r.opts, r.repo, r.name, r.want
	local := plumbing.ReferenceName("refs/cronsync/want")
	spec := config.RefSpec("+" + want + ":" + local.String())
	if name != "" {
		spec = config.RefSpec("+" + name + ":" + local.String())
	}
	err := r.remote.FetchContext(ctx, &git.FetchOptions{
		RefSpecs: []config.RefSpec{spec},
		Depth:    1,
		Tags:     git.NoTags,
		Auth:     r.auth,
		CABundle: r.ca,
	})
	if errors.Is(err, git.ErrExactSHA1NotSupported) {
		// The server only hands out advertised refs. Fetch every branch in
		// full and look for the commit there: slow for big histories, but the
		// only way such a server lets us reach an unadvertised commit.
		err = r.remote.FetchContext(ctx, &git.FetchOptions{
			RefSpecs: []config.RefSpec{"+refs/heads/*:refs/cronsync/heads/*"},
			Tags:     git.NoTags,
			Auth:     r.auth,
			CABundle: r.ca,
		})
		if err == nil {
			if _, cerr := repo.CommitObject(plumbing.NewHash(want)); cerr != nil {
				return nil, "", none, notFound("ref %q: no such commit on any branch of %s", want, Redact(opts.URL))
			}
			return repo, want, plumbing.NewHash(want), nil
		}
	}
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return nil, "", none, classifyTransport(opts.URL, err)
	}
	ref, err := repo.Reference(local, true)
	if err != nil {
		return nil, "", none, fmt.Errorf("ref %q: fetched nothing: %w", displayRef(opts.Ref), err)
	}
	if name == "" {
		name = ref.Hash().String()
	}
	return repo, name, ref.Hash(), nil
}

// pickRef finds ref among the advertised refs. It returns the full name to
// fetch, or, for a SHA that is no ref's tip, an empty name and the SHA.
func pickRef(refs []*plumbing.Reference, ref string) (name, want string, err error) {
	byName := make(map[plumbing.ReferenceName]*plumbing.Reference, len(refs))
	for _, r := range refs {
		byName[r.Name()] = r
	}
	switch {
	case ref == "":
		head, ok := byName[plumbing.HEAD]
		if !ok {
			return "", "", notFound("the remote has no HEAD; set --ref")
		}
		if head.Type() == plumbing.SymbolicReference {
			return head.Target().String(), "", nil
		}
		// Servers that do not advertise HEAD's target: pick the branch
		// whose tip HEAD points at, preferring main and master.
		for _, n := range []plumbing.ReferenceName{plumbing.Main, plumbing.Master} {
			if r, ok := byName[n]; ok && r.Hash() == head.Hash() {
				return n.String(), "", nil
			}
		}
		return "", head.Hash().String(), nil
	case fullSHA.MatchString(ref):
		for _, r := range refs {
			if r.Type() == plumbing.HashReference && r.Hash().String() == ref && r.Name().IsBranch() {
				return r.Name().String(), ref, nil
			}
		}
		return "", ref, nil
	default:
		for _, c := range refCandidates(ref) {
			if _, ok := byName[c]; ok {
				return c.String(), "", nil
			}
		}
		return "", "", notFound("ref %q: no such branch or tag", ref)
	}
}

func classifyTransport(u string, err error) error {
	var keyErr *knownhosts.KeyError
	var unknownCA x509.UnknownAuthorityError
	var badHost x509.HostnameError
	var badCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA), errors.As(err, &badHost), errors.As(err, &badCert):
		return authErr("repository %s: the server's TLS certificate is not trusted (see --git-ca-file): %v", Redact(u), err)
	case errors.As(err, &keyErr) && len(keyErr.Want) > 0:
		return authErr("repository %s: the server's host key does not match --ssh-known-hosts-file; refused", Redact(u))
	case errors.As(err, &keyErr):
		return authErr("repository %s: the server's host key is not in --ssh-known-hosts-file; refused", Redact(u))
	case strings.Contains(err.Error(), "ssh: unable to authenticate"):
		return authErr("repository %s: the server refused the SSH key: %v", Redact(u), err)
	case errors.Is(err, transport.ErrRepositoryNotFound):
		return notFound("repository %s not found", Redact(u))
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return notFound("repository %s is empty", Redact(u))
	case errors.Is(err, transport.ErrAuthenticationRequired), errors.Is(err, transport.ErrAuthorizationFailed):
		// The server's reason may end in a newline (http.Error adds one),
		// which would print as an empty error line.
		return &classed{class: ErrAuth, msg: fmt.Sprintf("repository %s: %s", Redact(u), strings.Join(strings.Fields(err.Error()), " ")), cause: err}
	}
	return fmt.Errorf("repository %s: %w", Redact(u), err)
}

// copyFrom copies what open returns into w and closes it.
func copyFrom(open func() (io.ReadCloser, error), w io.Writer) error {
	r, err := open()
	if err != nil {
		return err
	}
	defer r.Close()
	_, err = io.Copy(w, r)
	return err
}

// Redact removes credentials from a URL so that it can be printed: the
// password, or, for HTTP(S) URLs with a user and no password, the user,
// because a token is often given that way. Local paths, scp-like addresses
// and SSH users carry no secrets and are returned unchanged. A URL that
// does not parse (a bad escape or port) is redacted as text, by
// redact.Userinfo: it is printed in the very error that says so.
func Redact(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		// What Userinfo cannot place (no scheme before "://") goes
		// by what URLSecrets finds.
		r := redact.Userinfo(u)
		for _, s := range redact.URLSecrets(u) {
			if s != "" {
				r = strings.ReplaceAll(r, s, "xxxxx")
			}
		}
		return r
	}
	if p.User == nil {
		return u
	}
	if _, ok := p.User.Password(); ok {
		return p.Redacted()
	}
	if p.Scheme == "http" || p.Scheme == "https" {
		p.User = url.User("xxxxx")
		return p.String()
	}
	return u
}

// secrets lists the parts of u that must never be printed.
func secrets(u string) []string {
	p, err := url.Parse(u)
	if err != nil {
		return redact.URLSecrets(u)
	}
	if p.User == nil {
		return nil
	}
	if pw, ok := p.User.Password(); ok {
		return []string{pw, url.QueryEscape(pw), url.PathEscape(pw)}
	}
	if p.Scheme == "http" || p.Scheme == "https" {
		return []string{p.User.Username()}
	}
	return nil
}

// redactErr makes sure no credential from u survives in err's text, even in
// messages that come back from the transport with the URL embedded.
func redactErr(u string, err error) error {
	msg := err.Error()
	clean := msg
	for _, s := range secrets(u) {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "xxxxx")
		}
	}
	if clean == msg {
		return err
	}
	return &redacted{msg: clean, err: err}
}

// redacted keeps the wrapped error for errors.Is while printing clean text.
type redacted struct {
	msg string
	err error
}

func (r *redacted) Error() string { return r.msg }
func (r *redacted) Unwrap() error { return r.err }

// Sub resolves path (relative to the repository root, "." for the root) to a
// directory inside c.Dir. It refuses paths that leave the repository,
// lexically or through a symlink, and paths that do not exist.
func (c *Checkout) Sub(path string) (string, error) {
	if !c.written {
		return "", errors.New("the commit's files are not written yet")
	}
	clean := filepath.Clean(filepath.FromSlash(path))
	if !filepath.IsLocal(clean) {
		return "", notFound("path %q leaves the repository", path)
	}
	root, err := filepath.EvalSymlinks(c.Dir)
	if err != nil {
		return "", err
	}
	full, err := filepath.EvalSymlinks(filepath.Join(root, clean))
	if errors.Is(err, os.ErrNotExist) {
		return "", notFound("path %q does not exist in commit %s", path, c.Commit)
	}
	if err != nil {
		return "", fmt.Errorf("path %q: %w", path, err)
	}
	if rel, err := filepath.Rel(root, full); err != nil || !filepath.IsLocal(rel) {
		return "", &classed{class: ErrUnsafe, msg: fmt.Sprintf("path %q resolves outside the repository through a symlink", path)}
	}
	st, err := os.Stat(full)
	if err != nil {
		return "", err
	}
	if !st.IsDir() {
		return "", notFound("path %q is not a directory in commit %s", path, c.Commit)
	}
	return full, nil
}

// Entry is one entry of the commit's tree other than a directory.
type Entry struct {
	// Path is relative to the repository root, with forward slashes.
	Path string
	// Hash is the Git object ID of its content (a blob, or for a
	// submodule the commit it points at).
	Hash string
	// File: a regular file (executable or not); otherwise a symlink or a
	// submodule, whose content is not a file's.
	File bool
}

// Entries lists the commit's tree, read from Git's objects: no file needs
// to be written for it.
func (c *Checkout) Entries(ctx context.Context) ([]Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.load(ctx); err != nil {
		return nil, err
	}
	tree, err := c.commit.Tree()
	if err != nil {
		return nil, err
	}
	var out []Entry
	err = walkTree(ctx, c.repo.Storer, tree, "", func(name string, e object.TreeEntry) error {
		if e.Mode != filemode.Dir {
			out = append(out, Entry{Path: name, Hash: e.Hash.String(), File: e.Mode.IsFile() && e.Mode != filemode.Symlink})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// ReadBlob returns the content of a file of the commit by its hash, as
// Entries listed it. It is safe to call from several goroutines. It never
// fetches: on a partial checkout, FetchBlobs must have fetched it.
func (c *Checkout) ReadBlob(hash string) ([]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.repo == nil {
		return nil, errors.New("the commit's objects are not fetched yet")
	}
	if c.partial != nil && c.repo.Storer.HasEncodedObject(plumbing.NewHash(hash)) != nil {
		return nil, fmt.Errorf("blob %s is not fetched: FetchBlobs fetches it", hash)
	}
	var b bytes.Buffer
	w := &writer{limits: Limits{ObjectBytes: c.opts.Limits.ObjectBytes}}
	if err := w.copyBlob(c.repo.Storer, hash, plumbing.NewHash(hash), &b); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}
