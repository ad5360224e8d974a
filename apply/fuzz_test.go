package apply

import (
	"bytes"
	"compress/gzip"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/render"
)

// The fast path trusts what the parent Secret and its shards say only as
// cronsync wrote it. These targets feed the decoders whatever a Secret
// could hold; `go test` runs their seeds and testdata/fuzz, `make fuzz`
// fuzzes them.

// gunzipped is the plain text of a value as stored: base64 of gzip.
func gunzipped(t *testing.T, enc string) []byte {
	t.Helper()
	gz, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return plain
}

// An index is read only as cronsync writes it: one it accepts writes out
// again byte for byte, so nothing but what a run wrote names a shard.
func FuzzShardIndex(f *testing.F) {
	f.Add(shardIndexFormat + "\nset-fd-0123456789ab fingerprints " + sumOf("x") + "\nset-fd-ba9876543210 commit " + sumOf("y") + "\n")
	f.Add(shardIndexFormat + "\n")
	f.Add(shardIndexFormat + "\nx fingerprints\n")
	f.Add(shardIndexFormat + "\na  fingerprints\tb\n")
	f.Add("not an index")
	f.Fuzz(func(t *testing.T, text string) {
		raw := base64.StdEncoding.EncodeToString([]byte(text))
		refs, ok := decodeShardIndex(raw)
		if !ok {
			return
		}
		if again := encodeShardIndex(refs); again != raw {
			t.Errorf("read %q as %v, which writes %q", text, refs, gunzippedIndex(t, again))
		}
	})
}

func gunzippedIndex(t *testing.T, enc string) string {
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Fingerprints are read whole or not at all: a value that decodes holds
// every line it has, and writes out to the same fingerprints; one that
// does not (a line cut, too long, without its tab) is none, so that its
// objects take the slow path rather than some of them.
func FuzzFingerprints(f *testing.F) {
	f.Add([]byte("ConfigMap/ns/a\tfp1\nSecret/ns/b\tfp2\n"))
	f.Add([]byte("ConfigMap/ns/a\tfp1\nbroken line\n"))
	f.Add([]byte("\tfp\n"))
	f.Add([]byte("k\t\n"))
	f.Add([]byte("ConfigMap/ns/a\tfp1\n" + strings.Repeat("x", 70<<10) + "\tfp\n"))
	f.Fuzz(func(t *testing.T, plain []byte) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(plain)
		zw.Close()
		fps := decodeFingerprints(base64.StdEncoding.EncodeToString(b.Bytes()))
		if len(fps) == 0 {
			return
		}
		want := map[string]string{}
		for _, l := range strings.Split(strings.TrimSuffix(string(plain), "\n"), "\n") {
			k, v, _ := strings.Cut(strings.TrimSuffix(l, "\r"), "\t")
			want[k] = v
		}
		if !maps.Equal(fps, want) {
			t.Fatalf("read %d fingerprints of the %d lines there are", len(fps), len(want))
		}
		enc, err := encodeFingerprintLines(slices.Sorted(maps.Keys(fps)), fps)
		if err != nil {
			t.Fatal(err)
		}
		if again := decodeFingerprints(enc); !maps.Equal(again, fps) {
			t.Errorf("written out and read again: %d of %d", len(again), len(fps))
		}
	})
}

// A commit record is read only as cronsync writes it: one it accepts
// writes out again byte for byte (files in order, counts as written), so
// that a record damaged into another that still reads is no record.
func FuzzCommitRecord(f *testing.F) {
	obj := strings.Repeat("f\x00", 7)
	for _, s := range []string{
		"cronsync-record-v2\x00s\x00c\x000\x00" + obj,
		"cronsync-record-v2\x00s\x00c\x002\x00a.yaml\x00h1\x00dir/b c.yaml\x00h2\x00v1\x00Namespace\x00\x00shop\x00a.yaml\x001\x00d1\x00",
		"cronsync-record-v2\x00s\x00c\x002\x00b.yaml\x00h1\x00a.yaml\x00h2\x00",
		"cronsync-record-v2\x00s\x00c\x00+1\x00a\x00h\x00",
		"cronsync-record-v2\x00s\x00c\x005\x00a\x00h\x00",
		"cronsync-record-v2\x00\x00c\x000\x00" + obj,
		"cronsync-record-v3\x00s\x00c\x000\x00" + obj,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, plain []byte) {
		var b bytes.Buffer
		zw := gzip.NewWriter(&b)
		zw.Write(plain)
		zw.Close()
		rec, ok := decodeCommitRecord(base64.StdEncoding.EncodeToString(b.Bytes()))
		if !ok {
			return
		}
		enc, err := encodeCommitRecord(rec)
		if err != nil {
			t.Fatalf("read %+v, which does not write: %v", rec, err)
		}
		if again := gunzipped(t, enc); !bytes.Equal(again, plain) {
			t.Errorf("read %q, which writes %q", plain, again)
		}
	})
}

// fuzzBytes hands out the fuzzer's bytes as small numbers; past the end,
// zeros.
type fuzzBytes []byte

func (b *fuzzBytes) next() int {
	if len(*b) == 0 {
		return 0
	}
	v := (*b)[0]
	*b = (*b)[1:]
	return int(v)
}

func (b *fuzzBytes) take(n int) []byte {
	n = min(n, len(*b))
	out := (*b)[:n]
	*b = (*b)[n:]
	return out
}

// A run's fingerprints and record are stored (in shards past a small
// size), then the stored Secrets are damaged as the fuzzer says: values
// changed, cut or swapped, shards deleted or relabelled, owners changed,
// the index itself edited. Whatever the damage, what the next run reads
// only ever sends objects down the slow path: every fingerprint it reads
// is the one written (a missing one is the slow path; a different one
// could decide an object that was changed "unchanged"), and the record it
// reads, if any, is the one written.
func FuzzCorruptedFastData(f *testing.F) {
	f.Add(uint16(300), "stamp", []byte{})
	f.Add(uint16(300), "stamp", []byte{0, 0, 5, 1, 1, 7, 2, 2})
	f.Add(uint16(40), "s", []byte{3, 1, 4, 0, 6, 2})
	f.Add(uint16(500), "stamp", []byte{5, 0, 1, 7, 3, 3, 9, 9})
	f.Fuzz(func(t *testing.T, n uint16, stamp string, damage []byte) {
		if stamp == "" || strings.IndexByte(stamp, 0) >= 0 {
			return
		}
		s := &syncer{opts: Options{FastDataBytes: 1 << 10, ApplySet: ApplySet{Namespace: "default", Name: "set"}}, parentUID: "uid-1"}
		fps := map[string]string{}
		rec := commitRecord{Stamp: stamp, Config: "c"}
		for i := range int(n % 2000) {
			name := fmt.Sprintf("cm-%d", i)
			fps["ConfigMap/ns/"+name] = fmt.Sprintf("%016x", uint64(i)*0x9e3779b97f4a7c15)
			rec.Objects = append(rec.Objects, [7]string{"v1", "ConfigMap", "ns", name, "a.yaml", "1", "d"})
		}
		record, err := encodeCommitRecord(rec)
		if err != nil {
			t.Fatal(err)
		}
		l, err := s.layoutFastData(fps, record)
		if err != nil {
			t.Fatal(err)
		}
		data := map[string]any{}
		for k, v := range l.parentData() {
			data[k] = v
		}
		parent := &unstructured.Unstructured{Object: map[string]any{"apiVersion": "v1", "kind": "Secret", "data": data}}
		parent.SetUID("uid-1")
		var stored []*unstructured.Unstructured
		for _, sh := range l.shards {
			stored = append(stored, s.shardObject(sh))
		}

		d := fuzzBytes(damage)
		for len(d) > 0 {
			op, at := d.next()%10, d.next()
			var target map[string]any
			var key string
			if len(stored) == 0 || at%4 == 0 {
				target = data
			} else {
				target, _ = stored[at%len(stored)].Object["data"].(map[string]any)
			}
			if len(target) == 0 {
				continue // every key of it removed
			}
			key = slices.Sorted(maps.Keys(target))[at%len(target)]
			v, _ := target[key].(string)
			switch op {
			case 0: // a byte changed
				if len(v) > 0 {
					i := d.next() * 257 % len(v)
					target[key] = v[:i] + string(rune('A'+d.next()%26)) + v[i+1:]
				}
			case 1: // cut
				target[key] = v[:d.next()*len(v)/256]
			case 2: // bytes added
				target[key] = v + string(d.take(d.next()%16))
			case 3: // a shard deleted
				if len(stored) > 0 {
					stored = slices.Delete(stored, at%len(stored), at%len(stored)+1)
				}
			case 4: // two shards' values swapped
				if len(stored) > 1 {
					a, b := stored[at%len(stored)], stored[d.next()%len(stored)]
					a.Object["data"], b.Object["data"] = b.Object["data"], a.Object["data"]
				}
			case 5: // another set's label
				if len(stored) > 0 {
					stored[at%len(stored)].SetLabels(map[string]string{shardOfLabel: "applyset-other-v1"})
				}
			case 6: // another owner
				if len(stored) > 0 {
					stored[at%len(stored)].SetOwnerReferences(nil)
				}
			case 7: // an index line dropped or repeated
				if text, err := base64.StdEncoding.DecodeString(v); err == nil && key == shardIndexKey {
					lines := strings.SplitAfter(string(text), "\n")
					i := 1 + d.next()%max(len(lines)-1, 1)
					if i < len(lines) {
						if d.next()%2 == 0 {
							lines = slices.Delete(lines, i, i+1)
						} else {
							lines = slices.Insert(lines, i, lines[i])
						}
					}
					target[key] = base64.StdEncoding.EncodeToString([]byte(strings.Join(lines, "")))
				}
			case 8: // the value replaced
				target[key] = base64.StdEncoding.EncodeToString(d.take(d.next()))
			case 9: // the key removed
				delete(target, key)
			}
		}

		next := &syncer{opts: s.opts}
		refs, indexed := decodeShardIndex(recordedData(parent, shardIndexKey))
		values := make([]string, len(refs))
		for i, r := range refs {
			for _, u := range stored {
				if u.GetName() == r.name {
					values[i] = next.shardValue(u, r, types.UID("uid-1"))
				}
			}
		}
		next.assembleFastData(parent, refs, indexed, values)
		for k, v := range next.recordedFPs {
			if fps[k] != v {
				t.Fatalf("read fingerprint %q for %s, which was written as %q", v, k, fps[k])
			}
		}
		if got, ok := decodeCommitRecord(next.recordedCommit); ok && !reflect.DeepEqual(got, rec) && len(rec.Objects) > 0 {
			t.Fatalf("read a record of %d objects, not the one written (%d)", len(got.Objects), len(rec.Objects))
		}
	})
}

// Whatever a live object and the dry run's answer hold, drift names each
// field that moved by a path that leads to it on both sides (a key that
// looks like an index, "[0]", is not one), with the values found there; a
// Secret's values never show; the line it makes is one line.
func FuzzDriftPaths(f *testing.F) {
	for _, tc := range []struct{ live, merged, fields, manager string }{
		{`{"spec": {"replicas": 5, "template": {"spec": {"containers": [{"name": "app", "image": "web:2"}]}}}}`,
			`{"metadata": {"labels": {"team": "a"}}, "spec": {"replicas": 2, "template": {"spec": {"containers": [{"name": "app", "image": "web:1"}]}}}}`,
			`{"f:spec":{"f:template":{"f:spec":{"f:containers":{"k:{\"name\":\"app\"}":{"f:image":{}}}}}}}`, "kubectl-set"},
		{`{"data": {"password": "aGFuZA=="}, "metadata": {"annotations": {"example.com/note": "long"}}}`,
			`{"data": {"password": "Z2l0"}, "metadata": {"annotations": {"example.com/note": "short"}}}`, `{"f:data":{"f:password":{}}}`, "x"},
		{`{"data": {"[0]": "a", "a.b": "c"}}`, `{"data": {"[0]": "b", "a.b": "d"}}`, `{"f:data":{"f:[0]":{}}}`, "other"},
		{`{"spec": {"list": [1, 2]}}`, `{"spec": {"list": [1, 2, 3]}}`, `{"f:spec":{"f:list":{}}}`, "m\nnext line"},
		{`{"spec": {"a": {"b": 1}}}`, `{"spec": {"a": null}}`, `{}`, "m"},
	} {
		f.Add([]byte(tc.live), []byte(tc.merged), []byte(tc.fields), tc.manager, false)
		f.Add([]byte(tc.live), []byte(tc.merged), []byte(tc.fields), tc.manager, true)
	}
	f.Fuzz(func(t *testing.T, liveJSON, mergedJSON, fields []byte, manager string, secret bool) {
		obj := func(raw []byte) *unstructured.Unstructured {
			var m map[string]any
			if json.Unmarshal(raw, &m) != nil || m == nil {
				return nil
			}
			u := &unstructured.Unstructured{Object: m}
			if secret {
				u.SetAPIVersion("v1")
				u.SetKind("Secret")
			} else {
				u.SetAPIVersion("apps/v1")
				u.SetKind("Deployment")
			}
			u.SetName("web")
			return u
		}
		live, merged := obj(liveJSON), obj(mergedJSON)
		if live == nil || merged == nil {
			return
		}
		if json.Valid(fields) && bytes.HasPrefix(bytes.TrimSpace(fields), []byte("{")) {
			live.SetManagedFields([]metav1.ManagedFieldsEntry{{Manager: manager, Operation: "Update", FieldsV1: &metav1.FieldsV1{Raw: fields}}})
		}
		it := &item{Object: &render.Object{Obj: merged}}
		d := driftOf(it, live, merged, "cronsync")
		if d == nil {
			return
		}
		a, b := forDiff(live), forDiff(merged)
		last := ""
		for i, fd := range d.Fields {
			if i > 0 && fd.Path == last {
				t.Errorf("path %q twice", fd.Path)
			}
			last = fd.Path
			lv, lok := followShownPath(t, a, fd.Path)
			bv, bok := followShownPath(t, b, fd.Path)
			if lok != !fd.Removed || bok != !fd.Added {
				t.Fatalf("%q: on the live side %v (removed %v), desired %v (added %v)", fd.Path, lok, fd.Removed, bok, fd.Added)
			}
			masked := secret && (strings.HasPrefix(fd.Path, "data") || strings.HasPrefix(fd.Path, "stringData"))
			if masked {
				if lok && fd.Live != "***" || bok && fd.Desired != "***" {
					t.Errorf("%q: a Secret's value shows", fd.Path)
				}
				continue
			}
			if lok && !reflect.DeepEqual(lv, fd.Live) || bok && !reflect.DeepEqual(bv, fd.Desired) {
				t.Errorf("%q: says %v → %v, the objects hold %v → %v", fd.Path, fd.Live, fd.Desired, lv, bv)
			}
		}
		if line := d.Line(); strings.ContainsAny(line, "\r\n") {
			t.Errorf("not one line: %q", line)
		}
	})
}

// followShownPath follows a path as showPath writes it (a.b,
// ["example.com/x"], [0]) into v.
func followShownPath(t *testing.T, v any, p string) (any, bool) {
	for p != "" {
		switch {
		case strings.HasPrefix(p, `["`):
			dec := json.NewDecoder(strings.NewReader(p[1:]))
			var k string
			if err := dec.Decode(&k); err != nil {
				t.Fatalf("path %q: %v", p, err)
			}
			p = p[1+int(dec.InputOffset()):]
			if !strings.HasPrefix(p, "]") {
				t.Fatalf("path %q: no ]", p)
			}
			p = p[1:]
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[k]; !ok {
				return nil, false
			}
		case strings.HasPrefix(p, "["):
			end := strings.IndexByte(p, ']')
			i, err := strconv.Atoi(p[1:max(end, 1)])
			l, ok := v.([]any)
			if end < 0 || err != nil || !ok || i < 0 || i >= len(l) {
				return nil, false
			}
			v, p = l[i], p[end+1:]
		default:
			p = strings.TrimPrefix(p, ".")
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[p[:end]]; !ok {
				return nil, false
			}
			p = p[end:]
		}
	}
	return v, true
}
