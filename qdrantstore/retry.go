package qdrantstore

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ragpipe/ragpipe/internal/retry"
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

// serverWait marks err with the wait a rate-limited Qdrant asked for, so
// that the retry policy honours it.
func serverWait(err error) error {
	var limited *qdrant.QdrantResourceExhaustedError
	if errors.As(err, &limited) && limited.RetryAfterS > 0 {
		return retry.After(time.Duration(limited.RetryAfterS)*time.Second, err)
	}
	return err
}

// retries is the retry policy of every call: the configured waits, bounded
// by MaxRetryTime, failures classified by Retryable.
func (q *Store) retries() retry.Policy {
	return retry.Policy{
		Initial:     q.cfg.RetryInitialInterval,
		Max:         q.cfg.RetryMaxInterval,
		MaxElapsed:  q.cfg.MaxRetryTime,
		ShouldRetry: func(err error) bool { return !errors.Is(err, ErrClosed) && Retryable(err) },
	}
}

// retry runs op until it succeeds, fails permanently, MaxRetryTime has passed
// or ctx ends, as the retry policy says, logging each failed attempt. Each
// attempt gets its own Timeout. The error returned wraps op's last error and
// is classified (see classify).
func (q *Store) retry(ctx context.Context, what, collection string, op func(ctx context.Context) error) error {
	p := q.retries()
	p.OnRetry = func(attempt int, err error, wait time.Duration) {
		q.log.Warn().Err(q.redact(err)).Str("op", what).Str("collection", collection).
			Int("attempt", attempt).Dur("retry_in", wait).Msg("qdrant call failed, retrying")
	}
	err := p.Do(ctx, func(ctx context.Context) error { return serverWait(q.call(ctx, op)) })
	if err == nil {
		return nil
	}
	return classify(fmt.Errorf("qdrant %s %q: %w", what, collection, err))
}
