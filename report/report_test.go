package report

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cronsync/cronsync/internal/redact"
)

func failed() *Summary {
	return &Summary{Result: "failed", ExitCode: 3, Repo: "https://git.example.com/x.git", Commit: "0123456789abcdef0123", Path: ".",
		Counts: map[string]int{"created": 1, "failed": 1, "pruned": 2}, Errors: []string{"service/bad (bad.yaml): invalid", "second"}, Duration: "1s"}
}

func TestCountsAndLine(t *testing.T) {
	s := failed()
	if got, want := s.CountsLine(), "2 objects: 1 created, 0 configured, 0 unchanged, 1 failed, 2 pruned"; got != want {
		t.Errorf("CountsLine = %q, want %q", got, want)
	}
	if got := s.Line(); !strings.HasPrefix(got, "cronsync: sync failed https://git.example.com/x.git@0123456789ab path .: 2 objects") {
		t.Errorf("Line = %q", got)
	}
}

func TestTerminationLogIsBounded(t *testing.T) {
	s := failed()
	s.Errors[0] = strings.Repeat("x", 10000)
	path := filepath.Join(t.TempDir(), "termination-log")
	if err := s.WriteTerminationLog(path); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if len(b) > terminationLogLimit || !strings.HasPrefix(string(b), "result: failed (exit 3)\ncommit: 0123456789abcdef0123\n") {
		t.Errorf("termination log is %d bytes and starts %q", len(b), b[:min(60, len(b))])
	}
}

func TestWebhookRetriesAndStaysQuietOnSuccess(t *testing.T) {
	var calls atomic.Int32
	var body map[string]any
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) < 3 {
			http.Error(w, "busy", http.StatusServiceUnavailable)
			return
		}
		json.NewDecoder(r.Body).Decode(&body)
	}))
	defer srv.Close()
	w := Webhook{URL: srv.URL + "/services/T0/B0/secret-token", Timeout: time.Second, Attempts: 3}

	ok := failed()
	ok.Result, ok.ExitCode, ok.Errors = "synced", 0, nil
	if err := w.Notify(context.Background(), ok); err != nil || calls.Load() != 0 {
		t.Fatalf("a success was posted without Always (err %v, %d calls)", err, calls.Load())
	}
	if err := w.Notify(context.Background(), failed()); err != nil {
		t.Fatalf("third attempt should succeed: %v", err)
	}
	if calls.Load() != 3 || !strings.Contains(body["text"].(string), "service/bad (bad.yaml): invalid") || body["result"] != "failed" {
		t.Errorf("%d calls, body %v", calls.Load(), body)
	}

	w.URL = "http://127.0.0.1:1/services/T0/B0/secret-token"
	w.Attempts = 2
	err := w.Notify(context.Background(), failed())
	if err == nil || strings.Contains(err.Error(), "secret-token") {
		t.Errorf("unreachable webhook: err = %v; want an error without the URL's secret path", err)
	}
}

func TestDriftIsCountedAndPosted(t *testing.T) {
	s := &Summary{Result: "synced", Commit: "0123456789abcdef0123", Path: ".", Counts: map[string]int{"configured": 5, "unchanged": 1}, Drifted: 4}
	for i, ref := range []string{"a", "b", "c", "d", "e"} {
		o := Object{Ref: "configmap/" + ref, Action: "configured"}
		if i < 4 {
			o.Drift = &Drift{Summary: "data.x: \"1\" → \"2\""}
		}
		s.Objects = append(s.Objects, o)
	}
	if got, want := s.CountsLine(), "6 objects: 0 created, 5 configured (4 drift repaired), 1 unchanged, 0 failed"; got != want {
		t.Errorf("CountsLine = %q, want %q", got, want)
	}
	if got, want := s.DriftLine(), `drift repaired: 4 objects: configmap/a (data.x: "1" → "2"); configmap/b (data.x: "1" → "2"); configmap/c (data.x: "1" → "2"); and 1 more`; got != want {
		t.Errorf("DriftLine = %q, want %q", got, want)
	}
	path := filepath.Join(t.TempDir(), "termination-log")
	if err := s.WriteTerminationLog(path); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(path); !strings.Contains(string(b), "\ndrift repaired: 4 objects: configmap/a") {
		t.Errorf("termination log: %q", b)
	}

	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { posts.Add(1) }))
	defer srv.Close()
	w := Webhook{URL: srv.URL, Timeout: time.Second, Attempts: 1, OnDrift: true}
	if err := w.Notify(context.Background(), s); err != nil || posts.Load() != 1 {
		t.Errorf("--notify-on=drift: %d posts (%v) for a success that repaired drift", posts.Load(), err)
	}
	s.Drifted = 0
	if err := w.Notify(context.Background(), s); err != nil || posts.Load() != 1 {
		t.Errorf("--notify-on=drift posted a success without drift")
	}
}

// Redact leaves every string of a Summary fit for every sink: no value
// registered, no credential, no control character, and one line where a
// field is shown as one.
func TestRedact(t *testing.T) {
	secrets := redact.New()
	secrets.Add("s3cr3t-value", "multi\nline-secret")
	s := failed()
	s.Repo = "http://alice:pa%zzPASS@host/x.git"
	s.Ref = "refs/heads/\x1b[2J\ncronsync: synced"
	s.Message = "held by evil\rcronsync: synced"
	s.Errors = []string{"configmap/s3cr3t-value (a.yaml): invalid", `label: Invalid value: "multi\nline-secret"`}
	s.Objects = []Object{{Ref: "configmap/s3cr3t-value", Source: "a.yaml", Action: "failed", Error: "x\x1by s3cr3t-value",
		Drift: &Drift{Summary: "data.s3cr3t-value", Detail: map[string]any{"data.s3cr3t-value": []any{"czNjcjN0LXZhbHVl", 1}}}}}
	s.Redact(secrets)
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	var ref struct{ Ref string }
	json.Unmarshal(b, &ref)
	for _, text := range []string{string(b), s.Line(), ref.Ref} {
		for _, bad := range []string{"s3cr3t", "PASS", "line-secret", "\x1b", "\r", "\\u001b", "czNjcjN0LXZhbHVl"} {
			if strings.Contains(text, bad) {
				t.Errorf("%q holds %q", text, bad)
			}
		}
	}
	if ref.Ref != `refs/heads/\x1b[2J\ncronsync: synced` {
		t.Errorf("ref %q", ref.Ref)
	}
}

// What status reads back from the parent is what CountsLine wrote.
func TestParseCounts(t *testing.T) {
	for _, s := range []*Summary{
		{Counts: map[string]int{"configured": 5, "unchanged": 1}, Drifted: 4},
		{Counts: map[string]int{"configured": 5, "unchanged": 1}, Drifted: 4, DryRun: "server"},
		{Counts: map[string]int{"created": 3, "pruned": 2, "failed": 1}, Health: &Health{Ready: 2}},
		{Counts: map[string]int{"unchanged": 1200}, WithoutRequest: 1200},
		{Counts: map[string]int{}},
	} {
		line := s.CountsLine()
		objects, drifted, ok := ParseCounts(line)
		if want := s.Counts["created"] + s.Counts["configured"] + s.Counts["unchanged"] + s.Counts["failed"]; !ok || objects != want || drifted != s.Drifted {
			t.Errorf("%q: %d objects, %d drifted (%v); want %d, %d", line, objects, drifted, ok, want, s.Drifted)
		}
	}
	if _, _, ok := ParseCounts("nothing applied"); ok {
		t.Error("a line that is not a CountsLine was read as one")
	}
}
