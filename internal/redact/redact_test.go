package redact

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"

	"sigs.k8s.io/yaml"
)

const pem = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj\n-----END PRIVATE KEY-----\n"

func TestCleanMasksEveryForm(t *testing.T) {
	s := New()
	s.Add("pa\"ss<w>ord\x1b!", pem, "hunter2-plain")
	quoted := func(v string) string { return fmt.Sprintf("%q", v) }
	jsonOf := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	yamlOf := func(v any) string { b, _ := yaml.Marshal(v); return string(b) }
	for _, tc := range []struct{ name, text, secret string }{
		{"raw", "value: hunter2-plain here", "hunter2-plain"},
		{"Go-quoted", `metadata.labels: Invalid value: ` + quoted(pem) + `: must be no more than 63 characters`, "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"},
		{"JSON", jsonOf(map[string]string{"k": "pa\"ss<w>ord\x1b!"}), `ss`},
		{"JSON twice", jsonOf(jsonOf(map[string]string{"k": pem})), "MIIEvQIBADANBgkqhkiG9w0BAQEFAASC"},
		{"YAML", yamlOf(map[string]string{"key": "pa\"ss<w>ord\x1b!"}), `ss<w>`},
		{"YAML block", yamlOf(map[string]string{"key": pem}), "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"},
		{"base64", "data: " + base64.StdEncoding.EncodeToString([]byte("hunter2-plain")), base64.StdEncoding.EncodeToString([]byte("hunter2-plain"))},
		{"base64 URL", base64.RawURLEncoding.EncodeToString([]byte("pa\"ss<w>ord\x1b!")), base64.RawURLEncoding.EncodeToString([]byte("pa\"ss<w>ord\x1b!"))},
		{"one line of it", "error: BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj", "BKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := s.Clean(tc.text)
			if strings.Contains(got, tc.secret) || !strings.Contains(got, Mask) {
				t.Errorf("Clean(%q) = %q", tc.text, got)
			}
		})
	}
}

func TestAddDecodesBase64AndSkipsWhatCannotBeMasked(t *testing.T) {
	s := New()
	s.Add(base64.StdEncoding.EncodeToString([]byte("decoded-secret")), "ab", "****", " * ")
	if got := s.Clean("stringData: decoded-secret"); got != "stringData: "+Mask {
		t.Errorf("the decoded form: %q", got)
	}
	if got := s.Clean("ab **** * x"); got != "ab **** * x" {
		t.Errorf("short and star values were masked: %q", got)
	}
}

func TestContainsIsForLongValues(t *testing.T) {
	s := New()
	s.Add("short7x", "long-enough-value")
	for _, tc := range []struct {
		text string
		want bool
	}{
		{"long-enough-value", true},
		{"cm-long-enough-value-x", true},
		{"short7x", false},
		{"long-enough", false},
	} {
		if got := s.Contains(tc.text); got != tc.want {
			t.Errorf("Contains(%q) = %v", tc.text, got)
		}
	}
	if (*Secrets)(nil).Contains("anything-at-all") {
		t.Error("a nil registry holds a value")
	}
}

func TestUserinfo(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"http://alice:pa%zzSECRET@host/x.git", "http://xxxxx:xxxxx@host/x.git"},
		{`parse "http://alice:SECRET@host:bad/x.git": invalid port ":bad" after host`, `parse "http://xxxxx:xxxxx@host:bad/x.git": invalid port ":bad" after host`},
		{"http://alice:SECRET@[::1/x.git", "http://xxxxx:xxxxx@[::1/x.git"},
		{"https://TOKEN@host/x", "https://xxxxx@host/x"},
		{"https://ghp_TOKEN:x-oauth-basic@github.com/o/r", "https://xxxxx:xxxxx@github.com/o/r"},
		{"ssh://git@host/x.git", "ssh://git@host/x.git"},
		{"ssh://git:SECRET@host/x.git", "ssh://git:xxxxx@host/x.git"},
		{"http://alice:pa/ss@host/x", "http://alice:pa/ss@host/x"}, // see URLSecrets
		{"cronsync: synced https://127.0.0.1:46039/repo@23607b6dc7e0 path .", "cronsync: synced https://127.0.0.1:46039/repo@23607b6dc7e0 path ."},
		{"https://host:8443/repo@v1", "https://host:8443/repo@v1"},
		{"oci://registry.example/chart@sha256:abc", "oci://registry.example/chart@sha256:abc"},
		{"see https://host/a and http://u:SECRET@h/b.", "see https://host/a and http://xxxxx:xxxxx@h/b."},
		{`{"url":"http:\/\/alice:SECRET@host\/x"}`, `{"url":"http:\/\/xxxxx:xxxxx@host\/x"}`},
		{"no url: a@b", "no url: a@b"},
	} {
		if got := Userinfo(tc.in); got != tc.want {
			t.Errorf("Userinfo(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
		if strings.Contains(Clean(tc.in), "SECRET") && !strings.Contains(tc.in, "/SECRET") {
			t.Errorf("Clean(%q) keeps the secret", tc.in)
		}
	}
}

func TestURLSecrets(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"http://alice:pa%zzSECRET@127.0.0.1:1/x.git", []string{"pa%zzSECRET"}},
		{"https://alice:p%40ss@host/x", []string{"p%40ss", "p@ss"}},
		{"https://TOKEN@host/x", []string{"TOKEN"}},
		{"ssh://git@host/x", nil},
		{"/local/path", nil},
		{"http://alice:pa ss@host/x", []string{"pa ss"}},
		{"http://alice:pa/ss@host/x", []string{"pa/ss"}},
		{"https://127.0.0.1:46039/repo", nil},
	} {
		if got := URLSecrets(tc.in); fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("URLSecrets(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestControlCharacters(t *testing.T) {
	forged := "\r\x1b[2Kcronsync: synced \x9b\u202eevil\u2028x\x7f\xff\tok\nnext"
	if got, want := Clean(forged), `\r\x1b[2Kcronsync: synced \x9b\u202eevil\u2028x\x7f\xff`+"\tok\nnext"; got != want {
		t.Errorf("Clean = %q, want %q", got, want)
	}
	if got, want := CleanLine("refs/heads/\x1b]0;pwn\x07\ncronsync_FORGED"), `refs/heads/\x1b]0;pwn\a\ncronsync_FORGED`; got != want {
		t.Errorf("CleanLine = %q, want %q", got, want)
	}
	if got := Clean("plain text, é ü 日本\n"); got != "plain text, é ü 日本\n" {
		t.Errorf("printable text changed: %q", got)
	}
}

func TestWriter(t *testing.T) {
	s := New()
	s.Add("the-secret")
	var b bytes.Buffer
	w := s.Writer(&b)
	fmt.Fprint(w, "first the-sec")
	fmt.Fprint(w, "ret\x1b\nsecond ")
	if b.String() != "first ***\\x1b\n" {
		t.Errorf("after one line: %q", b.String())
	}
	fmt.Fprint(w, "unended the-secret")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if b.String() != "first ***\\x1b\nsecond unended ***" {
		t.Errorf("flushed: %q", b.String())
	}
}

func TestEmptyRegistryReturnsTextAsIs(t *testing.T) {
	var s Secrets
	text := strings.Repeat("deployment.apps/web -n shop configured\n", 100)
	if got := s.Clean(text); got != text {
		t.Error("changed")
	}
	if n := testing.AllocsPerRun(100, func() { s.Clean(text) }); n != 0 {
		t.Errorf("%v allocations for text with nothing to do", n)
	}
}

func BenchmarkWriterFirstSync(b *testing.B) {
	s := New()
	for i := range 200 {
		s.Add(fmt.Sprintf("decrypted-value-%03d-%s", i, strings.Repeat("x", i%40)))
	}
	var lines bytes.Buffer
	for i := range 50000 {
		fmt.Fprintf(&lines, "configmap/app-%05d -n shop created\n", i)
	}
	b.SetBytes(int64(lines.Len()))
	for b.Loop() {
		w := s.Writer(&bytes.Buffer{})
		w.Write(lines.Bytes())
	}
}

// FuzzClean: whatever the text and the secret, what Clean returns holds no
// control character but newline and tab, is valid UTF-8, is what Clean
// returns of it again, and holds the secret in none of its forms.
func FuzzClean(f *testing.F) {
	for _, seed := range [][2]string{
		{"\r\x1b[2Kcronsync: synced ...", "hunter2"},
		{"metadata.name: Invalid value: \"pa\\nss\"", "pa\nss"},
		{"http://alice:pa%zzSECRET@127.0.0.1:1/x.git", "SECRET"},
		{"abab*", "ab*"},
		{"\x1bfoo", `\x1bfoo`},
		{"x\xff\u202e", "\u202eabc"},
		{pem, pem},
	} {
		f.Add(seed[0], seed[1])
	}
	f.Fuzz(func(t *testing.T, text, secret string) {
		s := New()
		s.Add(secret)
		out := s.Clean(text)
		line := s.CleanLine(text)
		for _, got := range []string{out, line} {
			if !utf8.ValidString(got) {
				t.Fatalf("invalid UTF-8: %q", got)
			}
			for _, r := range got {
				if isControl(r) && r != '\n' && r != '\t' {
					t.Fatalf("control character %U in %q", r, got)
				}
			}
			if maskable(secret) {
				for _, form := range Forms(secret) {
					if strings.Contains(got, form) {
						t.Fatalf("Clean(%q) = %q holds %q, a form of %q", text, got, form, secret)
					}
				}
			}
		}
		if strings.Contains(line, "\n") {
			t.Fatalf("CleanLine kept a newline: %q", line)
		}
		if again := s.Clean(out); again != out {
			t.Fatalf("Clean is not idempotent: %q then %q", out, again)
		}
	})
}

func BenchmarkWriterFirstSyncNothingRegistered(b *testing.B) {
	var s Secrets
	var lines bytes.Buffer
	for i := range 50000 {
		fmt.Fprintf(&lines, "configmap/app-%05d -n shop created\n", i)
	}
	b.SetBytes(int64(lines.Len()))
	for b.Loop() {
		w := s.Writer(&bytes.Buffer{})
		w.Write(lines.Bytes())
	}
}
