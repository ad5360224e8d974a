package apiserver

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A private repository over HTTPS basic auth with the token in a file: the
// right token syncs; a wrong one exits 2, and the token is printed nowhere.
func TestPrivateRepositoryToken(t *testing.T) {
	const token = "glpat-t0ps3cr3t"
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "private-repo", "v"))
	r.Commit("one")
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), func(h http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if _, p, ok := req.BasicAuth(); !ok || p != token {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
			h.ServeHTTP(w, req)
		})
	})
	url := srv.URL + "/" + filepath.Base(r.Dir)
	dir := t.TempDir()
	right, wrong := filepath.Join(dir, "right"), filepath.Join(dir, "wrong")
	os.WriteFile(right, []byte(token+"\n"), 0o600)
	os.WriteFile(wrong, []byte("x"+token), 0o600)

	mustSync(t, "--repo", url, "--git-password-file", right)
	for _, args := range [][]string{
		{"--repo", url, "--git-password-file", wrong},
		{"--repo", strings.Replace(url, "://", "://bot:x"+token+"@", 1)},
		{"--repo", strings.Replace(url, "://", "://x"+token+"@", 1)},
	} {
		out := cronsync(t, nil, args...)
		if out.code != exitConfig {
			t.Errorf("%v: exit %d, want %d", args, out.code, exitConfig)
		}
		if strings.Contains(out.stdout+out.stderr, token) {
			t.Errorf("%v: the token is in the output", args)
		}
	}
}

// With --verify-keys-file, an unsigned commit exits 4 and changes nothing.
func TestUnsignedCommitRefused(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "unsigned", "v"))
	r.Commit("unsigned")
	keys := filepath.Join(t.TempDir(), "allowed_signers")
	signer, _ := testenv.NewEd25519(t)
	os.WriteFile(keys, append([]byte("ops@example.com "), ssh.MarshalAuthorizedKey(signer.PublicKey())...), 0o600)
	before := snapshot(t)
	out := cronsync(t, nil, "--repo", r.Dir, "--verify-keys-file", keys)
	if out.code != exitUnverified || !strings.Contains(out.stderr, "is not signed") {
		t.Errorf("exit %d; want %d and the commit named unsigned", out.code, exitUnverified)
	}
	if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
		t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
	}
}

// Hostile content is refused quickly, with bounded memory, before any
// write.
func TestHostileRepository(t *testing.T) {
	bomb := "a: &a [lol,lol,lol,lol,lol,lol,lol,lol,lol]\n"
	for i, c := range "bcdefghi" {
		prev := string("abcdefghi"[i])
		bomb += fmt.Sprintf("%c: &%c [*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s,*%s]\n", c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	for _, tc := range []struct {
		name, file, content, want string
	}{
		{"alias bomb", "bomb.yaml", bomb, "bomb.yaml, document 1:"},
		{"oversized file", "big.yaml", configMap("default", "big", strings.Repeat("x", 5<<20)), "big.yaml: file is"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := testenv.NewRepo(t)
			r.Write("ok.yaml", configMap("default", "hostile-"+strings.ReplaceAll(tc.name, " ", "-"), "v"))
			r.Write(tc.file, tc.content)
			r.Commit(tc.name)
			before := snapshot(t)
			start := time.Now()
			out := cronsync(t, nil, "--repo", r.Dir)
			elapsed := time.Since(start)
			if out.code != exitContent || !hasLineWith(out.stderr, tc.want) {
				t.Errorf("exit %d; want %d and a line with %q", out.code, exitContent, tc.want)
			}
			if elapsed > 10*time.Second {
				t.Errorf("took %s", elapsed)
			}
			if out.maxRSS > 256<<20 {
				t.Errorf("peak memory %d MiB", out.maxRSS>>20)
			}
			if diff := diffSnapshots(before, snapshot(t)); len(diff) > 0 {
				t.Errorf("the cluster changed:\n%s", strings.Join(diff, "\n"))
			}
		})
	}
}

// --ref-semver picks the highest tag in its range, and the output names the
// tag and its commit; a range nothing matches, a malformed one, and both
// --ref and --ref-semver exit 2 with one line saying which.
func TestRefSemver(t *testing.T) {
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", "semver", "1.4.2"))
	sha := r.Commit("1.4.2")
	r.Git("tag", "v1.4.2")
	r.Write("cm.yaml", configMap("default", "semver", "2.0.0"))
	r.Commit("2.0.0")
	r.Git("tag", "v2.0.0")
	out := mustSync(t, "--repo", r.Dir, "--ref-semver", "1.x", "--applyset", "", "--lease", "")
	if !hasLineWith(out.stdout, "refs/tags/v1.4.2 is commit "+sha) {
		t.Error("the output does not name the tag and its commit")
	}
	if got := get(t, configMaps, "default", "semver", "data", "value"); got != "1.4.2" {
		t.Errorf("applied %s, want 1.4.2", got)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--ref-semver", ">=3"}, `--ref-semver ">=3": no tag matches; the highest are v2.0.0, v1.4.2`},
		{[]string{"--ref-semver", "1.x.x.x"}, `--ref-semver "1.x.x.x": `},
		{[]string{"--ref-semver", "1.x", "--ref", "main"}, "--ref and --ref-semver cannot both be set"},
	} {
		out := cronsync(t, nil, append([]string{"--repo", r.Dir, "--applyset", "", "--lease", ""}, tc.args...)...)
		if out.code != exitConfig || !hasLineWith(out.stderr, tc.want) {
			t.Errorf("%v: exit %d, want %d and a line with %q", tc.args, out.code, exitConfig, tc.want)
		}
	}
}
