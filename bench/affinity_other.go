//go:build !linux

package bench

import "errors"

var errAffinity = errors.New("CPU affinity is only set on Linux")

func pinCPUs(int, []int) error     { return errAffinity }
func allowedOf(int) ([]int, error) { return nil, errAffinity }
