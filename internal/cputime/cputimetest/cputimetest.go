// Package cputimetest reads the CPU time, user plus system, of this process
// and of the servers it starts, for the benchmarks that report it: the
// figure that holds on a machine whose cores other processes share. It is
// apart from cputime, which the ragpipe binary links, so that the binary
// does not import testing.
package cputimetest

import (
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/cputime"
)

// Now returns the CPU time this process has used (cputime.Self), failing
// tb if it cannot be read. It does not call tb.Helper, which costs more
// than the read, so that it can time parts of an iteration.
func Now(tb testing.TB) time.Duration {
	d, err := cputime.Self()
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// NowSystem returns Now's time and the part of it spent in the kernel.
func NowSystem(tb testing.TB) (total, system time.Duration) {
	total, system, err := cputime.SelfSystem()
	if err != nil {
		tb.Fatal(err)
	}
	return total, system
}

// Process returns the CPU time process pid has used (cputime.Process, to
// the clock tick), failing tb if it cannot be read.
func Process(tb testing.TB, pid int) time.Duration {
	d, err := cputime.Process(pid)
	if err != nil {
		tb.Fatal(err)
	}
	return d
}

// Per starts counting the CPU time, the garbage collector's included; done,
// called after b's loop, reports it in nanoseconds as metric unit, per
// iteration of the loop divided by n.
func Per(b *testing.B, n int, unit string) (done func()) {
	start := Now(b)
	return func() { b.ReportMetric(float64(Now(b)-start)/float64(b.N*n), unit) }
}
