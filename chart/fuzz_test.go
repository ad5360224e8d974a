package chart

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"strings"
	"testing"
)

// archiveSpec builds a chart archive from the fuzzer's bytes: entries of
// any tar type under chart paths that matter (Chart.yaml, templates, a
// subchart's archive in charts/, a subchart's files), of sizes up to 4
// KiB, and archives within archives. Built rather than mutated: a tar
// header whose checksum no longer matches is refused before anything
// interesting happens.
type archiveSpec []byte

func (b *archiveSpec) next() int {
	if len(*b) == 0 {
		return 0
	}
	v := (*b)[0]
	*b = (*b)[1:]
	return int(v)
}

var specTypes = []byte{tar.TypeReg, tar.TypeReg, tar.TypeReg, tar.TypeCont, tar.TypeSymlink, tar.TypeDir, 'Z', tar.TypeLink}

var specNames = []string{
	"Chart.yaml", "values.yaml", "templates/a.yaml", "charts/sub.tgz", "charts/sub/Chart.yaml",
	"charts/sub/templates/b.yaml", "files/x.txt", `charts\sub.tgz`, "charts/sub/charts/deep.tgz", "crds/x.yaml",
	"charts/other.tar.gz", "charts/_skip.tgz",
}

func (b *archiveSpec) archive(t *testing.T, chart string, depth int) []byte {
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	add := func(name string, typ byte, data []byte) {
		hd := &tar.Header{Name: chart + "/" + name, Typeflag: typ, Mode: 0o644, Size: int64(len(data))}
		switch typ {
		case tar.TypeSymlink, tar.TypeLink:
			hd.Linkname, hd.Size = chart+"/Chart.yaml", 0
		case tar.TypeDir:
			hd.Size = 0
		}
		if tw.WriteHeader(hd) != nil {
			return
		}
		tw.Write(data[:hd.Size])
	}
	add("Chart.yaml", tar.TypeReg, []byte("apiVersion: v2\nname: "+chart+"\nversion: 0.1.0\n"))
	for range 8 {
		if len(*b) == 0 {
			break
		}
		op := b.next()
		name := specNames[b.next()%len(specNames)]
		var data []byte
		switch {
		case op&0x80 != 0 && depth < 3:
			data = b.archive(t, "sub", depth+1)
		case strings.HasSuffix(name, "Chart.yaml"):
			data = []byte("apiVersion: v2\nname: sub\nversion: 0.1.0\n# " + strings.Repeat("a", b.next()*16) + "\n")
		default:
			data = bytes.Repeat([]byte("a"), b.next()*16+b.next()%16)
		}
		add(name, specTypes[op%len(specTypes)], data)
	}
	tw.Close()
	gz.Close()
	return buf.Bytes()
}

// A chart archive, whatever its entries' types, names and nesting, loads
// within the limits or not at all: no file Helm's loader keeps is over
// MaxFileBytes, and all of them, every subchart's included, come to no
// more than MaxChartBytes. Nothing panics.
func FuzzChartArchive(f *testing.F) {
	f.Add([]byte{0, 2, 10, 3})
	f.Add([]byte{0x80, 3, 0, 2, 200, 0})
	f.Add([]byte{0x80, 3, 0, 2, 60, 0, 0x80, 3, 0, 2, 60, 0, 0x80, 3, 0, 2, 60, 0})
	f.Add([]byte{0, 6, 255, 15})
	f.Add([]byte{3, 6, 255, 15})
	f.Add([]byte{0x80 | 3, 3, 0, 2, 255, 15})
	f.Fuzz(func(t *testing.T, spec []byte) {
		b := archiveSpec(spec)
		data := b.archive(t, "c", 0)
		const maxFile, maxChart = 2 << 10, 8 << 10
		r := New(Options{MaxFileBytes: maxFile, MaxChartBytes: maxChart})
		ch, err := r.load(&job{Archive: data, ArchiveName: "remote chart"})
		if err != nil {
			return
		}
		total := 0
		for _, c := range append(allDependencies(ch), ch) {
			for _, file := range c.Raw {
				total += len(file.Data)
				if len(file.Data) > maxFile {
					t.Errorf("%s: %s is %d bytes, over the limit of %d", c.Name(), file.Name, len(file.Data), maxFile)
				}
			}
		}
		if total > maxChart {
			t.Errorf("loaded %d bytes, over the chart's limit of %d", total, maxChart)
		}
	})
}
