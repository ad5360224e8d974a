package apiserver

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"github.com/cronsync/cronsync/internal/testenv"
)

// A log a fleet can afford: at 1,000 objects, a run that changes nothing
// prints its commit, the summary and not one line per object; a run that
// repairs drift names only what drifted; --show-unchanged lists every
// object, and --output json keeps every object whatever is printed. A
// first sync lists every object, as it always did.
func TestQuietLogs(t *testing.T) {
	ns := testenv.Unique("quiet")
	const n = 1000
	total := n + 1 // and the Namespace
	r := testenv.NewRepo(t)
	r.Write("ns.yaml", namespace(ns))
	for f := range 10 {
		var b strings.Builder
		for i := range n / 10 {
			b.WriteString("---\n" + configMap(ns, fmt.Sprintf("cm-%d", f*n/10+i), "v"))
		}
		r.Write(fmt.Sprintf("cm-%d.yaml", f), b.String())
	}
	r.Commit("a thousand ConfigMaps")
	args := []string{"--repo", r.Dir, "--applyset", ns + "/quiet", "--lease", ""}

	// objectLines maps each object a run printed a line for to the rest
	// of that line.
	objectLines := func(out string) map[string]string {
		lines := map[string]string{}
		for line := range strings.SplitSeq(out, "\n") {
			switch {
			case strings.HasPrefix(line, "configmap/"):
				name, rest, _ := strings.Cut(line, " -n "+ns+" ")
				lines[name+" -n "+ns] = rest
			case strings.HasPrefix(line, "namespace/"):
				ref, rest, _ := strings.Cut(line, " ")
				lines[ref] = rest
			}
		}
		return lines
	}

	out := mustSync(t, args...)
	if got := objectLines(out.stdout); len(got) != total || got["namespace/"+ns] != "created" || got["configmap/cm-999 -n "+ns] != "created" {
		t.Errorf("a first sync printed %d object lines, want %d, each created", len(got), total)
	}

	out = mustSync(t, args...)
	if got := objectLines(out.stdout); len(got) != 0 {
		t.Errorf("a run that changed nothing printed %d object lines, want none; one: %v", len(got), slices.Collect(maps.Keys(got))[:1])
	}
	summary := fmt.Sprintf("%d objects: 0 created, 0 configured, %d unchanged (%d without a request), 0 failed", total, total, total)
	if !hasLineWith(out.stdout, "cronsync: synced ", summary) {
		t.Errorf("the summary does not say %q:\n%s", summary, out.stdout)
	}
	// The commit line, the one saying how the run decided, the summary.
	if lines := strings.Count(out.stdout, "\n"); lines > 3 {
		t.Errorf("a run that changed nothing printed %d lines, want at most 3:\n%s", lines, out.stdout)
	}
	t.Logf("a no-change run at %d objects printed %d bytes on stdout, %d on stderr", total, len(out.stdout), len(out.stderr))
	if out.stderr != "" {
		t.Errorf("a run that changed nothing wrote to stderr:\n%s", out.stderr)
	}

	// Drift in two objects: their lines, and no other.
	for _, name := range []string{"cm-17", "cm-503"} {
		if _, err := kube.Resource(configMaps).Namespace(ns).Patch(context.Background(), name, types.MergePatchType,
			[]byte(`{"data":{"value":"by hand"}}`), metav1.PatchOptions{FieldManager: "kubectl-edit"}); err != nil {
			t.Fatal(err)
		}
	}
	out = mustSync(t, args...)
	want := map[string]string{
		"configmap/cm-17 -n " + ns:  "configured (drift repaired)",
		"configmap/cm-503 -n " + ns: "configured (drift repaired)",
	}
	if got := objectLines(out.stdout); !maps.Equal(got, want) {
		t.Errorf("with two objects drifted, the object lines are %v, want %v", got, want)
	}
	if !strings.Contains(out.stdout, `  data.value: "by hand" → "v" (changed by kubectl-edit`) {
		t.Errorf("the drift's detail line is missing:\n%s", out.stdout)
	}
	if want := fmt.Sprintf("2 configured (2 drift repaired), %d unchanged", total-2); !strings.Contains(out.stdout, want) {
		t.Errorf("the summary does not say %q", want)
	}

	// --show-unchanged, and its variable: every object.
	for _, extra := range [][]string{{"--show-unchanged"}, nil} {
		var env []string
		if extra == nil {
			env = []string{"CRONSYNC_SHOW_UNCHANGED=true"}
		}
		out := cronsync(t, env, append(slices.Clone(args), extra...)...)
		if out.code != 0 {
			t.Fatalf("exit %d:\n%s", out.code, out.stderr)
		}
		got := objectLines(out.stdout)
		unchanged := 0
		for _, rest := range got {
			if rest == "unchanged" {
				unchanged++
			}
		}
		if unchanged != total {
			t.Errorf("%v %v: %d objects listed unchanged, want %d", extra, env, unchanged, total)
		}
	}

	// --output json has every object; the lines for people (on stderr)
	// have none.
	out = mustSync(t, append(slices.Clone(args), "--output", "json")...)
	var doc struct {
		Objects []struct{ Ref, Action string }
	}
	if err := json.Unmarshal([]byte(out.stdout), &doc); err != nil {
		t.Fatalf("--output json: %v", err)
	}
	if len(doc.Objects) != total || doc.Objects[len(doc.Objects)-1].Action != "unchanged" {
		t.Errorf("--output json lists %d objects, want %d, all unchanged", len(doc.Objects), total)
	}
	if got := objectLines(out.stderr); len(got) != 0 {
		t.Errorf("with --output json, stderr has %d object lines, want none", len(got))
	}
}
