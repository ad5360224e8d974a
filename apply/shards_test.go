package apply

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"strings"
	"testing"
)

func randomFingerprints(n int) map[string]string {
	fps := map[string]string{}
	for i := range n {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		fps[fmt.Sprintf("ConfigMap/ns-%d/cm-%06d", i%10, i)] = base64.RawURLEncoding.EncodeToString(b)
	}
	return fps
}

// Past the size a Secret holds, fingerprints are spread over shards each
// under it, which together give back every fingerprint; the record is cut
// in order. A change to one object changes one shard.
func TestShardLayout(t *testing.T) {
	s := &syncer{opts: Options{FastDataBytes: 4 << 10, ApplySet: ApplySet{Namespace: "default", Name: "set"}}, parentUID: "uid-1"}
	fps := randomFingerprints(2000)
	record := strings.Repeat("r", 10<<10)
	l, err := s.layoutFastData(fps, record)
	if err != nil {
		t.Fatal(err)
	}
	if l.inline != nil {
		t.Fatalf("inline: %d keys", len(l.inline))
	}
	got := map[string]string{}
	var pieces strings.Builder
	names := map[string]string{}
	for _, sh := range l.shards {
		if len(sh.value) > 4<<10 {
			t.Errorf("%s: %d bytes, over the limit", sh.name, len(sh.value))
		}
		if sh.sum != sumOf(sh.value) || !strings.HasPrefix(sh.name, "set-fd-") {
			t.Errorf("shard %+v", sh.shardRef)
		}
		names[sh.name] = sh.sum
		switch sh.kind {
		case shardFingerprints:
			for k, v := range decodeFingerprints(sh.value) {
				got[k] = v
			}
		case shardRecord:
			pieces.WriteString(sh.value)
		}
	}
	if !maps.Equal(got, fps) || pieces.String() != record {
		t.Fatalf("shards give back %d of %d fingerprints, record %d of %d bytes", len(got), len(fps), pieces.Len(), len(record))
	}
	if len(names) != len(l.shards) || len(l.shards) < 10 {
		t.Fatalf("%d shards, %d names", len(l.shards), len(names))
	}

	// The next run, one fingerprint changed: one shard differs.
	for _, sh := range l.shards {
		s.recordedShards = append(s.recordedShards, sh.shardRef)
	}
	for k := range fps {
		fps[k] = "changed"
		break
	}
	next, err := s.layoutFastData(fps, record)
	if err != nil {
		t.Fatal(err)
	}
	changed := 0
	for _, sh := range next.shards {
		if names[sh.name] != sh.sum {
			changed++
		}
	}
	if changed != 1 || len(next.shards) != len(l.shards) {
		t.Errorf("one fingerprint changed: %d of %d shards new (%d before)", changed, len(next.shards), len(l.shards))
	}

	// The index reads back; a damaged one is no index.
	refs, ok := decodeShardIndex(encodeShardIndex(s.recordedShards))
	if !ok || len(refs) != len(s.recordedShards) || refs[3] != s.recordedShards[3] {
		t.Errorf("index round trip: %v %v", ok, refs)
	}
	for _, bad := range []string{"", "bm90IGFuIGluZGV4", base64.StdEncoding.EncodeToString([]byte(shardIndexFormat + "\nx fingerprints\n"))} {
		if _, ok := decodeShardIndex(bad); ok {
			t.Errorf("%q read as an index", bad)
		}
	}
}

// What fits stays in the parent; a parent whose uid is not known cannot own
// shards, and keeps the fingerprints that fit and no record.
func TestShardLayoutInline(t *testing.T) {
	s := &syncer{opts: Options{FastDataBytes: 4 << 10, ApplySet: ApplySet{Namespace: "default", Name: "set"}}, parentUID: "uid-1"}
	l, err := s.layoutFastData(randomFingerprints(10), "rec")
	if err != nil || l.shards != nil || l.inline[commitRecordKey] != "rec" || len(decodeFingerprints(l.inline[fingerprintsKey])) != 10 {
		t.Errorf("small: %v %+v", err, l)
	}
	s.parentUID = ""
	l, err = s.layoutFastData(randomFingerprints(2000), "rec")
	if err != nil || l.shards != nil || l.inline[commitRecordKey] != "" || len(l.inline[fingerprintsKey]) > 4<<10 {
		t.Errorf("no uid: %v shards %d, %d bytes", err, len(l.shards), len(l.inline[fingerprintsKey]))
	}
	if n := len(decodeFingerprints(l.inline[fingerprintsKey])); n == 0 || n >= 2000 {
		t.Errorf("no uid: kept %d of 2000", n)
	}
}
