package builtin

import (
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// TestKernels checks matmul, with every kernel the processor can run,
// against a plain triple loop,
// for row counts that are and are not multiples of the block and for
// strided operands.
func TestKernels(t *testing.T) {
	t.Logf("kernels: %v", slices.Sorted(maps.Keys(kernels)))
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range []struct{ rows, k, n, ldx int }{
		{1, 512, 512, 512}, {6, 16, 16, 16}, {7, 256, 768, 256}, {128, 512, 1536, 512}, {13, 64, 32, 200},
	} {
		blocks := (c.rows + blockRows - 1) / blockRows
		x := make([]float32, blocks*blockRows*c.ldx)
		w := make([]float32, c.k*c.n)
		bias := make([]float32, c.n)
		for _, s := range [][]float32{x, w, bias} {
			for i := range s {
				s[i] = r.Float32()*2 - 1
			}
		}
		want := make([]float32, c.rows*c.n)
		for i := range c.rows {
			for j := range c.n {
				sum := float64(bias[j])
				for l := range c.k {
					sum += float64(x[i*c.ldx+l]) * float64(w[l*c.n+j])
				}
				want[i*c.n+j] = float32(sum)
			}
		}
		p := pack(w, c.k, c.n)
		for name, kern := range kernels {
			saved := kernel
			kernel = kern
			got := make([]float32, blocks*blockRows*c.n)
			matmul(got, x, c.ldx, c.rows, p, bias)
			kernel = saved
			for i, v := range want {
				if math.Abs(float64(got[i]-v)) > 1e-4*math.Sqrt(float64(c.k)) {
					t.Fatalf("%s kernel, %+v: element %d = %g, want %g", name, c, i, got[i], v)
				}
			}
		}
	}
}
