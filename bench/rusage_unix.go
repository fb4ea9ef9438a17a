//go:build unix

package bench

import (
	"fmt"
	"syscall"
	"time"
)

// selfCPU returns the user plus system CPU time this process has used, from
// getrusage: the same measure as the exited child's in os.ProcessState.
func selfCPU() (time.Duration, error) {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		return 0, fmt.Errorf("getrusage: %w", err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano()), nil
}
