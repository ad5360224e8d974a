package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// `make build` stamps the version it is given (git describe by default)
// into the binary, as the Dockerfile does from its VERSION argument.
func TestMakeBuildStampsVersion(t *testing.T) {
	out := filepath.Join(t.TempDir(), "cronsync")
	if b, err := exec.Command("make", "-s", "build", "VERSION=v9.8.7-test", "OUT="+out).CombinedOutput(); err != nil {
		t.Fatalf("make build: %v\n%s", err, b)
	}
	b, err := exec.Command(out, "--version").Output()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.TrimSpace(string(b)); got != "cronsync v9.8.7-test" {
		t.Errorf("--version printed %q, want cronsync v9.8.7-test", got)
	}
}
