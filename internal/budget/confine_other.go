//go:build !linux

package budget

import "syscall"

// confine has no address-space limit to set outside Linux: the child keeps
// Run's heap check, and dies with its process all the same.
func confine(heap uint64) error { return nil }

func childAttr() *syscall.SysProcAttr { return nil }
