// Package retry is ragpipe's one retry policy: exponential backoff with
// jitter, capped, bounded in time or attempts, every wait interrupted by the
// context, with a hook that classifies failures and a wait a server asked
// for (HTTP Retry-After, a rate limit's hint) taking the place of the
// computed one. github.com/cenkalti/backoff/v5 does the work; this package
// sets its parameters from a Policy and reports why it gave up.
//
// Each caller keeps its own classification (ShouldRetry) and logging
// (OnRetry); the waits all come from the same backoff, which also gives the
// worker its redelivery delay (Policy.Delay).
package retry

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v5"
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
	p.Initial = min(p.Initial, p.Max) // backoff does not cap the first wait
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

// backOff returns a fresh backoff drawing the waits that p, its defaults
// set, documents. backoff draws from [(1-r)·c, (1+r)·c] around its interval
// c; centring c at (1-Jitter/2)·d with r = Jitter/(2-Jitter) gives
// [(1-Jitter)·d, d], so no wait passes Max.
func (p Policy) backOff() *backoff.ExponentialBackOff {
	centre := 1 - p.Jitter/2
	return &backoff.ExponentialBackOff{
		InitialInterval:     max(time.Duration(float64(p.Initial)*centre), 1),
		RandomizationFactor: p.Jitter / (2 - p.Jitter),
		Multiplier:          p.Multiplier,
		MaxInterval:         max(time.Duration(float64(p.Max)*centre), 1),
	}
}

// Delay is the wait after n failed attempts (n >= 1; smaller n count as 1):
// Initial·Multiplier^(n-1), capped at Max, of which the Jitter share is
// random. Do waits this unless the server asked for another wait.
func (p Policy) Delay(n int) time.Duration {
	b := p.withDefaults().backOff()
	jitter := b.RandomizationFactor
	b.RandomizationFactor = 0
	// Step the interval n-1 times, or until it stops growing (at the cap).
	for prev := time.Duration(-1); n > 1; n-- {
		d := b.NextBackOff()
		if d == prev {
			break
		}
		prev = d
	}
	b.RandomizationFactor = jitter
	return b.NextBackOff()
}

// Do calls op until it returns nil, ShouldRetry refuses its error, a bound
// (MaxElapsed) is reached or ctx ends, waiting Delay between
// attempts, or the wait the error asks for (see After). op is always called
// at least once, with ctx.
//
// Do returns nil on success and op's error unchanged when ShouldRetry
// refused it. Otherwise it returns an *Error holding op's last error and,
// when ctx ended, context.Cause(ctx). It blocks until then; a wait ends as
// soon as ctx does.
func (p Policy) Do(ctx context.Context, op func(ctx context.Context) error) error {
	p = p.withDefaults()
	var (
		attempts int
		last     error
		refused  bool
	)
	opts := []backoff.RetryOption{
		backoff.WithBackOff(p.backOff()),
		backoff.WithMaxElapsedTime(p.MaxElapsed), // 0: no bound, not backoff's default
	}
	if p.OnRetry != nil {
		opts = append(opts, backoff.WithNotify(func(err error, wait time.Duration) { p.OnRetry(attempts, err, wait) }))
	}
	start := time.Now()
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		attempts++
		last = op(ctx)
		if last != nil && p.ShouldRetry != nil && !p.ShouldRetry(last) {
			refused = true
			return struct{}{}, backoff.Permanent(last)
		}
		return struct{}{}, last
	}, opts...)
	switch {
	case err == nil:
		return nil
	case refused:
		return last
	}
	giveUp := &Error{Attempts: attempts, Elapsed: time.Since(start), Err: last}
	if ctx.Err() != nil {
		giveUp.Cause = context.Cause(ctx)
	}
	return giveUp
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
// of its computed delay, however long, unless that passes MaxElapsed, and
// starts its computed delays over from Initial. A wait <= 0 returns err
// unchanged. The result reads as err and unwraps to err and to a
// *backoff.RetryAfterError holding the wait.
func After(wait time.Duration, err error) error {
	if wait <= 0 || err == nil {
		return err
	}
	return &afterError{err: err, wait: &backoff.RetryAfterError{Duration: wait}}
}

// afterError is an error with the wait its server asked for, which backoff
// finds in its chain.
type afterError struct {
	err  error
	wait *backoff.RetryAfterError
}

func (e *afterError) Error() string { return e.err.Error() }

func (e *afterError) Unwrap() []error { return []error{e.err, e.wait} }

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
