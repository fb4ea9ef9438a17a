package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/worker"
)

// TestShutdownBounded: when Run's context ends while the stage hangs, the
// work goes on for ShutdownTimeout, then its context is cancelled, Run
// returns within a second more, and the unfinished events are left for
// immediate redelivery: another worker processes them at once. It holds
// whether the stage gives up when its context is cancelled or never
// returns.
func TestShutdownBounded(t *testing.T) {
	t.Parallel()
	for _, name := range []string{"stage honours cancel", "stage hangs"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, wait := block(t) // never released: only the test's end frees the hanging stage
			var mu sync.Mutex
			var cancelled, stopped bool
			st := &stage{decide: func(ctx context.Context, e pipeline.Event, n int) error {
				mu.Lock()
				next := stopped
				mu.Unlock()
				if next {
					return nil // the next worker's attempt
				}
				if name == "stage hangs" {
					wait()
					return nil
				}
				<-ctx.Done()
				mu.Lock()
				cancelled = true
				mu.Unlock()
				return ctx.Err()
			}}
			const timeout = 500 * time.Millisecond
			h := newHarness(t, worker.Config{ShutdownTimeout: timeout, BatchSize: 2}, st)
			stop := h.run()
			for i := range 6 {
				h.publish("rag.ingest.alice.docs", fmt.Sprintf(`{"doc_id":"d%d","text":"x"}`, i), nil)
			}
			checkfor.Until(t, 10*time.Second, "the stage called", func() error {
				if len(st.Calls()) == 0 {
					return errors.New("not yet")
				}
				return nil
			})
			start := time.Now()
			stop()
			if took := time.Since(start); took < timeout || took > timeout+1500*time.Millisecond {
				t.Errorf("Run returned %v after its context ended, want between %v and %v", took, timeout, timeout+1500*time.Millisecond)
			}
			mu.Lock()
			stopped = true
			if name == "stage honours cancel" && !cancelled {
				t.Error("the stage's context was not cancelled at the shutdown timeout")
			}
			mu.Unlock()
			// The next worker takes every event at once: nothing waits for an ack timeout.
			next, err := worker.New(t.Context(), worker.Config{JetStream: h.js, Processor: st, Metrics: h.metrics, FlushInterval: time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- next.Run(ctx) }()
			h.waitSettled(5 * time.Second)
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			for i := range 6 {
				if calls := st.CallsOf(fmt.Sprint("d", i)); len(calls) == 0 {
					t.Errorf("d%d never processed", i)
				}
			}
			if dls := h.deadLetters(); len(dls) != 0 {
				t.Errorf("%d dead letters", len(dls))
			}
		})
	}
}

// sizer is a stage that records the bytes of text it is processing at
// once, and in one call.
type sizer struct {
	mu                   sync.Mutex
	now, peak, largest   int
	processed, maxEvents int
}

func (s *sizer) Process(_ context.Context, events []pipeline.Event) []error {
	n := 0
	for _, e := range events {
		n += len(e.Text)
	}
	s.mu.Lock()
	s.now += n
	s.peak, s.largest, s.maxEvents = max(s.peak, s.now), max(s.largest, n), max(s.maxEvents, len(events))
	s.mu.Unlock()
	time.Sleep(20 * time.Millisecond)
	s.mu.Lock()
	s.now -= n
	s.processed += len(events)
	s.mu.Unlock()
	return make([]error, len(events))
}

// TestHeldBytesBounded: with large events, what the worker holds is bounded
// by MaxHeldBytes, not by MaxAckPending messages: a batch holds about
// MaxHeldBytes/(Concurrency+1) bytes, and the batches in flight together
// less than MaxHeldBytes.
func TestHeldBytesBounded(t *testing.T) {
	t.Parallel()
	const eventBytes, maxHeld, concurrency = 10 << 10, 100 << 10, 3
	st := &sizer{}
	h := newHarness(t, worker.Config{MaxHeldBytes: maxHeld, Concurrency: concurrency, BatchSize: 100, MaxEventBytes: 1 << 20, FlushInterval: 20 * time.Millisecond}, &stage{})
	w, err := worker.New(t.Context(), worker.Config{JetStream: h.js, Processor: st, Metrics: h.metrics,
		MaxHeldBytes: maxHeld, Concurrency: concurrency, BatchSize: 100, MaxEventBytes: 1 << 20, FlushInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Repeat("x", eventBytes)
	for i := range 100 {
		h.publish("rag.ingest.alice.docs", fmt.Sprintf(`{"doc_id":"d%d","text":%q}`, i, text), nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	h.waitSettled(20 * time.Second)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.processed != 100 {
		t.Errorf("%d events processed, want 100", st.processed)
	}
	perBatch := maxHeld/(concurrency+1) + eventBytes
	if st.largest > perBatch || st.peak > maxHeld {
		t.Errorf("a call held %d bytes of text (want at most %d), calls at once %d (want at most %d)", st.largest, perBatch, st.peak, maxHeld)
	}
	if st.maxEvents >= 100 {
		t.Errorf("a call had %d events: batches are not bounded in bytes", st.maxEvents)
	}
}

// short answers one error fewer, or one more, than it is given events.
type short struct{ more bool }

func (s short) Process(_ context.Context, events []pipeline.Event) []error {
	if s.more {
		return make([]error, len(events)+1)
	}
	return make([]error, len(events)-1)
}

// TestProcessorAnswerCount: a processor that answers for fewer events than
// it was given does not crash the worker: the unanswered event is retried;
// extra answers are ignored.
func TestProcessorAnswerCount(t *testing.T) {
	t.Parallel()
	for _, more := range []bool{false, true} {
		t.Run(fmt.Sprint("more=", more), func(t *testing.T) {
			t.Parallel()
			h := newHarness(t, worker.Config{}, &stage{})
			w, err := worker.New(t.Context(), worker.Config{JetStream: h.js, Processor: short{more}, Metrics: h.metrics,
				FlushInterval: 50 * time.Millisecond, MaxDeliver: 100, MaxRetryDelay: 50 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			for i := range 3 { // one batch: the last event of each is not answered
				h.publish("rag.ingest.alice.docs", fmt.Sprintf(`{"doc_id":"d%d","text":"x"}`, i), nil)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- w.Run(ctx) }()
			checkfor.Until(t, 10*time.Second, "events acknowledged", func() error {
				if got := h.events("docs", "acked"); got < 2 {
					return fmt.Errorf("%d acknowledged", got)
				}
				return nil
			})
			if !more {
				checkfor.Until(t, 10*time.Second, "the unanswered event retried", func() error {
					if got := h.events("docs", "retried"); got < 1 {
						return errors.New("not retried")
					}
					return nil
				})
			}
			cancel()
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if more {
				h.waitSettled(5 * time.Second)
				h.wantEvents("docs", 3, 0, 0)
			}
		})
	}
}
