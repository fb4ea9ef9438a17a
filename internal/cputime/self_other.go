//go:build !unix

package cputime

import (
	"errors"
	"time"
)

// SelfSystem fails: this platform has no getrusage.
func SelfSystem() (total, system time.Duration, err error) {
	return 0, 0, errors.New("cputime: this platform has no getrusage")
}
