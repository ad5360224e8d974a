package budget

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary is the child, as the command is.
var testTasks = map[string]Task{
	"echo": func(_ context.Context, req []byte) ([]byte, error) { return req, nil },
	"env":  func(context.Context, []byte) ([]byte, error) { return []byte(strings.Join(os.Environ(), "\n")), nil },
	"fail": func(_ context.Context, req []byte) ([]byte, error) { return nil, errors.New("no: " + string(req)) },
	// alloc makes one allocation of the size asked for, as a Sprig call
	// with a large argument does, and touches it.
	"alloc": func(_ context.Context, req []byte) ([]byte, error) {
		n, _ := strconv.Atoi(string(req))
		b := make([]byte, n)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		return []byte(strconv.Itoa(len(b))), nil
	},
	// mmap maps the size asked for outside Go's heap, where Run's looks
	// cannot see it: only the address-space limit refuses it.
	"mmap": func(_ context.Context, req []byte) ([]byte, error) {
		n, _ := strconv.Atoi(string(req))
		b, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
		if err != nil {
			return nil, err
		}
		return nil, syscall.Munmap(b)
	},
	"loop": func(context.Context, []byte) ([]byte, error) {
		for i := 0; ; i++ {
			_ = i
		}
	},
}

func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == ChildArg {
		if err := Serve(os.Stdin, os.Stdout, testTasks); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var limits = Limits{Time: 10 * time.Second, Heap: 64 << 20}

func TestChildAnswers(t *testing.T) {
	out, err := InChild(t.Context(), os.Args[0], "echo", limits, []byte("hello"))
	if err != nil || string(out) != "hello" {
		t.Fatalf("got %q, %v", out, err)
	}
	_, err = InChild(t.Context(), os.Args[0], "fail", limits, []byte("because"))
	if err == nil || err.Error() != "no: because" {
		t.Fatalf("got %v", err)
	}
	// The run's environment, credentials and all, stays with the run.
	t.Setenv("VAULT_TOKEN", "s3cret")
	t.Setenv("GOGC", "50")
	out, err = InChild(t.Context(), os.Args[0], "env", limits, nil)
	if err != nil || string(out) != "GOGC=50" {
		t.Fatalf("the child's environment: %q, %v", out, err)
	}
	// Within its budget, an allocation goes through.
	out, err = InChild(t.Context(), os.Args[0], "alloc", limits, []byte(strconv.Itoa(16<<20)))
	if err != nil || string(out) != strconv.Itoa(16<<20) {
		t.Fatalf("got %q, %v", out, err)
	}
}

// TestChildOneHugeAllocation: one call that asks for gigabytes at once
// fails in the child, which the parent reports as past its memory budget;
// Run's look every 10 ms would never see it coming.
func TestChildOneHugeAllocation(t *testing.T) {
	start := time.Now()
	_, err := InChild(t.Context(), os.Args[0], "alloc", limits, []byte(strconv.Itoa(3<<30)))
	exceeded, ok := errors.AsType[*ExceededError](err)
	if !ok || exceeded.Heap != limits.Heap {
		t.Fatalf("got %v, want the memory budget exceeded", err)
	}
	if !strings.Contains(err.Error(), "memory budget of 64 MiB") {
		t.Errorf("message %q", err)
	}
	t.Logf("%v after %s", err, time.Since(start))
}

// TestChildAddressSpace: the child cannot map more than its start and its
// budget, whatever maps it.
func TestChildAddressSpace(t *testing.T) {
	if _, err := InChild(t.Context(), os.Args[0], "mmap", limits, []byte(strconv.Itoa(32<<20))); err != nil {
		t.Fatalf("32 MiB within a 64 MiB budget: %v", err)
	}
	_, err := InChild(t.Context(), os.Args[0], "mmap", limits, []byte(strconv.Itoa(1<<30)))
	if err == nil || !strings.Contains(err.Error(), "cannot allocate memory") {
		t.Fatalf("1 GiB with a 64 MiB budget: got %v, want ENOMEM", err)
	}
}

func TestChildTimeBudget(t *testing.T) {
	start := time.Now()
	_, err := InChild(t.Context(), os.Args[0], "loop", Limits{Time: 500 * time.Millisecond, Heap: 64 << 20}, nil)
	if exceeded, ok := errors.AsType[*ExceededError](err); !ok || exceeded.Time == 0 {
		t.Fatalf("got %v, want the time budget exceeded", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

// TestChildKilledOnCancel: a done context ends the child at once, whatever
// its budget says.
func TestChildKilledOnCancel(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	time.AfterFunc(300*time.Millisecond, func() { cancel(errors.New("stopped")) })
	start := time.Now()
	_, err := InChild(ctx, os.Args[0], "loop", Limits{Time: time.Minute, Heap: 64 << 20}, nil)
	if err == nil || err.Error() != "stopped" {
		t.Fatalf("got %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("took %s", d)
	}
}
