package chart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"path"
	"strings"

	"helm.sh/helm/v4/pkg/chart/loader/archive"
)

// inflation counts what one chart holds once every archive in it is
// inflated: its own files, its subchart archives' files, and theirs. Helm
// bounds each archive alone (archive.MaxDecompressedChartSize), so that ten
// subcharts of 1 MB in Git could still take a gigabyte; here all of them
// share one budget, taken from each file's header before it is read.
type inflation struct {
	left, max int64
}

func newInflation(max int64) *inflation {
	if max <= 0 {
		max = archive.MaxDecompressedChartSize
	}
	return &inflation{left: max, max: max}
}

// take counts n more bytes of what, or refuses them.
func (in *inflation) take(what string, n int64) error {
	if n > in.left {
		return fmt.Errorf("%s: the chart's files, its archives' inflated files included, come to over %s; refused", what, size(in.max))
	}
	in.left -= n
	return nil
}

// unpack inflates the chart archive data, holding each file it holds to
// MaxFileBytes and all of them, nested subchart archives included, to
// total: each before the file is read. It returns the files keep selects
// (by their path inside the chart), and no others.
func (r *Renderer) unpack(name string, data []byte, total *inflation, keep func(string) bool) ([]*archive.BufferedFile, error) {
	if err := r.checkSize(name, int64(len(data))); err != nil {
		return nil, err
	}
	gz, err := gzip.NewReader(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	defer gz.Close()
	tr := tar.NewReader(gz)
	var kept []*archive.BufferedFile
	for {
		hd, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		inner := inChart(hd.Name)
		// An entry with content is kept by Helm's loader as a file
		// whatever its type says (a contiguous file, a type no tar
		// knows): each is held to the limits as a regular file is, and
		// the file's own limit is named first, being the more precise.
		if !headerOnly(hd.Typeflag) {
			if err := r.checkSize(name+": "+inner, hd.Size); err != nil {
				return nil, err
			}
		}
		// Every entry's content is inflated to be skipped, a directory's
		// or a link's too, so every one counts.
		if err := total.take(name+": "+inner, hd.Size); err != nil {
			return nil, err
		}
		if headerOnly(hd.Typeflag) {
			continue
		}
		nested := isSubchartArchive(inner)
		if !nested && (keep == nil || !keep(inner)) {
			if _, err := io.Copy(io.Discard, tr); err != nil {
				return nil, fmt.Errorf("%s: %s: %w", name, inner, err)
			}
			continue
		}
		content, err := io.ReadAll(tr)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", name, inner, err)
		}
		if nested {
			if _, err := r.unpack(name+": "+inner, content, total, nil); err != nil {
				return nil, err
			}
		}
		if keep != nil && keep(inner) {
			kept = append(kept, &archive.BufferedFile{Name: inner, ModTime: hd.ModTime, Data: bytes.TrimPrefix(content, utf8BOM)})
		}
	}
	return kept, nil
}

// headerOnly says whether entries of type typ have no content: the types
// archive/tar reads none for, whatever size the header states.
func headerOnly(typ byte) bool {
	switch typ {
	case tar.TypeLink, tar.TypeSymlink, tar.TypeChar, tar.TypeBlock, tar.TypeDir, tar.TypeFifo:
		return true
	}
	return false
}

// inChart is an archive entry's path inside its chart: Helm drops the
// first element, the chart's directory.
func inChart(name string) string {
	name = strings.ReplaceAll(name, "\\", "/")
	if _, rest, ok := strings.Cut(name, "/"); ok {
		return path.Clean(rest)
	}
	return name
}

// isSubchartArchive says whether a chart's file is a subchart archive
// Helm's loader inflates: one in charts/, or in a subchart's charts/.
func isSubchartArchive(name string) bool {
	return path.Base(path.Dir(name)) == "charts" && (strings.HasSuffix(name, ".tgz") || strings.HasSuffix(name, ".tar.gz"))
}

// size says n in MiB when it is a whole number of them.
func size(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}
