package apiserver

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/hex"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
	"github.com/ProtonMail/go-crypto/openpgp/armor"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// Fixtures are encrypted here, with the sops CLI and age-keygen built at
// the versions cronsync decrypts with (hack/testbin): nothing pre-encrypted
// is committed.

// ageKey makes an age identity and returns its key file and public key.
func ageKey(t *testing.T) (file, recipient string) {
	t.Helper()
	file = filepath.Join(t.TempDir(), "keys.txt")
	out, err := exec.Command(testenv.MustTool(t, "age-keygen"), "-o", file).CombinedOutput()
	if err != nil {
		t.Fatalf("age-keygen: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`age1[0-9a-z]+`).FindString(string(out))
	if m == "" {
		t.Fatalf("age-keygen said %q", out)
	}
	return file, m
}

// sopsEncrypt encrypts plaintext, named like name (the CLI picks the format
// by extension), with args such as --age RECIPIENT.
func sopsEncrypt(t *testing.T, name, plaintext string, env []string, args ...string) string {
	t.Helper()
	dir := t.TempDir() // no .sops.yaml of anyone's
	in := filepath.Join(dir, name)
	if err := os.WriteFile(in, []byte(plaintext), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.MustTool(t, "sops"), append(append([]string{"--encrypt"}, args...), in)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("sops --encrypt %s: %v\n%s", name, err, stderr.String())
	}
	return stdout.String()
}

const (
	agePassword   = "age-plaintext-8c1f"
	ageConfigured = "whole-configmap-plaintext-31aa"
	ageEnvValue   = "dotenv-plaintext-77d2"
	ageBinary     = "binary-plaintext-\x00\x01-9e4b"
	ageResource   = "kustomize-resource-plaintext-5e60"
)

// sopsRepo is a repository of age-encrypted files in every place the
// README lists: a Secret with encrypted_regex, a whole ConfigMap, and a
// kustomization with an encrypted resource and a secretGenerator reading
// an encrypted .env and an encrypted binary file.
func sopsRepo(t *testing.T, ns, recipient string) *testenv.Repo {
	r := testenv.NewRepo(t)
	regex := []string{"--age", recipient, "--encrypted-regex", "^(data|stringData)$"}
	r.Write("apps/ns.yaml", namespace(ns))
	r.Write("apps/secret.yaml", sopsEncrypt(t, "secret.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: "+ns+"\nstringData:\n  password: "+agePassword+"\n", nil, regex...))
	r.Write("apps/config.yaml", sopsEncrypt(t, "config.yaml",
		"apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: whole\n  namespace: "+ns+"\ndata:\n  token: "+ageConfigured+"\n", nil, "--age", recipient))
	r.Write("apps/k/kustomization.yaml", "namespace: "+ns+"\nresources: [resource.yaml]\ngeneratorOptions: {disableNameSuffixHash: true}\n"+
		"secretGenerator:\n- name: generated\n  envs: [app.env]\n  files: [blob=blob.bin]\n")
	r.Write("apps/k/resource.yaml", sopsEncrypt(t, "resource.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: from-kustomize\nstringData:\n  key: "+ageResource+"\n", nil, regex...))
	r.Write("apps/k/app.env", sopsEncrypt(t, "app.env", "ENV_VALUE="+ageEnvValue+"\n", nil, "--age", recipient))
	r.Write("apps/k/blob.bin", sopsEncrypt(t, "blob.bin", ageBinary, nil, "--age", recipient))
	return r
}

func secretValue(t *testing.T, ns, name, key string) string {
	t.Helper()
	u, err := kube.Resource(secrets).Namespace(ns).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, _, _ := unstructured.NestedString(u.Object, "data", key)
	b, _ := base64.StdEncoding.DecodeString(v)
	return string(b)
}

func TestSopsAge(t *testing.T) {
	ns := testenv.Unique("sops-age")
	keyFile, recipient := ageKey(t)
	r := sopsRepo(t, ns, recipient)
	r.Commit("encrypted")
	set := testenv.Unique("sops")
	args := []string{"--repo", r.Dir, "--path", "apps", "--applyset", "default/" + set, "--lease", "default/" + set, "--sops-age-key-file", keyFile}

	out := mustSync(t, args...)
	if !strings.Contains(out.stdout, "5 objects: 5 created") {
		t.Errorf("the first sync:\n%s", out.stdout)
	}
	for _, c := range []struct{ name, key, want string }{
		{"db", "password", agePassword},
		{"from-kustomize", "key", ageResource},
		{"generated", "ENV_VALUE", ageEnvValue},
		{"generated", "blob", ageBinary},
	} {
		if got := secretValue(t, ns, c.name, c.key); got != c.want {
			t.Errorf("secret %s key %s holds %q, want the plaintext", c.name, c.key, got)
		}
	}
	if got := get(t, configMaps, ns, "whole", "data", "token"); got != ageConfigured {
		t.Errorf("the whole-file ConfigMap holds %q", got)
	}
	if strings.Contains(out.stdout+out.stderr, "plaintext") {
		t.Errorf("a plaintext is printed:\n%s%s", out.stdout, out.stderr)
	}

	// The same commit again is decided from the LISTs without decrypting
	// anything: it does not even need the key.
	noKey := append(append([]string{}, args[:len(args)-1]...), filepath.Join(t.TempDir(), "absent"))
	out = mustSync(t, noKey...)
	if !strings.Contains(out.stdout, "without reading its files") || !strings.Contains(out.stdout, "without a request), 0 failed") {
		t.Errorf("the same commit was read again:\n%s", out.stdout)
	}

	// A hand edit of a decrypted Secret is repaired, and its values stay
	// masked in the drift line.
	if _, err := kube.Resource(secrets).Namespace(ns).Patch(context.Background(), "db", types.MergePatchType,
		[]byte(`{"data":{"password":"`+base64.StdEncoding.EncodeToString([]byte("by-hand-8f0e"))+`"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
		t.Fatal(err)
	}
	out = mustSync(t, args...)
	if !strings.Contains(out.stdout, "secret/db -n "+ns+" configured (drift repaired)") || strings.Contains(out.stdout, "by-hand-8f0e") || strings.Contains(out.stdout, agePassword) {
		t.Errorf("the hand edit:\n%s", out.stdout)
	}
	if got := secretValue(t, ns, "db", "password"); got != agePassword {
		t.Errorf("password %q after the run", got)
	}
}

// The plaintext is never seen: not in a dry run's diff, an error the API
// server echoes it in, the JSON, the termination message, Events, the
// parent's annotations, the webhook's body, nor any file of the work
// directory while the run is under way.
func TestSopsPlaintextIsNeverSeen(t *testing.T) {
	ns := testenv.Unique("sops-unseen")
	const secretType = "plaintext-service-type-41c7"
	keyFile, recipient := ageKey(t)
	hook, posts := webhookRecorder(t)
	r := sopsRepo(t, ns, recipient)
	r.Commit("encrypted")
	set := testenv.Unique("unseen")
	work := t.TempDir()
	termLog := filepath.Join(t.TempDir(), "termination-log")
	args := []string{"--repo", r.Dir, "--path", "apps", "--applyset", "default/" + set, "--lease", "default/" + set, "--sops-age-key-file", keyFile,
		"--work-dir", work, "--termination-log", termLog, "--notify-url", hook, "--notify-on", "always", "--output", "json"}
	plaintexts := []string{agePassword, ageConfigured, ageEnvValue, ageResource, "binary-plaintext", secretType, "changed-plaintext-0d3e"}
	var seen []string
	look := func(what, text string) {
		for _, p := range plaintexts {
			if strings.Contains(text, p) || strings.Contains(text, base64.StdEncoding.EncodeToString([]byte(p))) {
				seen = append(seen, what+" holds "+p)
			}
		}
	}

	// While the first run waits for a Deployment that never rolls out
	// here, every file under the work directory is read.
	r.Write("apps/web.yaml", deployment(ns, "web", 1))
	r.Commit("and a Deployment")
	cmd := cronsyncCmd(append(args, "--wait=true", "--wait-timeout", "3s", "--timeout", "20s")...)
	done := make(chan testenv.Run, 1)
	go func() { done <- testenv.RunBinary(t, cmd) }()
	scans := 0
	for waiting := true; waiting; {
		select {
		case res := <-done:
			waiting = false
			look("stdout", res.Stdout)
			look("stderr", res.Stderr)
			if res.Code != exitUnhealthy {
				t.Errorf("exit %d, want %d", res.Code, exitUnhealthy)
			}
		case <-time.After(100 * time.Millisecond):
			filepath.WalkDir(work, func(p string, d fs.DirEntry, err error) error {
				if err == nil && d.Type().IsRegular() {
					b, _ := os.ReadFile(p)
					look("work file "+p, string(b))
					scans++
				}
				return nil
			})
		}
	}
	if scans == 0 {
		t.Errorf("no file of the work directory was seen while the run went on")
	}

	// A server dry run of a changed value prints a diff; a decrypted
	// object the API server refuses has its value echoed in the message.
	r.Write("apps/secret.yaml", sopsEncrypt(t, "secret.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: db\n  namespace: "+ns+"\nstringData:\n  password: changed-plaintext-0d3e\n", nil, "--age", recipient, "--encrypted-regex", "^(data|stringData)$"))
	r.Commit("changed")
	out := cronsync(t, nil, append(args, "--dry-run=server")...)
	if out.code != 0 || !strings.Contains(out.stderr, "secret/db -n "+ns+" configured (server dry run)") || !strings.Contains(out.stderr, "*** (after)") {
		t.Errorf("dry run: exit %d\n%s", out.code, out.stderr)
	}
	look("dry-run stdout", out.stdout)
	look("dry-run stderr", out.stderr)

	r.Write("apps/svc.yaml", sopsEncrypt(t, "svc.yaml",
		"apiVersion: v1\nkind: Service\nmetadata:\n  name: refused\n  namespace: "+ns+"\nspec:\n  type: "+secretType+"\n  ports: [{port: 80}]\n", nil, "--age", recipient))
	r.Commit("refused")
	out = cronsync(t, nil, args...)
	if out.code != exitContent || !hasLineWith(out.stderr, "service/refused -n "+ns+" (apps/svc.yaml): ", `Unsupported value: "***"`) {
		t.Errorf("refused: exit %d\n%s", out.code, out.stderr)
	}
	look("stdout", out.stdout)
	look("stderr", out.stderr)
	b, _ := os.ReadFile(termLog)
	look("the termination message", string(b))
	parent, err := clientset().CoreV1().Secrets("default").Get(context.Background(), set, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range parent.Annotations {
		look("annotation "+k, v)
	}
	events, err := clientset().CoreV1().Events("default").List(context.Background(), metav1.ListOptions{FieldSelector: "involvedObject.name=" + set})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range events.Items {
		look("Event "+e.Reason, e.Message)
	}
	for _, p := range posts() {
		look("webhook body", p)
	}
	n := len(posts())
	if n < 3 || len(events.Items) < 2 {
		t.Errorf("%d webhook posts, %d Events: the runs were not all seen (a dry run leaves no Event)", n, len(events.Items))
	}
	for _, s := range seen {
		t.Error(s)
	}
}

// pgpKey makes a PGP key pair: a GnuPG home whose public keyring the sops
// CLI encrypts with, and an armored private key file for cronsync.
func pgpKey(t *testing.T) (home, keyFile, fingerprint string) {
	t.Helper()
	e, err := openpgp.NewEntity("cronsync test", "", "test@example.com", nil)
	if err != nil {
		t.Fatal(err)
	}
	home = t.TempDir()
	var pub bytes.Buffer
	if err := e.Serialize(&pub); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(home, "pubring.gpg"), pub.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	var priv bytes.Buffer
	w, err := armor.Encode(&priv, openpgp.PrivateKeyType, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SerializePrivate(w, nil); err != nil {
		t.Fatal(err)
	}
	w.Close()
	keyFile = filepath.Join(t.TempDir(), "private.asc")
	if err := os.WriteFile(keyFile, priv.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return home, keyFile, strings.ToUpper(hex.EncodeToString(e.PrimaryKey.Fingerprint))
}

func TestSopsPGP(t *testing.T) {
	ns := testenv.Unique("sops-pgp")
	home, keyFile, fpr := pgpKey(t)
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	r.Write("secret.yaml", sopsEncrypt(t, "secret.yaml",
		"apiVersion: v1\nkind: Secret\nmetadata:\n  name: pgp\n  namespace: "+ns+"\nstringData:\n  password: pgp-plaintext-2b9a\n",
		[]string{"GNUPGHOME=" + home}, "--pgp", fpr, "--encrypted-regex", "^(data|stringData)$"))
	r.Commit("pgp")
	mustSync(t, "--repo", r.Dir, "--sops-pgp-key-file", keyFile)
	if got := secretValue(t, ns, "pgp", "password"); got != "pgp-plaintext-2b9a" {
		t.Errorf("password %q", got)
	}
}

// Without the key, with another key, a file edited after encryption, and
// metadata that is not SOPS's: each its exit status, one line naming the
// file, and nothing written.
func TestSopsFaults(t *testing.T) {
	ns := testenv.Unique("sops-faults")
	keyFile, recipient := ageKey(t)
	otherKey, _ := ageKey(t)
	setup := testenv.NewRepo(t)
	setup.Write("ns.yaml", namespace(ns))
	setup.Commit("namespace")
	mustSync(t, "--repo", setup.Dir)
	secret := func(name string) string {
		return sopsEncrypt(t, "s.yaml", "apiVersion: v1\nkind: Secret\nmetadata:\n  name: "+name+"\n  namespace: "+ns+"\nstringData:\n  password: fault-plaintext-a41d\n",
			nil, "--age", recipient, "--encrypted-regex", "^(data|stringData)$")
	}
	tampered := strings.Replace(secret("tampered"), "name: tampered", "name: tampered-by-hand", 1)
	malformed := regexp.MustCompile(`(?m)^    mac: .*$`).ReplaceAllString(secret("malformed"), "    mac: ENC[AES256_GCM,data:broken]")
	for _, tc := range []struct {
		name, file string
		args       []string
		code       int
		want       []string
	}{
		{"no key", secret("nokey"), nil, exitConfig, []string{"apps/s.yaml: SOPS-encrypted for age " + recipient + ", and no key this run has opens it", "no age key given (--sops-age-key-file)"}},
		{"another key", secret("otherkey"), []string{"--sops-age-key-file", otherKey}, exitConfig, []string{"apps/s.yaml: SOPS-encrypted for age " + recipient, "identity did not match any of the recipients"}},
		{"a key file that is not there", secret("nofile"), []string{"--sops-age-key-file", "/nonexistent/keys.txt"}, exitConfig, []string{"apps/s.yaml: SOPS-encrypted for age " + recipient, "--sops-age-key-file: open /nonexistent/keys.txt"}},
		{"edited after encryption", tampered, []string{"--sops-age-key-file", keyFile}, exitContent, []string{"apps/s.yaml: SOPS: the MAC does not verify"}},
		{"malformed metadata", malformed, []string{"--sops-age-key-file", keyFile}, exitContent, []string{"apps/s.yaml: SOPS metadata: the MAC cannot be read"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.NewRepo(t)
			r.Write("apps/valid.yaml", configMap(ns, testenv.Unique("valid"), "v"))
			r.Write("apps/s.yaml", tc.file)
			r.Commit(tc.name)
			before := snapshot(t)
			out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--path", "apps"}, tc.args...)...)
			if out.code != tc.code {
				t.Errorf("exit %d, want %d", out.code, tc.code)
			}
			if !hasLineWith(out.stderr, tc.want...) {
				t.Errorf("no stderr line contains all of %q", tc.want)
			}
			if strings.Contains(out.stdout+out.stderr, "fault-plaintext") || strings.Contains(out.stderr, "AGE-SECRET-KEY") {
				t.Errorf("a secret is printed")
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

// A Secret whose data values are themselves SOPS documents, in each store's
// form, is applied decrypted, as Flux does after its build: the key's name
// says the store. One edited after encryption, or in a form its name does
// not say, is refused naming the Secret and the key, and nothing is applied.
func TestSopsInSecretData(t *testing.T) {
	ns := testenv.Unique("sops-data")
	keyFile, recipient := ageKey(t)
	enc := func(name, plain string) string {
		return base64.StdEncoding.EncodeToString([]byte(sopsEncrypt(t, name, plain, nil, "--age", recipient)))
	}
	plain := map[string]string{
		"app.yaml": "password: nested-yaml-plaintext-6d1a\n",
		"app.json": `{"password": "nested-json-plaintext-0b7e"}`,
		"app.env":  "PASSWORD=nested-dotenv-plaintext-c3f9\n",
		"blob":     "nested-binary-plaintext-\x00-91aa",
	}
	secret := func(name string, data map[string]string) string {
		s := "apiVersion: v1\nkind: Secret\nmetadata:\n  name: " + name + "\n  namespace: " + ns + "\ndata:\n"
		for k, v := range data {
			s += "  " + k + ": " + v + "\n"
		}
		return s
	}
	data := map[string]string{
		"app.yaml": enc("app.yaml", plain["app.yaml"]),
		"app.json": enc("app.json", plain["app.json"]),
		"app.env":  enc("app.env", plain["app.env"]),
		"blob":     enc("blob.bin", plain["blob"]),
		"clear":    base64.StdEncoding.EncodeToString([]byte("not encrypted")),
		// Read in the form it was written in, written in the form the
		// key's name says, as Flux does.
		"as.json": enc("as.yaml", "password: nested-converted-plaintext-5e2c\n"),
	}
	r := testenv.NewRepo(t)
	r.Write("apps/ns.yaml", namespace(ns))
	r.Write("apps/secret.yaml", secret("nested", data))
	r.Commit("nested")
	args := []string{"--repo", r.Dir, "--path", "apps", "--sops-age-key-file", keyFile, "--output", "json"}
	out := cronsync(t, nil, args...)
	if out.code != 0 {
		t.Fatalf("exit %d:\n%s", out.code, out.stderr)
	}
	for key, want := range map[string]string{"app.yaml": "nested-yaml-plaintext-6d1a", "app.json": "nested-json-plaintext-0b7e", "app.env": "PASSWORD=nested-dotenv-plaintext-c3f9", "blob": plain["blob"], "clear": "not encrypted", "as.json": `"password": "nested-converted-plaintext-5e2c"`} {
		got := secretValue(t, ns, "nested", key)
		if !strings.Contains(got, want) || strings.Contains(got, "ENC[") {
			t.Errorf("data %s holds %q, want the plaintext %q", key, got, want)
		}
	}
	if strings.Contains(out.stdout+out.stderr, "nested-") {
		t.Errorf("a plaintext is printed:\n%s%s", out.stdout, out.stderr)
	}

	for _, tc := range []struct {
		name string
		data map[string]string
		want []string
	}{
		{"edited after encryption", map[string]string{"app.yaml": base64.StdEncoding.EncodeToString([]byte(regexp.MustCompile(`(?m)^c: .*\n`).ReplaceAllString(sopsEncrypt(t, "app.yaml", "a: b\nc: d\n", nil, "--age", recipient), "")))},
			[]string{"secret/tampered -n " + ns + " (apps/secret.yaml", `data key "app.yaml"`, "the MAC does not verify"}},
		{"a plaintext that cannot take the form its key's name says", map[string]string{"app": enc("app.yaml", "a: b\n")},
			[]string{"secret/tampered -n " + ns + " (apps/secret.yaml", `data key "app": SOPS: the yaml document's plaintext cannot be written as binary`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.Write("apps/secret.yaml", secret("nested", data)+"---\n"+secret("tampered", tc.data))
			r.Commit(tc.name)
			before := snapshot(t)
			out := cronsync(t, nil, args...)
			if out.code != exitContent || !hasLineWith(out.stderr, tc.want...) {
				t.Errorf("exit %d, want %d and a line with %q:\n%s", out.code, exitContent, tc.want, out.stderr)
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}
