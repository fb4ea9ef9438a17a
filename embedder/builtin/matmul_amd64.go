package builtin

import "golang.org/x/sys/cpu"

// kernel is the AVX2/FMA kernel when the processor has both, else kernelGo.
var kernel = kernelGo

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		kernel = kernelAVX2
	}
}

// kernelAVX2 is kernelGo with fused multiply-adds on eight lanes; the
// callers' slices are checked to be long enough before it is called.
func kernelAVX2(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32) {
	_ = x[(blockRows-1)*ldx+k-1]
	_ = panel[k*panelCols-1]
	_ = dst[(blockRows-1)*ldd+panelCols-1]
	_ = bias[panelCols-1]
	kernel6x16(k, &x[0], ldx, &panel[0], &dst[0], ldd, &bias[0])
}

//go:noescape
func kernel6x16(k int, x *float32, ldx int, panel, dst *float32, ldd int, bias *float32)
