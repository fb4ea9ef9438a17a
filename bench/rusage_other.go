//go:build !unix

package bench

import (
	"errors"
	"time"
)

// selfCPU fails: this platform has no getrusage.
func selfCPU() (time.Duration, error) {
	return 0, errors.New("the NATS floor needs getrusage, which this platform lacks")
}
