package main

import (
	"fmt"
	"io"

	"github.com/spf13/pflag"
)

// helpIntro is what `cronsync --help` says before the flags: what the tool
// is, and the three ways people run it.
const helpIntro = `cronsync makes a Kubernetes cluster match one commit of a Git repository,
once, and exits. It clones the ref, reads the manifests under --path (plain
YAML and JSON, kustomizations, Helm charts, Jsonnet; SOPS-encrypted files
decrypted in memory), checks the whole commit with a server-side dry run,
applies it with server-side apply, prunes what Git no longer has, waits
until what it applied is running, and exits with a status a Job can act on.
Run it from a CronJob; every flag can also be set as CRONSYNC_<FLAG_NAME>
(--field-manager is CRONSYNC_FIELD_MANAGER).

Usage:
  cronsync --repo URL [flags]
  cronsync status [-A] [--context NAME]... [-o wide|json|yaml]
      lists the syncs and their last results; the one subcommand
      (cronsync status --help)

Examples:
  # What manifests/ runs every five minutes (configured from a ConfigMap):
  CRONSYNC_REPO=https://git.example.com/ops/cluster.git CRONSYNC_PATH=clusters/prod \
    CRONSYNC_PRUNE=true cronsync --work-dir=/work

  # On a laptop: what would this branch change in my current cluster?
  cronsync --repo . --ref my-branch --path clusters/prod --dry-run

  # In CI: fail the pipeline step if the commit would change the cluster
  # (exit 5), or is invalid (exit 3).
  cronsync --repo . --ref "$CI_COMMIT_SHA" --path clusters/prod --dry-run --detailed-exit-code
`

// helpOutro points at what the flags cannot say.
const helpOutro = `
Exit status: 0 synced, 1 retry (network, timeout), 2 the Job's configuration,
3 the commit, 4 unsigned commit, 5 changes pending (dry run), 6 applied but
not healthy. The table, and what a Job does with each:
https://github.com/cronsync/cronsync#exit-status
`

// flagGroups orders the flags the way a reader looks for them. Flags not
// named here (the kubectl connection flags) come last.
var flagGroups = []struct {
	title string
	flags []string
}{
	{"Git source", []string{"repo", "ref", "ref-semver", "git-username", "git-password-file", "git-ca-file", "ssh-key-file",
		"ssh-key-passphrase-file", "ssh-known-hosts-file", "verify-keys-file", "submodules", "git-timeout", "splay", "work-dir",
		"max-object-bytes", "max-checkout-bytes"}},
	{"What to apply", []string{"path", "namespace", "max-manifest-bytes", "max-manifest-total-bytes", "kustomize-allow-remote", "helm-allow-remote"}},
	{"Secrets in Git (SOPS)", []string{"sops-age-key-file", "sops-pgp-key-file", "sops-kms", "sops-vault-address"}},
	{"Jsonnet", []string{"jsonnet-lib-path", "jsonnet-ext-str", "jsonnet-ext-code", "jsonnet-tla-str", "jsonnet-tla-code"}},
	{"Per-cluster values (${var}, as Flux's post-build substitution)", []string{"substitute", "substitute-from", "substitute-strict"}},
	{"Apply behaviour", []string{"dry-run", "detailed-exit-code", "field-manager", "force-conflicts", "workers",
		"timeout", "wait", "wait-timeout", "fast-unchanged"}},
	{"Prune", []string{"applyset", "prune", "prune-allow-empty", "prune-namespaces-and-crds", "adopt-from"}},
	{"One sync at a time", []string{"lease", "lease-duration"}},
	{"Reporting", []string{"output", "show-unchanged", "termination-log", "notify-url", "notify-on", "version"}},
	{"Commit status on the forge", []string{"commit-status", "commit-status-token-file", "commit-status-api", "commit-status-url", "cluster-name"}},
}

// printHelp writes the introduction, the flags in their groups, and the
// exit statuses.
func printHelp(fs *pflag.FlagSet, w io.Writer) {
	fmt.Fprint(w, helpIntro)
	grouped := map[string]bool{}
	section := func(title string, names []string) {
		group := pflag.NewFlagSet(title, pflag.ContinueOnError)
		group.SortFlags = false
		for _, n := range names {
			if f := fs.Lookup(n); f != nil {
				group.AddFlag(f)
			}
		}
		fmt.Fprintf(w, "\n%s:\n%s", title, group.FlagUsagesWrapped(100))
	}
	for _, g := range flagGroups {
		section(g.title, g.flags)
		for _, n := range g.flags {
			grouped[n] = true
		}
	}
	var rest []string
	fs.VisitAll(func(f *pflag.Flag) {
		if !grouped[f.Name] {
			rest = append(rest, f.Name)
		}
	})
	section("Kubernetes connection (as kubectl's)", rest)
	fmt.Fprint(w, helpOutro)
}
