package qdrantstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Retryable reports whether a failed Qdrant call may succeed if repeated. It
// is the one place that decides; everything in this package retries by it.
//
// Retried: Unavailable, DeadlineExceeded, ResourceExhausted, Aborted,
// Internal, Unknown, Canceled (by the server: a cancelled caller stops the
// retry loop itself), DataLoss, Unauthenticated and PermissionDenied (a wrong
// API key or an operator's lock is a configuration problem and must not
// dead-letter good events), FailedPrecondition (Qdrant 1.16 signals server
// state with it, such as a write lock or "No target shard found" while shards
// are created or moved, not a bad request), errors that did not come from a
// gRPC status (the connection itself failed, ErrClosed) and the go-client's
// rate-limit error.
//
// Permanent: InvalidArgument (bad vectors, bad ids), NotFound (no such
// collection), AlreadyExists, OutOfRange, Unimplemented, and anything already
// marked with pipeline.Permanent.
func Retryable(err error) bool {
	if err == nil || pipeline.IsPermanent(err) {
		return false
	}
	var limited *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &limited) {
		return true
	}
	st, ok := status.FromError(err)
	if !ok {
		// Not a gRPC status: a context deadline of one attempt, a dial
		// failure or similar. The retry loop stops when its caller's
		// context ends, so retrying these is always safe.
		return true
	}
	switch st.Code() {
	case codes.InvalidArgument, codes.NotFound, codes.AlreadyExists, codes.OutOfRange, codes.Unimplemented:
		return false
	default:
		return true
	}
}

// classify marks err permanent when Retryable says it is, and marks a
// rejected API key or permission as a configuration problem
// (pipeline.Misconfigured), which the worker retries however long it takes,
// never dead-lettering the events.
func classify(err error) error {
	switch {
	case err == nil || pipeline.IsPermanent(err):
		return err
	case isCode(err, codes.Unauthenticated) || isCode(err, codes.PermissionDenied):
		return pipeline.Misconfigured(err)
	case Retryable(err):
		return err
	default:
		return pipeline.Permanent(err)
	}
}

// isCode reports whether err carries the gRPC status code c.
func isCode(err error, c codes.Code) bool {
	st, ok := status.FromError(err)
	return ok && st.Code() == c
}

// retryAfter is the wait a rate-limited Qdrant asked for, or 0.
func retryAfter(err error) time.Duration {
	var limited *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &limited) && limited.RetryAfterS > 0 {
		return time.Duration(limited.RetryAfterS) * time.Second
	}
	return 0
}

// retry runs op until it succeeds, fails permanently, MaxRetryTime has passed
// or ctx ends. Each attempt gets its own Timeout. Waits grow exponentially
// with jitter and honour a rate limit's Retry-After. The error returned wraps
// op's last error; it is marked permanent when op's was.
func (q *Store) retry(ctx context.Context, what, collection string, op func(ctx context.Context) error) error {
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = q.cfg.RetryInitialInterval
	b.MaxInterval = q.cfg.RetryMaxInterval
	b.MaxElapsedTime = q.cfg.MaxRetryTime
	hint := &hintBackOff{BackOff: b}

	attempt := 0
	var last error
	err := backoff.RetryNotify(func() error {
		attempt++
		err := q.call(ctx, op)
		if err == nil {
			return nil
		}
		last = err
		if errors.Is(err, ErrClosed) || !Retryable(err) {
			return backoff.Permanent(err)
		}
		hint.after = retryAfter(err)
		return err
	}, backoff.WithContext(hint, ctx), func(err error, wait time.Duration) {
		q.log.Warn().Err(err).Str("op", what).Str("collection", collection).
			Int("attempt", attempt).Dur("retry_in", wait).Msg("qdrant call failed, retrying")
	})
	if err == nil {
		return nil
	}
	if last == nil { // ctx ended before the first attempt finished
		last = err
	}
	if !Retryable(last) {
		return classify(fmt.Errorf("qdrant %s %q: %w", what, collection, last))
	}
	if ctx.Err() != nil && !errors.Is(last, ctx.Err()) {
		return classify(fmt.Errorf("qdrant %s %q: gave up after %d attempts: %w (%w)", what, collection, attempt, last, ctx.Err()))
	}
	return classify(fmt.Errorf("qdrant %s %q: gave up after %d attempts: %w", what, collection, attempt, last))
}

// hintBackOff waits at least as long as the server asked for.
type hintBackOff struct {
	backoff.BackOff
	after time.Duration
}

func (h *hintBackOff) NextBackOff() time.Duration {
	next := h.BackOff.NextBackOff()
	if next != backoff.Stop && next < h.after {
		next = h.after
	}
	h.after = 0
	return next
}
