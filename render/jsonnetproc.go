package render

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"time"

	"github.com/cronsync/cronsync/internal/budget"
)

// A Jsonnet evaluation cannot be stopped from outside: go-jsonnet takes no
// context, one past its budget keeps its goroutine (and a core) busy, and
// a tailstrict recursion without end, which its stack limit does not count,
// aborts the whole process when the Go stack reaches its limit. So the
// command evaluates each file in a process of its own, itself started with
// JsonnetChildArg: whatever the program does, that process ends, and the
// run reports the file.

// JsonnetChildArg, as the only argument, makes the command evaluate one
// JsonnetRequest read from stdin and write its verdict to stdout.
const JsonnetChildArg = "__evaluate-jsonnet"

type jsonnetVerdict struct {
	Value string `json:"value,omitempty"`
	Error string `json:"error,omitempty"`
}

// ServeJsonnet is the child's side: one request from r, its verdict to w.
// The process is meant to exit right after, abandoned goroutine and all.
func ServeJsonnet(r io.Reader, w io.Writer) error {
	var req JsonnetRequest
	if err := json.NewDecoder(r).Decode(&req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	var v jsonnetVerdict
	out, err := EvaluateJsonnet(context.Background(), req)
	if err != nil {
		v.Error = err.Error()
	}
	v.Value = out
	return json.NewEncoder(w).Encode(v)
}

// JsonnetInChild returns an evaluator that runs each request in a new
// process of exe, the command itself (see ServeJsonnet).
func JsonnetInChild(exe string) func(context.Context, JsonnetRequest) (string, error) {
	return func(ctx context.Context, req JsonnetRequest) (string, error) {
		in, err := json.Marshal(req)
		if err != nil {
			return "", err
		}
		cmd := exec.Command(exe, JsonnetChildArg)
		var stdout, stderr bytes.Buffer
		// Variables travel on stdin: an argument would show them in ps.
		cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
		if err := cmd.Start(); err != nil {
			return "", fmt.Errorf("jsonnet: starting the evaluation: %w", err)
		}
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		// The child keeps its own time budget and reports it; this one
		// only catches a child that cannot.
		backstop := time.NewTimer(req.Jsonnet.Budget.Time + 2*time.Second)
		defer backstop.Stop()
		select {
		case err = <-done:
		case <-ctx.Done():
			cmd.Process.Kill()
			<-done
			return "", context.Cause(ctx)
		case <-backstop.C:
			cmd.Process.Kill()
			<-done
			return "", fmt.Errorf("jsonnet: evaluation %w: does it recurse or loop without end?", &budget.ExceededError{Time: req.Jsonnet.Budget.Time})
		}
		var v jsonnetVerdict
		if err == nil && json.Unmarshal(stdout.Bytes(), &v) == nil {
			if v.Error != "" {
				return "", errors.New(v.Error)
			}
			return v.Value, nil
		}
		if strings.Contains(stderr.String(), "stack overflow") || strings.Contains(stderr.String(), "stack exceeds") {
			return "", errors.New("jsonnet: evaluation overflowed the Go stack: does it recurse without end? (a tailstrict call is not counted by Jsonnet's stack limit)")
		}
		first, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		return "", fmt.Errorf("jsonnet: the evaluation's process failed (%v): %s", err, first)
	}
}
