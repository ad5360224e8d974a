package apply

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"maps"
	"slices"
	"testing"
)

func TestFingerprintsRoundTrip(t *testing.T) {
	fps := map[string]string{"ConfigMap/ns/a": "x1", "Deployment.apps/ns/b": "x2"}
	enc, err := encodeFingerprintLines(slices.Sorted(maps.Keys(fps)), fps)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeFingerprints(enc); !maps.Equal(got, fps) {
		t.Errorf("round trip: %v", got)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("not gzip"))} {
		if got := decodeFingerprints(bad); len(got) != 0 {
			t.Errorf("%q decoded to %v, want nothing (every object then asks the server)", bad, got)
		}
	}
}

// A parent that cannot have shards keeps the entries that fit under the
// Secret size limit (the rest take the slow path), never none.
func TestFingerprintsStayUnderTheSecretLimit(t *testing.T) {
	fps := map[string]string{}
	for i := range 60000 {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		fps[fmt.Sprintf("ConfigMap/ns-%d/cm-%06d", i%50, i)] = base64.RawURLEncoding.EncodeToString(b)
	}
	enc, err := encodeFingerprints(fps, defaultFastDataBytes)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > defaultFastDataBytes {
		t.Errorf("%d bytes, over %d", len(enc), defaultFastDataBytes)
	}
	got := decodeFingerprints(enc)
	if len(got) == 0 || len(got) >= len(fps) {
		t.Errorf("kept %d of %d", len(got), len(fps))
	}
	for k, v := range got {
		if fps[k] != v {
			t.Fatalf("%s: %q, want %q", k, v, fps[k])
		}
	}
}
