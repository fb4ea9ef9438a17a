package builtin

// Matrix products run on a 12×16 block kernel: twelve rows of x against a
// panel of sixteen columns of w, accumulated over the whole inner dimension
// in registers (AVX-512: one register per row; AVX2: two passes of six
// rows, two registers per row). Weights are packed once, at load, into
// panels of sixteen columns stored one after another, so that the kernel
// reads them sequentially; x is read twelve rows at a time, so the row
// count of every operand and result buffer is rounded up to a multiple of
// twelve (padRows).

const (
	panelCols = 16
	blockRows = 12
	// padRows is maxTokens rounded up to a multiple of blockRows: the row
	// capacity of every buffer the kernel reads or writes.
	padRows = (maxTokens + blockRows - 1) / blockRows * blockRows
)

// packed is a weight matrix [k, n] stored as n/16 panels of [k, 16].
type packed struct {
	k, n int
	data []float32
}

// pack rearranges the row-major matrix w [k, n] into panels; n must be a
// multiple of 16.
func pack(w []float32, k, n int) packed {
	p := packed{k: k, n: n, data: make([]float32, len(w))}
	for c := 0; c < n; c += panelCols {
		panel := p.data[c*k : (c+panelCols)*k]
		for r := range k {
			copy(panel[r*panelCols:(r+1)*panelCols], w[r*n+c:r*n+c+panelCols])
		}
	}
	return p
}

// matmul writes to dst ([rows, n], row-major) the product x·w plus bias,
// for x [rows, k] (row-major, x holds a row every ldx values) and bias nil
// or of length n. x and dst must have room for rows rounded up to a
// multiple of twelve: the rows past rows are computed from whatever x holds
// there and must be ignored.
func matmul(dst, x []float32, ldx, rows int, w packed, bias []float32) {
	matmulStrided(dst, w.n, x, ldx, rows, w, bias)
}

// zeros is the bias of products without one.
var zeros [panelCols]float32

// matmulStrided is matmul writing rows of dst every ldd values.
func matmulStrided(dst []float32, ldd int, x []float32, ldx, rows int, w packed, bias []float32) {
	k, n := w.k, w.n
	blocks := (rows + blockRows - 1) / blockRows
	x = x[:(blocks*blockRows-1)*ldx+k]
	dst = dst[:(blocks*blockRows-1)*ldd+n]
	for c := 0; c < n; c += panelCols {
		panel := w.data[c*k : (c+panelCols)*k]
		b := zeros[:]
		if bias != nil {
			b = bias[c : c+panelCols]
		}
		for r := 0; r < rows; r += blockRows {
			kernel(k, x[r*ldx:], ldx, panel, dst[r*ldd+c:], ldd, b)
		}
	}
}

// kernelGo is the portable kernel: dst rows r < 12, columns j < 16 (row
// stride ldd) get bias[j] + Σ x[r·ldx+i]·panel[i·16+j].
func kernelGo(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32) {
	var acc [blockRows][panelCols]float32
	for r := range acc {
		acc[r] = [panelCols]float32(bias[:panelCols])
	}
	x = x[:(blockRows-1)*ldx+k]
	panel = panel[:k*panelCols]
	for i := range k {
		w := (*[panelCols]float32)(panel[i*panelCols:])
		for r := range blockRows {
			xv := x[r*ldx+i]
			a := &acc[r]
			for j := range panelCols {
				a[j] += xv * w[j]
			}
		}
	}
	for r := range acc {
		copy(dst[r*ldd:r*ldd+panelCols], acc[r][:])
	}
}
