package budget

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
)

// confine bounds the child's memory to heap more than it holds now, in
// three ways. The address-space limit makes an allocation past it fail in
// the runtime, which ends the process ("out of memory") before the pages
// exist: no single call gets past it, as one would between two looks of
// Run. The memory limit has the collector work hard before that. And the
// OOM score has the kernel, if the pod's cgroup runs out all the same,
// kill the child rather than the run that would report it.
func confine(heap uint64) error {
	// Raising one's own score needs no privilege.
	_ = os.WriteFile("/proc/self/oom_score_adj", []byte("1000"), 0)
	if heap == 0 {
		return nil
	}
	s := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() == metrics.KindUint64 {
		debug.SetMemoryLimit(int64(s[0].Value.Uint64() + heap))
	}
	size, err := vmSize()
	if err != nil {
		return fmt.Errorf("limiting the evaluation's memory: %w", err)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_AS, &lim); err != nil {
		return fmt.Errorf("limiting the evaluation's memory: %w", err)
	}
	want := min(size+heap+childSlack, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_AS, &syscall.Rlimit{Cur: want, Max: want}); err != nil {
		return fmt.Errorf("limiting the evaluation's memory: %w", err)
	}
	return nil
}

// vmSize is the process's address space now, in bytes.
func vmSize() (uint64, error) {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmSize:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("VmSize %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmSize in /proc/self/status")
}

// childAttr has the kernel kill the child when the thread that started it
// ends, should this process die without closing the child's stdin first
// (SIGKILL).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
