// Package checkfor polls a condition in tests, instead of sleeping for a
// guessed time.
package checkfor

import (
	"testing"
	"time"
)

// Until calls check every 20ms until it returns nil, and fails the test with
// what and check's last error if timeout passes first.
func Until(t testing.TB, timeout time.Duration, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s: %v", what, timeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
