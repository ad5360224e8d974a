package gitsrc_test

import (
	"context"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func cloneWith(t *testing.T, url string, creds gitsrc.Credentials) (*gitsrc.Checkout, error) {
	t.Helper()
	co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, Credentials: creds, WorkDir: t.TempDir()})
	if err == nil {
		t.Cleanup(func() { co.Close() })
	}
	return co, err
}

func TestHTTPSPasswordFileAndCA(t *testing.T) {
	const token = "ghp_s3cr3t"
	r := testenv.NewRepo(t)
	r.Write("a.yaml", "v: 1\n")
	r.Commit("one")
	backend := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	// A TLS front with a self-signed certificate (a private CA) and basic
	// auth, proxying to the git backend.
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if u, p, ok := req.BasicAuth(); !ok || u != "bot" || p != token {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		req.URL.Scheme, req.URL.Host = "http", strings.TrimPrefix(backend.URL, "http://")
		resp, err := http.DefaultTransport.RoundTrip(req.Clone(req.Context()))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		for k, v := range resp.Header {
			w.Header()[k] = v
		}
		w.WriteHeader(resp.StatusCode)
		buf := make([]byte, 32<<10)
		for {
			n, err := resp.Body.Read(buf)
			w.Write(buf[:n])
			if err != nil {
				return
			}
		}
	}))
	defer srv.Close()
	ca := writeFile(t, "ca.pem", string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})))
	url := srv.URL + "/" + filepath.Base(r.Dir)
	right := writeFile(t, "token", token+"\n")
	wrong := writeFile(t, "wrong", "nope-"+token)

	if _, err := cloneWith(t, url, gitsrc.Credentials{Username: "bot", PasswordFile: right, CAFile: ca}); err != nil {
		t.Fatalf("right token and CA: %v", err)
	}
	_, err := cloneWith(t, url, gitsrc.Credentials{Username: "bot", PasswordFile: wrong, CAFile: ca})
	if !errors.Is(err, gitsrc.ErrAuth) || strings.Contains(err.Error(), token) {
		t.Errorf("wrong token: err = %v, want ErrAuth without the token", err)
	}
	_, err = cloneWith(t, url, gitsrc.Credentials{Username: "bot", PasswordFile: right})
	if !errors.Is(err, gitsrc.ErrAuth) || !strings.Contains(err.Error(), "--git-ca-file") {
		t.Errorf("without --git-ca-file: err = %v, want the certificate refused", err)
	}
	_, err = cloneWith(t, url, gitsrc.Credentials{Username: "bot", PasswordFile: filepath.Join(t.TempDir(), "missing"), CAFile: ca})
	if !errors.Is(err, gitsrc.ErrAuth) {
		t.Errorf("missing password file: err = %v, want ErrAuth", err)
	}
}

func TestSSH(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("a.yaml", "v: ssh\n")
	r.Commit("one")
	client, clientPriv := testenv.NewEd25519(t)
	hostEd, _ := testenv.NewEd25519(t)
	hostRSA := testenv.NewRSA(t)
	// The server has an RSA and an ed25519 host key, and prefers RSA.
	addr := testenv.ServeSSH(t, filepath.Dir(r.Dir), client.PublicKey(), hostRSA, hostEd)
	url := "ssh://git@" + addr + "/" + filepath.Base(r.Dir)

	block, err := ssh.MarshalPrivateKey(clientPriv, "")
	if err != nil {
		t.Fatal(err)
	}
	key := writeFile(t, "id_ed25519", string(pem.EncodeToMemory(block)))
	knownHosts := func(keys ...ssh.PublicKey) string {
		var lines []string
		for _, k := range keys {
			lines = append(lines, knownhosts.Line([]string{knownhosts.Normalize(addr)}, k))
		}
		return writeFile(t, "known_hosts", strings.Join(lines, "\n")+"\n")
	}

	t.Run("ed25519-only known_hosts", func(t *testing.T) {
		co, err := cloneWith(t, url, gitsrc.Credentials{SSHKeyFile: key, SSHKnownHostsFile: knownHosts(hostEd.PublicKey())})
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(co.Dir, "a.yaml")); string(b) != "v: ssh\n" {
			t.Errorf("a.yaml = %q", b)
		}
	})
	t.Run("lazy", func(t *testing.T) {
		// The objects are fetched over a second SSH session, after the one
		// that read the ref advertisement has closed.
		co, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: url, WorkDir: t.TempDir(), Lazy: true,
			Credentials: gitsrc.Credentials{SSHKeyFile: key, SSHKnownHostsFile: knownHosts(hostEd.PublicKey())}})
		if err != nil {
			t.Fatal(err)
		}
		defer co.Close()
		if err := co.Write(context.Background()); err != nil {
			t.Fatal(err)
		}
		if b, _ := os.ReadFile(filepath.Join(co.Dir, "a.yaml")); string(b) != "v: ssh\n" {
			t.Errorf("a.yaml = %q", b)
		}
	})
	t.Run("rsa known_hosts", func(t *testing.T) {
		if _, err := cloneWith(t, url, gitsrc.Credentials{SSHKeyFile: key, SSHKnownHostsFile: knownHosts(hostRSA.PublicKey())}); err != nil {
			t.Fatal(err)
		}
	})
	other, _ := testenv.NewEd25519(t)
	for _, tc := range []struct {
		name  string
		creds gitsrc.Credentials
		want  string
	}{
		{"wrong host key", gitsrc.Credentials{SSHKeyFile: key, SSHKnownHostsFile: knownHosts(other.PublicKey())}, "host key does not match"},
		{"no known_hosts", gitsrc.Credentials{SSHKeyFile: key}, "needs --ssh-known-hosts-file"},
		{"missing known_hosts file", gitsrc.Credentials{SSHKeyFile: key, SSHKnownHostsFile: filepath.Join(t.TempDir(), "nope")}, "reading --ssh-known-hosts-file"},
		{"key not authorized", gitsrc.Credentials{SSHKeyFile: writeOtherKey(t), SSHKnownHostsFile: knownHosts(hostEd.PublicKey())}, "refused the SSH key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := cloneWith(t, url, tc.creds)
			if !errors.Is(err, gitsrc.ErrAuth) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrAuth saying %q", err, tc.want)
			}
		})
	}
}

func writeOtherKey(t *testing.T) string {
	_, priv := testenv.NewEd25519(t)
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	return writeFile(t, "other_key", string(pem.EncodeToMemory(block)))
}
