package status

import (
	"strings"
	"testing"
	"time"

	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
)

func TestStale(t *testing.T) {
	at := func(s string) time.Time {
		t.Helper()
		v, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	cronJob := func(schedule, zone string) *batchv1.CronJob {
		cj := &batchv1.CronJob{Spec: batchv1.CronJobSpec{Schedule: schedule}}
		if zone != "" {
			cj.Spec.TimeZone = &zone
		}
		return cj
	}
	for _, tc := range []struct {
		schedule, zone   string
		success, now     string
		stale, never, ok bool
	}{
		// Every five minutes: due at :05, :10, :15 after a success at :00.
		{schedule: "*/5 * * * *", success: "2026-12-07T12:00:05Z", now: "2026-12-07T12:14:59Z", stale: false},
		{schedule: "*/5 * * * *", success: "2026-12-07T12:00:05Z", now: "2026-12-07T12:15:01Z", stale: true},
		// Weekdays at 9: a Friday success is not stale on Monday, after
		// one due time; it is on Wednesday, after the third.
		{schedule: "0 9 * * 1-5", success: "2026-12-04T09:00:30Z", now: "2026-12-07T09:30:00Z", stale: false},
		{schedule: "0 9 * * 1-5", success: "2026-12-04T09:00:30Z", now: "2026-12-09T09:00:01Z", stale: true},
		// In the CronJob's zone: 9:00 in Tokyo is 0:00 UTC.
		{schedule: "0 9 * * *", zone: "Asia/Tokyo", success: "2026-12-07T00:00:10Z", now: "2026-12-09T23:59:00Z", stale: false},
		{schedule: "0 9 * * *", zone: "Asia/Tokyo", success: "2026-12-07T00:00:10Z", now: "2026-12-10T00:00:01Z", stale: true},
		{schedule: "@hourly", success: "2026-12-07T12:00:05Z", now: "2026-12-07T15:00:01Z", stale: true},
		// Never succeeded: the RESULT column says what is wrong.
		{schedule: "*/5 * * * *", never: true, now: "2026-12-07T12:15:01Z", stale: false},
	} {
		var success *time.Time
		if !tc.never {
			s := at(tc.success)
			success = &s
		}
		got, err := isStale(cronJob(tc.schedule, tc.zone), success, at(tc.now))
		if err != nil || got != tc.stale {
			t.Errorf("%q %s, success %s, now %s: stale %v (%v), want %v", tc.schedule, tc.zone, tc.success, tc.now, got, err, tc.stale)
		}
	}
	for _, bad := range []*batchv1.CronJob{cronJob("every five minutes", ""), cronJob("*/5 * * * *", "Mars/Olympus")} {
		now := at("2026-12-07T12:00:00Z")
		if _, err := isStale(bad, &now, now); err == nil {
			t.Errorf("%q in %v: no error", bad.Spec.Schedule, bad.Spec.TimeZone)
		}
	}
}

// The --applyset a container runs with, resolved as pflag and the kubelet
// would: arguments, then env over envFrom (later sources winning), then the
// default; unknown when it may come from where status does not read.
func TestApplySetOf(t *testing.T) {
	configMaps := map[string]map[string]string{
		"ns/cronsync": {"CRONSYNC_APPLYSET": "from-configmap", "CRONSYNC_REPO": "x"},
		"ns/prefixed": {"APPLYSET": "prefixed"},
		"ns/empty":    {},
		"ns/unread":   nil,
	}
	fromCM := func(name string) corev1.EnvFromSource {
		return corev1.EnvFromSource{ConfigMapRef: &corev1.ConfigMapEnvSource{LocalObjectReference: corev1.LocalObjectReference{Name: name}}}
	}
	for _, tc := range []struct {
		name string
		c    corev1.Container
		want string // "" for no set, or not knowable
	}{
		{"default", corev1.Container{Image: "cronsync"}, "cronsync"},
		{"flag=", corev1.Container{Args: []string{"--work-dir=/work", "--applyset=team/sync"}}, "team/sync"},
		{"flag value, the last wins", corev1.Container{Args: []string{"--applyset", "a", "--applyset", "b"}}, "b"},
		{"flag over env", corev1.Container{Args: []string{"--applyset=a"}, Env: []corev1.EnvVar{{Name: "CRONSYNC_APPLYSET", Value: "b"}}}, "a"},
		{"off by flag", corev1.Container{Args: []string{"--applyset="}}, ""},
		{"envFrom", corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("cronsync")}}, "from-configmap"},
		{"envFrom with prefix", corev1.Container{EnvFrom: []corev1.EnvFromSource{{Prefix: "CRONSYNC_", ConfigMapRef: fromCM("prefixed").ConfigMapRef}}}, "prefixed"},
		{"a later envFrom without it", corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("cronsync"), fromCM("empty")}}, "from-configmap"},
		{"env over envFrom", corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("cronsync")}, Env: []corev1.EnvVar{{Name: "CRONSYNC_APPLYSET", Value: "env"}}}, "env"},
		{"configMapKeyRef", corev1.Container{Env: []corev1.EnvVar{{Name: "CRONSYNC_APPLYSET", ValueFrom: &corev1.EnvVarSource{
			ConfigMapKeyRef: &corev1.ConfigMapKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "cronsync"}, Key: "CRONSYNC_APPLYSET"}}}}}, "from-configmap"},
		{"secretKeyRef", corev1.Container{Env: []corev1.EnvVar{{Name: "CRONSYNC_APPLYSET", ValueFrom: &corev1.EnvVarSource{
			SecretKeyRef: &corev1.SecretKeySelector{LocalObjectReference: corev1.LocalObjectReference{Name: "s"}, Key: "k"}}}}}, ""},
		{"an unread ConfigMap", corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("cronsync"), fromCM("unread")}}, ""},
		{"an unread ConfigMap, then env", corev1.Container{EnvFrom: []corev1.EnvFromSource{fromCM("unread")}, Env: []corev1.EnvVar{{Name: "CRONSYNC_APPLYSET", Value: "env"}}}, "env"},
	} {
		got, ok := applySetOf(tc.c, "ns", configMaps)
		if got != tc.want || ok != (tc.want != "") {
			t.Errorf("%s: %q (%v), want %q", tc.name, got, ok, tc.want)
		}
	}
}

func TestCronsyncContainer(t *testing.T) {
	for c, want := range map[*corev1.Container]bool{
		{Image: "cronsync"}: true,
		{Image: "registry.example.com:5000/ops/cronsync:v1.2"}:           true,
		{Image: "ghcr.io/x/cronsync@sha256:abc"}:                         true,
		{Image: "gitops", Command: []string{"/usr/local/bin/cronsync"}}:  true,
		{Image: "gitops", Args: []string{"--repo=https://x"}}:            true,
		{Image: "gitops", Env: []corev1.EnvVar{{Name: "CRONSYNC_REPO"}}}: true,
		{Image: "busybox", Args: []string{"sh", "-c", "backup"}}:         false,
		{Image: "cronsync-exporter"}:                                     false,
	} {
		if got := cronsyncContainer(*c); got != want {
			t.Errorf("%+v: %v, want %v", *c, got, want)
		}
	}
}

func TestAttentionErrorNamesFive(t *testing.T) {
	e := &AttentionError{Listed: 9, Names: []string{"a failed", "b stale", "c unhealthy", "d failed", "e failed", "f failed", "g failed"}}
	if got := e.Error(); got != "7 of 9 syncs need a look: a failed, b stale, c unhealthy, d failed, e failed, and 2 more" {
		t.Errorf("%q", got)
	}
	if strings.Contains(e.Error(), "f failed") {
		t.Error("named more than five")
	}
}
