package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"helm.sh/helm/v4/pkg/chart/loader/archive"
	chartv2 "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/ignore"
)

// load reads the chart the job names. A vendored chart is read file by
// file here rather than by Helm's LoadDir, which follows any symlink: every
// file must stay inside the repository, and each counts against
// MaxFileBytes, archives and what they unpack to included, and all of them
// together against MaxChartBytes.
func (r *Renderer) load(j *job) (*chartv2.Chart, error) {
	total := newInflation(r.opts.MaxChartBytes)
	if j.Archive != nil {
		// Helm's own reader, for its checks of the paths, once this one
		// has seen that the sizes are within bounds.
		if _, err := r.unpack(j.ArchiveName, j.Archive, total, nil); err != nil {
			return nil, err
		}
		files, err := archive.LoadArchiveFiles(bytes.NewReader(j.Archive))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", j.ArchiveName, err)
		}
		return loader.LoadFiles(files)
	}
	files, err := r.readDir(j.Root, j.Dir, total)
	if err != nil {
		return nil, err
	}
	return loader.LoadFiles(files)
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
func (r *Renderer) readDir(repo, dir string, total *inflation) ([]*archive.BufferedFile, error) {
	// Symlink targets are resolved, so the root they must stay in is too.
	root, err := filepath.EvalSymlinks(repo)
	if err != nil {
		return nil, err
	}
	rules := ignore.Empty()
	if data, err := os.ReadFile(filepath.Join(dir, ignore.HelmIgnore)); err == nil {
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
			if err := total.take(name, info.Size()); err != nil {
				return err
			}
			data, err := readAtMost(real, info.Size())
			if err != nil {
				return fmt.Errorf("%s: %w", name, err)
			}
			if isSubchartArchive(name) {
				if _, err := r.unpack(name, data, total, nil); err != nil {
					return err
				}
			}
			files = append(files, &archive.BufferedFile{Name: name, ModTime: info.ModTime(), Data: bytes.TrimPrefix(data, utf8BOM)})
		}
		return nil
	}
	if err := walk(dir, ""); err != nil {
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

// readAtMost reads the file at p, which was size bytes when it was looked
// at: one that has grown since is refused rather than read.
func readAtMost(p string, size int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, size+1))
	if err == nil && int64(len(data)) > size {
		err = errors.New("the file grew while it was read")
	}
	return data, err
}
