package testenv

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/envtest"
)

// FaultKind is what a FaultProxy does to the request a Fault lands on.
type FaultKind string

const (
	// FaultReset resets the client's connection (a TCP RST), and with it
	// every request in flight on it, as a load balancer or a crashed
	// server would. Before the request reached the server, or, with
	// Fault.AfterUpstream, after the server did it and answered.
	FaultReset FaultKind = "reset"
	// FaultStall answers nothing until the client gives up on the request
	// (its deadline, or the run's), or Fault.Hold passes, then resets the
	// connection; with AfterUpstream the server has done the request.
	FaultStall FaultKind = "stall"
	// FaultCut sends the server's status, headers and the first part of
	// its body (Fault.CutFraction of it), then aborts the answer.
	FaultCut FaultKind = "cut"
	// FaultStatus answers Fault.Status itself (503, 429) without asking
	// the server, as an overloaded server or a load balancer does.
	FaultStatus FaultKind = "status"
	// FaultCall calls Fault.Call when the request arrives, then forwards
	// it: what a test does to a process (a signal, a restart) at that
	// moment.
	FaultCall FaultKind = "call"
	// FaultDelay forwards the request Fault.Hold late, as a slow network
	// or an overloaded server would answer it.
	FaultDelay FaultKind = "delay"
)

// Fault is one fault a FaultProxy injects on cue.
type Fault struct {
	Kind FaultKind
	// Nth is the request, counted from 1 among those Match accepts since
	// Arm, that the fault lands on first.
	Nth int
	// Count is how many matching requests in a row it lands on (0: 1).
	Count int
	// Match picks the requests that count; nil counts every request.
	Match func(*http.Request) bool
	// AfterUpstream: a reset or stall happens once the server has
	// answered, so the request took effect and only its answer is lost.
	AfterUpstream bool
	// CutFraction is how much of the body a cut answer carries, in [0, 1).
	CutFraction float64
	// Status and RetryAfter (a Retry-After header, if not empty) are what
	// FaultStatus answers.
	Status     int
	RetryAfter string
	// Hold bounds a stall (0 waits for the client alone), and is how
	// late FaultDelay forwards.
	Hold time.Duration
	// Call is what FaultCall runs, on the request's goroutine, before
	// the request goes on.
	Call func()
}

// ProxiedRequest is one request a FaultProxy saw, for the record.
type ProxiedRequest struct {
	// Seq numbers every request the proxy saw since it started, from 1.
	Seq        int
	Start, End time.Time
	Method     string
	// URI is the path and query.
	URI string
	// Tag is what SetTag said when the request came in.
	Tag string
	// Status is the answer's status, the server's or the proxy's own; 0
	// when the client got none.
	Status int
	// Fault is the fault that landed on this request, if any.
	Fault FaultKind
	// Err says why the server gave no answer, if it did not.
	Err string
	// Body is the request's body, for the requests KeepBodies names.
	Body []byte
}

// FaultProxy sits between a client and a server (the kube-apiserver, a Git
// server over smart HTTP) and forwards every request, except the ones an
// armed Fault lands on. It keeps a record of what it forwarded.
type FaultProxy struct {
	upstream *url.URL
	rt       http.RoundTripper
	srv      *http.Server
	ln       net.Listener
	// header is set on every request forwarded (the API server's
	// credentials are the proxy's, not the client's).
	header http.Header
	tls    bool

	mu    sync.Mutex
	keep  func(*http.Request) bool
	armed []*armed
	seq   int
	tag   string
	log   []ProxiedRequest
}

// armed is a Fault and how far it has come.
type armed struct {
	f       *Fault
	matched int
	// fired is when the fault first landed; zero if it has not.
	fired time.Time
}

type connKey struct{}

func newFaultProxy(upstream *url.URL, rt http.RoundTripper, cert *tls.Certificate) (*FaultProxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &FaultProxy{upstream: upstream, rt: rt, ln: ln, header: http.Header{}}
	p.srv = &http.Server{
		Handler: p,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		// Resets and aborted answers are what it is for: not worth a line.
		ErrorLog: log.New(io.Discard, "", 0),
	}
	if cert != nil {
		p.tls = true
		p.srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
		go p.srv.ServeTLS(ln, "", "") //nolint:errcheck // ends with Close
	} else {
		go p.srv.Serve(ln) //nolint:errcheck // ends with Close
	}
	return p, nil
}

// GitProxy is a FaultProxy in front of a Git server over plain HTTP, such
// as the one ServeHTTP starts. Its URL replaces the server's in a
// repository URL.
func GitProxy(upstream string) (*FaultProxy, error) {
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, err
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	return newFaultProxy(u, tr, nil)
}

// APIProxy is a FaultProxy in front of the cluster's API server. It
// terminates TLS with a certificate of its own and authenticates upstream
// as user (a new cluster-admin), so every request the client sends is
// audited as user's. It returns the path of a kubeconfig, beside the
// cluster's, that points a client at the proxy.
func (c *Cluster) APIProxy(user string) (*FaultProxy, string, error) {
	u, err := c.env.ControlPlane.AddUser(envtest.User{Name: user, Groups: []string{"system:masters"}}, nil)
	if err != nil {
		return nil, "", err
	}
	cfg := u.Config()
	rt, err := rest.TransportFor(cfg)
	if err != nil {
		return nil, "", err
	}
	upstream, err := url.Parse(cfg.Host)
	if err != nil {
		return nil, "", err
	}
	cert, certPEM, err := selfSigned()
	if err != nil {
		return nil, "", err
	}
	p, err := newFaultProxy(upstream, rt, cert)
	if err != nil {
		return nil, "", err
	}
	kc := fmt.Sprintf(`apiVersion: v1
kind: Config
clusters:
- name: proxy
  cluster:
    server: %s
    certificate-authority-data: %s
users:
- name: proxied
  user: {}
contexts:
- name: proxy
  context: {cluster: proxy, user: proxied, namespace: default}
current-context: proxy
`, p.URL(), b64(certPEM))
	path := filepath.Join(c.dir, user+"-proxy.kubeconfig")
	if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
		p.Close()
		return nil, "", err
	}
	return p, path, nil
}

// URL is where clients reach the proxy.
func (p *FaultProxy) URL() string {
	scheme := "http"
	if p.tls {
		scheme = "https"
	}
	return scheme + "://" + p.ln.Addr().String()
}

// Close stops the proxy and cuts every connection.
func (p *FaultProxy) Close() { _ = p.srv.Close() }

// SetTag names the requests that come in from now on, in the record and
// in the User-Agent the server sees (and its audit log keeps), so that a
// request can be traced to the run that sent it.
func (p *FaultProxy) SetTag(tag string) {
	p.mu.Lock()
	p.tag = tag
	p.mu.Unlock()
}

// KeepBodies makes the record keep the bodies of the requests keep
// accepts (small ones: a Lease's, to see what a run wrote in it).
func (p *FaultProxy) KeepBodies(keep func(*http.Request) bool) {
	p.mu.Lock()
	p.keep = keep
	p.mu.Unlock()
}

// Arm makes faults land on the requests they name, each counting from
// now, in place of the faults armed before; a request that two of them
// name gets the first. Arm() disarms.
func (p *FaultProxy) Arm(faults ...*Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.armed = nil
	for _, f := range faults {
		if f != nil {
			p.armed = append(p.armed, &armed{f: f})
		}
	}
}

// Fired says when the first fault Arm was given first landed, and
// whether it did.
func (p *FaultProxy) Fired() (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.armed) == 0 {
		return time.Time{}, false
	}
	return p.armed[0].fired, !p.armed[0].fired.IsZero()
}

// Log returns the record of the requests since Seq since (exclusive),
// finished or not.
func (p *FaultProxy) Log(since int) []ProxiedRequest {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []ProxiedRequest
	for _, r := range p.log {
		if r.Seq > since {
			out = append(out, r)
		}
	}
	return out
}

// Forget drops the record of the requests up to Seq upTo, which a long
// run would otherwise keep for good.
func (p *FaultProxy) Forget(upTo int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i := 0
	for i < len(p.log) && p.log[i].Seq <= upTo {
		i++
	}
	p.log = append([]ProxiedRequest(nil), p.log[i:]...)
}

// Seq is the number of the last request the proxy saw.
func (p *FaultProxy) Seq() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.seq
}

// admit numbers r (whose body the record keeps, if not nil) and returns the fault that lands on it, if any.
func (p *FaultProxy) admit(r *http.Request, body []byte) (int, *Fault) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.seq++
	p.log = append(p.log, ProxiedRequest{Seq: p.seq, Start: time.Now(), Method: r.Method, URI: r.URL.RequestURI(), Tag: p.tag, Body: body})
	var hit *Fault
	for _, a := range p.armed {
		f := a.f
		if f.Match != nil && !f.Match(r) {
			continue
		}
		a.matched++
		if hit != nil || a.matched < f.Nth || a.matched >= f.Nth+max(f.Count, 1) {
			continue
		}
		if a.fired.IsZero() {
			a.fired = time.Now()
		}
		hit = f
		p.log[len(p.log)-1].Fault = f.Kind
	}
	return p.seq, hit
}

func (p *FaultProxy) done(seq, status int, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := len(p.log) - 1; i >= 0; i-- {
		if p.log[i].Seq == seq {
			p.log[i].End, p.log[i].Status = time.Now(), status
			if err != nil {
				p.log[i].Err = err.Error()
			}
			return
		}
	}
}

func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	keep := p.keep
	p.mu.Unlock()
	var body []byte
	if keep != nil && r.Body != nil && keep(r) {
		body, _ = io.ReadAll(io.LimitReader(r.Body, 1<<20))
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	seq, f := p.admit(r, body)
	status, err := 0, error(nil)
	defer func() { p.done(seq, status, err) }()
	if f != nil && f.Kind == FaultCall && f.Call != nil {
		f.Call()
	}
	if f != nil && !f.AfterUpstream {
		switch f.Kind {
		case FaultDelay:
			t := time.NewTimer(f.Hold)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
			}
		case FaultStatus:
			if f.RetryAfter != "" {
				w.Header().Set("Retry-After", f.RetryAfter)
			}
			status = f.Status
			http.Error(w, fmt.Sprintf("fault injected: %d", f.Status), f.Status)
			return
		case FaultReset:
			resetConn(r)
		case FaultStall:
			stall(r, f.Hold)
		}
	}

	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = p.upstream.Scheme, p.upstream.Host
	out.Host = p.upstream.Host
	for _, h := range hopHeaders {
		out.Header.Del(h)
	}
	out.Header.Del("Authorization")
	for k, v := range p.header {
		out.Header[k] = v
	}
	p.mu.Lock()
	tag := p.tag
	p.mu.Unlock()
	if tag != "" {
		out.Header.Set("User-Agent", strings.TrimSpace(r.Header.Get("User-Agent")+" chaos-run/"+tag))
	}
	if r.ContentLength == 0 {
		out.Body = nil
	}
	resp, rerr := p.rt.RoundTrip(out)
	if rerr != nil {
		// The server is gone (killed, restarting): so is the client's
		// connection, as it would be without a proxy.
		err = rerr
		resetConn(r) // does not return
	}
	defer resp.Body.Close()

	if f != nil && f.AfterUpstream {
		switch f.Kind {
		case FaultReset:
			_, _ = io.Copy(io.Discard, resp.Body) // the server finished it
			resetConn(r)
		case FaultStall:
			_, _ = io.Copy(io.Discard, resp.Body)
			stall(r, f.Hold)
		}
	}
	for _, h := range hopHeaders {
		resp.Header.Del(h)
	}
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	if f != nil && f.Kind == FaultCut {
		body, _ := io.ReadAll(resp.Body)
		k := int(f.CutFraction * float64(len(body)))
		w.Header().Set("Content-Length", fmt.Sprint(len(body)))
		status = resp.StatusCode
		w.WriteHeader(resp.StatusCode)
		_, _ = w.Write(body[:k])
		_ = http.NewResponseController(w).Flush()
		err = fmt.Errorf("cut after %d of %d bytes", k, len(body))
		// The answer ends here, unfinished: HTTP/2 resets the stream,
		// HTTP/1.1 closes the connection.
		panic(http.ErrAbortHandler)
	}
	status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	buf := make([]byte, 32<<10)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				err = werr
				return
			}
			// Watches stream: each event goes on as it comes.
			_ = rc.Flush()
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			err = rerr
			panic(http.ErrAbortHandler)
		}
	}
}

// hopHeaders belong to one connection, not to the request.
var hopHeaders = []string{"Connection", "Keep-Alive", "Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}

// resetConn resets the TCP connection r came on, then ends the handler.
func resetConn(r *http.Request) {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if tcp, ok := c.(*net.TCPConn); ok {
		_ = tcp.SetLinger(0) // RST, not FIN
	}
	if c != nil {
		_ = c.Close()
	}
	panic(http.ErrAbortHandler)
}

// stall waits until the client gives up on r, or hold passes; then the
// request ends unanswered. A client that gave up has done what it would
// without a proxy (HTTP/2 cancelled the stream, HTTP/1.1 closed the
// connection): only the request ends. When hold passes first, the
// connection is reset, as a dead peer's would be found.
func stall(r *http.Request, hold time.Duration) {
	var timeout <-chan time.Time
	if hold > 0 {
		t := time.NewTimer(hold)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-r.Context().Done():
		panic(http.ErrAbortHandler)
	case <-timeout:
		resetConn(r)
	}
}

// selfSigned makes a certificate for 127.0.0.1, its own CA.
func selfSigned() (*tls.Certificate, []byte, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "cronsync fault proxy"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, nil, err
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER})
	cert, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, err
	}
	return &cert, certPEM, nil
}

func b64(b []byte) string { return base64.StdEncoding.EncodeToString(b) }
