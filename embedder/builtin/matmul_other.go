//go:build !amd64

package builtin

// kernel is the portable kernel on processors other than amd64.
var kernel = kernelGo
