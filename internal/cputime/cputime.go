// Package cputime reads the CPU time processes have used, user plus
// system: what the bench and the benchmarks report per document or request
// on machines whose cores the processes share.
package cputime

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"time"
)

// Self returns the CPU time this process has used, from getrusage: finer
// than Process's clock ticks, and the same measure as an exited child's in
// os.ProcessState.
func Self() (time.Duration, error) {
	total, _, err := SelfSystem()
	return total, err
}

// clockTicks is the unit of the times in /proc/<pid>/stat (USER_HZ), 100 on
// every Linux platform Go supports.
const clockTicks = 100

// Process returns the CPU time of process pid (this process for 0), from
// /proc (Linux).
func Process(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return parseStat(b)
}

// parseStat returns utime + stime from the text of /proc/<pid>/stat. The
// command name, field 2, is in parentheses and may hold spaces, so fields
// are counted from the last ')'.
func parseStat(b []byte) (time.Duration, error) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("stat %q: no command name", b)
	}
	f := bytes.Fields(b[i+1:]) // f[0] is field 3, the state
	if len(f) < 13 {
		return 0, fmt.Errorf("stat %q: too few fields", b)
	}
	var ticks uint64
	for _, s := range f[11:13] { // fields 14 and 15: utime, stime
		n, err := strconv.ParseUint(string(s), 10, 64)
		if err != nil {
			return 0, fmt.Errorf("stat: %w", err)
		}
		ticks += n
	}
	return time.Duration(ticks) * (time.Second / clockTicks), nil
}
