package retry_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/retry"
)

var errFlaky = errors.New("flaky")

func TestDelayGrowsAndCaps(t *testing.T) {
	p := retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: -1}
	want := []time.Duration{100, 200, 400, 800, 1000, 1000}
	for i, w := range want {
		if got := p.Delay(i + 1); got != w*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want %s", i+1, got, w*time.Millisecond)
		}
	}
	for _, n := range []int{0, -5} {
		if got := p.Delay(n); got != 100*time.Millisecond {
			t.Errorf("Delay(%d) = %s, want Initial", n, got)
		}
	}
	// Far past any float64 or Duration range: still the cap.
	if got := p.Delay(1 << 30); got != time.Second {
		t.Errorf("Delay(2^30) = %s, want the cap", got)
	}
	m := retry.Policy{Initial: 10 * time.Millisecond, Multiplier: 3, Max: time.Hour, Jitter: -1}
	if got := m.Delay(3); got != 90*time.Millisecond {
		t.Errorf("Multiplier 3: Delay(3) = %s, want 90ms", got)
	}
}

func TestDelayJitterBounded(t *testing.T) {
	for _, tc := range []struct {
		jitter float64
		low    float64 // share of the exponential delay a wait never goes below
	}{
		{0, 0.5}, // the default
		{0.2, 0.8},
		{1, 0},
		{7, 0}, // treated as 1
	} {
		p := retry.Policy{Initial: 100 * time.Millisecond, Max: time.Second, Jitter: tc.jitter}
		for n, d := range map[int]time.Duration{1: 100 * time.Millisecond, 3: 400 * time.Millisecond, 9: time.Second} {
			lo, hi := time.Duration(tc.low*float64(d)), d
			seen := make(map[time.Duration]bool)
			for range 500 {
				got := p.Delay(n)
				if got < lo || got > hi {
					t.Fatalf("jitter %v: Delay(%d) = %s, want within [%s, %s]", tc.jitter, n, got, lo, hi)
				}
				seen[got] = true
			}
			if len(seen) < 10 {
				t.Errorf("jitter %v: Delay(%d) took %d values in 500 draws, want spread", tc.jitter, n, len(seen))
			}
		}
	}
}

func TestDoRetriesUntilSuccess(t *testing.T) {
	calls := 0
	var waits []int
	p := retry.Policy{Initial: time.Millisecond, Max: 2 * time.Millisecond,
		OnRetry: func(attempt int, err error, _ time.Duration) {
			if !errors.Is(err, errFlaky) {
				t.Errorf("OnRetry got %v", err)
			}
			waits = append(waits, attempt)
		}}
	err := p.Do(t.Context(), func(context.Context) error {
		if calls++; calls < 4 {
			return errFlaky
		}
		return nil
	})
	if err != nil || calls != 4 || len(waits) != 3 || waits[2] != 3 {
		t.Fatalf("err %v after %d calls, OnRetry for attempts %v; want nil after 4, [1 2 3]", err, calls, waits)
	}
}

func TestDoStopsOnPermanent(t *testing.T) {
	permanent := errors.New("bad request")
	calls := 0
	p := retry.Policy{
		ShouldRetry: func(err error) bool { return !errors.Is(err, permanent) },
		OnRetry:     func(int, error, time.Duration) { t.Error("OnRetry called for a permanent error") },
	}
	err := p.Do(t.Context(), func(context.Context) error {
		calls++
		return permanent
	})
	if err != permanent || calls != 1 {
		t.Fatalf("err %v after %d calls, want the error itself after 1", err, calls)
	}
}

func TestDoMaxElapsed(t *testing.T) {
	// Waits of 10ms, then 1s: the second would end past MaxElapsed.
	p := retry.Policy{Initial: 10 * time.Millisecond, Multiplier: 100, Jitter: -1, MaxElapsed: 500 * time.Millisecond}
	calls := 0
	err := p.Do(t.Context(), func(context.Context) error {
		calls++
		return errFlaky
	})
	var giveUp *retry.Error
	if !errors.As(err, &giveUp) || !errors.Is(err, errFlaky) || giveUp.Cause != nil {
		t.Fatalf("err %v, want a *retry.Error wrapping the last failure", err)
	}
	if calls != 2 || giveUp.Attempts != 2 {
		t.Errorf("%d calls, %d attempts reported; want 2", calls, giveUp.Attempts)
	}
}

func TestDoHonoursServerWait(t *testing.T) {
	const asked = 50 * time.Millisecond
	var waits []time.Duration
	p := retry.Policy{Initial: time.Hour, Max: time.Hour,
		OnRetry: func(_ int, _ error, wait time.Duration) { waits = append(waits, wait) }}
	calls := 0
	start := time.Now()
	err := p.Do(t.Context(), func(context.Context) error {
		if calls++; calls == 1 {
			return retry.After(asked, errFlaky)
		}
		return nil
	})
	if err != nil || len(waits) != 1 || waits[0] != asked {
		t.Fatalf("err %v, waits %v; want one wait of %s instead of an hour", err, waits, asked)
	}
	if d := time.Since(start); d < asked {
		t.Errorf("retried after %s, before the %s the server asked for", d, asked)
	}

	// A longer wait than the computed one wins as well, and one past
	// MaxElapsed gives up at once.
	p = retry.Policy{Initial: time.Millisecond, MaxElapsed: time.Minute,
		OnRetry: func(int, error, time.Duration) { t.Error("waited past MaxElapsed") }}
	err = p.Do(t.Context(), func(context.Context) error { return retry.After(time.Hour, errFlaky) })
	if !errors.Is(err, errFlaky) || !strings.HasPrefix(err.Error(), "gave up after 1 attempts in ") {
		t.Fatalf("err %v, want giving up at once", err)
	}
	if retry.After(0, errFlaky) != errFlaky || retry.After(time.Second, nil) != nil {
		t.Error("After with no wait or no error must return the error unchanged")
	}
}

func TestDoContextInterruptsWait(t *testing.T) {
	ctx, cancel := context.WithCancelCause(t.Context())
	defer cancel(nil)
	stop := errors.New("shutting down")
	waiting := make(chan struct{})
	done := make(chan error, 1)
	p := retry.Policy{Initial: time.Hour, OnRetry: func(int, error, time.Duration) { close(waiting) }}
	go func() { done <- p.Do(ctx, func(context.Context) error { return errFlaky }) }()
	<-waiting
	cancel(stop)
	select {
	case err := <-done:
		var giveUp *retry.Error
		if !errors.As(err, &giveUp) || giveUp.Attempts != 1 || !errors.Is(err, stop) || !errors.Is(err, errFlaky) {
			t.Fatalf("err %v, want a *retry.Error with the cause and the last failure", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Do still waiting 10s after its context ended")
	}

	// A context that ended during an attempt stops Do without a wait.
	ctx, cancelNow := context.WithCancel(t.Context())
	err := retry.Policy{Initial: time.Hour}.Do(ctx, func(context.Context) error {
		cancelNow()
		return context.Canceled
	})
	if !errors.Is(err, context.Canceled) || !strings.HasSuffix(err.Error(), "s: context canceled") {
		t.Fatalf("err %v", err)
	}
}

func TestSleep(t *testing.T) {
	if err := retry.Sleep(t.Context(), time.Millisecond); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := retry.Sleep(ctx, time.Hour); !errors.Is(err, context.Canceled) {
		t.Fatalf("Sleep on an ended context: %v", err)
	}
	if err := retry.Sleep(ctx, 0); err != nil {
		t.Fatalf("Sleep(0): %v", err)
	}
}

func TestDoEdges(t *testing.T) {
	t.Run("no MaxElapsed is no bound", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		var waits []time.Duration
		p := retry.Policy{Initial: time.Hour, OnRetry: func(_ int, _ error, wait time.Duration) {
			waits = append(waits, wait)
			cancel()
		}}
		err := p.Do(ctx, func(context.Context) error { return errFlaky })
		if len(waits) != 1 || !errors.Is(err, context.Canceled) || !errors.Is(err, errFlaky) {
			t.Fatalf("err %v, waits %v; want one wait of about an hour, then the cancel", err, waits)
		}
	})
	t.Run("Initial above Max", func(t *testing.T) {
		p := retry.Policy{Initial: time.Minute, Max: time.Second}
		for n := range 3 {
			if d := p.Delay(n + 1); d > time.Second || d < time.Second/2 {
				t.Fatalf("Delay(%d) = %s, want within [500ms, 1s]", n+1, d)
			}
		}
	})
	t.Run("server wait restarts the computed waits", func(t *testing.T) {
		var waits []time.Duration
		p := retry.Policy{Initial: time.Millisecond, Multiplier: 4, Jitter: -1,
			OnRetry: func(_ int, _ error, wait time.Duration) { waits = append(waits, wait) }}
		calls := 0
		err := p.Do(t.Context(), func(context.Context) error {
			switch calls++; calls {
			case 1, 3:
				return errFlaky
			case 2:
				return retry.After(2*time.Millisecond, errFlaky)
			}
			return nil
		})
		want := []time.Duration{time.Millisecond, 2 * time.Millisecond, time.Millisecond}
		if err != nil || !slices.Equal(waits, want) {
			t.Fatalf("err %v, waits %v; want %v", err, waits, want)
		}
	})
	t.Run("After reads as its error", func(t *testing.T) {
		err := retry.After(time.Second, errFlaky)
		if !errors.Is(err, errFlaky) || err.Error() != errFlaky.Error() {
			t.Fatalf("After: %v", err)
		}
	})
}
