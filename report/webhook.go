package report

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"
)

// Webhook posts summaries to a URL.
type Webhook struct {
	// URL receives a POST with a JSON body: the Summary's fields plus a
	// "text" line, which Slack-compatible incoming webhooks display.
	URL string
	// Always posts on success too; by default only failures are posted.
	Always bool
	// OnDrift also posts a success that repaired drift.
	OnDrift bool
	// Timeout bounds each attempt.
	Timeout time.Duration
	// Attempts is how many times a failed post is tried in all.
	Attempts int
}

// Notify posts s if it should be posted. It retries with backoff on network
// errors and 5xx, and returns the last error: the caller prints it and goes
// on, because a broken webhook must not change the run's exit status.
func (w Webhook) Notify(ctx context.Context, s *Summary) error {
	if w.URL == "" || (!w.Always && s.ExitCode == 0 && !(w.OnDrift && s.Drifted > 0)) {
		return nil
	}
	payload := struct {
		*Summary
		Text string `json:"text"`
	}{s, s.Line()}
	if len(s.Errors) > 0 {
		payload.Text += "\n" + firstLine(s.Errors[0])
	}
	if d := s.DriftLine(); d != "" {
		payload.Text += "\n" + d
	}
	body, err := json.Marshal(payload)
	if err != nil {
		return err
	}
	var last error
	backoff := 500 * time.Millisecond
	for attempt := range max(w.Attempts, 1) {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return last
			case <-time.After(backoff):
			}
			backoff *= 2
		}
		last = w.post(ctx, body)
		if last == nil {
			return nil
		}
	}
	return last
}

func (w Webhook) post(ctx context.Context, body []byte) error {
	ctx, cancel := context.WithTimeout(ctx, w.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		// url.Error repeats the whole URL, secret path and all.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("notifying %s: %w", redactURL(w.URL), err)
	}
	resp.Body.Close()
	if resp.StatusCode >= 300 {
		return fmt.Errorf("notifying %s: %s", redactURL(w.URL), resp.Status)
	}
	return nil
}

// redactURL keeps a webhook's secret path (Slack's token lives there) out
// of error messages.
func redactURL(u string) string {
	if i := indexNth(u, '/', 3); i > 0 {
		return u[:i] + "/..."
	}
	return u
}

func indexNth(s string, c byte, n int) int {
	for i := range len(s) {
		if s[i] == c {
			if n--; n == 0 {
				return i
			}
		}
	}
	return -1
}
