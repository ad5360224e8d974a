package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/cronsync/cronsync/internal/testenv"
)

// sinks is every place a run's outcome shows: stdout, stderr, the
// termination message, the ApplySet parent's annotations, the parent's
// Events and the webhook's bodies.
type sinks struct {
	t       *testing.T
	set     string
	termLog string
	posts   func() []string
	args    []string
}

func newSinks(t *testing.T) *sinks {
	hook, posts := webhookRecorder(t)
	s := &sinks{t: t, set: testenv.Unique("sinks"), termLog: filepath.Join(t.TempDir(), "termination-log"), posts: posts}
	s.args = []string{"--applyset", "default/" + s.set, "--termination-log", s.termLog, "--notify-url", hook, "--notify-on", "always"}
	return s
}

// all returns what each sink holds now, by name.
func (s *sinks) all(out result) map[string]string {
	s.t.Helper()
	got := map[string]string{"stdout": out.stdout, "stderr": out.stderr}
	if b, err := os.ReadFile(s.termLog); err == nil {
		got["the termination message"] = string(b)
	}
	ctx := context.Background()
	if parent, err := clientset().CoreV1().Secrets("default").Get(ctx, s.set, metav1.GetOptions{}); err == nil {
		for k, v := range parent.Annotations {
			got["annotation "+k] = v
		}
	}
	events, err := clientset().CoreV1().Events("default").List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + s.set})
	if err != nil {
		s.t.Fatal(err)
	}
	for i, e := range events.Items {
		got[fmt.Sprintf("Event %d %s", i, e.Reason)] = e.Message
	}
	for i, p := range s.posts() {
		got[fmt.Sprintf("webhook body %d", i)] = p
	}
	return got
}

// absent fails the test for every sink that holds one of values, as it is
// or in base64.
func (s *sinks) absent(out result, values ...string) {
	s.t.Helper()
	for name, text := range s.all(out) {
		for _, v := range values {
			if strings.Contains(text, v) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(v))) {
				s.t.Errorf("%s holds %q:\n%s", name, v, text)
			}
		}
	}
}

// A kustomize replacement copies a decrypted password into a ConfigMap's
// name. The run refuses it before anything is sent, naming the file and the
// field, and the password shows in no sink: not on an object line, not as
// "configmap/<password> created (server dry run)".
func TestDecryptedValueInIdentityIsRefused(t *testing.T) {
	const password = "hunter2-valid-dns-name-5f3a" // a name the API server would take
	ns := testenv.Unique("identity")
	keyFile, recipient := ageKey(t)
	s := newSinks(t)
	r := testenv.NewRepo(t)
	r.Write("apps/ns.yaml", namespace(ns))
	r.Commit("namespace")
	mustSync(t, append([]string{"--repo", r.Dir, "--path", "apps"}, s.args...)...)

	r.Write("apps/k/kustomization.yaml", "namespace: "+ns+"\nresources: [secret.yaml, cm.yaml]\n"+
		"replacements:\n- source: {kind: Secret, name: db, fieldPath: stringData.password}\n"+
		"  targets:\n  - select: {kind: ConfigMap, name: placeholder}\n    fieldPaths: [metadata.name]\n")
	r.Write("apps/k/secret.yaml", sopsEncrypt(t, "secret.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\nstringData:\n  password: "+password+"\n",
		nil, "--age", recipient, "--encrypted-regex", "^(data|stringData)$"))
	r.Write("apps/k/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: placeholder\ndata:\n  k: v\n")
	r.Commit("a password in a name")
	before := snapshot(t)

	for _, dryRun := range []string{"", "server", "client"} {
		t.Run("dry run "+dryRun, func(t *testing.T) {
			s.t = t
			args := append([]string{"--repo", r.Dir, "--path", "apps", "--sops-age-key-file", keyFile, "--output", "json"}, s.args...)
			if dryRun != "" {
				args = append(args, "--dry-run="+dryRun)
			}
			out := cronsync(t, nil, args...)
			if out.code != exitContent {
				t.Errorf("exit %d, want %d", out.code, exitContent)
			}
			if !hasLineWith(out.stderr, "error: configmap/*** -n "+ns+" (apps/k", "metadata.name holds a value decrypted from a SOPS-encrypted file; refused") {
				t.Errorf("no line names the file and the field:\n%s", out.stderr)
			}
			if regexp.MustCompile(`(?m)^configmap/.* created`).MatchString(out.stdout + out.stderr) {
				t.Errorf("an object is reported created:\n%s%s", out.stdout, out.stderr)
			}
			s.absent(out, password)
		})
	}
	if got := get(t, configMaps, ns, password); got != "<absent>" {
		t.Errorf("the ConfigMap named by the password exists")
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
}

// A multi-line decrypted value (a PEM key) copied into a label comes back
// in the API server's refusal quoted, its newlines written \n: masked there
// too, and in every sink.
func TestMultiLineDecryptedValueIsMaskedInTheServersError(t *testing.T) {
	lines := []string{"QmVnaW5Ub3BTZWNyZXRMaW5lT25lLTBhMWIyYzNkNGU1ZjZh", "U2Vjb25kTGluZU9mVGhlS2V5LTc4OWFiY2RlZjAxMjM0NTY3", "VGhpcmQtbGluZS1lbmQtMTIzNDU2Nzg5MA=="}
	pem := "-----BEGIN TEST PRIVATE KEY-----\n" + strings.Join(lines, "\n") + "\n-----END TEST PRIVATE KEY-----\n"
	ns := testenv.Unique("pem")
	keyFile, recipient := ageKey(t)
	setup := testenv.NewRepo(t)
	setup.Write("ns.yaml", namespace(ns))
	setup.Commit("namespace")
	mustSync(t, "--repo", setup.Dir)

	s := newSinks(t)
	r := testenv.NewRepo(t)
	r.Write("apps/k/kustomization.yaml", "namespace: "+ns+"\nresources: [secret.yaml, cm.yaml]\n"+
		"replacements:\n- source: {kind: Secret, name: tls, fieldPath: stringData.key}\n"+
		"  targets:\n  - select: {kind: ConfigMap, name: labelled}\n    fieldPaths: [metadata.labels.key]\n    options: {create: true}\n")
	r.Write("apps/k/secret.yaml", sopsEncrypt(t, "secret.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: tls\nstringData:\n  key: |\n    "+strings.ReplaceAll(strings.TrimSuffix(pem, "\n"), "\n", "\n    ")+"\n",
		nil, "--age", recipient, "--encrypted-regex", "^(data|stringData)$"))
	r.Write("apps/k/cm.yaml", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: labelled\ndata:\n  k: v\n")
	r.Commit("a key in a label")
	before := snapshot(t)
	out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps", "--sops-age-key-file", keyFile, "--output", "json"}, s.args...)...)
	if out.code != exitContent {
		t.Errorf("exit %d, want %d:\n%s", out.code, exitContent, out.stderr)
	}
	if !hasLineWith(out.stderr, "configmap/labelled -n "+ns+" (apps/k", "metadata.labels", "***") {
		t.Errorf("no line says the label is refused, masked:\n%s", out.stderr)
	}
	s.absent(out, append(lines, strconv.Quote(pem))...)
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
}

// Credentials in a --repo URL that does not parse (a bad escape, a bad
// port, an unclosed IPv6 bracket) show in no sink: redaction does not give
// up on what url.Parse refuses.
func TestCredentialsOfAnUnparsableURLAreNeverPrinted(t *testing.T) {
	for _, url := range []string{
		"http://alice:pa%zzSECRET@127.0.0.1:1/x.git",
		"http://alice:SECRET@127.0.0.1:bad/x.git",
		"http://alice:SECRET@[::1/x.git",
		"http://alice:pa/SECRET@127.0.0.1:1/x.git",
	} {
		t.Run(url, func(t *testing.T) {
			s := newSinks(t)
			out := cronsync(t, nil, append([]string{"--repo", url, "--output", "json", "--git-timeout", "5s"}, s.args...)...)
			if out.code == exitOK {
				t.Fatalf("exit 0:\n%s", out.stderr)
			}
			if !strings.Contains(out.stderr, "error: ") {
				t.Errorf("no error printed:\n%s", out.stderr)
			}
			s.absent(out, "SECRET")
			if len(s.all(out)) < 4 {
				t.Errorf("sinks missing: %v", s.all(out))
			}
		})
	}
}

// A Jsonnet `error` and a Helm `fail` with a carriage return and ANSI
// escapes cannot rewrite the terminal's line into a fake success: every
// control character is printed escaped, visibly.
func TestControlCharactersFromTheRepositoryAreEscaped(t *testing.T) {
	for _, tc := range []struct{ name, file, content, shown string }{
		{"jsonnet", "apps/x.jsonnet", `error "x\r\u001b[2Kcronsync: synced fake-jsonnet"`, `x\r\x1b[2Kcronsync: synced fake-jsonnet`},
		// The chart's error is folded onto one line, its CR a space.
		{"helm", "apps/c/templates/cm.yaml", `{{ fail "x\r\x1b[2Kcronsync: synced fake-helm" }}`, `x \x1b[2Kcronsync: synced fake-helm`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newSinks(t)
			r := testenv.NewRepo(t)
			r.Write(tc.file, tc.content)
			if tc.name == "helm" {
				r.Write("apps/c/Chart.yaml", "apiVersion: v2\nname: c\nversion: 0.1.0\n")
			}
			r.Commit(tc.name)
			out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps"}, s.args...)...)
			if out.code != exitContent {
				t.Errorf("exit %d, want %d:\n%s", out.code, exitContent, out.stderr)
			}
			if !strings.Contains(out.stderr, tc.shown) {
				t.Errorf("the escapes are not shown:\n%s", out.stderr)
			}
			for name, text := range s.all(out) {
				if strings.ContainsAny(text, "\r\x1b") {
					t.Errorf("%s holds a raw CR or ESC: %q", name, text)
				}
				for line := range strings.SplitSeq(text, "\n") {
					if strings.HasPrefix(line, "cronsync: synced fake") {
						t.Errorf("%s holds a forged line: %q", name, line)
					}
				}
			}
		})
	}
}

// A Git server advertises HEAD as a branch whose name holds terminal
// escapes and a newline: the `is commit` line (and any other) shows them
// escaped, and no line begins with what follows the newline.
func TestRefNameFromTheServerIsOneEscapedLine(t *testing.T) {
	const evil = "refs/heads/\x1b]0;pwn\x07\x1b[2J\ncronsync_FORGED_LINE_synced"
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", testenv.Unique("refname"), "v"))
	r.Commit("one")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if !strings.HasSuffix(req.URL.Path, "/info/refs") {
				h.ServeHTTP(w, req)
				return
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			for k, v := range rec.Header() {
				w.Header()[k] = v
			}
			w.Header().Del("Content-Length")
			w.WriteHeader(rec.Code)
			w.Write(advertiseHEADAs(t, rec.Body.Bytes(), evil))
		})
	})
	s := newSinks(t)
	out := cronsync(t, nil, append([]string{"--repo", srv.URL + "/" + filepath.Base(r.Dir), "--dry-run=client"}, s.args...)...)
	if !strings.Contains(out.stdout+out.stderr, `\x1b]0;pwn\a\x1b[2J\ncronsync_FORGED_LINE_synced`) {
		t.Errorf("the ref's name is not shown escaped (exit %d):\n%s%s", out.code, out.stdout, out.stderr)
	}
	for name, text := range s.all(out) {
		if strings.ContainsAny(text, "\x1b\x07") {
			t.Errorf("%s holds a raw escape: %q", name, text)
		}
		for line := range strings.SplitSeq(text, "\n") {
			if strings.HasPrefix(line, "cronsync_FORGED") {
				t.Errorf("%s holds a forged line: %q", name, line)
			}
		}
	}
}

// advertiseHEADAs rewrites git http-backend's ref advertisement (protocol
// v0) so that HEAD is a symbolic ref to name, a branch at HEAD's commit.
func advertiseHEADAs(t *testing.T, adv []byte, name string) []byte {
	var pkts [][]byte // nil is a flush
	for len(adv) >= 4 {
		n, err := strconv.ParseUint(string(adv[:4]), 16, 16)
		if err != nil {
			t.Errorf("advertisement: %v", err)
			return adv
		}
		if n == 0 {
			pkts, adv = append(pkts, nil), adv[4:]
			continue
		}
		pkts, adv = append(pkts, adv[4:n]), adv[n:]
	}
	var out bytes.Buffer
	pkt := func(p []byte) {
		if p == nil {
			out.WriteString("0000")
			return
		}
		fmt.Fprintf(&out, "%04x", len(p)+4)
		out.Write(p)
	}
	symref := regexp.MustCompile(`symref=HEAD:\S+`)
	for i, p := range pkts {
		if i == len(pkts)-1 && p == nil {
			pkt([]byte(string(pkts[2][:40]) + " " + name + "\n"))
		}
		if bytes.Contains(p, []byte(" HEAD\x00")) {
			p = symref.ReplaceAllLiteral(p, []byte("symref=HEAD:"+name))
		}
		pkt(p)
	}
	return out.Bytes()
}
