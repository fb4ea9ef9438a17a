package integration_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// TestDeadLetterAfterMaxDeliver stops Qdrant for good: an event is retried
// RAGPIPE_MAX_DELIVER times with growing delays, then dead-lettered with the
// last error, and the worker goes on running.
func TestDeadLetterAfterMaxDeliver(t *testing.T) {
	l := newLocal(t, qdrantstore.Config{MaxRetryTime: 300 * time.Millisecond, Timeout: time.Second})
	stage := l.newStage(t, ingest.StageConfig{Collections: []pipeline.Collection{{Name: "docs", Dims: 16, Distance: pipeline.Cosine}}})
	metrics := telemetry.NewMetrics()
	w, err := worker.New(t.Context(), worker.Config{
		JetStream: l.js, Processor: stage, Metrics: metrics,
		MaxDeliver: 3, MaxRetryDelay: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	l.qdrant.Kill(t)

	if _, err := l.js.Publish(t.Context(), "rag.ingest.alice.docs", []byte(`{"doc_id":"a","text":"hello","version":5}`)); err != nil {
		t.Fatal(err)
	}
	var dl *nats.Msg
	checkfor.Until(t, time.Minute, "dead letter", func() error {
		stream, err := l.js.Stream(t.Context(), "RAG_DLQ")
		if err != nil {
			return err
		}
		m, err := stream.GetLastMsgForSubject(t.Context(), "rag.dlq.alice.docs")
		if err != nil {
			return err
		}
		dl = &nats.Msg{Subject: m.Subject, Header: m.Header, Data: m.Data}
		return nil
	})
	if reason := dl.Header.Get("Ragpipe-Error"); !strings.Contains(reason, "after 3 attempts") {
		t.Errorf("reason %q does not say the attempts were used up", reason)
	}
	if v := dl.Header.Get("Ragpipe-Version"); v != "5" {
		t.Errorf("Ragpipe-Version %q, want 5", v)
	}
	if got := testutil.ToFloat64(metrics.Events.WithLabelValues("docs", telemetry.Retried)); got != 2 {
		t.Errorf("%v retries counted, want 2", got)
	}
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// slowProcessor is the real stage, taking at least delay per batch: a slow
// embedder or store.
type slowProcessor struct {
	worker.Processor
	delay time.Duration
}

func (p slowProcessor) Process(ctx context.Context, events []pipeline.Event) []error {
	time.Sleep(p.delay)
	return p.Processor.Process(ctx, events)
}

// TestSlowBatchesNoRedelivery: batches that take longer than the ack wait,
// with messages waiting behind them, are not redelivered (they are kept
// alive from their receipt), so nothing is processed twice or dead-lettered
// for attempts it never had.
func TestSlowBatchesNoRedelivery(t *testing.T) {
	l := newLocal(t, qdrantstore.Config{})
	stage := l.newStage(t, ingest.StageConfig{AutoCreate: func(string) bool { return true }})
	w, err := worker.New(t.Context(), worker.Config{
		JetStream: l.js, Processor: slowProcessor{stage, 2500 * time.Millisecond}, Metrics: telemetry.NewMetrics(),
		BatchSize: 4, Concurrency: 1, AckWait: time.Second, MaxDeliver: 2,
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	done := make(chan error)
	go func() { done <- w.Run(ctx) }()
	for i := range 16 {
		if _, err := l.js.Publish(t.Context(), "rag.ingest.alice.docs", fmt.Appendf(nil, `{"doc_id":"d%d","text":"text %d"}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	c, err := l.js.Consumer(t.Context(), "RAG_INGEST", "ragpipe-worker")
	if err != nil {
		t.Fatal(err)
	}
	checkfor.Until(t, time.Minute, "all acknowledged", func() error {
		info, err := c.Info(t.Context())
		if err != nil {
			return err
		}
		if info.NumPending+uint64(info.NumAckPending) > 0 {
			return fmt.Errorf("%d pending, %d unacknowledged", info.NumPending, info.NumAckPending)
		}
		if info.NumRedelivered > 0 || info.Delivered.Consumer != 16 {
			t.Fatalf("%d messages redelivered, %d deliveries for 16 events: slow batches let acks time out", info.NumRedelivered, info.Delivered.Consumer)
		}
		return nil
	})
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
