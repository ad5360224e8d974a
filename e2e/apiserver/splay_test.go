package apiserver

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/testenv"
)

var splayLine = regexp.MustCompile(`cronsync: waiting (\S+) before fetching: this cluster's slot in --splay 3s \(from ApplySet parent default/(\S+)'s UID\)`)

// A run its CronJob scheduled waits its cluster's slot, the same on every
// run, before it asks Git for anything; the first sync (no parent yet), a
// Job started by hand and a dry run do not wait, and say why.
func TestSplay(t *testing.T) {
	ns := testenv.Unique("splay")
	r := testenv.NewRepo(t)
	r.Write("cm.yaml", configMap("default", ns, "1"))
	r.Commit("one")
	args := []string{"--repo", r.Dir, "--applyset", "default/" + ns, "--lease", "", "--splay", "3s"}
	scheduled := []string{fmt.Sprintf("POD_NAME=cronsync-%d-x7k2q", time.Now().Unix()/60)}

	out := cronsync(t, scheduled, args...)
	if out.code != exitOK || !hasLineWith(out.stdout, "not waiting for --splay: ApplySet parent default/"+ns+" does not exist yet") {
		t.Errorf("first sync: exit %d\n%s", out.code, out.stdout)
	}
	var slots []string
	for range 2 {
		start := time.Now()
		out := cronsync(t, scheduled, args...)
		elapsed := time.Since(start)
		m := splayLine.FindStringSubmatch(out.stdout)
		if out.code != exitOK || m == nil || m[2] != ns {
			t.Fatalf("exit %d, no line saying how long the run waits:\n%s", out.code, out.stdout)
		}
		wait, err := time.ParseDuration(m[1])
		if err != nil || wait >= 3*time.Second || elapsed < wait {
			t.Errorf("waited %s (%v) within 3s; the run took %s", m[1], err, elapsed)
		}
		slots = append(slots, m[1])
	}
	if slots[0] != slots[1] {
		t.Errorf("the slot moved from %s to %s", slots[0], slots[1])
	}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"by hand", []string{"POD_NAME=sync-now-x7k2q"}, nil, "not waiting for --splay: Job sync-now was started by hand, not by its CronJob"},
		{"dry run", scheduled, []string{"--dry-run"}, "not waiting for --splay: a dry run"},
		{"laptop", []string{"POD_NAME="}, nil, "not waiting for --splay: not in a pod (no POD_NAME)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := cronsync(t, tc.env, append(args, tc.args...)...)
			if out.code != exitOK || !hasLineWith(out.stdout, tc.want) || splayLine.MatchString(out.stdout) {
				t.Errorf("exit %d; want a line %q and no wait:\n%s", out.code, tc.want, out.stdout)
			}
		})
	}
}
