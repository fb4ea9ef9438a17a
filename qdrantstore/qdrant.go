package qdrantstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/rs/zerolog"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
)

// writeBufferSize is the gRPC write buffer of each connection: an
// UpdateBatch request of a few megabytes goes out in a few large socket
// writes instead of one per 32 KiB (gRPC's default), which costs the
// writer less CPU. A small request (a search) is written as before, as soon
// as the connection has nothing more queued. Each connection holds its
// buffer for its lifetime.
const writeBufferSize = 512 << 10

// Store is the Qdrant sink: it implements ingest.Sink over gRPC. It is
// safe for concurrent use.
type Store struct {
	client   *qdrant.Client
	cfg      Config
	log      zerolog.Logger
	ordering *qdrant.WriteOrdering
	reading  *qdrant.ReadConsistency // nil for Qdrant's default

	known      sync.Map // collection name -> pipeline.Collection verified against Qdrant
	shapes     sync.Map // collection name -> shapeRead, as read by searches
	coalescers sync.Map // collection name -> *coalescer, once searched
	creating   singleflight.Group

	mu     sync.RWMutex // held for reading by every request, for writing by Close
	closed bool
}

// ErrClosed is returned by calls made after Close. It is transient: the
// event was not processed and another process may still do it.
var ErrClosed = errors.New("qdrant sink closed")

// call runs one request, bounded by Timeout, unless the sink is closed;
// Close waits for it.
func (q *Store) call(ctx context.Context, op func(ctx context.Context) error) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	defer cancel()
	return op(ctx)
}

// New builds the client and waits, retrying with the retry policy and logging
// each failed attempt at warn, until Qdrant answers a health check and
// accepts the credentials, or ConnectTimeout passes or ctx ends. It fails at
// once on invalid settings, refused credentials and other errors no retry can
// fix.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("qdrant sink: %w", err)
	}
	opts := []grpc.DialOption{
		// Reconnect quickly once Qdrant is back: gRPC's default backoff
		// grows to two minutes, far beyond MaxRetryTime.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: min(cfg.Timeout, 20*time.Second),
		}),
		grpc.WithWriteBufferSize(writeBufferSize),
	}
	if cfg.Compression {
		// Per connection, not by registering grpc/encoding/gzip: a
		// registered compressor is offered to every server the process
		// calls, and Qdrant then gzips every answer, compression or not.
		opts = append(opts,
			grpc.WithCompressor(grpc.NewGZIPCompressor()),     //nolint:staticcheck // the per-connection form
			grpc.WithDecompressor(grpc.NewGZIPDecompressor()), //nolint:staticcheck // the per-connection form
		)
	}
	client, err := qdrant.NewClient(&qdrant.Config{
		Host:                   cfg.Host,
		Port:                   cfg.Port,
		APIKey:                 cfg.APIKey,
		UseTLS:                 cfg.TLS,
		PoolSize:               uint(cfg.PoolSize),
		GrpcOptions:            opts,
		SkipCompatibilityCheck: true, // it blocks up to a minute without a context
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant sink: %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	q := &Store{
		client:   client,
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "qdrant").Logger(),
		ordering: &qdrant.WriteOrdering{Type: orderings[cfg.WriteOrdering]},
		reading:  readConsistency(cfg.ReadConsistency),
	}
	if err := q.connect(ctx); err != nil {
		client.Close()
		return nil, err
	}
	return q, nil
}

// connect waits until Qdrant answers a health check and the credentials are
// accepted, retrying as the retry policy says, without its MaxRetryTime:
// ConnectTimeout, when positive, and ctx bound the wait.
func (q *Store) connect(ctx context.Context) error {
	if q.cfg.ConnectTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, q.cfg.ConnectTimeout)
		defer cancel()
	}
	p := q.retries()
	p.MaxElapsed = 0
	p.ShouldRetry = func(err error) bool { return Retryable(err) && !errors.Is(err, errCredentials) }
	p.OnRetry = func(attempt int, err error, wait time.Duration) {
		q.log.Warn().Err(q.redact(err)).Str("address", q.addr()).Int("attempt", attempt).Dur("retry_in", wait).
			Msg("qdrant not reachable yet")
	}
	var version string
	err := p.Do(ctx, func(ctx context.Context) error {
		ctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
		defer cancel()
		reply, err := q.client.HealthCheck(ctx)
		if err != nil {
			return err
		}
		// The health check needs no credentials; this call does.
		_, err = q.client.ListCollections(ctx)
		if isCode(err, codes.Unauthenticated) || isCode(err, codes.PermissionDenied) {
			return fmt.Errorf("%w: %w", errCredentials, err)
		}
		if err == nil {
			version = reply.GetVersion()
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("qdrant sink: connect to %s: %w", q.addr(), q.redact(err))
	}
	q.log.Info().Str("address", q.addr()).Str("version", version).Msg("connected to qdrant")
	return nil
}

// errCredentials marks a refused API key or permission when connecting.
var errCredentials = errors.New("credentials refused")

// redact hides the API key, should an error ever carry it; only then is the
// error flattened to its message.
func (q *Store) redact(err error) error {
	if q.cfg.APIKey == "" || !strings.Contains(err.Error(), q.cfg.APIKey) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), q.cfg.APIKey, "REDACTED"))
}

func (q *Store) addr() string { return fmt.Sprintf("%s:%d", q.cfg.Host, q.cfg.Port) }

// Health reports whether Qdrant answers its health check within Timeout; for
// /readyz.
func (q *Store) Health(ctx context.Context) error {
	err := q.call(ctx, func(ctx context.Context) error {
		_, err := q.client.HealthCheck(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("qdrant %s: %w", q.addr(), err)
	}
	return nil
}

// Client is the underlying go-client, for searches and tests. It must not be
// used after Close.
func (q *Store) Client() *qdrant.Client { return q.client }

// Close waits for requests in flight (at most Timeout), then closes the gRPC
// connections; later calls, and retries of calls in flight, fail with
// ErrClosed. Closing twice is harmless.
func (q *Store) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	return q.client.Close()
}
