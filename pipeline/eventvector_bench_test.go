package pipeline

import (
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
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
			done, n := cputimetest.Per(b, 1, "cpu-ns/op"), 0
			for b.Loop() {
				if _, _, problem := readFloats(arrays[n%len(arrays)], 0); problem != "" {
					b.Fatal(problem)
				}
				n++
			}
			done()
		})
	}
}
