package retry_test

import (
	"fmt"
	"time"

	"github.com/ragpipe/ragpipe/internal/retry"
)

// The waits of a policy without jitter: doubling from Initial, capped at Max.
func ExamplePolicy_Delay() {
	p := retry.Policy{Initial: 250 * time.Millisecond, Max: 2 * time.Second, Jitter: -1}
	for n := 1; n <= 6; n++ {
		fmt.Print(p.Delay(n), " ")
	}
	fmt.Println()
	// Output: 250ms 500ms 1s 2s 2s 2s
}
