// Command rusage runs a command and reports, on file descriptor 3, its wall
// time in nanoseconds, its peak RSS in KiB, its minor page faults and its
// CPU time (user and system) in nanoseconds:
//
//	rusage COMMAND [ARG...] 3>report
//
// bench/sync starts every measured process through it. A process started
// straight from the benchmark is counted as having had the benchmark's own
// peak RSS: Go starts children with vfork (CLONE_VM), and Linux folds the
// hiwater mark of the address space a process leaves at exec into its
// maxrss. This program is small, so what it passes on is a few MiB.
package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: rusage COMMAND [ARG...] 3>report")
		os.Exit(2)
	}
	report := os.NewFile(3, "report")
	cmd := exec.Command(os.Args[1], os.Args[2:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	var exit *exec.ExitError
	if err != nil && !errors.As(err, &exit) {
		fmt.Fprintln(os.Stderr, "rusage:", err)
		os.Exit(127)
	}
	ru, _ := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if ru != nil {
		cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
		fmt.Fprintf(report, "%d %d %d %d\n", wall.Nanoseconds(), ru.Maxrss, ru.Minflt, cpu.Nanoseconds())
	}
	os.Exit(cmd.ProcessState.ExitCode())
}
