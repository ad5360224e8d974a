package apply

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"reflect"
	"strings"
	"testing"
)

func gzipped(plain string) string {
	var b bytes.Buffer
	zw := gzip.NewWriter(&b)
	zw.Write([]byte(plain))
	zw.Close()
	return base64.StdEncoding.EncodeToString(b.Bytes())
}

func TestCommitRecordRoundTrip(t *testing.T) {
	for _, rec := range []commitRecord{{
		Stamp: "s1", Config: "c1",
		Files: map[string]string{"a.yaml": "h1", "dir/b c.yaml": "h2"},
		Objects: [][7]string{
			{"v1", "Namespace", "", "shop", "a.yaml", "1", "d1"},
			{"apps/v1", "Deployment", "shop", "web", "dir/b c.yaml", "2", "d2"},
		},
	}, {
		Stamp: "s2", Config: "c2", Objects: [][7]string{{"v1", "ConfigMap", "x", "y", "z.yaml", "1", ""}},
	}} {
		enc, err := encodeCommitRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := decodeCommitRecord(enc)
		if !ok || !reflect.DeepEqual(got, rec) {
			t.Errorf("round trip gave %+v (%v), want %+v", got, ok, rec)
		}
	}
	if _, err := encodeCommitRecord(commitRecord{Stamp: "s", Objects: [][7]string{{"v1", "ConfigMap", "x", "a\x00b", "z.yaml", "1", ""}}}); err == nil {
		t.Error("a field holding NUL was encoded")
	}
}

// Anything but a whole record in this format reads as no record, which
// sends the run down the ordinary path.
func TestCommitRecordRefusesWhatItCannotRead(t *testing.T) {
	obj := strings.Repeat("f\x00", 7)
	for name, enc := range map[string]string{
		"empty":               "",
		"not base64":          "%%%",
		"not gzip":            base64.StdEncoding.EncodeToString([]byte("plain")),
		"the old JSON format": gzipped(`{"stamp":"s","config":"c","objects":[]}`),
		"another format":      gzipped("cronsync-record-v3\x00s\x00c\x000\x00" + obj),
		"truncated":           gzipped("cronsync-record-v2\x00s\x00c\x000\x00f\x00f"),
		"an object cut short": gzipped("cronsync-record-v2\x00s\x00c\x000\x00" + obj + "f\x00"),
		"more files than fit": gzipped("cronsync-record-v2\x00s\x00c\x005\x00a\x00h\x00"),
		"a negative count":    gzipped("cronsync-record-v2\x00s\x00c\x00-1\x00" + obj),
		"no stamp":            gzipped("cronsync-record-v2\x00\x00c\x000\x00" + obj),
	} {
		if rec, ok := decodeCommitRecord(enc); ok {
			t.Errorf("%s: read as %+v", name, rec)
		}
	}
	if rec, ok := decodeCommitRecord(gzipped("cronsync-record-v2\x00s\x00c\x000\x00" + obj)); !ok || len(rec.Objects) != 1 {
		t.Errorf("a whole record of one object: %+v, %v", rec, ok)
	}
}
