package gitsrc

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"os/exec"
	"strings"
	"testing"
)

// realPack is a pack git itself makes of a small blob, a 64 KiB blob and
// a delta of it, as a server would send them.
func realPack(t testing.TB) []byte {
	t.Helper()
	dir := t.TempDir()
	git := func(stdin string, args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = []string{"GIT_CONFIG_GLOBAL=/dev/null", "GIT_CONFIG_NOSYSTEM=1"}
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("git %v: %v", args, err)
		}
		return string(out)
	}
	git("", "init", "-q")
	big := strings.Repeat("line of a manifest\n", 64<<10/19)
	ids := git("a: 1\n", "hash-object", "-w", "--stdin") +
		git(big, "hash-object", "-w", "--stdin") +
		git(big+"one more\n", "hash-object", "-w", "--stdin")
	return []byte(git(ids, "pack-objects", "--stdout", "-q"))
}

// A pack within the limit passes through unchanged; one holding an object
// over it (the 64 KiB blob, or the delta that makes a 64 KiB blob) is
// refused as ErrTooLarge before that object's data is passed on.
func TestScanPack(t *testing.T) {
	pack := realPack(t)
	var out bytes.Buffer
	if err := scanPack(bytes.NewReader(pack), &out, 1<<20); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(out.Bytes(), pack) {
		t.Errorf("passed on %d bytes of %d, not the pack as it came", out.Len(), len(pack))
	}
	out.Reset()
	err := scanPack(bytes.NewReader(pack), &out, 32<<10)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if out.Len() >= len(pack)/2 {
		t.Errorf("passed on %d bytes of %d before refusing", out.Len(), len(pack))
	}
}

// An object whose data inflates past the size its header states is
// refused, be it by one byte: its header cannot lie its way past the limit.
func TestScanPackRefusesALyingHeader(t *testing.T) {
	pack := func(declared int, data []byte) []byte {
		var b bytes.Buffer
		b.WriteString("PACK\x00\x00\x00\x02\x00\x00\x00\x01")
		// A blob's header: type 3, then the size, 4 bits and 7 a byte.
		first := byte(packBlob<<4) | byte(declared&15)
		rest := declared >> 4
		if rest > 0 {
			first |= 0x80
		}
		b.WriteByte(first)
		for rest > 0 {
			c := byte(rest & 0x7f)
			rest >>= 7
			if rest > 0 {
				c |= 0x80
			}
			b.WriteByte(c)
		}
		zw := zlib.NewWriter(&b)
		zw.Write(data)
		zw.Close()
		b.Write(make([]byte, 20)) // the checksum, not scanPack's to judge
		return b.Bytes()
	}
	data := bytes.Repeat([]byte("x"), 100)
	if err := scanPack(bytes.NewReader(pack(100, data)), io.Discard, 1<<20); err != nil {
		t.Fatalf("an honest header: %v", err)
	}
	for _, declared := range []int{99, 10} {
		err := scanPack(bytes.NewReader(pack(declared, data)), io.Discard, 1<<20)
		if err == nil || !strings.Contains(err.Error(), "inflates past") {
			t.Errorf("a header saying %d bytes of 100: err = %v", declared, err)
		}
	}
}

// Whatever a server sends, scanPack ends, and when it accepts the stream
// it has passed it on byte for byte: it never changes what go-git reads,
// only stops it.
func FuzzScanPack(f *testing.F) {
	pack := realPack(f)
	f.Add(pack, int64(1<<20))
	f.Add(pack, int64(100))
	f.Add(pack[:len(pack)/2], int64(1<<20))
	f.Add([]byte("PACK\x00\x00\x00\x02\x00\x00\x00\x01\xff\xff\xff\xff\x0f"), int64(1<<20))
	f.Fuzz(func(t *testing.T, data []byte, max int64) {
		if max <= 0 {
			max = 1
		}
		var out bytes.Buffer
		if err := scanPack(bytes.NewReader(data), &out, max); err == nil && !bytes.Equal(out.Bytes(), data) {
			t.Errorf("accepted, but passed on %d bytes of %d", out.Len(), len(data))
		}
	})
}
