package render

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/getsops/sops/v3/keyservice"
	vault "github.com/hashicorp/vault/api"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func vaultKey(address string) *keyservice.Key {
	return &keyservice.Key{KeyType: &keyservice.Key_VaultKey{VaultKey: &keyservice.VaultKey{VaultAddress: address, EnginePath: "transit", KeyName: "k"}}}
}

func TestSopsAllows(t *testing.T) {
	aws := &keyservice.Key{KeyType: &keyservice.Key_KmsKey{KmsKey: &keyservice.KmsKey{Arn: "arn:aws:kms:eu-west-1:1:key/x"}}}
	gcp := &keyservice.Key{KeyType: &keyservice.Key_GcpKmsKey{GcpKmsKey: &keyservice.GcpKmsKey{ResourceId: "projects/p/locations/l/keyRings/r/cryptoKeys/k"}}}
	azure := &keyservice.Key{KeyType: &keyservice.Key_AzureKeyvaultKey{AzureKeyvaultKey: &keyservice.AzureKeyVaultKey{VaultUrl: "https://v.vault.azure.net", Name: "k", Version: "1"}}}
	hc := &keyservice.Key{KeyType: &keyservice.Key_HckmsKey{HckmsKey: &keyservice.HckmsKey{KeyId: "cn-north-4:0000"}}}
	for _, tc := range []struct {
		name    string
		opts    Sops
		key     *keyservice.Key
		address string // the Vault address to ask, when allowed
		why     string // part of the refusal, "" when allowed
	}{
		{"nothing enabled: aws", Sops{}, aws, "", "AWS KMS is not enabled (--sops-kms aws)"},
		{"nothing enabled: gcp", Sops{}, gcp, "", "GCP KMS is not enabled (--sops-kms gcp)"},
		{"nothing enabled: azure", Sops{}, azure, "", "Azure Key Vault is not enabled (--sops-kms azure)"},
		{"nothing enabled: hckms", Sops{}, hc, "", "HuaweiCloud KMS is not enabled (--sops-kms hckms)"},
		{"nothing enabled: vault", Sops{}, vaultKey("https://vault:8200"), "", "HashiCorp Vault is not enabled (--sops-kms vault)"},
		{"another type enabled", Sops{KMS: []string{"gcp"}}, aws, "", "--sops-kms aws"},
		{"aws enabled", Sops{KMS: []string{"aws"}}, aws, "", ""},
		{"gcp enabled", Sops{KMS: []string{"aws", "gcp"}}, gcp, "", ""},
		{"azure enabled", Sops{KMS: []string{"azure"}}, azure, "", ""},
		{"hckms enabled", Sops{KMS: []string{"hckms"}}, hc, "", ""},
		{"vault enabled, no address", Sops{KMS: []string{"vault"}}, vaultKey("https://vault:8200"), "", "https://vault:8200 is not an allowed Vault (--sops-vault-address https://vault:8200)"},
		{"vault at its address", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("https://vault:8200"), "https://vault:8200", ""},
		{"vault, default port written out", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://Vault.example"}}, vaultKey("https://vault.example:443/"), "https://vault.example:443", ""},
		{"vault, another port", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("https://vault:8201"), "", "https://vault:8201 is not an allowed Vault"},
		{"vault, another scheme", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("http://vault:8200"), "", "http://vault:8200 is not an allowed Vault"},
		{"vault, another host", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("https://vault.evil:8200"), "", "not an allowed Vault"},
		{"vault, a host that only starts the same", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault"}}, vaultKey("https://vault.evil"), "", "not an allowed Vault"},
		{"vault, credentials in the address", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("https://u:p@vault:8200"), "", "no credentials in the address"},
		{"vault, a path", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("https://vault:8200/x"), "", "scheme://host[:port], nothing else"},
		{"vault, a unix socket", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://vault:8200"}}, vaultKey("unix:///run/vault.sock"), "", "http or https"},
		{"an unknown key type", Sops{KMS: []string{"aws", "gcp", "azure", "vault", "hckms"}}, &keyservice.Key{}, "", "no such key service"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			address, err := tc.opts.allows(tc.key)
			if tc.why == "" {
				if err != nil || address != tc.address {
					t.Errorf("refused (%v) or address %q, want allowed at %q", err, address, tc.address)
				}
				return
			}
			var refused *kmsNotAsked
			if !errors.As(err, &refused) || !strings.Contains(err.Error(), tc.why) || address != "" {
				t.Errorf("got %v (address %q), want a refusal saying %q", err, address, tc.why)
			}
		})
	}
}

func TestSopsCheck(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts Sops
		err  string
		want []string // VaultAddresses after
	}{
		{"none", Sops{}, "", nil},
		{"all", Sops{KMS: []string{"aws", "gcp", "azure", "hckms"}}, "", nil},
		{"unknown", Sops{KMS: []string{"aws", "s3"}}, `"s3" is not one of aws,gcp,azure,vault,hckms`, nil},
		{"vault without address", Sops{KMS: []string{"vault"}}, "needs --sops-vault-address", nil},
		{"address without vault", Sops{VaultAddresses: []string{"https://v"}}, "needs vault in --sops-kms", nil},
		{"addresses normalised", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"HTTPS://Vault.Example", "http://[::1]:8200/"}}, "", []string{"https://vault.example:443", "http://[::1]:8200"}},
		{"a path", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://v/v1/transit"}}, "nothing else", nil},
		{"a query", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"https://v?x=1"}}, "nothing else", nil},
		{"no scheme", Sops{KMS: []string{"vault"}, VaultAddresses: []string{"vault:8200"}}, "http or https", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.opts.Check()
			if tc.err == "" {
				if err != nil {
					t.Fatal(err)
				}
				if strings.Join(tc.opts.VaultAddresses, " ") != strings.Join(tc.want, " ") {
					t.Errorf("addresses %q, want %q", tc.opts.VaultAddresses, tc.want)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("got %v, want %q", err, tc.err)
			}
		})
	}
}

// stuckKey is a key source that ignores its context, as an SDK call that
// takes none does.
type stuckKey struct{ release chan struct{} }

func (k stuckKey) DecryptContext(context.Context) ([]byte, error) {
	<-k.release
	return []byte("late"), nil
}

func TestAskKMSIsAbandonedWithTheContext(t *testing.T) {
	k := stuckKey{release: make(chan struct{})}
	defer close(k.release)
	cause := errors.New("SIGTERM signal received")
	ctx, cancel := context.WithCancelCause(context.Background())
	time.AfterFunc(50*time.Millisecond, func() { cancel(cause) })
	start := time.Now()
	plain, err := askKMS(ctx, k)
	if plain != nil || !errors.Is(err, cause) {
		t.Errorf("got %q, %v; want the context's cause", plain, err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("returned after %s", d)
	}
}

func TestKMSFailureKeepsTheClassOnly(t *testing.T) {
	const body = "answer-body-55aa"
	for _, tc := range []struct {
		err   error
		want  string
		retry bool
	}{
		{&url.Error{Op: "Post", URL: "https://v:8200/v1/t/decrypt/k", Err: &net.OpError{Op: "dial", Net: "tcp", Err: errors.New(body)}}, "cannot connect: dial tcp: failed", true},
		{fmt.Errorf("x: %w", &net.DNSError{Err: body, Name: "vault.invalid", IsNotFound: true}), "cannot resolve vault.invalid", true},
		{&url.Error{Op: "Post", URL: "https://v", Err: context.DeadlineExceeded}, "no answer in time", true},
		{fmt.Errorf("%s: %w", body, &vault.ResponseError{StatusCode: 503, Errors: []string{body}}), "request failed: HTTP 503", true},
		{fmt.Errorf("%s: %w", body, &vault.ResponseError{StatusCode: 429, Errors: []string{body}}), "request failed: HTTP 429", true},
		{fmt.Errorf("%s: %w", body, &vault.ResponseError{StatusCode: 403, Errors: []string{body}}), "request failed: HTTP 403", false},
		{fmt.Errorf("x: %w", status.Error(codes.Unavailable, body)), "request failed: gRPC Unavailable", true},
		{fmt.Errorf("x: %w", status.Error(codes.PermissionDenied, body)), "request failed: gRPC PermissionDenied", false},
		{errors.New(body), "the SDK's message is not shown", false},
	} {
		got := kmsFailure(tc.err)
		if !strings.Contains(got.Error(), tc.want) || strings.Contains(got.Error(), body) {
			t.Errorf("%v: reduced to %q, want %q and no body", tc.err, got, tc.want)
		}
		var op *net.OpError
		var dns *net.DNSError
		retry := errors.Is(got, context.DeadlineExceeded) || errors.Is(got, ErrKMSUnavailable) || errors.As(got, &op) || errors.As(got, &dns)
		if retry != tc.retry {
			t.Errorf("%q: retryable %v, want %v", got, retry, tc.retry)
		}
	}
}

// A Vault that answers a refusal with a body: what the client says holds
// the status, never the body; a redirect elsewhere is not followed.
func TestVaultAnswersAreNotEchoed(t *testing.T) {
	const marker = "internal-answer-7f3a"
	var other atomic.Int32
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { other.Add(1) }))
	defer elsewhere.Close()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/refuse/decrypt/k":
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`{"errors":["` + marker + `"]}`))
		case "/v1/garbage/decrypt/k":
			w.Write([]byte(marker + " is not JSON"))
		case "/v1/redirect/decrypt/k":
			http.Redirect(w, r, elsewhere.URL+"/v1/x/decrypt/k", http.StatusTemporaryRedirect)
		}
	}))
	defer srv.Close()
	t.Setenv("VAULT_TOKEN", "token-9d1e")
	t.Setenv("VAULT_MAX_RETRIES", "0")
	opts := Sops{KMS: []string{"vault"}, VaultAddresses: []string{srv.URL}}
	if err := opts.Check(); err != nil {
		t.Fatal(err)
	}
	var guard vaultGuard
	for _, engine := range []string{"refuse", "garbage", "redirect"} {
		key := vaultKey(srv.URL)
		key.GetVaultKey().EnginePath = engine
		address, err := opts.allows(key)
		if err != nil {
			t.Fatal(err)
		}
		mk, err := kmsMasterKey(key, []byte("vault:v1:abc"), address, &guard, opts.VaultAddresses)
		if err != nil {
			t.Fatal(err)
		}
		_, err = askKMS(context.Background(), mk)
		if err == nil {
			t.Fatalf("%s: no error", engine)
		}
		// The SDK's own message holds no body either: the transport
		// dropped it.
		if strings.Contains(err.Error(), marker) {
			t.Errorf("%s: the SDK's error holds the body: %v", engine, err)
		}
		reduced := kmsFailure(err).Error()
		if strings.Contains(reduced, marker) || strings.Contains(reduced, "token-9d1e") {
			t.Errorf("%s: %s", engine, reduced)
		}
		if want := map[string]string{"refuse": "request failed: HTTP 403", "garbage": "failed; the SDK's message is not shown", "redirect": "not an allowed Vault"}[engine]; !strings.Contains(reduced, want) {
			t.Errorf("%s: %q, want %q", engine, reduced, want)
		}
		t.Logf("%s: %s", engine, reduced)
	}
	if other.Load() != 0 {
		t.Errorf("the redirect was followed to a Vault that is not allowed")
	}
}
