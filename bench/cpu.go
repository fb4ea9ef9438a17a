package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
)

// CPU is the CPU time, in seconds, that the processes of a stage used while
// it was timed: what limits a rate on a machine whose cores they share.
type CPU struct {
	// Qdrant is the Qdrant process's; absent when the bench did not start
	// it (--qdrant-url).
	Qdrant *float64 `json:"qdrant,omitempty"`
	// Worker is the worker process's; absent for the ceiling.
	Worker *float64 `json:"worker,omitempty"`
	// Bench is this process's: the client publishing or upserting, the
	// polling, and the embedded NATS server when there is one.
	Bench float64 `json:"bench"`
}

// cpuMeter measures the CPU time of the bench, Qdrant (pid qdrant, 0 when
// unknown) and a worker (pid worker, 0 for none) from its start.
type cpuMeter struct {
	pids  [3]int // bench (0: self), qdrant, worker
	start [3]float64
}

// startCPU starts measuring. Processes whose times cannot be read are left
// out of the result.
func startCPU(qdrant, worker int) *cpuMeter {
	m := &cpuMeter{pids: [3]int{0, qdrant, worker}}
	for i, pid := range m.pids {
		m.start[i], _ = processCPU(pid)
	}
	return m
}

// stop returns the CPU time used since startCPU.
func (m *cpuMeter) stop() *CPU {
	var used [3]*float64
	for i, pid := range m.pids {
		if i > 0 && pid == 0 {
			continue
		}
		if now, err := processCPU(pid); err == nil {
			used[i] = new(round(now-m.start[i], 2))
		}
	}
	c := &CPU{Qdrant: used[1], Worker: used[2]}
	if used[0] != nil {
		c.Bench = *used[0]
	}
	return c
}

// clockTicks is the unit of the times in /proc/<pid>/stat (USER_HZ), 100 on
// every Linux platform Go supports.
const clockTicks = 100

// processCPU returns the user plus system CPU seconds of process pid (this
// process for 0), from /proc (Linux).
func processCPU(pid int) (float64, error) {
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

// parseStat returns utime + stime, in seconds, from the text of
// /proc/<pid>/stat. The command name, field 2, is in parentheses and may
// hold spaces, so fields are counted from the last ')'.
func parseStat(b []byte) (float64, error) {
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
	return float64(ticks) / clockTicks, nil
}

// cpuText renders c for the table: qdrant / worker / bench seconds.
func cpuText(c *CPU) string {
	if c == nil {
		return "-"
	}
	part := func(v *float64) string {
		if v == nil {
			return "-"
		}
		return strconv.FormatFloat(*v, 'f', 2, 64)
	}
	return part(c.Qdrant) + " / " + part(c.Worker) + " / " + part(&c.Bench)
}
