package gitsrc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strings"

	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/capability"
	"github.com/go-git/go-git/v5/plumbing/protocol/packp/sideband"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/plumbing/transport/client"
)

// A run reads --path and what it reaches, which in a monorepo is a small
// part of the commit, yet a depth-1 fetch carries every file of it, for
// every commit anywhere in the repository. With Options.Partial, when the
// server can leave blobs out (the "filter" capability), the commit is
// fetched with its trees only ("filter blob:none", which go-git's Fetch
// does not offer: its upload-pack request does, with the capability set on
// it, else git answers with an empty pack). Files are then fetched by
// their ids, one request per directory that is read: Write fetches
// everything under Path at once, and Need whatever a reader reaches
// outside it (a kustomization's ../base, a chart, a Jsonnet library), as
// it is first read. Nothing the run does not read is fetched or written.
//
// go-git's worktree, Tree.Files and File.Contents assume every blob is in
// the store; none of them is used on such a checkout. Its trees are walked
// here, by walkTree, with the same checks as a whole checkout (every name
// of the commit before the first write), and every pack received, the
// blobs' included, goes through scanPack.
//
// A server that cannot (no filter, or one that will not hand out objects
// by id) gets the whole commit, as without Partial, and so does a run
// whose request for blobs the server refuses, whatever it has written
// already: the files are the same, from another store. Log says which
// fetch a run made, and why.

// extraObjects is how many objects past those asked for a pack of blobs
// may hold. A server has no reason to send any: they are never read (only
// what the tree names is), and past this the pack is refused.
const extraObjects = 16

// maxSymlinks bounds the symlinks one path may pass, as the kernel's
// ELOOP does.
const maxSymlinks = 40

// partial is the state of a checkout fetched without its blobs.
type partial struct {
	r    *remoteRef
	root *os.Root
	w    *writer
	tree *object.Tree
	// complete: directories whose entries are all written; whole:
	// directories written with everything under them.
	complete, whole map[string]bool
	// written: files, symlinks and submodules on disk; links: the
	// symlinks' targets.
	written map[string]bool
	links   map[string]string
	needed  map[string]bool
	// full: the commit was fetched whole after a refusal; every blob is
	// in the store.
	full bool
	// Requests and Blobs count the fetches of blobs, for Stats.
	requests, blobs int
}

// FetchStats says what a partial checkout fetched besides the commit and
// its trees.
type FetchStats struct {
	// Partial: the commit was fetched without its blobs, and Full that it
	// was fetched whole afterwards.
	Partial, Full bool
	// Requests is how many requests for blobs were made, and Blobs how
	// many blobs they asked for.
	Requests, Blobs int
}

// Stats says how the commit's objects were fetched.
func (c *Checkout) Stats() FetchStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.partial
	if p == nil {
		return FetchStats{}
	}
	return FetchStats{Partial: true, Full: p.full, Requests: p.requests, Blobs: p.blobs}
}

func (c *Checkout) log(format string, args ...any) {
	if c.opts.Log != nil {
		c.opts.Log(fmt.Sprintf(format, args...))
	}
}

// newSession opens an upload-pack session, as go-git's Remote does.
func (r *remoteRef) newSession() (transport.UploadPackSession, error) {
	ep, err := transport.NewEndpoint(r.opts.URL)
	if err != nil {
		return nil, err
	}
	ep.CaBundle = r.ca
	cl, err := client.NewClient(ep)
	if err != nil {
		return nil, err
	}
	return cl.NewUploadPackSession(ep, r.auth)
}

// whyNotPartial says why the advertisement rules a partial fetch out, or
// "" when it does not.
func (r *remoteRef) whyNotPartial() string {
	caps := r.adv.Capabilities
	switch {
	case !caps.Supports(capability.Filter):
		return "the server does not offer filter (git: uploadpack.allowFilter)"
	case !caps.Supports(capability.Shallow):
		return "the server does not offer shallow fetches"
	case r.session == nil && !caps.Supports(capability.AllowReachableSHA1InWant) && !caps.Supports(capability.AllowTipSHA1InWant):
		// Over SSH, git's upload-pack hands out objects that no ref
		// points at only when told to; over HTTP it always checks
		// reachability instead, and blobs pass.
		return "the server does not hand out objects by id over this protocol (git: uploadpack.allowAnySHA1InWant)"
	}
	return ""
}

// request is an upload-pack request for wants with the capabilities the
// server offers that this client reads.
func (r *remoteRef) request(wants []plumbing.Hash) *packp.UploadPackRequest {
	req := packp.NewUploadPackRequestFromCapabilities(r.adv.Capabilities)
	// No haves are sent, so a thin pack could only name bases that are
	// not here.
	req.Capabilities.Delete(capability.ThinPack)
	if r.adv.Capabilities.Supports(capability.NoProgress) {
		_ = req.Capabilities.Set(capability.NoProgress)
	}
	req.Wants = wants
	return req
}

// uploadPack sends req and stores the pack it is answered with, through
// scanPack; maxCount bounds its objects (0: any number).
func (r *remoteRef) uploadPack(ctx context.Context, req *packp.UploadPackRequest, maxCount uint32) (err error) {
	s := r.session
	if s == nil {
		// Over SSH a session is one exchange: each request opens one.
		if s, err = r.newSession(); err != nil {
			return err
		}
		defer func() {
			if cerr := s.Close(); err == nil && cerr != nil && ctx.Err() == nil {
				err = cerr
			}
		}()
	}
	resp, err := s.UploadPack(ctx, req)
	if err != nil {
		return err
	}
	defer resp.Close()
	if len(resp.Shallows) > 0 {
		if err := r.repo.Storer.SetShallow(resp.Shallows); err != nil {
			return err
		}
	}
	var pack io.Reader = resp
	switch {
	case req.Capabilities.Supports(capability.Sideband64k):
		pack = sideband.NewDemuxer(sideband.Sideband64k, resp)
	case req.Capabilities.Supports(capability.Sideband):
		pack = sideband.NewDemuxer(sideband.Sideband, resp)
	}
	if cs, ok := r.repo.Storer.(*checkedStorage); ok {
		cs.maxCount = maxCount
	}
	return packfile.UpdateObjectStorage(r.repo.Storer, pack)
}

// fetchTrees fetches want (a commit or a tag) at depth 1 with its trees
// and without blobs.
func (r *remoteRef) fetchTrees(ctx context.Context, want plumbing.Hash) error {
	req := r.request([]plumbing.Hash{want})
	req.Depth = packp.DepthCommits(1)
	req.Filter = packp.FilterBlobNone()
	for _, c := range []capability.Capability{capability.Shallow, capability.Filter} {
		if err := req.Capabilities.Set(c); err != nil {
			return err
		}
	}
	return r.uploadPack(ctx, req, 0)
}

// fetchBlobs fetches blobs by id, in one request.
func (r *remoteRef) fetchBlobs(ctx context.Context, blobs []plumbing.Hash) error {
	return r.uploadPack(ctx, r.request(blobs), uint32(len(blobs))+extraObjects)
}

// fresh is r with an empty object store of its own in dir.
func (r *remoteRef) fresh(dir string) (*remoteRef, error) {
	n := *r
	var err error
	if n.repo, err = newStore(dir, r.opts.Limits.ObjectBytes); err != nil {
		return nil, fmt.Errorf("creating object store: %w", err)
	}
	if n.remote, err = n.repo.CreateRemote(&config.RemoteConfig{Name: "origin", URLs: []string{r.opts.URL}}); err != nil {
		return nil, err
	}
	return &n, nil
}

// mustNotFallBack: a failure that fetching the commit whole would meet as
// well, so it is the run's.
func mustNotFallBack(ctx context.Context, err error) bool {
	return ctx.Err() != nil || errors.Is(err, ErrAuth) || errors.Is(err, ErrTooLarge) ||
		errors.Is(err, transport.ErrAuthenticationRequired) || errors.Is(err, transport.ErrAuthorizationFailed)
}

// fetchRemote fetches the commit r resolved to: without its blobs when
// opts.Partial and the server can, else whole. announced, when not
// empty, is the commit the run has already reported, which a ref that
// moved since must not replace.
func (c *Checkout) fetchRemote(ctx context.Context, r *remoteRef, announced string) (*object.Commit, error) {
	why := ""
	if c.opts.Partial {
		why = r.whyNotPartial()
		want := r.tip
		if want.IsZero() {
			want = plumbing.NewHash(r.want)
		}
		if why == "" {
			commit, err := c.fetchPartial(ctx, r, want)
			if err == nil {
				return commit, nil
			}
			if mustNotFallBack(ctx, err) {
				return nil, classifyTransport(r.opts.URL, err)
			}
			why = fmt.Sprintf("fetching its trees without blobs failed (%v)", redactErr(r.opts.URL, err))
			// The store may hold some of it, and go-git would then
			// find the ref up to date without its blobs.
			if r, err = r.fresh(c.tmp + "/objects-whole"); err != nil {
				return nil, err
			}
		}
		c.log("fetching commit %s whole: %s", displayCommit(announced, r), why)
	}
	return c.fetchWhole(ctx, r, announced)
}

func displayCommit(announced string, r *remoteRef) string {
	switch {
	case announced != "":
		return announced
	case !r.commit.IsZero():
		return r.commit.String()
	case r.want != "":
		return r.want
	}
	return r.name
}

// fetchWhole is the depth-1 fetch of the whole commit.
func (c *Checkout) fetchWhole(ctx context.Context, r *remoteRef, announced string) (*object.Commit, error) {
	if announced != "" {
		commit, err := r.fetchAdvertised(ctx, announced)
		if err != nil {
			return nil, err
		}
		c.repo = r.repo
		return commit, nil
	}
	repo, name, target, err := r.fetch(ctx)
	if err != nil {
		return nil, err
	}
	c.Ref = name
	sha, err := peel(repo, target)
	if err != nil {
		return nil, err
	}
	c.repo, c.Commit, c.target = repo, sha, target
	return repo.CommitObject(plumbing.NewHash(sha))
}

// fetchPartial fetches want with its trees and no blobs.
func (c *Checkout) fetchPartial(ctx context.Context, r *remoteRef, want plumbing.Hash) (*object.Commit, error) {
	if err := r.fetchTrees(ctx, want); err != nil {
		return nil, err
	}
	sha, err := peel(r.repo, want)
	if err != nil {
		return nil, err
	}
	commit, err := r.repo.CommitObject(plumbing.NewHash(sha))
	if err != nil {
		return nil, fmt.Errorf("reading commit %s: %w", sha, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return nil, fmt.Errorf("reading the tree of commit %s: %w", sha, err)
	}
	if c.Ref == "" {
		c.Ref = r.name
		if c.Ref == "" {
			c.Ref = sha
		}
	}
	c.repo, c.Commit, c.target = r.repo, sha, want
	c.partial = &partial{r: r, tree: tree, complete: map[string]bool{}, whole: map[string]bool{},
		written: map[string]bool{}, links: map[string]string{}, needed: map[string]bool{}}
	c.log("fetched commit %s with its trees and no files (the server filters blobs); each file is fetched when it is read", sha)
	return commit, nil
}

// writePartial writes the files under Options.Path. c.mu is held.
func (c *Checkout) writePartial(ctx context.Context) error {
	p := c.partial
	// Every name of the commit is checked before anything is written, as
	// a whole checkout does: the trees are all here.
	var links []gitlink
	err := walkTree(ctx, c.repo.Storer, p.tree, "", func(name string, e object.TreeEntry) error {
		if e.Mode == filemode.Submodule {
			links = append(links, gitlink{path: name, hash: e.Hash})
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := os.Mkdir(c.Dir, 0o755); err != nil {
		return err
	}
	if p.root, err = os.OpenRoot(c.Dir); err != nil {
		return err
	}
	p.w = &writer{root: p.root, limits: c.opts.Limits}
	if err := c.need(ctx, c.opts.Path, true); err != nil {
		return err
	}
	if !c.opts.Submodules {
		for _, l := range links {
			c.Skipped = append(c.Skipped, l.path)
		}
	}
	return nil
}

// Need makes what is at rel (a path from the repository root, with
// forward slashes) readable in Dir as the commit has it: the directories
// on the way, the symlinks the path passes, and at its end a directory's
// entries (whole: everything under it, through its symlinks too, for a
// reader that will not ask again, such as a chart's) or a file with the
// other files of its directory. A path the commit does not hold is left
// absent. Each directory's files are fetched in one request.
//
// A reader of a partial checkout must call Need before it looks at a
// path, a directory it lists included: a directory on disk whose entries
// Need was not asked for may lack some. On a checkout written whole it
// does nothing.
func (c *Checkout) Need(ctx context.Context, rel string, whole bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.partial == nil {
		return nil
	}
	if !c.written {
		return errors.New("the commit's files are not written yet")
	}
	err := c.need(ctx, rel, whole)
	if err != nil {
		return redactErr(c.opts.URL, err)
	}
	return nil
}

func (c *Checkout) need(ctx context.Context, rel string, whole bool) error {
	p := c.partial
	key := fmt.Sprintf("%t\x00%s", whole, rel)
	if p.needed[key] {
		return nil
	}
	if err := c.resolve(ctx, rel, whole, 0); err != nil {
		return err
	}
	p.needed[key] = true
	return nil
}

// resolve walks rel from the root as the kernel would, writing what it
// passes; links counts the symlinks followed so far.
func (c *Checkout) resolve(ctx context.Context, rel string, whole bool, links int) error {
	p := c.partial
	parts := strings.Split(rel, "/")
	dir, tree := "", p.tree
	for i := 0; i < len(parts); i++ {
		name := parts[i]
		switch name {
		case "", ".":
			continue
		case "..":
			if dir == "" {
				return nil // out of the repository: the reader refuses it
			}
			dir = parentDir(dir)
			var err error
			if tree, err = c.treeAt(dir); err != nil {
				return err
			}
			continue
		}
		e := entryOf(tree, name)
		if e == nil {
			return nil // not in the commit: absent on disk too
		}
		here := joinRel(dir, name)
		switch e.Mode {
		case filemode.Dir:
			sub, err := object.GetTree(c.repo.Storer, e.Hash)
			if err != nil {
				return fmt.Errorf("%s: %w", here, err)
			}
			if err := p.root.MkdirAll(here, 0o755); err != nil {
				return err
			}
			dir, tree = here, sub
		case filemode.Symlink:
			if links++; links > maxSymlinks {
				return nil // the reader meets the loop itself
			}
			target, err := c.writeLink(ctx, here, e.Hash)
			if err != nil {
				return err
			}
			if path.IsAbs(target) {
				return nil // the reader refuses it
			}
			// Relative to the link's directory, and on from there.
			parts = append(strings.Split(target, "/"), parts[i+1:]...)
			i = -1
		case filemode.Submodule:
			return c.writeGitlink(ctx, here, e.Hash)
		default:
			return c.ensureDir(ctx, dir, tree)
		}
	}
	if whole {
		return c.ensureTree(ctx, dir, tree, links)
	}
	return c.ensureDir(ctx, dir, tree)
}

func entryOf(tree *object.Tree, name string) *object.TreeEntry {
	for i := range tree.Entries {
		if tree.Entries[i].Name == name {
			return &tree.Entries[i]
		}
	}
	return nil
}

func joinRel(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

func parentDir(dir string) string {
	if i := strings.LastIndexByte(dir, '/'); i >= 0 {
		return dir[:i]
	}
	return ""
}

func diskPath(rel string) string {
	if rel == "" {
		return "."
	}
	return rel
}

// treeAt is the tree of the directory dir, a path of directories only.
func (c *Checkout) treeAt(dir string) (*object.Tree, error) {
	tree := c.partial.tree
	if dir == "" {
		return tree, nil
	}
	for name := range strings.SplitSeq(dir, "/") {
		e := entryOf(tree, name)
		if e == nil || e.Mode != filemode.Dir {
			return nil, fmt.Errorf("%s is not a directory of commit %s", dir, c.Commit)
		}
		var err error
		if tree, err = object.GetTree(c.repo.Storer, e.Hash); err != nil {
			return nil, fmt.Errorf("%s: %w", dir, err)
		}
	}
	return tree, nil
}

// ensureDir writes dir's entries: its files and symlinks, fetched in one
// request; its directories, empty until they are needed; its submodules.
func (c *Checkout) ensureDir(ctx context.Context, dir string, tree *object.Tree) error {
	p := c.partial
	if p.complete[dir] {
		return nil
	}
	var blobs []plumbing.Hash
	for _, e := range tree.Entries {
		if e.Mode != filemode.Dir && e.Mode != filemode.Submodule && !p.written[joinRel(dir, e.Name)] {
			blobs = append(blobs, e.Hash)
		}
		if e.Mode == filemode.Submodule {
			blobs = c.withModules(blobs)
		}
	}
	if err := c.fetchBlobs(ctx, blobs); err != nil {
		return err
	}
	if err := p.root.MkdirAll(diskPath(dir), 0o755); err != nil {
		return err
	}
	for _, e := range tree.Entries {
		if err := c.writeEntry(ctx, joinRel(dir, e.Name), e); err != nil {
			return err
		}
	}
	p.complete[dir] = true
	return nil
}

// ensureTree writes everything under dir, fetched in one request, then
// what its symlinks point at, whole.
func (c *Checkout) ensureTree(ctx context.Context, dir string, tree *object.Tree, links int) error {
	p := c.partial
	if p.whole[dir] {
		return nil
	}
	type entry struct {
		name string
		e    object.TreeEntry
	}
	var entries []entry
	var blobs []plumbing.Hash
	err := walkTree(ctx, c.repo.Storer, tree, dir, func(name string, e object.TreeEntry) error {
		entries = append(entries, entry{name, e})
		switch {
		case e.Mode == filemode.Submodule:
			blobs = c.withModules(blobs)
		case e.Mode != filemode.Dir && !p.written[name]:
			blobs = append(blobs, e.Hash)
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := c.fetchBlobs(ctx, blobs); err != nil {
		return err
	}
	if err := p.root.MkdirAll(diskPath(dir), 0o755); err != nil {
		return err
	}
	var symlinks []string
	for _, it := range entries {
		if err := c.writeEntry(ctx, it.name, it.e); err != nil {
			return err
		}
		if it.e.Mode == filemode.Symlink {
			symlinks = append(symlinks, it.name)
		}
	}
	p.whole[dir], p.complete[dir] = true, true
	for _, it := range entries {
		if it.e.Mode == filemode.Dir {
			p.whole[it.name], p.complete[it.name] = true, true
		}
	}
	// A reader of the whole directory follows its symlinks too.
	for _, l := range symlinks {
		if target := p.links[l]; !path.IsAbs(target) && links < maxSymlinks {
			if err := c.resolve(ctx, parentDir(l)+"/"+target, true, links+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// withModules adds .gitmodules to blobs, for a submodule to be followed.
func (c *Checkout) withModules(blobs []plumbing.Hash) []plumbing.Hash {
	if !c.opts.Submodules || c.partial.written[".gitmodules"] {
		return blobs
	}
	if e := entryOf(c.partial.tree, ".gitmodules"); e != nil && e.Mode.IsFile() {
		return append(blobs, e.Hash)
	}
	return blobs
}

// writeEntry writes one entry of the commit at name, once.
func (c *Checkout) writeEntry(ctx context.Context, name string, e object.TreeEntry) error {
	p := c.partial
	switch e.Mode {
	case filemode.Dir:
		err := p.root.Mkdir(name, 0o755)
		if errors.Is(err, os.ErrExist) {
			return nil
		}
		return err
	case filemode.Symlink:
		_, err := c.writeLink(ctx, name, e.Hash)
		return err
	case filemode.Submodule:
		return c.writeGitlink(ctx, name, e.Hash)
	}
	if p.written[name] {
		return nil
	}
	out, err := p.root.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	err = p.w.copyBlob(c.repo.Storer, name, e.Hash, out)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	p.written[name] = err == nil
	return err
}

// writeLink writes the symlink name, once, and returns its target.
func (c *Checkout) writeLink(ctx context.Context, name string, h plumbing.Hash) (string, error) {
	p := c.partial
	if p.written[name] {
		return p.links[name], nil
	}
	if err := c.fetchBlobs(ctx, []plumbing.Hash{h}); err != nil {
		return "", err
	}
	var target strings.Builder
	if err := p.w.copyBlob(c.repo.Storer, name, h, &target); err != nil {
		return "", err
	}
	if err := p.root.Symlink(target.String(), name); err != nil {
		return "", err
	}
	p.written[name], p.links[name] = true, target.String()
	return target.String(), nil
}

// writeGitlink writes the submodule at name whole, as a whole checkout
// does, or leaves it out (Skipped lists it).
func (c *Checkout) writeGitlink(ctx context.Context, name string, h plumbing.Hash) error {
	p := c.partial
	if !c.opts.Submodules || p.written[name] {
		return nil
	}
	if err := c.fetchBlobs(ctx, c.withModules(nil)); err != nil {
		return err
	}
	p.written[name] = true
	p.whole[name], p.complete[name] = true, true
	return c.writeSubmodules(ctx, p.w, c.repo, c.commit, c.opts.URL, ".", []gitlink{{path: name, hash: h}}, nil)
}

// FetchBlobs makes the blobs (by hash, as Entries lists them) readable
// by ReadBlob, in one request for those not here yet.
func (c *Checkout) FetchBlobs(ctx context.Context, hashes []string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.partial == nil {
		return nil
	}
	blobs := make([]plumbing.Hash, len(hashes))
	for i, h := range hashes {
		blobs[i] = plumbing.NewHash(h)
	}
	return redactErr(c.opts.URL, c.fetchBlobs(ctx, blobs))
}

// fetchBlobs fetches those of blobs that are not here yet, in one
// request. If the server will not hand them out, the commit is fetched
// whole instead. c.mu is held.
func (c *Checkout) fetchBlobs(ctx context.Context, blobs []plumbing.Hash) error {
	p := c.partial
	seen := map[plumbing.Hash]bool{}
	var missing []plumbing.Hash
	for _, h := range blobs {
		if !seen[h] && c.repo.Storer.HasEncodedObject(h) != nil {
			missing = append(missing, h)
		}
		seen[h] = true
	}
	if len(missing) == 0 || p.full {
		return nil
	}
	err := p.r.fetchBlobs(ctx, missing)
	p.requests++
	p.blobs += len(missing)
	if err == nil {
		for _, h := range missing {
			if c.repo.Storer.HasEncodedObject(h) != nil {
				err = fmt.Errorf("the server did not send blob %s", h)
				break
			}
		}
	}
	if err == nil {
		return nil
	}
	if mustNotFallBack(ctx, err) {
		return classifyTransport(c.opts.URL, err)
	}
	return c.fallBack(ctx, fmt.Sprintf("asking the server for %d files by id failed (%v)", len(missing), redactErr(c.opts.URL, err)))
}

// fallBack fetches the commit whole into a store of its own, and reads
// every blob from there on. c.mu is held.
func (c *Checkout) fallBack(ctx context.Context, why string) error {
	p := c.partial
	c.log("fetching commit %s whole: %s", c.Commit, why)
	r, err := p.r.fresh(c.tmp + "/objects-whole")
	if err != nil {
		return err
	}
	var commit *object.Commit
	if r.name != "" && !r.tip.IsZero() {
		commit, err = r.fetchAdvertised(ctx, c.Commit)
	} else {
		var target plumbing.Hash
		if _, _, target, err = r.fetch(ctx); err == nil {
			var sha string
			if sha, err = peel(r.repo, target); err == nil && sha != c.Commit {
				err = fmt.Errorf("the ref now points at commit %s, not %s", sha, c.Commit)
			}
			if err == nil {
				commit, err = r.repo.CommitObject(plumbing.NewHash(c.Commit))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("fetching commit %s whole after %s: %w", c.Commit, why, err)
	}
	tree, err := commit.Tree()
	if err != nil {
		return err
	}
	p.r, p.tree, p.full = r, tree, true
	c.repo, c.commit = r.repo, commit
	return nil
}
