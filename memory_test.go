package main

import (
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

func TestCgroupMemoryLimit(t *testing.T) {
	for _, tc := range []struct {
		file, content string
		want          int64
	}{
		{"memory.max", "536870912\n", 512 << 20},
		{"memory.max", "max\n", 0},
		{"memory/memory.limit_in_bytes", "268435456\n", 256 << 20},
		{"memory/memory.limit_in_bytes", "9223372036854771712\n", 0},
		{"", "", 0},
	} {
		root := t.TempDir()
		if tc.file != "" {
			if err := os.MkdirAll(filepath.Dir(filepath.Join(root, tc.file)), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(root, tc.file), []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if got := cgroupMemoryLimit(root); got != tc.want {
			t.Errorf("%s %q: %d, want %d", tc.file, tc.content, got, tc.want)
		}
	}
}

// In a container limited to 512 MiB the Go runtime is told to stay under
// 80% of it; GOMEMLIMIT set by hand wins.
func TestTuneMemory(t *testing.T) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(-1))
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	root := t.TempDir()
	if err := os.WriteFile(filepath.Join(root, "memory.max"), []byte("536870912\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	none := func(string) (string, bool) { return "", false }
	debug.SetMemoryLimit(1 << 62)
	tuneMemory(none, root)
	if got := debug.SetMemoryLimit(-1); got != 512<<20*8/10 {
		t.Errorf("limit %d, want %d", got, 512<<20*8/10)
	}
	if got := debug.SetGCPercent(-1); got != gcPercent {
		t.Errorf("GOGC %d, want %d", got, gcPercent)
	}
	debug.SetMemoryLimit(1 << 62)
	debug.SetGCPercent(100)
	tuneMemory(func(k string) (string, bool) { return "1", true }, root)
	if got := debug.SetMemoryLimit(-1); got != 1<<62 {
		t.Errorf("with GOMEMLIMIT set: limit %d", got)
	}
	if got := debug.SetGCPercent(-1); got != 100 {
		t.Errorf("with GOGC set: %d", got)
	}
}
