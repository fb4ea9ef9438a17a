//go:build !amd64

package builtin

// kernel is the portable kernel on processors other than amd64.
var kernel = kernelGo

// kernels are the kernels this processor can run, for the tests.
var kernels = map[string]func(k int, x []float32, ldx int, panel, dst []float32, ldd int, bias []float32){"portable": kernelGo}
