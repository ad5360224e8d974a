package budget

import (
	"bytes"
	"context"
	"encoding/gob"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"time"
)

// Run watches a computation from beside it, and Go cannot stop a goroutine:
// a template that loops keeps its core after Run gave up, and one call that
// allocates gigabytes at once (a Sprig indent, a string built in a loop)
// takes the process past its memory limit between two looks. So the
// command runs each evaluation of repository text in a process of its own,
// started with ChildArg: the process limits its own address space, so that
// such an allocation fails in it rather than in the kernel's OOM killer,
// offers itself to that killer first, and can always be killed. Whatever
// the evaluation does, the run goes on and reports the file.

// ChildArg, as the only argument, makes the command serve one task read
// from stdin (see Serve).
const ChildArg = "__cronsync-budgeted-task"

// maxReply bounds what a child may answer: the parent holds it whole. No
// chart or Jsonnet file renders anything near it.
const maxReply = 64 << 20

// childSlack is address space the child may map beyond its start and its
// heap budget: goroutine stacks, the collector's own bookkeeping, and the
// arena the heap grows into next (64 MiB).
const childSlack = 96 << 20

// Task is what a child runs: a request the parent encoded, and an answer
// the parent decodes. An error is the task's verdict on the request.
type Task func(ctx context.Context, request []byte) ([]byte, error)

type childRequest struct {
	Task    string
	Limits  Limits
	Request []byte
}

type childReply struct {
	Value []byte
	Error string
	// Exceeded is the budget the task ran past, if it did.
	Exceeded *ExceededError
}

// Serve is the child's side: one request from in, run within its limits,
// its verdict to out. The parent keeps in open until it has the verdict;
// in closing early means the parent is gone, and the task is dropped. The
// process is meant to exit right after, abandoned goroutine and all.
func Serve(in io.Reader, out io.Writer, tasks map[string]Task) error {
	dec := gob.NewDecoder(in)
	var req childRequest
	if err := dec.Decode(&req); err != nil {
		return fmt.Errorf("reading the request: %w", err)
	}
	task := tasks[req.Task]
	if task == nil {
		return fmt.Errorf("no task %q", req.Task)
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	go func() {
		_, _ = io.Copy(io.Discard, in)
		cancel(errors.New("the parent process is gone"))
	}()
	if err := confine(req.Limits.Heap); err != nil {
		return err
	}
	var reply childReply
	v, err := Run(ctx, req.Limits, func() ([]byte, error) { return task(ctx, req.Request) })
	if exceeded, ok := errors.AsType[*ExceededError](err); ok {
		reply.Exceeded = exceeded
	} else if err != nil {
		reply.Error = err.Error()
	}
	reply.Value = v
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	return gob.NewEncoder(out).Encode(reply)
}

// InChild runs the task named task on request in a new process of exe
// (the command itself, which hands ChildArg to Serve), within l, and
// returns its answer. Past its budget, the error is an *ExceededError,
// also when the process died of it; a done ctx kills the process and
// returns the cause. A deadline on ctx shortens l.Time to half of what is
// left, so that the run still has time to report the fault.
func InChild(ctx context.Context, exe, task string, l Limits, request []byte) ([]byte, error) {
	if dl, ok := ctx.Deadline(); ok {
		l.Time = min(l.Time, time.Until(dl)/2)
	}
	var in bytes.Buffer
	if err := gob.NewEncoder(&in).Encode(childRequest{Task: task, Limits: l, Request: request}); err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, ChildArg)
	cmd.Env = childEnv(os.Environ())
	cmd.SysProcAttr = childAttr()
	// The kernel's parent-death signal follows the thread that started the
	// child, which the runtime may end once another goroutine has locked
	// it; this goroutine keeps it until the child is done.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr := &head{max: 16 << 10}
	cmd.Stderr = stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting a process for the %s task: %w", task, err)
	}
	// stdin stays open while the child works: its end tells the child
	// that this process is gone, however it went.
	defer stdin.Close()
	go func() { _, _ = stdin.Write(in.Bytes()) }()
	type read struct {
		data []byte
		err  error
	}
	got := make(chan read, 1)
	go func() {
		data, err := io.ReadAll(io.LimitReader(stdout, maxReply+1))
		if len(data) > maxReply {
			// Unread, the rest would block the child in its write.
			_, _ = io.Copy(io.Discard, stdout)
		}
		got <- read{data, err}
	}()
	// The child keeps its own time budget and reports it; this one only
	// catches a child that cannot.
	backstop := time.NewTimer(l.Time + 2*time.Second)
	defer backstop.Stop()
	var out read
	select {
	case out = <-got:
	case <-ctx.Done():
		_ = cmd.Process.Kill()
		<-got
		_ = cmd.Wait()
		return nil, context.Cause(ctx)
	case <-backstop.C:
		_ = cmd.Process.Kill()
		<-got
		_ = cmd.Wait()
		return nil, &ExceededError{Time: l.Time}
	}
	waitErr := cmd.Wait()
	if len(out.data) > maxReply {
		return nil, fmt.Errorf("its result is over %d MiB", maxReply>>20)
	}
	var reply childReply
	if waitErr == nil && out.err == nil && gob.NewDecoder(bytes.NewReader(out.data)).Decode(&reply) == nil {
		switch {
		case reply.Exceeded != nil:
			return nil, reply.Exceeded
		case reply.Error != "":
			return nil, errors.New(reply.Error)
		}
		return reply.Value, nil
	}
	if ctx.Err() != nil {
		return nil, context.Cause(ctx)
	}
	msg := stderr.String()
	if outOfMemory(waitErr, msg) {
		return nil, &ExceededError{Heap: l.Heap}
	}
	return nil, &ChildError{Err: waitErr, Stderr: msg}
}

// childEnv keeps of env only what tunes the Go runtime: the task needs
// nothing else, and the run's credentials are none of its business.
func childEnv(env []string) []string {
	kept := []string{}
	for _, kv := range env {
		for _, name := range []string{"GOGC=", "GOMEMLIMIT=", "GODEBUG=", "GOMAXPROCS=", "GOTRACEBACK="} {
			if strings.HasPrefix(kv, name) {
				kept = append(kept, kv)
			}
		}
	}
	return kept
}

// ChildError is a child that died without a verdict, for a reason other
// than its budgets.
type ChildError struct {
	Err error
	// Stderr is the end of what the process printed.
	Stderr string
}

func (e *ChildError) Error() string {
	first := "no message"
	for l := range strings.SplitSeq(e.Stderr, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			first = l
			break
		}
	}
	return fmt.Sprintf("its process failed (%v): %s", e.Err, first)
}

// outOfMemory says whether the child died of its memory: the runtime
// failing to map more under the address-space limit, or a SIGKILL it was
// not sent by this process, which is the kernel's OOM killer (the child
// offered itself to it first).
func outOfMemory(waitErr error, stderr string) bool {
	if strings.Contains(stderr, "out of memory") {
		return true
	}
	var exit *exec.ExitError
	if errors.As(waitErr, &exit) {
		if ws, ok := exit.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
			return true
		}
	}
	return false
}

// head keeps the first max bytes written to it: the runtime's fatal error
// comes first, the goroutine dump after it.
type head struct {
	max int
	buf bytes.Buffer
}

func (t *head) Write(p []byte) (int, error) {
	if room := t.max - t.buf.Len(); room > 0 {
		t.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (t *head) String() string { return t.buf.String() }
