package main

import (
	"bytes"
	"io"
	"os"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/spf13/pflag"
	"k8s.io/cli-runtime/pkg/genericclioptions"
)

func TestHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := exitCode(mainErr([]string{"--help"}, &stdout, &stderr)); code != 0 {
		t.Fatalf("--help exited %d", code)
	}
	help := stdout.String()
	if stderr.Len() > 0 {
		t.Errorf("--help wrote to stderr: %s", stderr.String())
	}
	for _, want := range []string{
		"cronsync makes a Kubernetes cluster match one commit",
		"--dry-run --detailed-exit-code",
		"#exit-status",
		"where the run's summary is written for kubectl describe",
	} {
		if !strings.Contains(help, want) {
			t.Errorf("--help lacks %q", want)
		}
	}
	if strings.Contains(help, "Usage of cronsync") {
		t.Error("--help still starts with pflag's default usage")
	}

	// Every flag shows once, in its group, and only kubectl's connection
	// flags are left for the last group.
	kube := pflag.NewFlagSet("kube", pflag.ContinueOnError)
	kf := genericclioptions.NewConfigFlags(false)
	kf.Namespace, kf.CacheDir = nil, nil // cronsync's own, as in parseFlags
	kf.AddFlags(kube)
	flagLine := regexp.MustCompile(`^  (?:-\w, |    )--([a-z0-9-]+)`)
	section := ""
	seen := map[string]string{}
	for line := range strings.SplitSeq(help, "\n") {
		if strings.HasSuffix(line, ":") && !strings.HasPrefix(line, " ") {
			section = strings.TrimSuffix(line, ":")
			continue
		}
		m := flagLine.FindStringSubmatch(line)
		if m == nil || section == "Usage" || section == "Examples" {
			continue
		}
		if prev, dup := seen[m[1]]; dup {
			t.Errorf("--%s shown in %q and %q", m[1], prev, section)
		}
		seen[m[1]] = section
		last := strings.HasPrefix(section, "Kubernetes connection")
		if isKube := kube.Lookup(m[1]) != nil; isKube != last {
			t.Errorf("--%s is in group %q", m[1], section)
		}
	}
	for _, g := range flagGroups {
		for _, f := range g.flags {
			if seen[f] != g.title {
				t.Errorf("--%s: want it in %q, shown in %q", f, g.title, seen[f])
			}
		}
	}
	if len(seen) < 50 {
		t.Errorf("only %d flags shown", len(seen))
	}
}

func TestUnknownFlagIsOneLine(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := exitCode(mainErr([]string{"--nope"}, &stdout, &stderr)); code != exitConfig {
		t.Fatalf("exit %d", code)
	}
	if got := stderr.String(); got != "error: unknown flag: --nope (see cronsync --help)\n" {
		t.Errorf("stderr = %q", got)
	}
}

// Repeatable flags take one value per use on the command line, and a
// comma-separated list from their environment variable.
func TestJsonnetFlags(t *testing.T) {
	env := map[string]string{"CRONSYNC_JSONNET_EXT_STR": "env=prod,region=eu", "CRONSYNC_JSONNET_LIB_PATH": "vendor,lib/./x"}
	cfg, err := parseFlags([]string{"--repo", ".", "--jsonnet-tla-code", "replicas=2", "--jsonnet-tla-code", "tags=['a', 'b']", "--jsonnet-tla-str", "empty="},
		func(k string) (string, bool) { v, ok := env[k]; return v, ok }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	j := cfg.render.Jsonnet
	if !reflect.DeepEqual(j.ExtStr, map[string]string{"env": "prod", "region": "eu"}) || !reflect.DeepEqual(j.LibPaths, []string{"vendor", "lib/x"}) ||
		!reflect.DeepEqual(j.TLACode, map[string]string{"replicas": "2", "tags": "['a', 'b']"}) || !reflect.DeepEqual(j.TLAStr, map[string]string{"empty": ""}) {
		t.Errorf("got %+v", j)
	}
	for args, want := range map[string]string{
		"--jsonnet-ext-code=nokey":      `--jsonnet-ext-code takes KEY=VALUE, not "nokey"`,
		"--jsonnet-tla-str==x":          `--jsonnet-tla-str takes KEY=VALUE, not "=x"`,
		"--jsonnet-lib-path=../vendor":  `--jsonnet-lib-path "../vendor" must be a directory inside the repository`,
		"--jsonnet-lib-path=/usr/share": `--jsonnet-lib-path "/usr/share" must be a directory inside the repository`,
	} {
		_, err := parseFlags([]string{"--repo", ".", args}, func(string) (string, bool) { return "", false }, io.Discard)
		if err == nil || exitCode(err) != exitConfig || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got %v (exit %d), want %s", args, err, exitCode(err), want)
		}
	}
}

// `cronsync --help` names the subcommand; `cronsync status --help` shows
// each of its flags, and the README's status table has each with its
// variable.
func TestStatusHelp(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := exitCode(mainErr([]string{"--help"}, &stdout, &stderr)); code != 0 || !strings.Contains(stdout.String(), "cronsync status [-A]") ||
		!strings.Contains(stdout.String(), "the one subcommand") {
		t.Errorf("cronsync --help does not name cronsync status as the one subcommand")
	}
	stdout.Reset()
	if code := exitCode(mainErr([]string{"status", "--help"}, &stdout, &stderr)); code != 0 || stderr.Len() > 0 {
		t.Fatalf("status --help exited %d: %s", code, stderr.String())
	}
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	statusFlags(&statusConfig{}).VisitAll(func(f *pflag.Flag) {
		if !regexp.MustCompile(`--` + f.Name + `[ \[]`).MatchString(stdout.String()) {
			t.Errorf("status --help lacks --%s", f.Name)
		}
		env := statusEnvPrefix + strings.ToUpper(strings.ReplaceAll(f.Name, "-", "_"))
		if !regexp.MustCompile("(?m)^\\| `--" + f.Name + "`.*\\| `" + env + "` \\|").Match(readme) {
			t.Errorf("README's status flag table has no row for --%s with %s", f.Name, env)
		}
	})
}
