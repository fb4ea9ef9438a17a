//go:build unix

package cputime

import (
	"fmt"
	"syscall"
	"time"
)

// SelfSystem returns Self's CPU time and the part of it spent in the
// kernel, from one getrusage call.
func SelfSystem() (total, system time.Duration, err error) {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0, 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()), time.Duration(u.Stime.Nano()), nil
}
