package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// TestNewCreatesStreamsAndConsumer: New creates the work-queue ingest
// stream, the dead-letter stream and the durable consumer (CONTRACT §1),
// which never stops redelivering on its own.
func TestNewCreatesStreamsAndConsumer(t *testing.T) {
	t.Parallel()
	h := newHarness(t, worker.Config{BatchSize: 8, Concurrency: 2, AckWait: 7 * time.Second}, &stage{})
	ctx := t.Context()
	for name, want := range map[string]struct {
		subject   string
		retention jetstream.RetentionPolicy
	}{
		worker.IngestStream: {"rag.ingest.>", jetstream.WorkQueuePolicy},
		worker.DLQStream:    {"rag.dlq.>", jetstream.LimitsPolicy},
	} {
		s, err := h.js.Stream(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		cfg := s.CachedInfo().Config
		if !slices.Equal(cfg.Subjects, []string{want.subject}) || cfg.Retention != want.retention ||
			cfg.Storage != jetstream.FileStorage || cfg.Replicas != 1 {
			t.Errorf("%s: subjects %v, retention %v, storage %v, %d replicas", name, cfg.Subjects, cfg.Retention, cfg.Storage, cfg.Replicas)
		}
	}
	c := h.consumer().Config
	if c.Durable != worker.ConsumerName || c.FilterSubject != "rag.ingest.>" || c.AckPolicy != jetstream.AckExplicitPolicy ||
		c.AckWait != 7*time.Second || c.MaxAckPending != 8*(2+1) || c.MaxDeliver != -1 {
		t.Errorf("consumer %+v", c)
	}
}

// TestNewKeepsExistingStreams: streams an operator created are left as they
// are, and a second worker shares the consumer, taking its own settings.
func TestNewKeepsExistingStreams(t *testing.T) {
	t.Parallel()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name: worker.IngestStream, Description: "the operator's", Subjects: []string{"rag.ingest.>"},
		Retention: jetstream.WorkQueuePolicy, MaxBytes: 1 << 20,
	}); err != nil {
		t.Fatal(err)
	}
	for _, ackWait := range []time.Duration{5 * time.Second, 9 * time.Second} {
		if _, err := worker.New(ctx, worker.Config{JetStream: js, Processor: &stage{}, Metrics: telemetry.NewMetrics(), AckWait: ackWait}); err != nil {
			t.Fatal(err)
		}
	}
	s, err := js.Stream(ctx, worker.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := s.CachedInfo().Config; cfg.Description != "the operator's" || cfg.MaxBytes != 1<<20 {
		t.Errorf("the operator's stream was changed: %+v", cfg)
	}
	c, err := s.Consumer(ctx, worker.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	if got := c.CachedInfo().Config.AckWait; got != 9*time.Second {
		t.Errorf("consumer AckWait %v, want the last worker's 9s", got)
	}
}

// TestNewRequires: a worker without JetStream, stage or metrics is an
// error, not a panic.
func TestNewRequires(t *testing.T) {
	t.Parallel()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	full := worker.Config{JetStream: js, Processor: &stage{}, Metrics: telemetry.NewMetrics()}
	for name, edit := range map[string]func(*worker.Config){
		"JetStream": func(c *worker.Config) { c.JetStream = nil },
		"Processor": func(c *worker.Config) { c.Processor = nil },
		"Metrics":   func(c *worker.Config) { c.Metrics = nil },
	} {
		cfg := full
		edit(&cfg)
		if w, err := worker.New(t.Context(), cfg); err == nil || w != nil {
			t.Errorf("without %s: %v, %v; want an error", name, w, err)
		}
	}
}

// TestPrefix: with another subject prefix, events are read from
// <prefix>.ingest.> and dead-lettered to <prefix>.dlq.<user>.<collection>.
func TestPrefix(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(_ context.Context, e pipeline.Event, _ int) error {
		if e.DocID == "bad" {
			return pipeline.Permanent(errors.New("refused"))
		}
		return nil
	}}
	h := newHarness(t, worker.Config{Prefix: "acme"}, st)
	h.run()
	h.publish("acme.ingest.alice.docs", `{"doc_id":"good","text":"x"}`, nil)
	h.publish("acme.ingest.alice.docs", `{"doc_id":"bad","text":"x","version":2}`, nil)
	dls := h.waitDeadLetters(1, 10*time.Second)
	h.waitSettled(10 * time.Second)
	checkDeadLetter(t, dls[0], "acme.dlq.alice.docs", "acme.ingest.alice.docs", `{"doc_id":"bad","text":"x","version":2}`, "2", "refused")
	h.wantEvents("docs", 1, 0, 1)
}

// TestGracefulStop: when its context is cancelled, Run waits for the batch
// in flight, which keeps an uncancelled context, settles it and returns nil.
func TestGracefulStop(t *testing.T) {
	t.Parallel()
	release, wait := block(t)
	var stageCtxErr error
	var once sync.Once
	st := &stage{decide: func(ctx context.Context, _ pipeline.Event, _ int) error {
		wait()
		once.Do(func() { stageCtxErr = ctx.Err() })
		return nil
	}}
	h := newHarness(t, worker.Config{}, st)
	stopped := make(chan struct{})
	stop := h.run()
	h.publish("rag.ingest.alice.docs", `{"doc_id":"a","text":"x"}`, nil)
	checkfor.Until(t, 10*time.Second, "the stage called", func() error {
		if len(st.Calls()) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	go func() { stop(); close(stopped) }()
	select {
	case <-stopped:
		t.Fatal("Run returned while a batch was in flight")
	case <-time.After(300 * time.Millisecond): // Run had the time to return, wrongly
	}
	close(release)
	select {
	case <-stopped:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return once the batch was done")
	}
	if stageCtxErr != nil {
		t.Errorf("the stage's context was cancelled by the stop: %v", stageCtxErr)
	}
	h.wantEvents("docs", 1, 0, 0)
	h.waitSettled(10 * time.Second) // the ack Run sent reaches the stream asynchronously
}

// TestHeldKeptAlive: messages in a batch slower than AckWait, and messages
// waiting behind it, are told to JetStream as in progress, so none is
// redelivered meanwhile.
func TestHeldKeptAlive(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(ctx context.Context, e pipeline.Event, _ int) error {
		if e.DocID == "slow" {
			select {
			case <-time.After(1500 * time.Millisecond): // 2.5 AckWaits
			case <-ctx.Done():
			}
		}
		return nil
	}}
	h := newHarness(t, worker.Config{BatchSize: 1, Concurrency: 1, AckWait: 600 * time.Millisecond}, st)
	h.publish("rag.ingest.alice.docs", `{"doc_id":"slow","text":"x"}`, nil)
	h.publish("rag.ingest.alice.docs", `{"doc_id":"waiting","text":"x"}`, nil)
	h.run()
	h.waitSettled(20 * time.Second)
	if info := h.consumer(); info.NumRedelivered != 0 || info.Delivered.Consumer != 2 {
		t.Errorf("%d redelivered, %d deliveries for 2 events", info.NumRedelivered, info.Delivered.Consumer)
	}
	for _, doc := range []string{"slow", "waiting"} {
		if n := len(st.CallsOf(doc)); n != 1 {
			t.Errorf("%s processed %d times", doc, n)
		}
	}
}

// TestBacklogReported: when Run starts, Backlog and the pending gauge are
// told how many events wait in the consumer.
func TestBacklogReported(t *testing.T) {
	t.Parallel()
	_, wait := block(t)
	st := &stage{decide: func(context.Context, pipeline.Event, int) error { wait(); return nil }}
	reported := make(chan uint64, 10)
	h := newHarness(t, worker.Config{BatchSize: 1, Concurrency: 1, MaxAckPending: 1, Backlog: func(_ context.Context, pending uint64) {
		select {
		case reported <- pending:
		default:
		}
	}}, st)
	for i := range 3 {
		h.publish("rag.ingest.alice.docs", fmt.Sprintf(`{"doc_id":"d%d","text":"x"}`, i), nil)
	}
	h.run()
	var pending uint64
	select {
	case pending = <-reported:
	case <-time.After(10 * time.Second):
		t.Fatal("Backlog not called")
	}
	// One event may already be handed out: at most MaxAckPending.
	if pending != 2 && pending != 3 {
		t.Errorf("Backlog told %d pending, want 2 or 3", pending)
	}
	checkfor.Until(t, 5*time.Second, "the pending gauge", func() error {
		if got := testutil.ToFloat64(h.metrics.ConsumerPending); got != float64(pending) {
			return fmt.Errorf("gauge %v, Backlog told %d", got, pending)
		}
		return nil
	})
}
