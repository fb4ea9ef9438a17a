// Package retry is ragpipe's one retry policy: exponential backoff with
// jitter, capped, bounded in time or attempts, every wait interrupted by the
// context, with a hook that classifies failures and a wait a server asked
// for (HTTP Retry-After, a rate limit's hint) taking the place of the
// computed one.
//
// Each caller keeps its own classification (ShouldRetry) and logging
// (OnRetry); the waits all come from Policy.Delay, which also gives the
// worker its redelivery delay.
package retry

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"time"
)

// Policy says how a failed operation is retried. The zero Policy retries
// every failure with the documented defaults until the context ends. A
// Policy is a value: copy it to set the hooks of one call site. Do and Delay
// do not modify it, so one Policy may serve concurrent calls.
type Policy struct {
	// Initial is the wait after the first failed attempt. Default 100ms.
	Initial time.Duration
	// Multiplier is how much each wait grows over the one before; values
	// below 1 take the default, 2.
	Multiplier float64
	// Max caps every computed wait, jitter included. Default 10s, or
	// Initial when that is longer.
	Max time.Duration
	// Jitter is the share of each wait that is random: the wait is drawn
	// uniformly from [(1-Jitter)·d, d], d being the capped exponential
	// delay, so that clients failing together do not retry together.
	// Default 0.5; negative for none; at most 1.
	Jitter float64
	// MaxElapsed, when positive, makes Do give up instead of starting a
	// wait that would end more than MaxElapsed after the first attempt
	// began. A server's requested wait counts.
	MaxElapsed time.Duration
	// MaxAttempts, when positive, is the most attempts Do makes, the first
	// included.
	MaxAttempts int

	// ShouldRetry reports whether a failure may succeed if repeated; when
	// it returns false Do returns the failure at once, unwrapped. Nil
	// retries every failure.
	ShouldRetry func(err error) bool
	// OnRetry, when set, is called before each wait with the number of the
	// attempt that failed (from 1), its error and the wait: for logs and
	// metrics.
	OnRetry func(attempt int, err error, wait time.Duration)
}

// withDefaults returns p with its zero or out-of-range fields set.
func (p Policy) withDefaults() Policy {
	if p.Initial <= 0 {
		p.Initial = 100 * time.Millisecond
	}
	if p.Multiplier < 1 {
		p.Multiplier = 2
	}
	if p.Max <= 0 {
		p.Max = max(10*time.Second, p.Initial)
	}
	switch {
	case p.Jitter == 0:
		p.Jitter = 0.5
	case p.Jitter < 0:
		p.Jitter = 0
	case p.Jitter > 1:
		p.Jitter = 1
	}
	return p
}

// Delay is the wait after n failed attempts (n >= 1; smaller n count as 1):
// Initial·Multiplier^(n-1), capped at Max, of which the Jitter share is
// random. Do waits this unless the server asked for another wait.
func (p Policy) Delay(n int) time.Duration {
	p = p.withDefaults()
	d := float64(p.Initial) * math.Pow(p.Multiplier, float64(max(n, 1)-1))
	d = min(d, float64(p.Max)) // also when d overflowed to +Inf
	d *= 1 - p.Jitter*rand.Float64()
	return time.Duration(d)
}

// Do calls op until it returns nil, ShouldRetry refuses its error, a bound
// (MaxAttempts, MaxElapsed) is reached or ctx ends, waiting Delay between
// attempts, or the wait the error asks for (see After). op is always called
// at least once, with ctx.
//
// Do returns nil on success and op's error unchanged when ShouldRetry
// refused it. Otherwise it returns an *Error holding op's last error and,
// when ctx ended, context.Cause(ctx). It blocks until then; a wait ends as
// soon as ctx does.
func (p Policy) Do(ctx context.Context, op func(ctx context.Context) error) error {
	p = p.withDefaults()
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := op(ctx)
		if err == nil {
			return nil
		}
		if p.ShouldRetry != nil && !p.ShouldRetry(err) {
			return err
		}
		giveUp := &Error{Attempts: attempt, Err: err}
		if ctx.Err() != nil {
			giveUp.Elapsed, giveUp.Cause = time.Since(start), context.Cause(ctx)
			return giveUp
		}
		wait := p.Delay(attempt)
		if asked, ok := requested(err); ok {
			wait = asked
		}
		giveUp.Elapsed = time.Since(start)
		if p.MaxAttempts > 0 && attempt >= p.MaxAttempts || p.MaxElapsed > 0 && giveUp.Elapsed+wait > p.MaxElapsed {
			return giveUp
		}
		if p.OnRetry != nil {
			p.OnRetry(attempt, err, wait)
		}
		if cause := Sleep(ctx, wait); cause != nil {
			giveUp.Elapsed, giveUp.Cause = time.Since(start), cause
			return giveUp
		}
	}
}

// Error is what Do returns when op kept failing with errors ShouldRetry
// accepted, until a bound was reached (Cause is nil) or the context ended.
// It unwraps to both Err and Cause.
type Error struct {
	Attempts int           // attempts made
	Elapsed  time.Duration // from the first attempt to giving up
	Err      error         // op's last error
	Cause    error         // context.Cause of the ended context, or nil
}

func (e *Error) Error() string {
	elapsed := e.Elapsed.Round(time.Millisecond)
	if e.Cause == nil {
		return fmt.Sprintf("gave up after %d attempts in %s: %v", e.Attempts, elapsed, e.Err)
	}
	if errors.Is(e.Err, e.Cause) {
		return fmt.Sprintf("stopped after %d attempts in %s: %v", e.Attempts, elapsed, e.Err)
	}
	return fmt.Sprintf("stopped after %d attempts in %s: %v (%v)", e.Attempts, elapsed, e.Err, e.Cause)
}

func (e *Error) Unwrap() []error {
	if e.Cause == nil {
		return []error{e.Err}
	}
	return []error{e.Err, e.Cause}
}

// After marks err with the wait the server asked for before the next
// attempt (an HTTP Retry-After, a rate limit's hint): Do waits that instead
// of its computed delay, however long, unless that passes MaxElapsed. A wait
// <= 0 returns err unchanged. The result unwraps to err and reads as err.
func After(wait time.Duration, err error) error {
	if wait <= 0 || err == nil {
		return err
	}
	return &afterError{err: err, wait: wait}
}

// afterError is an error with the wait its server asked for.
type afterError struct {
	err  error
	wait time.Duration
}

func (e *afterError) Error() string { return e.err.Error() }

func (e *afterError) Unwrap() error { return e.err }

// requested returns the wait an error marked with After asks for.
func requested(err error) (time.Duration, bool) {
	var a *afterError
	if errors.As(err, &a) {
		return a.wait, true
	}
	return 0, false
}

// Sleep waits for d, or until ctx ends and then returns context.Cause(ctx).
// A d <= 0 returns nil at once.
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
