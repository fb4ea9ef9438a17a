package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// call is one event handed to the stage.
type call struct {
	event   pipeline.Event
	attempt int // how many times the stage has seen this doc_id, this one included
	at      time.Time
}

// stage is the worker.Processor of the tests: it records every event and
// answers with decide (nil decide: every event succeeds). decide runs
// outside the lock, so it may block.
type stage struct {
	decide func(ctx context.Context, e pipeline.Event, attempt int) error

	mu    sync.Mutex
	calls []call
	seen  map[string]int
}

func (s *stage) Process(ctx context.Context, events []pipeline.Event) []error {
	errs := make([]error, len(events))
	for i, e := range events {
		s.mu.Lock()
		if s.seen == nil {
			s.seen = map[string]int{}
		}
		s.seen[e.DocID]++
		attempt := s.seen[e.DocID]
		s.calls = append(s.calls, call{event: e, attempt: attempt, at: time.Now()})
		s.mu.Unlock()
		if s.decide != nil {
			errs[i] = s.decide(ctx, e, attempt)
		}
	}
	return errs
}

// Calls returns a copy of the events seen so far, in order.
func (s *stage) Calls() []call {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]call(nil), s.calls...)
}

// CallsOf returns the calls for one doc_id.
func (s *stage) CallsOf(docID string) []call {
	var out []call
	for _, c := range s.Calls() {
		if c.event.DocID == docID {
			out = append(out, c)
		}
	}
	return out
}

// harness is a worker on its own embedded NATS server.
type harness struct {
	t       *testing.T
	js      jetstream.JetStream
	metrics *telemetry.Metrics
	stage   *stage
	w       *worker.Worker
	prefix  string
	log     *logTail
}

// newHarness starts a NATS server (adjusted by opts), and creates the worker
// of cfg with the stage st and fresh metrics; the worker is not running yet.
func newHarness(t *testing.T, cfg worker.Config, st *stage, opts ...func(*server.Options)) *harness {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t, opts...)))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, js: js, metrics: telemetry.NewMetrics(), stage: st, prefix: cfg.Prefix, log: &logTail{}}
	if h.prefix == "" {
		h.prefix = "rag"
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("worker log, last lines:\n%s", h.log.String())
		}
	})
	cfg.JetStream, cfg.Processor, cfg.Metrics = js, st, h.metrics
	cfg.Logger = zerolog.New(h.log)
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = time.Millisecond
	}
	if h.w, err = worker.New(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	return h
}

// run starts the worker; stop cancels its context and waits for Run to
// return. stop is idempotent and also runs when the test ends.
func (h *harness) run() (stop func()) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.w.Run(ctx) }()
	stop = sync.OnceFunc(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				h.t.Errorf("Run: %v", err)
			}
		case <-time.After(30 * time.Second):
			h.t.Error("Run did not return within 30s of its context being cancelled")
		}
	})
	h.t.Cleanup(stop)
	return stop
}

// publish stores one event in the ingest stream and returns its sequence.
func (h *harness) publish(subject, body string, header nats.Header) uint64 {
	h.t.Helper()
	m := nats.NewMsg(subject)
	m.Data = []byte(body)
	for k, v := range header {
		m.Header[k] = v
	}
	ack, err := h.js.PublishMsg(h.t.Context(), m)
	if err != nil {
		h.t.Fatalf("publish to %s: %v", subject, err)
	}
	return ack.Sequence
}

// consumer returns the current state of the worker's consumer.
func (h *harness) consumer() *jetstream.ConsumerInfo {
	h.t.Helper()
	c, err := h.js.Consumer(h.t.Context(), worker.IngestStream, worker.ConsumerName)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := c.Info(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return info
}

// streamMsgs is the number of messages held by a stream.
func (h *harness) streamMsgs(name string) uint64 {
	h.t.Helper()
	s, err := h.js.Stream(h.t.Context(), name)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(h.t.Context())
	if err != nil {
		h.t.Fatal(err)
	}
	return info.State.Msgs
}

// waitSettled waits until every published event is settled: none pending,
// none unacknowledged, none left in the work-queue stream or parked.
func (h *harness) waitSettled(timeout time.Duration) {
	h.t.Helper()
	checkfor.Until(h.t, timeout, "every event settled", func() error {
		info := h.consumer()
		if n := h.streamMsgs(worker.IngestStream); info.NumPending > 0 || info.NumAckPending > 0 || n > 0 {
			return fmt.Errorf("%d pending, %d unacknowledged, %d in %s", info.NumPending, info.NumAckPending, n, worker.IngestStream)
		}
		if n := h.parked(); n > 0 {
			return fmt.Errorf("%d in %s", n, worker.ParkedStream)
		}
		return nil
	})
}

// parked is the number of events in the parked stream, 0 before it exists.
func (h *harness) parked() uint64 {
	h.t.Helper()
	if _, err := h.js.Stream(h.t.Context(), worker.ParkedStream); errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0
	}
	return h.streamMsgs(worker.ParkedStream)
}

// deadLetters returns the messages of the dead-letter stream, oldest first.
func (h *harness) deadLetters() []*jetstream.RawStreamMsg {
	h.t.Helper()
	ctx := h.t.Context()
	s, err := h.js.Stream(ctx, worker.DLQStream)
	if err != nil {
		h.t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			h.t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// waitDeadLetters waits until the dead-letter stream holds n messages and
// returns them.
func (h *harness) waitDeadLetters(n int, timeout time.Duration) []*jetstream.RawStreamMsg {
	h.t.Helper()
	checkfor.Until(h.t, timeout, fmt.Sprintf("%d dead letters", n), func() error {
		if got := h.streamMsgs(worker.DLQStream); got != uint64(n) {
			return fmt.Errorf("%d dead letters", got)
		}
		return nil
	})
	return h.deadLetters()
}

// events is ragpipe_events_total for a collection and outcome.
func (h *harness) events(collection, outcome string) int {
	return int(testutil.ToFloat64(h.metrics.Events.WithLabelValues(collection, outcome)))
}

// wantEvents checks ragpipe_events_total of a collection: acked, retried
// and dead-lettered.
func (h *harness) wantEvents(collection string, acked, retried, deadLettered int) {
	h.t.Helper()
	got := [3]int{h.events(collection, telemetry.Acked), h.events(collection, telemetry.Retried), h.events(collection, telemetry.DeadLettered)}
	if want := [3]int{acked, retried, deadLettered}; got != want {
		h.t.Errorf("events of %q acked/retried/dead-lettered = %v, want %v", collection, got, want)
	}
}

// checkDeadLetter checks a dead letter against CONTRACT §2: its subject, the
// original subject and body, the version, and a reason containing reason.
func checkDeadLetter(t *testing.T, dl *jetstream.RawStreamMsg, dlqSubject, subject, body, version, reason string) {
	t.Helper()
	if dl.Subject != dlqSubject {
		t.Errorf("dead letter on %s, want %s", dl.Subject, dlqSubject)
	}
	if got := dl.Header.Get(worker.HeaderSubject); got != subject {
		t.Errorf("%s %q, want %q", worker.HeaderSubject, got, subject)
	}
	if got := dl.Header.Get(worker.HeaderVersion); got != version {
		t.Errorf("%s %q, want %q", worker.HeaderVersion, got, version)
	}
	if got := dl.Header.Get(worker.HeaderError); !strings.Contains(got, reason) {
		t.Errorf("%s %q does not contain %q", worker.HeaderError, got, reason)
	}
	if !bytes.Equal(dl.Data, []byte(body)) {
		t.Errorf("dead letter body %.80q, want the original %.80q", dl.Data, body)
	}
	if got := dl.Header.Get(worker.HeaderTruncated); got != "" {
		t.Errorf("%s %q on a dead letter that fits", worker.HeaderTruncated, got)
	}
}

// block returns a channel that the test closes to let a blocked stage
// return, and a wait function for the stage that also gives up when the
// test ends.
func block(t *testing.T) (release chan struct{}, wait func()) {
	release = make(chan struct{})
	ctx := t.Context()
	return release, func() {
		select {
		case <-release:
		case <-ctx.Done():
		}
	}
}

// logTail keeps the last lines the worker logged, each cut short, for the
// output of a failing test. zerolog writes one line per call.
type logTail struct {
	mu    sync.Mutex
	lines []string
}

func (l *logTail) Write(p []byte) (int, error) {
	line := string(p)
	if len(line) > 600 {
		line = line[:600] + "…\n"
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.lines) == 40 {
		l.lines = l.lines[1:]
	}
	l.lines = append(l.lines, line)
	return len(p), nil
}

func (l *logTail) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "")
}
