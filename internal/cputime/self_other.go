//go:build !unix

package cputime

import (
	"errors"
	"time"
)

// Self fails: this platform has no getrusage.
func Self() (time.Duration, error) {
	return 0, errors.New("cputime: this platform has no getrusage")
}
