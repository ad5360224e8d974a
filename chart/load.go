package chart

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"
)

// load reads the chart the request names. A vendored chart is read file by
// file here rather than by Helm's LoadDir, which follows any symlink: every
// file must stay inside the repository, and each counts against
// MaxFileBytes, archives and what they unpack to included.
func (r *Renderer) load(ctx context.Context, req Request) (*chartv2.Chart, error) {
	if req.Remote != nil {
		if !r.opts.AllowRemote {
			return nil, fmt.Errorf("chart %s is not in the repository; vendor it (helm pull --untar) and commit it, or pass --helm-allow-remote", req.Remote)
		}
		data, err := r.fetch(ctx, *req.Remote)
		if err != nil {
			return nil, err
		}
		files, err := r.unpack(req.Remote.String(), data)
		if err != nil {
			return nil, err
		}
		return loader.LoadFiles(files)
	}
	files, err := r.readDir(req)
	if err != nil {
		return nil, err
	}
	ch, err := loader.LoadFiles(files)
	if err != nil {
		return nil, err
	}
	return ch, nil
}

func (rm Remote) String() string {
	s := rm.Name
	if rm.Version != "" {
		s += " " + rm.Version
	}
	return s + " from " + rm.Repo
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// readDir reads a chart directory as Helm's directory loader does
// (.helmignore and its defaults apply), confined to the repository.
func (r *Renderer) readDir(req Request) ([]*archive.BufferedFile, error) {
	// Symlink targets are resolved, so the root they must stay in is too.
	root, err := filepath.EvalSymlinks(req.Root)
	if err != nil {
		return nil, err
	}
	rules := ignore.Empty()
	if data, err := os.ReadFile(filepath.Join(req.Dir, ignore.HelmIgnore)); err == nil {
		if rules, err = ignore.Parse(bytes.NewReader(data)); err != nil {
			return nil, fmt.Errorf("%s: %w", ignore.HelmIgnore, err)
		}
	}
	rules.AddDefaults()
	var files []*archive.BufferedFile
	var walk func(dir, rel string) error
	walk = func(dir, rel string) error {
		entries, err := os.ReadDir(dir)
		if err != nil {
			return err
		}
		for _, e := range entries {
			name := rel + e.Name()
			real := filepath.Join(dir, e.Name())
			info, err := e.Info()
			if err != nil {
				return err
			}
			if info.Mode()&fs.ModeSymlink != 0 {
				if real, err = r.follow(root, real); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
				if info, err = os.Stat(real); err != nil {
					return fmt.Errorf("%s: %w", name, err)
				}
			}
			if rules.Ignore(name, info) {
				continue
			}
			if info.IsDir() {
				if err := walk(real, name+"/"); err != nil {
					return err
				}
				continue
			}
			if !info.Mode().IsRegular() {
				return fmt.Errorf("%s: not a regular file (%s)", name, info.Mode().Type())
			}
			if err := r.checkSize(name, info.Size()); err != nil {
				return err
			}
			data, err := os.ReadFile(real)
			if err != nil {
				return err
			}
			if strings.HasPrefix(name, "charts/") && (strings.HasSuffix(name, ".tgz") || strings.HasSuffix(name, ".tar.gz")) {
				if _, err := r.unpack(name, data); err != nil {
					return err
				}
			}
			files = append(files, &archive.BufferedFile{Name: name, ModTime: info.ModTime(), Data: bytes.TrimPrefix(data, utf8BOM)})
		}
		return nil
	}
	if err := walk(req.Dir, ""); err != nil {
		return nil, err
	}
	return files, nil
}

// follow resolves a symlink of the chart and refuses one whose target is
// outside the repository, before reading anything there.
func (r *Renderer) follow(root, path string) (string, error) {
	link, err := os.Readlink(path)
	if err != nil {
		return "", err
	}
	escapes := fmt.Errorf("symlink to %q leaves the repository; refused", link)
	if filepath.IsAbs(link) || !inside(root, filepath.Join(filepath.Dir(path), link)) {
		return "", escapes
	}
	target, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("broken symlink to %q", link)
	}
	if !inside(root, target) {
		return "", escapes
	}
	return target, nil
}

func inside(root, path string) bool {
	rel, err := filepath.Rel(root, path)
	return err == nil && filepath.IsLocal(rel)
}

func (r *Renderer) checkSize(name string, size int64) error {
	if r.opts.MaxFileBytes > 0 && size > r.opts.MaxFileBytes {
		return fmt.Errorf("%s is %d bytes, over the limit of %d (--max-manifest-bytes)", name, size, r.opts.MaxFileBytes)
	}
	return nil
}

// unpack reads a chart archive in memory and holds each file it unpacks to
// the same limit as a file in the repository.
func (r *Renderer) unpack(name string, data []byte) ([]*archive.BufferedFile, error) {
	if err := r.checkSize(name, int64(len(data))); err != nil {
		return nil, err
	}
	files, err := archive.LoadArchiveFiles(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	for _, f := range files {
		if err := r.checkSize(name+": "+f.Name, int64(len(f.Data))); err != nil {
			return nil, err
		}
	}
	return files, nil
}
