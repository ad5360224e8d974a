package gitsrc

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// Credentials come from files (mounted from Secrets) and are read afresh
// on every run, so a rotated token needs no restart.
type Credentials struct {
	// Username for HTTPS basic auth. Empty with a PasswordFile means "git",
	// which token-based servers accept.
	Username string
	// PasswordFile holds the HTTPS password or token.
	PasswordFile string
	// CAFile is a PEM bundle trusted in addition to the system's, for
	// servers behind a private CA.
	CAFile string
	// SSHKeyFile is a private key for ssh:// and user@host:path URLs.
	SSHKeyFile string
	// SSHKeyPassphraseFile holds the key's passphrase, if it has one.
	SSHKeyPassphraseFile string
	// SSHKnownHostsFile lists the server's host keys. It is required for
	// SSH: host keys are always checked.
	SSHKnownHostsFile string
}

// auth returns the transport credentials for url and the CA bundle, or an
// ErrAuth-classed error when they cannot be read.
func (c Credentials) auth(url string) (transport.AuthMethod, []byte, error) {
	ep, err := transport.NewEndpoint(url)
	if err != nil {
		return nil, nil, notFound("repository URL %s: %v", Redact(url), err)
	}
	var ca []byte
	if c.CAFile != "" {
		if ca, err = os.ReadFile(c.CAFile); err != nil {
			return nil, nil, authErr("reading --git-ca-file: %v", err)
		}
	}
	switch ep.Protocol {
	case "ssh":
		return c.sshAuth(ep)
	case "http", "https":
		if c.PasswordFile == "" {
			return nil, ca, nil // credentials in the URL, or none
		}
		pw, err := readSecret(c.PasswordFile)
		if err != nil {
			return nil, nil, authErr("reading --git-password-file: %v", err)
		}
		user := c.Username
		if user == "" {
			user = "git"
		}
		return &githttp.BasicAuth{Username: user, Password: pw}, ca, nil
	}
	return nil, ca, nil
}

func (c Credentials) sshAuth(ep *transport.Endpoint) (transport.AuthMethod, []byte, error) {
	if c.SSHKnownHostsFile == "" {
		return nil, nil, authErr("SSH repository %s needs --ssh-known-hosts-file: host keys are always checked", ep.Host)
	}
	if c.SSHKeyFile == "" {
		return nil, nil, authErr("SSH repository %s needs --ssh-key-file", ep.Host)
	}
	db, err := gitssh.NewKnownHostsDb(c.SSHKnownHostsFile)
	if err != nil {
		return nil, nil, authErr("reading --ssh-known-hosts-file: %v", err)
	}
	var passphrase string
	if c.SSHKeyPassphraseFile != "" {
		if passphrase, err = readSecret(c.SSHKeyPassphraseFile); err != nil {
			return nil, nil, authErr("reading --ssh-key-passphrase-file: %v", err)
		}
	}
	user := ep.User
	if user == "" {
		user = "git"
	}
	keys, err := gitssh.NewPublicKeysFromFile(user, c.SSHKeyFile, passphrase)
	if err != nil {
		return nil, nil, authErr("reading --ssh-key-file: %v", err)
	}
	port := ep.Port
	if port == 0 {
		port = 22
	}
	// Offer only the host key types known_hosts has for this host: a server
	// that also has an RSA key would otherwise present that one, and an
	// ed25519-only known_hosts would refuse it.
	hostPort := net.JoinHostPort(ep.Host, strconv.Itoa(port))
	keys.HostKeyCallbackHelper = gitssh.HostKeyCallbackHelper{
		HostKeyCallback:   db.HostKeyCallback(),
		HostKeyAlgorithms: db.HostKeyAlgorithms(hostPort),
	}
	return keys, nil, nil
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	// Secrets written with echo end in a newline that is not part of them.
	return strings.TrimRight(string(b), "\r\n"), nil
}

func authErr(format string, args ...any) error {
	return &classed{class: ErrAuth, msg: fmt.Sprintf(format, args...)}
}
