package builtin

import "golang.org/x/sys/cpu"

// kernel is the AVX-512 kernel where the processor and OS support it, else
// the AVX2/FMA one, else kernelGo.
var kernel = kernelGo

// kernels are the kernels this processor can run, for the tests.
var kernels = map[string]func(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32){"portable": kernelGo}

func init() {
	if cpu.X86.HasAVX2 && cpu.X86.HasFMA {
		kernel = kernelAVX2
		kernels["avx2"] = kernelAVX2
	}
	if cpu.X86.HasAVX512F {
		kernel = kernelAVX512
		kernels["avx512"] = kernelAVX512
	}
}

// checkBlock panics unless the kernel's operands hold a whole block: the
// assembly kernels do not check.
func checkBlock(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32) {
	_ = x[(blockRows-1)*ldx+k-1]
	_ = panel[k*panelCols-1]
	_ = dst[(blockRows-1)*ldd+panelCols-1]
	_ = bias[panelCols-1]
}

// kernelAVX2 is kernelGo with fused multiply-adds on eight lanes, six rows
// at a time.
func kernelAVX2(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32) {
	checkBlock(k, x, ldx, panel, dst, ldd, bias)
	kernel6x16(k, &x[0], ldx, &panel[0], &dst[0], ldd, &bias[0])
	kernel6x16(k, &x[6*ldx], ldx, &panel[0], &dst[6*ldd], ldd, &bias[0])
}

// kernelAVX512 is kernelGo with fused multiply-adds on sixteen lanes.
func kernelAVX512(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32) {
	checkBlock(k, x, ldx, panel, dst, ldd, bias)
	kernel12x16(k, &x[0], ldx, &panel[0], &dst[0], ldd, &bias[0])
}

//go:noescape
func kernel6x16(k int, x *float32, ldx int, panel, dst *float32, ldd int, bias *float32)

//go:noescape
func kernel12x16(k int, x *float32, ldx int, panel, dst *float32, ldd int, bias *float32)
