package testenv

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// NewEd25519 returns a new ed25519 SSH key pair.
func NewEd25519(t testing.TB) (ssh.Signer, ed25519.PrivateKey) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s, priv
}

// NewRSA returns a new RSA SSH signer.
func NewRSA(t testing.TB) ssh.Signer {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// ServeSSH serves the repositories under root over SSH on a loopback port
// until the test ends, running the real git-upload-pack for each fetch. Only
// clients holding authorized's private key get in. It returns host:port.
func ServeSSH(t testing.TB, root string, authorized ssh.PublicKey, hostKeys ...ssh.Signer) string {
	t.Helper()
	cfg := &ssh.ServerConfig{
		PublicKeyCallback: func(_ ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if string(key.Marshal()) == string(authorized.Marshal()) {
				return nil, nil
			}
			return nil, errors.New("key not authorized")
		},
	}
	for _, k := range hostKeys {
		cfg.AddHostKey(k)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go serveSSHConn(conn, cfg, root)
		}
	}()
	return ln.Addr().String()
}

func serveSSHConn(conn net.Conn, cfg *ssh.ServerConfig, root string) {
	defer conn.Close()
	_, chans, reqs, err := ssh.NewServerConn(conn, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "session only")
			continue
		}
		ch, requests, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			defer ch.Close()
			for req := range requests {
				switch req.Type {
				case "env":
					req.Reply(true, nil)
				case "exec":
					var payload struct{ Command string }
					if ssh.Unmarshal(req.Payload, &payload) != nil {
						req.Reply(false, nil)
						return
					}
					name, path, _ := strings.Cut(payload.Command, " ")
					if name != "git-upload-pack" {
						req.Reply(false, nil)
						return
					}
					req.Reply(true, nil)
					cmd := exec.Command("git-upload-pack", filepath.Join(root, strings.Trim(path, "'")))
					cmd.Env = append(os.Environ(), GitEnv...)
					cmd.Stdin, cmd.Stdout, cmd.Stderr = ch, ch, ch.Stderr()
					status := uint32(0)
					if err := cmd.Run(); err != nil {
						status = 1
					}
					b := make([]byte, 4)
					binary.BigEndian.PutUint32(b, status)
					ch.SendRequest("exit-status", false, b)
					return
				default:
					req.Reply(false, nil)
				}
			}
		}()
	}
}
