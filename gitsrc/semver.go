package gitsrc

import (
	"cmp"
	"fmt"
	"slices"
	"strings"

	"github.com/Masterminds/semver/v3"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
)

// Teams that promote by tagging want a cluster to follow "the highest
// 1.x": Options.RefSemver picks, from the tags alone (a remote's ref
// advertisement, no fetch), the highest one that parses as a semantic
// version, with or without a v prefix, and satisfies the range. The chosen
// tag is then fetched and verified exactly as Options.Ref naming it would
// be. Pre-releases count only when the range names one, as Masterminds'
// rules (Helm's and Flux's) have it.

// ParseRange checks a RefSemver range, for the caller to refuse a
// malformed one before anything is fetched.
func ParseRange(r string) error {
	_, err := semver.NewConstraint(r)
	return err
}

// highestTag returns the full name (refs/tags/...) of the highest tag
// among names matching the range, or an ErrNotFound-classed error naming
// the range and the highest tags there are.
func highestTag(names []plumbing.ReferenceName, rng string) (string, error) {
	c, err := semver.NewConstraint(rng)
	if err != nil {
		return "", notFound("--ref-semver %q: %v", rng, err)
	}
	type tag struct {
		name plumbing.ReferenceName
		v    *semver.Version
	}
	var all []tag
	for _, n := range names {
		if !n.IsTag() {
			continue
		}
		v, err := semver.NewVersion(n.Short())
		if err != nil {
			continue
		}
		all = append(all, tag{n, v})
	}
	// Tags equal as versions (v1.0.0 and 1.0.0, builds of one version)
	// are told apart by name, the greater first: the pick must not
	// depend on the order the server lists them in.
	slices.SortFunc(all, func(a, b tag) int {
		return cmp.Or(b.v.Compare(a.v), strings.Compare(b.name.String(), a.name.String()))
	})
	for _, t := range all {
		if c.Check(t.v) {
			return t.name.String(), nil
		}
	}
	seen := make([]string, 0, 5)
	for _, t := range all[:min(5, len(all))] {
		seen = append(seen, t.name.Short())
	}
	if len(seen) == 0 {
		return "", notFound("--ref-semver %q: the repository has no tag that is a semantic version", rng)
	}
	return "", notFound("--ref-semver %q: no tag matches; the highest are %s", rng, strings.Join(seen, ", "))
}

// localTags lists a local repository's tags.
func localTags(repo *git.Repository) ([]plumbing.ReferenceName, error) {
	iter, err := repo.Tags()
	if err != nil {
		return nil, fmt.Errorf("listing tags: %w", err)
	}
	var out []plumbing.ReferenceName
	err = iter.ForEach(func(r *plumbing.Reference) error {
		out = append(out, r.Name())
		return nil
	})
	return out, err
}
