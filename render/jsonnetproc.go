package render

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/cronsync/cronsync/internal/budget"
)

// A Jsonnet evaluation cannot be stopped from outside: go-jsonnet takes no
// context, one past its budget keeps its goroutine (and a core) busy, and
// a tailstrict recursion without end, which its stack limit does not count,
// aborts the whole process when the Go stack reaches its limit. So the
// command evaluates each file in a process of its own (budget.InChild):
// whatever the program does, that process ends, and the run reports the
// file.

// JsonnetTask names the evaluation of one JsonnetRequest among the tasks a
// child process serves (see budget.Serve).
const JsonnetTask = "jsonnet"

// ServeJsonnet is the child's side: one JsonnetRequest, as JSON, evaluated
// to its value. The child's budget holds it.
func ServeJsonnet(ctx context.Context, request []byte) ([]byte, error) {
	var req JsonnetRequest
	if err := json.Unmarshal(request, &req); err != nil {
		return nil, fmt.Errorf("reading the request: %w", err)
	}
	out, err := evaluateJsonnet(req)
	return []byte(out), err
}

// JsonnetInChild returns an evaluator that runs each request in a new
// process of exe, the command itself (see ServeJsonnet).
func JsonnetInChild(exe string) func(context.Context, JsonnetRequest) (string, error) {
	return func(ctx context.Context, req JsonnetRequest) (string, error) {
		// Variables travel on stdin: an argument would show them in ps.
		in, err := json.Marshal(req)
		if err != nil {
			return "", err
		}
		out, err := budget.InChild(ctx, exe, JsonnetTask, req.Jsonnet.Budget, in)
		if exceeded, ok := errors.AsType[*budget.ExceededError](err); ok {
			return "", exceededJsonnet(exceeded)
		}
		if failed, ok := errors.AsType[*budget.ChildError](err); ok {
			if strings.Contains(failed.Stderr, "stack overflow") || strings.Contains(failed.Stderr, "stack exceeds") {
				return "", errors.New("jsonnet: evaluation overflowed the Go stack: does it recurse without end? (a tailstrict call is not counted by Jsonnet's stack limit)")
			}
			return "", fmt.Errorf("jsonnet: evaluation: %w", err)
		}
		return string(out), err
	}
}

// exceededJsonnet says which budget an evaluation ran past, and what in a
// program does that.
func exceededJsonnet(exceeded *budget.ExceededError) error {
	hint := "does it recurse or loop without end?"
	if exceeded.Heap > 0 {
		hint = "does it build a value, or recurse, without end?"
	}
	return fmt.Errorf("jsonnet: evaluation %w: %s", exceeded, hint)
}
