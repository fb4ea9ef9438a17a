package worker_test

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// gate is a TCP proxy to a NATS server that can stop forwarding without
// closing anything: the client stays connected and learns nothing, as when a
// network partition cuts a worker off.
type gate struct {
	addr   string
	paused atomic.Bool
}

func newGate(t *testing.T, target string) *gate {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	g := &gate{addr: ln.Addr().String()}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				return
			}
			t.Cleanup(func() { c.Close(); s.Close() })
			go g.pipe(c, s)
			go g.pipe(s, c)
		}
	}()
	return g
}

// pipe copies src to dst, holding what it reads while the gate is paused.
func (g *gate) pipe(src, dst net.Conn) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		for g.paused.Load() {
			time.Sleep(10 * time.Millisecond)
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			if err != io.EOF {
				dst.Close()
			}
			return
		}
	}
}

// TestWriteFencedWhenCutOff cuts a worker off from NATS while its batch is
// being processed, past the point where JetStream may redeliver the event to
// another worker. The processing context must be cancelled with
// ErrLeaseLost before that point, so that no write of the cut-off worker can
// reach the store after another worker processed the event (issue: a late
// writer leaving stale chunks).
func TestWriteFencedWhenCutOff(t *testing.T) {
	srv := natstest.Start(t)
	g := newGate(t, srv.Addr().String())
	nc, err := nats.Connect("nats://"+g.addr, nats.PingInterval(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const ackWait = 6 * time.Second
	started := make(chan struct{})
	type end struct {
		at    time.Time
		cause error
	}
	ended := make(chan end, 1)
	var once sync.Once
	proc := processorFunc(func(ctx context.Context, events []pipeline.Event) []error {
		once.Do(func() { close(started) })
		select {
		case <-ctx.Done():
			ended <- end{time.Now(), context.Cause(ctx)}
		case <-time.After(3 * ackWait):
			ended <- end{time.Now(), nil}
		}
		return make([]error, len(events))
	})
	w, err := worker.New(t.Context(), worker.Config{
		JetStream: js, Processor: proc, Metrics: telemetry.NewMetrics(), Logger: zerolog.Nop(),
		AckWait: ackWait, FlushInterval: time.Millisecond, ShutdownTimeout: time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = w.Run(ctx) }()
	t.Cleanup(func() { g.paused.Store(false); cancel(); <-done })

	direct, err := jetstream.New(natstest.Connect(t, srv))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Publish(t.Context(), "rag.ingest.alice.docs", []byte(`{"doc_id":"d","text":"x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the event never reached the processor")
	}
	// Keep-alives were confirmed until now at the latest: from here the
	// server may redeliver the event AckWait after it last heard of it.
	g.paused.Store(true)
	cutAt := time.Now()
	select {
	case e := <-ended:
		if !errors.Is(e.cause, worker.ErrLeaseLost) {
			t.Fatalf("processing ended with cause %v, want ErrLeaseLost", e.cause)
		}
		if redeliverable := cutAt.Add(ackWait); !e.at.Before(redeliverable) {
			t.Errorf("processing cancelled %s after the cut, not before the event could be redelivered (%s)", e.at.Sub(cutAt), ackWait)
		}
	case <-time.After(3 * ackWait):
		t.Fatal("processing was never cancelled: a cut-off worker could write after a redelivery")
	}
}

// processorFunc adapts a function to worker.Processor.
type processorFunc func(ctx context.Context, events []pipeline.Event) []error

func (f processorFunc) Process(ctx context.Context, events []pipeline.Event) []error {
	return f(ctx, events)
}
