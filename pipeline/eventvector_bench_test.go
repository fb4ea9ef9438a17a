package pipeline

import (
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// variedArrays returns n JSON arrays of dims numbers in [-0.5, 0.5), each
// number printed by format (its shortest float32 or float64 form).
func variedArrays(n, dims, bitSize int) [][]byte {
	r := rand.New(rand.NewPCG(7, 13))
	arrays := make([][]byte, n)
	for k := range arrays {
		b := []byte{'['}
		for j := range dims {
			if j > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendFloat(b, float64(r.Float32()-0.5), 'g', -1, bitSize)
		}
		arrays[k] = append(b, ']')
	}
	return arrays
}

// BenchmarkReadFloats converts 1024-number arrays, many different ones in
// turn, as readFloats meets them in vector events.
func BenchmarkReadFloats(b *testing.B) {
	for _, bc := range []struct {
		name    string
		bitSize int
	}{{"float32", 32}, {"float64", 64}} {
		arrays := variedArrays(256, 1024, bc.bitSize)
		b.Run(bc.name, func(b *testing.B) {
			cpu, n := cpuTime(b), 0
			for b.Loop() {
				if _, _, problem := readFloats(arrays[n%len(arrays)], 0); problem != "" {
					b.Fatal(problem)
				}
				n++
			}
			b.ReportMetric(float64(cpuTime(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the CPU time the process has used, user and system.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
