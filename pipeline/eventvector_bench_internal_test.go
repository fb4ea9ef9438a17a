package pipeline

import (
	"math/rand/v2"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// BenchmarkFloats converts the numbers of many different vectors, written as
// ragpipe bench writes them, with each converter; ns/op is per number.
func BenchmarkFloats(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 11))
	var buf []byte
	var starts []int
	for range 64 * 1024 {
		starts = append(starts, len(buf))
		buf = strconv.AppendFloat(buf, float64(r.Float32()-0.5), 'g', -1, 32)
		buf = append(buf, ',')
	}
	buf = append(buf, make([]byte, fastFloatWindow)...)
	for _, bc := range []struct {
		name string
		conv func([]byte, int) (float32, int, bool)
	}{{"parseFloat32", parseFloat32}, {"fastFloat32", func(b []byte, i int) (float32, int, bool) {
		f, n, ok := fastFloat32(b[i:])
		return f, i + n, ok
	}}} {
		b.Run(bc.name, func(b *testing.B) {
			var sum float32
			k, cpu := 0, processCPU(b)
			for b.Loop() {
				f, _, _ := bc.conv(buf, starts[k])
				sum += f
				if k++; k == len(starts) {
					k = 0
				}
			}
			_ = sum
			b.ReportMetric(float64(processCPU(b)-cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// processCPU is the CPU time the process has used, user and system.
func processCPU(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
