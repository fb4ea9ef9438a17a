package bench

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"syscall"

	"golang.org/x/sys/unix"
)

// pinCPUs restricts every thread of process pid (this process for 0) to
// cpus. Threads it starts later inherit the restriction from the thread that
// starts them; the threads are listed twice, for one started meanwhile.
func pinCPUs(pid int, cpus []int) error {
	var set unix.CPUSet
	for _, c := range cpus {
		set.Set(c)
	}
	if pid == 0 {
		pid = os.Getpid()
	}
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	for range 2 {
		tasks, err := os.ReadDir(dir)
		if err != nil {
			return fmt.Errorf("pin process %d: %w", pid, err)
		}
		for _, t := range tasks {
			tid, err := strconv.Atoi(t.Name())
			if err != nil {
				continue
			}
			// A thread that has exited meanwhile is no longer there to pin.
			if err := unix.SchedSetaffinity(tid, &set); err != nil && !errors.Is(err, syscall.ESRCH) {
				return fmt.Errorf("pin thread %d of process %d to CPUs %v: %w", tid, pid, cpus, err)
			}
		}
	}
	return nil
}

// allowedOf returns the CPUs process pid may run on, in order.
func allowedOf(pid int) ([]int, error) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(pid, &set); err != nil {
		return nil, fmt.Errorf("CPU affinity of process %d: %w", pid, err)
	}
	return cpuList(&set), nil
}

func cpuList(set *unix.CPUSet) []int {
	var cpus []int
	for c := range 8 * 1024 { // CPUSet's capacity
		if set.IsSet(c) {
			cpus = append(cpus, c)
		}
	}
	return cpus
}
