package render

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/api/types"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

// kustomizationNames are the file names that make a directory a kustomize
// unit, in the order kustomize itself looks for them.
var kustomizationNames = []string{"kustomization.yaml", "kustomization.yml", "Kustomization"}

func kustomizationIn(dir string) string {
	for _, n := range kustomizationNames {
		if st, err := os.Stat(filepath.Join(dir, n)); err == nil && st.Mode().IsRegular() {
			return n
		}
	}
	return ""
}

// kustomize builds the kustomization in dir (a real path inside the
// repository) as `kubectl apply -k` would, but confined to the repository:
// every file it reads must be inside root, exec and container plugins are
// off, and remote resources are refused unless allowRemote, which still
// never lets kustomize run git.
func (r *reader) kustomize(dir, shown, file string) {
	source := pathJoin(shown, file)
	fsys := &confinedFS{FileSystem: filesys.MakeFsOnDisk(), root: r.root, virtual: map[string][]byte{}, r: r}
	if err := r.checkKustomization(dir, dir, map[string]bool{}, fsys); err != nil {
		var me *ManifestError
		if !errors.As(err, &me) {
			err = &ManifestError{Source: source, Err: err}
		}
		r.errs = append(r.errs, err)
		return
	}
	opts := krusty.MakeDefaultOptions()
	opts.LoadRestrictions = types.LoadRestrictionsRootOnly
	opts.PluginConfig = types.DisabledPluginConfig()
	resMap, err := krusty.MakeKustomizer(opts).Run(fsys, dir)
	if fsys.sopsErr != nil {
		// Said as it is: kustomize's wrapping would hide a missing key
		// (the Job's fault) behind a failed build (the commit's).
		r.errs = append(r.errs, fsys.sopsErr)
		return
	}
	if err != nil {
		r.errs = append(r.errs, &ManifestError{Source: source, Err: fmt.Errorf("kustomize: %w", lineError{err})})
		return
	}
	for i, res := range resMap.Resources() {
		m, err := res.Map()
		if err != nil {
			r.errs = append(r.errs, &ManifestError{Source: source, Doc: i + 1, Err: err})
			continue
		}
		u := &unstructured.Unstructured{Object: m}
		if err := checkObject(u); err != nil {
			r.errs = append(r.errs, &ManifestError{Source: source, Doc: i + 1, Err: err})
			continue
		}
		if src := helmSource(u); src != "" {
			r.objs = append(r.objs, &Object{Source: src, Obj: u, Decrypted: fsys.decrypted})
			continue
		}
		r.objs = append(r.objs, &Object{Source: source, Doc: i + 1, Obj: u, Decrypted: fsys.decrypted})
	}
}

// checkKustomization walks the kustomizations dir refers to and refuses
// references that leave the repository or reach the network, before
// kustomize gets to follow them.
// Its helmCharts are rendered on the way (see inflate).
func (r *reader) checkKustomization(top, dir string, seen map[string]bool, fsys *confinedFS) (err error) {
	if seen[dir] {
		return nil
	}
	seen[dir] = true
	r.need(dir, false)
	name := kustomizationIn(dir)
	if name == "" {
		return nil
	}
	// The error names the kustomization at fault when it is a base of the
	// one being built; the caller names the one being built.
	if dir != top {
		defer func() {
			var me *ManifestError
			if err != nil && !errors.As(err, &me) {
				err = fmt.Errorf("%s: %w", r.rel(filepath.Join(dir, name)), err)
			}
		}()
	}
	data, err := os.ReadFile(filepath.Join(dir, name))
	if err != nil {
		return err
	}
	if err := duplicateIn(data, r.rel(filepath.Join(dir, name))); err != nil {
		return err
	}
	var k types.Kustomization
	if err := yaml.Unmarshal(data, &k); err != nil {
		return err
	}
	if err := r.inflate(dir, name, data, &k, fsys); err != nil {
		return err
	}
	// Bases is deprecated, but old kustomizations still use it, and what it
	// names is loaded all the same.
	//lint:ignore SA1019 see above
	for _, ref := range slices.Concat(k.Resources, k.Components, k.Bases) {
		if isRemote(ref) {
			if !r.opts.KustomizeAllowRemote {
				return fmt.Errorf("remote resource %q: pass --kustomize-allow-remote to load resources from the network", ref)
			}
			if looksLikeGit(ref) {
				return fmt.Errorf("remote resource %q is a Git repository: cronsync never runs git; vendor it into this repository", ref)
			}
			continue
		}
		target := filepath.Join(dir, filepath.FromSlash(ref))
		if filepath.IsAbs(ref) || !r.inside(target) {
			return fmt.Errorf("resource %q leaves the repository", ref)
		}
		r.need(target, false)
		real, err := filepath.EvalSymlinks(target)
		if err != nil {
			continue // kustomize reports the missing file with its own words
		}
		if !r.inside(real) {
			return fmt.Errorf("resource %q leaves the repository through a symlink", ref)
		}
		st, err := os.Stat(real)
		switch {
		case err != nil:
		case st.IsDir():
			if err := r.checkKustomization(top, real, seen, fsys); err != nil {
				return err
			}
		case st.Mode().IsRegular() && r.checkSize(st.Size()) == nil:
			// kustomize reads a resource file leniently; see dupkeys.go.
			if data, err := os.ReadFile(real); err == nil {
				if err := duplicateIn(data, r.rel(real)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// isRemote reports whether kustomize would fetch ref from the network:
// a URL, or git's host:path shorthand.
func isRemote(ref string) bool {
	return strings.Contains(ref, "://") || strings.HasPrefix(ref, "git@") ||
		strings.HasPrefix(ref, "github.com/") || strings.HasPrefix(ref, "gitlab.com/") || strings.HasPrefix(ref, "bitbucket.org/")
}

// looksLikeGit reports whether kustomize would clone ref with git rather
// than fetch one file over HTTP.
func looksLikeGit(ref string) bool {
	u, err := url.Parse(ref)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
		return true
	}
	switch {
	case u.Query().Has("ref"), u.Query().Has("version"),
		strings.Contains(u.Path, "//"), strings.Contains(u.Path, ".git"), strings.Contains(u.Path, "/_git/"):
		return true
	}
	ext := strings.ToLower(filepath.Ext(u.Path))
	return ext != ".yaml" && ext != ".yml" && ext != ".json"
}

// confinedFS is the disk, minus everything outside root: kustomize's own
// load restrictions stop at the kustomization's directory, but follow
// symlinks and allow bases anywhere. Files in virtual (by absolute path)
// are seen instead of, or besides, the disk's: the kustomizations whose
// helmCharts cronsync rendered.
//
// Files that SOPS encrypted are decrypted as kustomize reads them, in
// memory: resources, patches and what generators read alike.
type confinedFS struct {
	filesys.FileSystem
	root    string
	virtual map[string][]byte
	r       *reader
	// decrypted: some file of the build was; all its objects count as
	// secret. sopsErr is the first file that could not be.
	decrypted bool
	sopsErr   error
}

// need makes path present on disk before kustomize looks at it (see
// reader.need): kustomize reads nothing but through these methods.
func (f *confinedFS) need(path string, whole bool) {
	if f.r != nil {
		f.r.need(path, whole)
	}
}

func (f *confinedFS) Exists(path string) bool {
	if _, ok := f.virtual[path]; ok {
		return true
	}
	f.need(path, false)
	return f.FileSystem.Exists(path)
}

func (f *confinedFS) IsDir(path string) bool {
	if _, ok := f.virtual[path]; ok {
		return false
	}
	f.need(path, false)
	return f.FileSystem.IsDir(path)
}

func (f *confinedFS) Glob(pattern string) ([]string, error) {
	// The directories up to the first pattern character are listed; past
	// one, everything under them may be.
	dir, whole := filepath.Dir(pattern), false
	if i := strings.IndexAny(pattern, `*?[\`); i >= 0 {
		dir = filepath.Dir(pattern[:i+1])
		whole = strings.ContainsRune(pattern[i:], filepath.Separator)
	}
	f.need(dir, whole)
	return f.FileSystem.Glob(pattern)
}

func (f *confinedFS) Walk(path string, walkFn filepath.WalkFunc) error {
	f.need(path, true)
	return f.FileSystem.Walk(path, walkFn)
}

func (f *confinedFS) check(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return nil // the wrapped call reports it
	}
	rel, err := filepath.Rel(f.root, real)
	if err != nil || !filepath.IsLocal(rel) && rel != "." {
		return fmt.Errorf("%s is outside the repository", path)
	}
	return nil
}

func (f *confinedFS) ReadFile(path string) ([]byte, error) {
	if data, ok := f.virtual[path]; ok {
		return data, nil
	}
	f.need(path, false)
	if err := f.check(path); err != nil {
		return nil, err
	}
	if f.r != nil {
		// Sized before it is read: kustomize holds every file it reads.
		if st, err := os.Stat(path); err == nil && st.Mode().IsRegular() {
			if err := f.r.checkSize(st.Size()); err != nil {
				return nil, fmt.Errorf("%s: %w", f.r.rel(path), err)
			}
			if err := f.r.count(int(st.Size())); err != nil {
				return nil, fmt.Errorf("%s: %w", f.r.rel(path), err)
			}
		}
	}
	data, err := f.FileSystem.ReadFile(path)
	if err != nil || f.r == nil {
		return data, err
	}
	if format := sopsFormat(path); looksEncrypted(data, format) {
		source := f.r.rel(path)
		if data, err = f.r.decrypt(data, source, format); err != nil {
			if f.sopsErr == nil {
				f.sopsErr = err
			}
			return nil, err
		}
		f.decrypted = true
	}
	return data, nil
}

func (f *confinedFS) Open(path string) (filesys.File, error) {
	f.need(path, false)
	if err := f.check(path); err != nil {
		return nil, err
	}
	return f.FileSystem.Open(path)
}

func (f *confinedFS) ReadDir(path string) ([]string, error) {
	f.need(path, false)
	if err := f.check(path); err != nil {
		return nil, err
	}
	return f.FileSystem.ReadDir(path)
}

func (f *confinedFS) CleanedAbs(path string) (filesys.ConfirmedDir, string, error) {
	if _, ok := f.virtual[path]; ok {
		return filesys.ConfirmedDir(filepath.Dir(path)), filepath.Base(path), nil
	}
	f.need(path, false)
	if err := f.check(path); err != nil {
		return "", "", err
	}
	return f.FileSystem.CleanedAbs(path)
}

// lineError shows err on one line (kustomize quotes a plugin's whole
// configuration, newlines and all, in its messages; each line of output
// must name its file) and keeps its chain, which tells an interrupted
// build (a remote resource that could not be reached) from a bad one.
type lineError struct{ err error }

func (e lineError) Error() string { return strings.Join(strings.Fields(e.err.Error()), " ") }

func (e lineError) Unwrap() error { return e.err }
