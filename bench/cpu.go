package bench

import (
	"strconv"

	"github.com/ragpipe/ragpipe/internal/cputime"
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

// plus returns the sum of c and d (d for a nil c); a process absent from
// either is absent from the sum.
func (c *CPU) plus(d *CPU) *CPU {
	if c == nil {
		return d
	}
	sum := func(a, b *float64) *float64 {
		if a == nil || b == nil {
			return nil
		}
		return new(*a + *b)
	}
	return &CPU{Qdrant: sum(c.Qdrant, d.Qdrant), Worker: sum(c.Worker, d.Worker), Bench: c.Bench + d.Bench}
}

// processCPU returns the CPU seconds of process pid (this process for 0).
func processCPU(pid int) (float64, error) {
	d, err := cputime.Process(pid)
	return d.Seconds(), err
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
