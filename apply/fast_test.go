package apply

import (
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// parentWith is an ApplySet parent holding value under key in its data.
func parentWith(key, value string) *unstructured.Unstructured {
	return &unstructured.Unstructured{Object: map[string]any{"data": map[string]any{key: value}}}
}

func TestFingerprintsRoundTrip(t *testing.T) {
	fps := map[string]string{"ConfigMap/ns/a": "x1", "Deployment.apps/ns/b": "x2"}
	enc, err := encodeFingerprints(fps)
	if err != nil {
		t.Fatal(err)
	}
	if got := decodeFingerprints(parentWith(fingerprintsKey, enc)); !equalMaps(got, fps) {
		t.Errorf("round trip: %v", got)
	}
	for _, bad := range []string{"", "not base64!", base64.StdEncoding.EncodeToString([]byte("not gzip"))} {
		if got := decodeFingerprints(parentWith(fingerprintsKey, bad)); len(got) != 0 {
			t.Errorf("%q decoded to %v, want nothing (every object then asks the server)", bad, got)
		}
	}
}

// Past the Secret size limit, entries are dropped (those objects take the
// slow path), never the whole record.
func TestFingerprintsStayUnderTheSecretLimit(t *testing.T) {
	fps := map[string]string{}
	for i := range 60000 {
		b := make([]byte, 16)
		_, _ = rand.Read(b)
		fps[fmt.Sprintf("ConfigMap/ns-%d/cm-%06d", i%50, i)] = base64.RawURLEncoding.EncodeToString(b)
	}
	enc, err := encodeFingerprints(fps)
	if err != nil {
		t.Fatal(err)
	}
	if len(enc) > maxFingerprintBytes {
		t.Errorf("%d bytes, over %d", len(enc), maxFingerprintBytes)
	}
	got := decodeFingerprints(parentWith(fingerprintsKey, enc))
	if len(got) == 0 || len(got) >= len(fps) {
		t.Errorf("kept %d of %d", len(got), len(fps))
	}
	for k, v := range got {
		if fps[k] != v {
			t.Fatalf("%s: %q, want %q", k, v, fps[k])
		}
	}
}
