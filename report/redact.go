package report

import (
	"encoding/json"

	"github.com/cronsync/cronsync/internal/redact"
)

// Redact makes s fit for every sink at once: values registered with
// secrets masked, URL credentials removed and control characters escaped
// in every string it holds, newlines too in what is shown as one line. A
// sink that formats s further (the human line, the termination message,
// Events, the parent's annotations, the webhook) only puts clean strings
// together.
func (s *Summary) Redact(secrets *redact.Secrets) {
	line := secrets.CleanLine
	for _, f := range []*string{&s.Result, &s.Repo, &s.Ref, &s.Commit, &s.Path, &s.DryRun, &s.Duration, &s.Message} {
		*f = line(*f)
	}
	for i := range s.Errors {
		s.Errors[i] = line(s.Errors[i])
	}
	if s.Health != nil {
		s.Health.Unhealthy = line(s.Health.Unhealthy)
	}
	for i := range s.Objects {
		o := &s.Objects[i]
		o.Ref, o.Source, o.Action = line(o.Ref), line(o.Source), line(o.Action)
		o.Error = secrets.Clean(o.Error)
		if o.Drift != nil {
			o.Drift.Summary = line(o.Drift.Summary)
			o.Drift.Detail = redactAny(secrets, o.Drift.Detail)
		}
	}
}

// redactAny cleans every string, keys too (a field path names a data key
// that may be a value), of v as JSON shows it.
func redactAny(secrets *redact.Secrets, v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var generic any
	if json.Unmarshal(b, &generic) != nil {
		return nil
	}
	var walk func(any) any
	walk = func(v any) any {
		switch v := v.(type) {
		case string:
			return secrets.Clean(v)
		case []any:
			for i := range v {
				v[i] = walk(v[i])
			}
		case map[string]any:
			out := make(map[string]any, len(v))
			for k, e := range v {
				out[secrets.Clean(k)] = walk(e)
			}
			return out
		}
		return v
	}
	return walk(generic)
}
