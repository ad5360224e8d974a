package gitsrc_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/cronsync/cronsync/gitsrc"
	"github.com/cronsync/cronsync/internal/testenv"
)

// The highest tag in the range, from the advertisement (remote) or the
// tags (local): v prefixes count, pre-releases only when the range names
// one, tags that are no version are ignored; a signed tag picked this way
// is verified as --ref naming it would be.
func TestRefSemver(t *testing.T) {
	trusted, ring := pgpKey(t, "trusted")
	r := testenv.NewRepo(t)
	srv := testenv.ServeHTTP(t, filepath.Dir(r.Dir), nil)
	shas := map[string]string{}
	for _, tag := range []string{"v1.2.0", "1.4.1", "v1.4.2", "v1.5.0-rc.1", "v2.0.0", "release-9"} {
		r.Write("a.yaml", "v: "+tag+"\n")
		shas[tag] = r.Commit(tag)
		if tag == "v1.4.2" {
			repo, _ := git.PlainOpen(r.Dir)
			head, _ := repo.Head()
			if _, err := repo.CreateTag(tag, head.Hash(), &git.CreateTagOptions{
				Message: tag, SignKey: trusted, Tagger: &object.Signature{Name: "t", Email: "t@cronsync.invalid", When: time.Now()},
			}); err != nil {
				t.Fatal(err)
			}
			continue
		}
		r.Git("tag", tag)
	}
	r.Write("a.yaml", "v: main\n")
	r.Commit("untagged tip")

	for _, src := range []struct{ name, url string }{{"http", srv.URL + "/" + filepath.Base(r.Dir)}, {"path", r.Dir}} {
		for _, tc := range []struct{ rng, tag string }{
			{"1.x", "v1.4.2"},
			{"~1.4.0", "v1.4.2"},
			{">=1.2 <1.4.2", "1.4.1"},
			{">=1.5.0-rc.0 <2", "v1.5.0-rc.1"},
			{"*", "v2.0.0"},
		} {
			t.Run(src.name+"/"+tc.rng, func(t *testing.T) {
				opts := gitsrc.Options{URL: src.url, RefSemver: tc.rng, WorkDir: t.TempDir()}
				if tc.tag == "v1.4.2" {
					opts.VerifyKeysFile = ring
				}
				co, err := gitsrc.Clone(context.Background(), opts)
				if err != nil {
					t.Fatal(err)
				}
				defer co.Close()
				if co.Ref != "refs/tags/"+tc.tag || co.Commit != shas[tc.tag] {
					t.Errorf("resolved %s at %s, want refs/tags/%s at %s", co.Ref, co.Commit, tc.tag, shas[tc.tag])
				}
			})
		}
		t.Run(src.name+"/no match", func(t *testing.T) {
			_, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: src.url, RefSemver: ">=3", WorkDir: t.TempDir()})
			if !errors.Is(err, gitsrc.ErrNotFound) || !strings.Contains(err.Error(), `--ref-semver ">=3": no tag matches; the highest are v2.0.0, v1.5.0-rc.1, v1.4.2, 1.4.1, v1.2.0`) {
				t.Errorf("err = %v", err)
			}
		})
	}
	// The signed tag, and only it, passes verification when picked.
	_, err := gitsrc.Clone(context.Background(), gitsrc.Options{URL: r.Dir, RefSemver: "2.x", VerifyKeysFile: ring, WorkDir: t.TempDir()})
	if !errors.Is(err, gitsrc.ErrUnverified) {
		t.Errorf("an unsigned tag picked by the range: err = %v, want ErrUnverified", err)
	}
}
