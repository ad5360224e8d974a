package render

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/getsops/sops/v3/azkv"
	"github.com/getsops/sops/v3/gcpkms"
	"github.com/getsops/sops/v3/hckms"
	"github.com/getsops/sops/v3/hcvault"
	"github.com/getsops/sops/v3/keyservice"
	"github.com/getsops/sops/v3/kms"
	vault "github.com/hashicorp/vault/api"
	"github.com/huaweicloud/huaweicloud-sdk-go-v3/core/sdkerr"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A SOPS file names the key services that open it in its metadata, and the
// MAC does not cover the metadata: whoever can commit can add an hc_vault
// entry pointing anywhere. So no key service but the run's own age and PGP
// keys is asked unless the CronJob names its type (--sops-kms), and for
// Vault its address (--sops-vault-address); the SDK's credentials are not
// even looked for otherwise.

// sopsKMSTypes are the key services --sops-kms can enable, by the name it
// takes, with the identifier sops stores their keys under.
var sopsKMSTypes = []struct {
	// name is what --sops-kms takes.
	name string
	// identifier is the key's type in SOPS metadata.
	identifier string
	// what names the service for people.
	what string
}{
	{"aws", kms.KeyTypeIdentifier, "AWS KMS"},
	{"gcp", gcpkms.KeyTypeIdentifier, "GCP KMS"},
	{"azure", azkv.KeyTypeIdentifier, "Azure Key Vault"},
	{"vault", hcvault.KeyTypeIdentifier, "HashiCorp Vault"},
	{"hckms", hckms.KeyTypeIdentifier, "HuaweiCloud KMS"},
}

// SopsKMSNames lists the names --sops-kms takes, for its help text.
func SopsKMSNames() string {
	names := make([]string, len(sopsKMSTypes))
	for i, t := range sopsKMSTypes {
		names[i] = t.name
	}
	return strings.Join(names, ",")
}

// Check says what is wrong with the key service flags, naming the flag.
// It normalises VaultAddresses.
func (s *Sops) Check() error {
	names := strings.Split(SopsKMSNames(), ",")
	for _, k := range s.KMS {
		if !slices.Contains(names, k) {
			return fmt.Errorf("--sops-kms: %q is not one of %s", k, SopsKMSNames())
		}
	}
	vaultOn := slices.Contains(s.KMS, "vault")
	switch {
	case vaultOn && len(s.VaultAddresses) == 0:
		return errors.New("--sops-kms vault needs --sops-vault-address: the Vault servers that may be asked")
	case !vaultOn && len(s.VaultAddresses) > 0:
		return errors.New("--sops-vault-address needs vault in --sops-kms")
	}
	for i, a := range s.VaultAddresses {
		n, err := vaultOrigin(a)
		if err != nil {
			return fmt.Errorf("--sops-vault-address %q: %w", a, err)
		}
		s.VaultAddresses[i] = n
	}
	return nil
}

// vaultOrigin reduces a Vault address to scheme://host:port, the port
// written out, and refuses anything else: a path, a query, credentials, a
// scheme other than http and https (the Vault client would also take
// unix://). Addresses are allowed and contacted in this form only, so that
// what is compared is what is asked.
func vaultOrigin(address string) (string, error) {
	u, err := url.Parse(address)
	if err != nil {
		return "", errors.New("not a URL")
	}
	scheme := strings.ToLower(u.Scheme)
	port := u.Port()
	switch {
	case scheme != "http" && scheme != "https":
		return "", errors.New("the scheme must be http or https")
	case u.User != nil:
		return "", errors.New("no credentials in the address")
	case u.Opaque != "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return "", errors.New("must be scheme://host[:port], nothing else")
	case port == "" && scheme == "https":
		port = "443"
	case port == "" && scheme == "http":
		port = "80"
	}
	return scheme + "://" + net.JoinHostPort(strings.ToLower(u.Hostname()), port), nil
}

// vaultAllowed says whether origin, as vaultOrigin returns it, is one of
// allowed, in whatever form allowed names it.
func vaultAllowed(allowed []string, origin string) bool {
	for _, a := range allowed {
		if o, err := vaultOrigin(a); err == nil && o == origin {
			return true
		}
	}
	return false
}

// kmsNotAsked: the run may not ask this key's service. It is never
// contacted, and its credentials never looked for.
type kmsNotAsked struct {
	// key names the key: its type and, for Vault, its address.
	key string
	// why says which flag would let the run ask it.
	why string
}

func (e *kmsNotAsked) Error() string { return e.key + ": not asked: " + e.why }

// allows decides whether the run may ask the service of key, which is
// neither age nor PGP, to open a data key: nil if so, a *kmsNotAsked saying
// which flag enables it if not. For Vault it also returns the address to
// ask, in the form it was allowed in.
func (s *Sops) allows(key *keyservice.Key) (vaultAddress string, err error) {
	identifier, name := keyIdentifier(key)
	for _, t := range sopsKMSTypes {
		if t.identifier != identifier {
			continue
		}
		if !slices.Contains(s.KMS, t.name) {
			return "", &kmsNotAsked{key: name, why: t.what + " is not enabled (--sops-kms " + t.name + ")"}
		}
		if t.name != "vault" {
			return "", nil
		}
		origin, err := vaultOrigin(key.GetVaultKey().GetVaultAddress())
		if err != nil {
			return "", &kmsNotAsked{key: name, why: "the address " + err.Error()}
		}
		if !vaultAllowed(s.VaultAddresses, origin) {
			return "", &kmsNotAsked{key: name, why: origin + " is not an allowed Vault (--sops-vault-address " + origin + ")"}
		}
		return origin, nil
	}
	return "", &kmsNotAsked{key: name, why: "cronsync knows no such key service"}
}

// keyIdentifier returns the SOPS type identifier of key and how the
// errors name it: the type and whatever locates the key.
func keyIdentifier(key *keyservice.Key) (identifier, name string) {
	switch {
	case key.GetKmsKey() != nil:
		return kms.KeyTypeIdentifier, kms.KeyTypeIdentifier + " " + key.GetKmsKey().GetArn()
	case key.GetGcpKmsKey() != nil:
		return gcpkms.KeyTypeIdentifier, gcpkms.KeyTypeIdentifier + " " + key.GetGcpKmsKey().GetResourceId()
	case key.GetAzureKeyvaultKey() != nil:
		k := key.GetAzureKeyvaultKey()
		return azkv.KeyTypeIdentifier, azkv.KeyTypeIdentifier + " " + k.GetVaultUrl() + "/keys/" + k.GetName() + "/" + k.GetVersion()
	case key.GetVaultKey() != nil:
		return hcvault.KeyTypeIdentifier, hcvault.KeyTypeIdentifier + " " + key.GetVaultKey().GetVaultAddress()
	case key.GetHckmsKey() != nil:
		return hckms.KeyTypeIdentifier, hckms.KeyTypeIdentifier + " " + key.GetHckmsKey().GetKeyId()
	}
	return "unknown", "a key of an unknown type"
}

// masterKey is a key of a cloud KMS, as sops's key sources implement it.
type masterKey interface {
	DecryptContext(context.Context) ([]byte, error)
}

// kmsMasterKey makes the sops key source for key, holding ciphertext. A
// Vault key asks vaultAddress, the allowed form of its address, through
// guard.
func kmsMasterKey(key *keyservice.Key, ciphertext []byte, vaultAddress string, guard *vaultGuard, allowed []string) (masterKey, error) {
	enc := string(ciphertext)
	switch {
	case key.GetKmsKey() != nil:
		k := key.GetKmsKey()
		ec := make(map[string]*string, len(k.GetContext()))
		for name, v := range k.GetContext() {
			ec[name] = &v
		}
		return &kms.MasterKey{Arn: k.GetArn(), Role: k.GetRole(), EncryptionContext: ec, AwsProfile: k.GetAwsProfile(), EncryptedKey: enc}, nil
	case key.GetGcpKmsKey() != nil:
		return &gcpkms.MasterKey{ResourceID: key.GetGcpKmsKey().GetResourceId(), EncryptedKey: enc}, nil
	case key.GetAzureKeyvaultKey() != nil:
		k := key.GetAzureKeyvaultKey()
		return &azkv.MasterKey{VaultURL: k.GetVaultUrl(), Name: k.GetName(), Version: k.GetVersion(), EncryptedKey: enc}, nil
	case key.GetVaultKey() != nil:
		k := key.GetVaultKey()
		mk := &hcvault.MasterKey{VaultAddress: vaultAddress, EnginePath: k.GetEnginePath(), KeyName: k.GetKeyName(), EncryptedKey: enc}
		hc, err := guard.client(allowed)
		if err != nil {
			return nil, err
		}
		hcvault.NewHTTPClient(hc).ApplyToMasterKey(mk)
		return mk, nil
	case key.GetHckmsKey() != nil:
		mk, err := hckms.NewMasterKey(key.GetHckmsKey().GetKeyId())
		if err != nil {
			return nil, err
		}
		mk.EncryptedKey = enc
		return mk, nil
	}
	return nil, errors.New("unknown key type")
}

// askKMS opens ciphertext with the key service of key, bounded by ctx.
// Every sops key source at the version in go.mod takes a context, but
// HuaweiCloud's SDK call does not, and a context reaches only what an SDK
// passes it to: the call runs aside, and is abandoned, still running, when
// ctx ends, which then ends the run with ctx's cause.
func askKMS(ctx context.Context, mk masterKey) ([]byte, error) {
	type result struct {
		plain []byte
		err   error
	}
	done := make(chan result, 1)
	go func() {
		plain, err := mk.DecryptContext(ctx)
		done <- result{plain, err}
	}()
	select {
	case r := <-done:
		if r.err != nil && ctx.Err() != nil {
			return nil, context.Cause(ctx)
		}
		return r.plain, r.err
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
}

// ErrKMSUnavailable: a key service answered that it cannot serve now (a
// 5xx, 429, or gRPC's equivalents): the next run may get through, so the
// file's SopsKeyError is retryable rather than the Job's configuration.
var ErrKMSUnavailable = errors.New("the key service is unavailable for now")

// kmsFailure reduces what a key service's SDK said to its class: an HTTP
// status, a gRPC code, a connection or TLS failure, a timeout. The SDKs
// put the server's answer in their errors (Vault's client the whole body),
// and the server is the one the file names: printing it would read any URL
// the pod can reach back into the logs, Events and webhook. What is kept
// is wrapped, so that a failure that passes stays retryable.
func kmsFailure(err error) error {
	var (
		code     int
		vaultErr *vault.ResponseError
		azErr    *azcore.ResponseError
		hcErr    *sdkerr.ServiceResponseError
		httpErr  interface{ HTTPStatusCode() int }
		grpcErr  interface{ GRPCStatus() *status.Status }
		opErr    *net.OpError
		dnsErr   *net.DNSError
		certErr  *tls.CertificateVerificationError
		authErr  x509.UnknownAuthorityError
		hostErr  x509.HostnameError
		timeout  interface{ Timeout() bool }
	)
	switch {
	case errors.As(err, &vaultErr):
		code = vaultErr.StatusCode
	case errors.As(err, &azErr):
		code = azErr.StatusCode
	case errors.As(err, &hcErr):
		code = hcErr.StatusCode
	case errors.As(err, &httpErr):
		code = httpErr.HTTPStatusCode()
	}
	switch {
	case errors.Is(err, errNotAllowedVault):
		return errNotAllowedVault
	case code >= 500 || code == http.StatusTooManyRequests:
		return fmt.Errorf("request failed: HTTP %d: %w", code, ErrKMSUnavailable)
	case code != 0:
		return fmt.Errorf("request failed: HTTP %d", code)
	case errors.As(err, &grpcErr) && grpcErr.GRPCStatus() != nil:
		switch c := grpcErr.GRPCStatus().Code(); c {
		case codes.Unavailable, codes.ResourceExhausted, codes.DeadlineExceeded, codes.Aborted, codes.Internal:
			return fmt.Errorf("request failed: gRPC %s: %w", c, ErrKMSUnavailable)
		default:
			return fmt.Errorf("request failed: gRPC %s", c)
		}
	case errors.As(err, &certErr), errors.As(err, &authErr), errors.As(err, &hostErr):
		return errors.New("TLS: the server's certificate is not trusted")
	case errors.As(err, &dnsErr):
		return fmt.Errorf("cannot resolve %s: %w", dnsErr.Name, &net.DNSError{Err: "lookup failed", Name: dnsErr.Name, IsNotFound: dnsErr.IsNotFound, IsTimeout: dnsErr.IsTimeout})
	case errors.As(err, &opErr):
		return fmt.Errorf("cannot connect: %w", &net.OpError{Op: opErr.Op, Net: opErr.Net, Addr: opErr.Addr, Err: errors.New("failed")})
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &timeout) && timeout.Timeout():
		// The SDK's own timeout (the Vault client's is 60s), within the
		// run's.
		return fmt.Errorf("no answer in time: %w", context.DeadlineExceeded)
	}
	return errors.New("failed; the SDK's message is not shown, as it may hold the server's answer (the sops CLI in the pod shows it)")
}

// vaultGuard is the HTTP client every Vault request of a run goes
// through: only to an allowed address (the Vault client follows 307
// redirects by itself, token and all), and with no error body, whose text
// the client would put in its error. It is made once, when the first
// allowed Vault key is asked: the environment the Vault client reads
// (VAULT_CACERT, VAULT_SKIP_VERIFY, ...) is read only then.
type vaultGuard struct {
	once sync.Once
	hc   *http.Client
	err  error
}

// client returns the HTTP client, which asks only the allowed Vaults.
func (g *vaultGuard) client(allowed []string) (*http.Client, error) {
	g.once.Do(func() {
		cfg := vault.DefaultConfig()
		if cfg.Error != nil {
			g.err = fmt.Errorf("the Vault client's configuration from the environment: %w", cfg.Error)
			return
		}
		hc := *cfg.HttpClient
		hc.Transport = &vaultTransport{allowed: allowed, base: cfg.HttpClient.Transport}
		g.hc = &hc
	})
	return g.hc, g.err
}

// vaultTransport sends a request only to an allowed Vault, and hands the
// client no error body.
type vaultTransport struct {
	allowed []string
	base    http.RoundTripper
}

// errNotAllowedVault: the Vault client was about to send a request (and
// its token) to an address that is not allowed, the Location of a
// redirect or VAULT_AGENT_ADDR.
var errNotAllowedVault = errors.New("a request to a server that is not an allowed Vault (a redirect, or VAULT_AGENT_ADDR) was not sent")

// maxVaultAnswer bounds a successful answer: a data key, base64 in JSON.
const maxVaultAnswer = 64 << 10

func (t *vaultTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	origin, err := vaultOrigin(req.URL.Scheme + "://" + req.URL.Host)
	if err != nil || !vaultAllowed(t.allowed, origin) {
		return nil, errNotAllowedVault
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		// The Vault client reads the body of a refusal into its error;
		// the status is all it gets.
		resp.Body.Close()
		resp.Body, resp.ContentLength = http.NoBody, 0
		resp.Header.Del("Content-Length")
		return resp, nil
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxVaultAnswer+1))
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	if len(body) > maxVaultAnswer {
		return nil, fmt.Errorf("an answer of over %d bytes", maxVaultAnswer)
	}
	resp.Body = io.NopCloser(bytes.NewReader(body))
	return resp, nil
}
