package gitsrc

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5/plumbing"
)

// What a commit's .gitmodules says is the commit's content: whatever it
// holds, an entry that is accepted has a path inside the tree, and a URL
// that is followed is one git would follow from where --repo is: nothing
// on this machine unless --repo is, no scheme but https, ssh and http where
// --repo is http, a relative URL on --repo's own server. No error shows a
// password the URL holds.
func FuzzSubmodules(f *testing.F) {
	for _, tc := range []struct{ modules, base, top string }{
		{"[submodule \"lib\"]\n\tpath = apps/lib\n\turl = ../lib\n", "https://git.example.com/org/parent.git", "https://git.example.com/org/parent.git"},
		{"[submodule \"lib\"]\n\tpath = lib\n\turl = ./lib.git\n", "git@git.example.com:org/parent.git", "git@git.example.com:org/parent.git"},
		{"[submodule \"lib\"]\n\tpath = lib\n\turl = ../../../../etc\n", "https://h/a/b", "https://h/a/b"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = /etc/passwd\n", "https://h/a", "https://h/a"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = file:///srv/repo\n", "https://h/a", "https://h/a"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = ext::sh -c touch% /tmp/pwned\n", "https://h/a", "https://h/a"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = http://h/x\n", "https://h/a", "https://h/a"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = https://alice:SECRETPW@h/x%zz\n", "https://h/a", "https://h/a"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = ftp://alice:SECRETPW@h/x\n", "https://h/a", "https://h/a"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = ../sib\n", "https://alice:SECRETPW@h/a", "https://alice:SECRETPW@h/a"},
		{"[submodule \"x\"]\n\tpath = ../x\n\turl = ../x\n", "/srv/parent", "/srv/parent"},
		{"[submodule \"-x\"]\n\tpath = -x\n\turl = -u\n", "/srv/parent", "/srv/parent"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = ../lib\n", "/srv/parent", "/srv/parent"},
		{"[submodule \"x\"]\n\tpath = x\n\turl = ../lib\n", "ssh://git@h:2222/org/p.git", "ssh://git@h:2222/org/p.git"},
	} {
		f.Add(tc.modules, tc.base, tc.top)
	}
	f.Fuzz(func(t *testing.T, modules, base, top string) {
		start := time.Now()
		parsed, err := parseModules([]byte(modules))
		if err != nil {
			return
		}
		c := &Checkout{opts: Options{URL: top}}
		_, topLocal := localPath(top)
		for p, m := range parsed {
			if acceptable(m) && (!isLocalPath(m.Path) || strings.HasPrefix(m.Path, "-") || strings.HasPrefix(m.Name, "-")) {
				t.Errorf("entry %q accepted with path %q", m.Name, p)
			}
			u, err := c.submoduleURL(base, m.URL)
			if err != nil {
				for _, s := range slices.Concat(secrets(m.URL), secrets(base), secrets(u)) {
					if len(s) >= 4 && strings.Contains(err.Error(), s) {
						t.Errorf("the error shows a credential of the URL %q: %v", m.URL, err)
					}
				}
				continue
			}
			if u == "" || strings.HasPrefix(u, "-") {
				t.Errorf("URL %q followed as %q", m.URL, u)
			}
			if _, local := localPath(u); local {
				if !topLocal {
					t.Errorf("URL %q followed as %q, on this machine, from --repo %q", m.URL, u, top)
				}
				continue
			}
			if isSCPLike(u) {
				continue
			}
			pu, err := url.Parse(u)
			if err != nil || !(pu.Scheme == "https" || pu.Scheme == "ssh" || pu.Scheme == "http" && strings.HasPrefix(top, "http://")) {
				t.Errorf("URL %q followed as %q from --repo %q", m.URL, u, top)
			}
			relative := strings.HasPrefix(m.URL, "./") || strings.HasPrefix(m.URL, "../")
			if pb, err := url.Parse(base); relative && err == nil && strings.Contains(base, "://") && (pu == nil || pu.Host != pb.Host) {
				t.Errorf("relative URL %q from %q leads to another server: %q", m.URL, base, u)
			}
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("took %v", d)
		}
	})
}

// isLocalPath is filepath.IsLocal for a path as .gitmodules writes it.
func isLocalPath(p string) bool {
	return p != "" && !strings.HasPrefix(p, "/") && !slices.Contains(strings.Split(p, "/"), "..")
}

// --ref-semver picks, from any list of tags in any order, the highest that
// is a version within the range, the same one whatever the order the
// server lists them in; no tag of the range is higher. A range that does
// not parse, or that no tag meets, is "not found".
func FuzzHighestTag(f *testing.F) {
	tags := "v1.2.0\n1.4.1\nv1.4.2\nv1.5.0-rc.1\nv2.0.0\nrelease-9"
	for _, r := range []string{"1.x", "~1.4.0", ">=1.2 <1.4.2", ">=1.5.0-rc.0 <2", "*", ">=3", "^1", "1.2.0 || 2.x", "!=2.0.0", "not a range"} {
		f.Add(tags, r)
	}
	f.Add("v1.0.0\n1.0.0", "1.x")
	f.Add("v1.0.0+a\nv1.0.0+b", "*")
	f.Fuzz(func(t *testing.T, list, rng string) {
		var names []plumbing.ReferenceName
		for _, n := range strings.Split(list, "\n") {
			names = append(names, plumbing.NewTagReferenceName(n))
		}
		got, err := highestTag(names, rng)
		reversed := slices.Clone(names)
		slices.Reverse(reversed)
		again, errAgain := highestTag(reversed, rng)
		if got != again || (err == nil) != (errAgain == nil) {
			t.Errorf("the order of the tags changed the pick: %q (%v), reversed %q (%v)", got, err, again, errAgain)
		}
		if err != nil {
			if !errors.Is(err, ErrNotFound) {
				t.Errorf("%v: not ErrNotFound", err)
			}
			return
		}
		c, cerr := semver.NewConstraint(rng)
		v, verr := semver.NewVersion(plumbing.ReferenceName(got).Short())
		if cerr != nil || verr != nil || !c.Check(v) {
			t.Fatalf("picked %q, outside %q", got, rng)
		}
		for _, n := range names {
			if w, err := semver.NewVersion(n.Short()); err == nil && c.Check(w) && w.GreaterThan(v) {
				t.Errorf("picked %q, but %q is higher and in %q", got, n, rng)
			}
		}
	})
}
