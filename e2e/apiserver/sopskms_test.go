package apiserver

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A SOPS file's metadata is not covered by its MAC: whoever can commit can
// add a key service to it. These files are encrypted for age, and then an
// hc_vault entry is written into their metadata by hand, pointing at a
// listener of the test's.

// vaultListener is a Vault that answers with handle; it counts the
// requests that reach it and closes asked at the first.
// handle is given a channel closed when the test ends, for a handler that
// never answers to return then.
func vaultListener(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, end <-chan struct{})) (url string, requests func() int32, asked <-chan struct{}) {
	var n atomic.Int32
	ch, end := make(chan struct{}), make(chan struct{})
	var once sync.Once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Add(1)
		once.Do(func() { close(ch) })
		io.Copy(io.Discard, r.Body)
		handle(w, r, end)
	}))
	t.Cleanup(func() { close(end); srv.Close() })
	return srv.URL, n.Load, ch
}

// withVaultKey adds to the SOPS metadata of the encrypted YAML file an
// hc_vault key at address, in the same key group as the file's own keys.
func withVaultKey(t *testing.T, encrypted, address string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^sops:\n( +)`).FindStringSubmatchIndex(encrypted)
	if m == nil {
		t.Fatalf("no sops: metadata in\n%s", encrypted)
	}
	in := encrypted[m[2]:m[3]]
	entry := "sops:\n" + in + "hc_vault:\n" +
		in + in + "- vault_address: " + address + "\n" +
		in + in + "  engine_path: transit\n" +
		in + in + "  key_name: cronsync\n" +
		in + in + "  created_at: \"2026-01-01T00:00:00Z\"\n" +
		in + in + "  enc: vault:v1:bm90LWEtcmVhbC1kYXRhLWtleQ==\n"
	return encrypted[:m[0]] + entry + encrypted[m[2]:]
}

// vaultSecretRepo is a repository of n age-encrypted Secrets, each with a
// Vault key at address added to its metadata.
func vaultSecretRepo(t *testing.T, ns, recipient, address string, n int) *testenv.Repo {
	r := testenv.NewRepo(t)
	r.Write("apps/ns.yaml", namespace(ns))
	for i := range n {
		name := "vault-" + string(rune('a'+i))
		r.Write("apps/"+name+".yaml", withVaultKey(t, sopsEncrypt(t, "s.yaml",
			"apiVersion: v1\nkind: Secret\nmetadata:\n  name: "+name+"\n  namespace: "+ns+"\nstringData:\n  password: vault-plaintext-3c8e\n",
			nil, "--age", recipient, "--encrypted-regex", "^(data|stringData)$"), address))
	}
	r.Commit("encrypted, and a Vault key added by hand")
	return r
}

// vaultTokens is an environment holding a Vault token in VAULT_TOKEN and
// another in ~/.vault-token, a home of the test's.
func vaultTokens(t *testing.T) (env []string, tokens []string) {
	home := t.TempDir()
	const envToken, fileToken = "hvs.env-token-51f0", "hvs.file-token-a6c2"
	if err := os.WriteFile(filepath.Join(home, ".vault-token"), []byte(fileToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"HOME=" + home, "VAULT_TOKEN=" + envToken}, []string{envToken, fileToken}
}

// TestSopsVaultInMetadataIsNotAsked: a Vault key a commit added is not
// asked unless the CronJob enabled Vault at that address: with the age key
// the file decrypts, without it the run exits 2 naming the recipients and
// the flag; no request reaches the listener either way, and no token is
// printed.
func TestSopsVaultInMetadataIsNotAsked(t *testing.T) {
	ns := testenv.Unique("sops-vault")
	keyFile, recipient := ageKey(t)
	addr, requests, _ := vaultListener(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		w.WriteHeader(http.StatusForbidden)
	})
	other, _, _ := vaultListener(t, func(http.ResponseWriter, *http.Request, <-chan struct{}) {})
	r := vaultSecretRepo(t, ns, recipient, addr, 1)
	env, tokens := vaultTokens(t)
	set := testenv.Unique("vault")
	base := []string{"--repo", r.Dir, "--path", "apps", "--applyset", "default/" + set, "--lease", "default/" + set}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no key, Vault not enabled", nil, exitConfig, []string{
			// sops lists a key group's KMS keys before its age keys,
			// and would ask them in that order.
			"apps/vault-a.yaml: SOPS-encrypted for hc_vault " + addr + "/v1/transit/keys/cronsync, age " + recipient + ", and no key this run has opens it",
			"hc_vault " + addr + ": not asked: HashiCorp Vault is not enabled (--sops-kms vault)"}},
		{"no key, another Vault enabled", []string{"--sops-kms", "vault", "--sops-vault-address", other}, exitConfig, []string{
			"apps/vault-a.yaml: SOPS-encrypted for ", "age " + recipient,
			"hc_vault " + addr + ": not asked: ", " is not an allowed Vault (--sops-vault-address "}},
		{"no key, every other KMS enabled", []string{"--sops-kms", "aws,gcp,azure,hckms"}, exitConfig, []string{
			"apps/vault-a.yaml: SOPS-encrypted for ", "age " + recipient, "(--sops-kms vault)"}},
		{"the age key", []string{"--sops-age-key-file", keyFile}, exitOK, nil},
		// The run's own keys are tried first: an enabled Vault is not
		// asked for a file they open.
		{"the age key, this Vault enabled", []string{"--sops-age-key-file", keyFile, "--sops-kms", "vault", "--sops-vault-address", addr}, exitOK, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			termLog := filepath.Join(t.TempDir(), "termination-log")
			before := snapshot(t)
			out := cronsync(t, env, append(append([]string{"--termination-log", termLog}, base...), tc.args...)...)
			if out.code != tc.code {
				t.Errorf("exit %d, want %d", out.code, tc.code)
			}
			if tc.want != nil && !hasLineWith(out.stderr, tc.want...) {
				t.Errorf("no stderr line contains all of %q", tc.want)
			}
			if n := requests(); n != 0 {
				t.Errorf("%d requests reached the Vault the file names", n)
			}
			msg, _ := os.ReadFile(termLog)
			for _, s := range append(tokens, "vault-plaintext") {
				if strings.Contains(out.stdout+out.stderr+string(msg), s) {
					t.Errorf("%q is printed", s)
				}
			}
			if tc.code == exitOK {
				if got := secretValue(t, ns, "vault-a", "password"); got != "vault-plaintext-3c8e" {
					t.Errorf("password %q", got)
				}
			} else {
				// The run's own Lease is taken and released whatever it
				// finds.
				after := snapshot(t)
				delete(before, "leases/default/"+set)
				delete(after, "leases/default/"+set)
				if diff := diffSnapshots(before, after); len(diff) > 0 {
					t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
				}
			}
		})
	}
}

// TestSopsVaultAnswerIsNotEchoed: an enabled Vault that refuses with a
// body (an internal service the file points at, read back): the run
// says the status, and the body appears in no output.
func TestSopsVaultAnswerIsNotEchoed(t *testing.T) {
	ns := testenv.Unique("sops-vault-echo")
	_, recipient := ageKey(t)
	const marker = "internal-body-marker-e41b"
	var mu sync.Mutex
	var sentTokens []string
	addr, requests, _ := vaultListener(t, func(w http.ResponseWriter, r *http.Request, _ <-chan struct{}) {
		mu.Lock()
		sentTokens = append(sentTokens, r.Header.Get("X-Vault-Token"))
		mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"errors":["` + marker + `: permission denied"]}`))
	})
	r := vaultSecretRepo(t, ns, recipient, addr, 1)
	env, tokens := vaultTokens(t)
	hook, posts := webhookRecorder(t)
	termLog := filepath.Join(t.TempDir(), "termination-log")
	set := testenv.Unique("vault-echo")
	for _, output := range []string{"text", "json"} {
		out := cronsync(t, env, "--repo", r.Dir, "--path", "apps", "--applyset", "default/"+set, "--lease", "default/"+set,
			"--sops-kms", "vault", "--sops-vault-address", addr, "--termination-log", termLog, "--notify-url", hook, "--output", output)
		if out.code != exitConfig {
			t.Errorf("--output %s: exit %d, want %d", output, out.code, exitConfig)
		}
		if !hasLineWith(out.stderr, "apps/vault-a.yaml: SOPS-encrypted for", "hc_vault "+addr+": request failed: HTTP 403") {
			t.Errorf("--output %s: the refusal's status is not said", output)
		}
		msg, _ := os.ReadFile(termLog)
		sinks := out.stdout + out.stderr + string(msg) + strings.Join(posts(), "\n")
		for _, s := range append(tokens, marker, "vault-plaintext") {
			if strings.Contains(sinks, s) {
				t.Errorf("--output %s: %q is in the output", output, s)
			}
		}
	}
	if requests() == 0 || len(posts()) < 2 {
		t.Errorf("%d requests reached the Vault, %d webhook posts: the runs did not go as planned", requests(), len(posts()))
	}
	// Enabled, the SDK's credential chain is used: VAULT_TOKEN first.
	mu.Lock()
	defer mu.Unlock()
	for _, tok := range sentTokens {
		if tok != tokens[0] {
			t.Errorf("the Vault got token %q, want VAULT_TOKEN's", tok)
		}
	}
}

// A Vault that never answers, enabled: --timeout and SIGTERM still end the
// run in time, whatever the Vault client's own timeout (60s) and retries.
func TestSopsVaultThatNeverAnswers(t *testing.T) {
	ns := testenv.Unique("sops-vault-hang")
	_, recipient := ageKey(t)
	addr, requests, asked := vaultListener(t, func(w http.ResponseWriter, r *http.Request, end <-chan struct{}) {
		select {
		case <-r.Context().Done():
		case <-end:
		}
	})
	r := vaultSecretRepo(t, ns, recipient, addr, 6)
	env, _ := vaultTokens(t)
	args := func(set string) []string {
		return []string{"--repo", r.Dir, "--path", "apps", "--applyset", "default/" + set, "--lease", "default/" + set,
			"--sops-kms", "vault", "--sops-vault-address", addr}
	}

	t.Run("--timeout", func(t *testing.T) {
		start := time.Now()
		out := cronsync(t, env, append(args(testenv.Unique("vault-hang")), "--timeout", "20s")...)
		elapsed := time.Since(start)
		if elapsed > 30*time.Second {
			t.Errorf("took %s with --timeout 20s", elapsed)
		}
		if out.code != exitRetry || !strings.Contains(out.stderr, "--timeout 20s exceeded") {
			t.Errorf("exit %d, want %d and the timeout named", out.code, exitRetry)
		}
		if requests() == 0 {
			t.Errorf("the Vault was never asked: the run did not wait on it")
		}
	})

	t.Run("SIGTERM", func(t *testing.T) {
		cmd := cronsyncCmd(append(args(testenv.Unique("vault-hang")), "--timeout", "5m")...)
		cmd.Env = append(cmd.Env, env...)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-asked:
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Fatal("the run never asked the Vault")
		}
		time.Sleep(2 * time.Second) // a few seconds into the wait
		start := time.Now()
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
			t.Fatalf("cronsync did not stop within 10s of SIGTERM; stderr:\n%s", stderr.String())
		}
		t.Logf("stopped %s after SIGTERM; stderr:\n%s", time.Since(start), stderr.String())
		if code := cmd.ProcessState.ExitCode(); code != exitRetry {
			t.Errorf("exit %d, want %d", code, exitRetry)
		}
		if !strings.Contains(stderr.String(), syscall.SIGTERM.String()+" signal received") {
			t.Errorf("stderr does not say SIGTERM stopped it")
		}
	})
}
