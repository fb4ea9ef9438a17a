package qdrantstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/rs/zerolog"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

func TestRetryable(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{status.Error(codes.Unavailable, "connection refused"), true},
		{status.Error(codes.DeadlineExceeded, "slow"), true},
		{status.Error(codes.ResourceExhausted, "rate limited"), true},
		{status.Error(codes.Aborted, "x"), true},
		{status.Error(codes.Internal, "x"), true},
		{status.Error(codes.Unknown, "x"), true},
		{status.Error(codes.Canceled, "server went away"), true},
		{status.Error(codes.Unauthenticated, "bad key"), true},
		{status.Error(codes.PermissionDenied, "read-only key"), true},
		{status.Error(codes.FailedPrecondition, "No target shard 0 found for update"), true},
		{status.Error(codes.InvalidArgument, "Vector dimension error"), false},
		{status.Error(codes.NotFound, "Collection `x` doesn't exist!"), false},
		{status.Error(codes.AlreadyExists, "x"), false},
		{status.Error(codes.OutOfRange, "x"), false},
		{status.Error(codes.Unimplemented, "x"), false},
		{fmt.Errorf("UpdateBatch() failed: %w", status.Error(codes.InvalidArgument, "x")), false},
		{fmt.Errorf("UpdateBatch() failed: %w", status.Error(codes.Unavailable, "x")), true},
		{&qdrant.QdrantResourceExhaustedError{Reason: "slow down", RetryAfterS: 1}, true},
		{context.DeadlineExceeded, true},
		{errors.New("dial tcp: connection refused"), true},
		{pipeline.Permanent(errors.New("bad")), false},
	} {
		if got := qdrantstore.Retryable(tc.err); got != tc.want {
			t.Errorf("Retryable(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

func TestConfigValidation(t *testing.T) {
	for name, cfg := range map[string]qdrantstore.Config{
		"hnsw":        {HNSW: "local"},
		"ordering":    {WriteOrdering: "eventual"},
		"port":        {Port: 70000},
		"consistency": {ReplicationFactor: 1, WriteConsistency: 2},
		"parallelism": {Parallelism: -1},
	} {
		if _, err := qdrantstore.New(t.Context(), cfg); err == nil {
			t.Errorf("%s: New accepted %+v", name, cfg)
		}
	}
}

// logCounter counts log lines containing a substring.
type logCounter struct {
	substr string
	n      atomic.Int64
}

func (c *logCounter) Write(p []byte) (int, error) {
	if strings.Contains(string(p), c.substr) {
		c.n.Add(1)
	}
	return len(p), nil
}

func TestConnectWaitsForQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	node.Kill(t)
	attempts := &logCounter{substr: "qdrant not reachable yet"}
	type result struct {
		s   *qdrantstore.Store
		err error
	}
	done := make(chan result, 1)
	go func() {
		s, err := qdrantstore.New(t.Context(), qdrantstore.Config{
			Host: "127.0.0.1", Port: node.GRPCPort(), Timeout: time.Second, ConnectTimeout: 30 * time.Second,
			RetryInitialInterval: 20 * time.Millisecond, RetryMaxInterval: 200 * time.Millisecond,
			Logger: zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), attempts)),
		})
		done <- result{s, err}
	}()
	checkfor.Until(t, 10*time.Second, "condition", func() error {
		if attempts.n.Load() < 2 {
			return errors.New("no failed connection attempts logged yet")
		}
		return nil
	})
	node.Restart(t)
	r := <-done
	if r.err != nil {
		t.Fatalf("New: %v", r.err)
	}
	defer r.s.Close()
	// The pool's other connections may still be in gRPC's reconnect backoff
	// (at most 2s): health follows within that.
	checkfor.Until(t, 10*time.Second, "condition", func() error { return r.s.Health(t.Context()) })
}

var errTestOver = errors.New("test over")

// TestConnectGivesUp: New stops waiting for an absent Qdrant after
// ConnectTimeout, or, with a negative ConnectTimeout, when its context ends,
// naming the address.
func TestConnectGivesUp(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	for _, tc := range []struct {
		name    string
		timeout time.Duration // ConnectTimeout
		ctx     time.Duration // New's context
		cause   error
	}{
		{"ConnectTimeout", 500 * time.Millisecond, time.Minute, context.DeadlineExceeded},
		{"context", -1, 500 * time.Millisecond, errTestOver},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeoutCause(t.Context(), tc.ctx, tc.cause)
			defer cancel()
			attempts := &logCounter{substr: "qdrant not reachable yet"}
			start := time.Now()
			_, err := qdrantstore.New(ctx, qdrantstore.Config{
				Host: "127.0.0.1", Port: port, ConnectTimeout: tc.timeout,
				RetryInitialInterval: 20 * time.Millisecond, RetryMaxInterval: 50 * time.Millisecond,
				Logger: zerolog.New(attempts),
			})
			if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("127.0.0.1:%d", port)) || !errors.Is(err, tc.cause) {
				t.Fatalf("got %v, want an error naming the address and %v", err, tc.cause)
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Fatalf("gave up after %s, want about 500ms", d)
			}
			if attempts.n.Load() < 2 {
				t.Errorf("%d failed attempts logged, want several", attempts.n.Load())
			}
		})
	}
}

func TestAPIKey(t *testing.T) {
	const key = "k3y-f0r-t3sts-only"
	node := qdranttest.StartWith(t, qdranttest.Options{Env: map[string]string{"QDRANT__SERVICE__API_KEY": key}})
	cfg := qdrantstore.Config{Host: "127.0.0.1", Port: node.GRPCPort(), APIKey: "wrong-" + key, ConnectTimeout: 10 * time.Second}
	var logs strings.Builder
	var mu sync.Mutex
	cfg.Logger = zerolog.New(zerolog.SyncWriter(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return logs.Write(p)
	})))
	start := time.Now()
	_, err := qdrantstore.New(t.Context(), cfg)
	if err == nil {
		t.Fatal("New accepted a wrong API key")
	}
	t.Logf("wrong key: %v (after %s)", err, time.Since(start))
	mu.Lock()
	leaked := strings.Contains(err.Error(), key) || strings.Contains(logs.String(), key)
	mu.Unlock()
	if leaked {
		t.Fatalf("API key leaked into the error or logs: %v\n%s", err, logs.String())
	}
	if time.Since(start) > 5*time.Second {
		t.Errorf("a refused key took %s to report", time.Since(start))
	}

	s := newSink(t, node, func(c *qdrantstore.Config) { c.APIKey = key })
	ensure(t, s, "secured", pipeline.Cosine)
	storetest.Apply(t, s, "secured", storetest.Write("u", "d", 1, 2))
	storetest.ExpectDoc(t, s, "secured", "u", "d", 1, 2)
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestApplyRetriesAcrossRestart kills Qdrant while Apply calls run in a loop
// and restarts it: every Apply must succeed within MaxRetryTime and the data
// must be exact.
func TestApplyRetriesAcrossRestart(t *testing.T) {
	node := qdranttest.Start(t)
	retries := &logCounter{substr: "retrying"}
	s := newSink(t, node, func(c *qdrantstore.Config) {
		c.MaxRetryTime = 20 * time.Second
		c.Timeout = 2 * time.Second
		c.Logger = zerolog.New(io.MultiWriter(zerolog.NewTestWriter(t), retries)).Level(zerolog.WarnLevel)
	})
	ensure(t, s, "retry", pipeline.Cosine)

	var (
		applied atomic.Uint64 // newest version whose Apply returned nil
		stop    = make(chan struct{})
		loopErr = make(chan error, 1)
	)
	go func() {
		for v := uint64(1); ; v++ {
			select {
			case <-stop:
				loopErr <- nil
				return
			default:
			}
			start := time.Now()
			ws := []pipeline.DocWrite{storetest.Write("u", "d", v, 1+int(v%5)), storetest.Write("u", fmt.Sprintf("e%d", v), v, 2)}
			if err := s.Apply(t.Context(), "retry", ws); err != nil {
				loopErr <- fmt.Errorf("Apply v%d after %s: %w", v, time.Since(start), err)
				return
			}
			applied.Store(v)
		}
	}()

	checkfor.Until(t, 10*time.Second, "condition", func() error {
		if applied.Load() < 5 {
			return errors.New("fewer than 5 applies")
		}
		return nil
	})
	node.Kill(t)
	checkfor.Until(t, 10*time.Second, "condition", func() error {
		if retries.n.Load() < 3 {
			return errors.New("Apply is not retrying yet")
		}
		return nil
	})
	before := applied.Load()
	node.Restart(t)
	checkfor.Until(t, 20*time.Second, "condition", func() error {
		select {
		case err := <-loopErr:
			t.Fatal(err)
		default:
		}
		if applied.Load() < before+5 {
			return fmt.Errorf("applied v%d, want v%d", applied.Load(), before+5)
		}
		return nil
	})
	close(stop)
	if err := <-loopErr; err != nil {
		t.Fatal(err)
	}
	last := applied.Load()
	t.Logf("applied %d versions, %d retries logged", last, retries.n.Load())
	storetest.ExpectDoc(t, s, "retry", "u", "d", last, 1+int(last%5))
	for v := uint64(1); v <= last; v++ {
		storetest.ExpectDoc(t, s, "retry", "u", fmt.Sprintf("e%d", v), v, 2)
	}
	if n := count(t, s, "retry"); n != 2*last+1+last%5 {
		t.Fatalf("count %d, want %d", n, 2*last+1+last%5)
	}
}
