package main

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"
	"time"
)

// uuidOf is a UID as the API server makes them (a version 4 UUID),
// derived from i so that the test is the same every time.
func uuidOf(i int) string {
	b := sha256.Sum256(fmt.Appendf(nil, "uid-%d", i))
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

// Each cluster keeps its slot, within the span; 200 clusters over 60s are
// spread as evenly as chance spreads them: no second holds more than four
// times its share.
func TestSplayOffset(t *testing.T) {
	const n, span = 200, 60 * time.Second
	buckets := make([]int, 60)
	for i := range n {
		uid := uuidOf(i)
		d := splayOffset(uid, span)
		if d < 0 || d >= span {
			t.Fatalf("%s: offset %s outside [0, %s)", uid, d, span)
		}
		if again := splayOffset(uid, span); again != d {
			t.Fatalf("%s: offset %s, then %s", uid, d, again)
		}
		buckets[int(d/time.Second)]++
	}
	most, empty := 0, 0
	for _, b := range buckets {
		most = max(most, b)
		if b == 0 {
			empty++
		}
	}
	mean := float64(n) / float64(len(buckets))
	t.Logf("%d UIDs over %s: mean %.2f a second, max %d (%.1fx the mean), %d seconds empty", n, span, mean, most, float64(most)/mean, empty)
	if float64(most) > 4*mean {
		t.Errorf("a second holds %d runs, over 4x the mean %.2f", most, mean)
	}
	if splayOffset(uuidOf(1), span) == splayOffset(uuidOf(2), span) {
		t.Error("two clusters share a slot")
	}
}

func TestScheduledJob(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 30, 0, time.UTC)
	minute := now.Unix() / 60
	for _, tc := range []struct {
		pod  string
		want bool
		why  string
	}{
		{fmt.Sprintf("cronsync-%d-x7k2q", minute), true, ""},
		{fmt.Sprintf("team-a-cronsync-%d-x7k2q", minute-5), true, ""},
		{"", false, "not in a pod"},
		{"sync-now-x7k2q", false, "Job sync-now was started by hand"},
		{"cronsync-manual-1-x7k2q", false, "started by hand, not by its CronJob (1970-01-01T00:01:00Z is not a schedule of the last hour)"},
		{fmt.Sprintf("cronsync-%d-x7k2q", minute-120), false, "is not a schedule of the last hour"},
		{fmt.Sprintf("cronsync-%d-x7k2q", minute+10), false, "is not a schedule of the last hour"},
		{"x7k2q", false, "is not a Job's"},
	} {
		got, why := scheduledJob(tc.pod, now)
		if got != tc.want || !strings.Contains(why, tc.why) {
			t.Errorf("%q: %t (%s), want %t (%s)", tc.pod, got, why, tc.want, tc.why)
		}
	}
}

func TestSplayFlag(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--splay", "-1s"}, "--splay must not be negative"},
		{[]string{"--splay", "10m"}, "--splay (10m0s) must be below --timeout (10m0s): the run must have time left after its wait"},
	} {
		_, err := parseFlags(append([]string{"--repo", "x"}, tc.args...), func(string) (string, bool) { return "", false }, nil)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%v: %v, want %q", tc.args, err, tc.want)
		}
	}
	cfg, err := parseFlags([]string{"--repo", "x"}, func(k string) (string, bool) { return "90s", k == "CRONSYNC_SPLAY" }, nil)
	if err != nil || cfg.splay != 90*time.Second {
		t.Errorf("CRONSYNC_SPLAY=90s: %v, %v", cfg, err)
	}
}
