// Package worker is the JetStream side of ingestion: it creates the RAG_INGEST
// and RAG_DLQ streams and the shared durable consumer ragpipe-worker, fetches
// events in batches, hands them to the pipeline stage and settles every
// message: acknowledged once its effect is durable, redelivered later with a
// growing delay when it failed transiently, dead-lettered when it can never
// succeed or has used up its attempts.
package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// Names of the streams and the consumer (CONTRACT §1).
const (
	IngestStream = "RAG_INGEST"
	DLQStream    = "RAG_DLQ"
	ConsumerName = "ragpipe-worker"
)

// Headers of dead letters and events (CONTRACT §2).
const (
	HeaderSubject = "Ragpipe-Subject"
	HeaderError   = "Ragpipe-Error"
	HeaderVersion = "Ragpipe-Version"
	// HeaderTruncated, on a dead letter, gives the size of the original body
	// when the copy had to be cut to fit the server's largest message.
	HeaderTruncated = "Ragpipe-Truncated"
)

// dlqHeadroom is the room kept for a dead letter's headers within the
// server's largest message; the reason is cut to fit in it.
const dlqHeadroom, maxReason = 4096, 2048

// Processor makes events durable; ingest.Stage implements it.
type Processor interface {
	// Process returns one error per event: nil once its effect is durable,
	// pipeline.IsPermanent errors for events that can never succeed.
	Process(ctx context.Context, events []pipeline.Event) []error
}

// Config configures a Worker; zero fields take the documented defaults.
type Config struct {
	JetStream jetstream.JetStream // required
	Processor Processor           // required
	Metrics   *telemetry.Metrics  // required
	Logger    zerolog.Logger

	Prefix         string        // subject prefix, default "rag"
	MaxEventBytes  int           // largest accepted event, default 1 MiB
	MaxDeliver     int           // attempts before dead-lettering, default 10
	BatchSize      int           // messages per batch, default 256
	FlushInterval  time.Duration // longest a partial batch waits, default 20ms
	Concurrency    int           // batches processed in parallel, default 4
	MaxAckPending  int           // unacknowledged messages in flight, default BatchSize*(Concurrency+1)
	AckWait        time.Duration // redelivery timeout of an unacknowledged message, default 30s
	StreamReplicas int           // replicas of created streams, default 1
	// MaxRetryDelay caps the growing delay before a failed event is redelivered, default 2m.
	MaxRetryDelay time.Duration
	// Backlog, when set, is told the number of events waiting in the
	// consumer each time the worker polls it: when Run starts, then every
	// 5 seconds.
	Backlog func(ctx context.Context, pending uint64)
	// VersionFloor, when set, returns the highest version stored or claimed
	// (lww.Register.Floor): New starts the ingest stream above it (see
	// streams.go). Nil: the stream is created at sequence 1, unchecked.
	VersionFloor func(ctx context.Context) (uint64, error)
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	if c.Prefix == "" {
		c.Prefix = "rag"
	}
	def(&c.MaxEventBytes, 1<<20)
	def(&c.MaxDeliver, 10)
	def(&c.BatchSize, 256)
	def(&c.Concurrency, 4)
	def(&c.MaxAckPending, c.BatchSize*(c.Concurrency+1))
	def(&c.StreamReplicas, 1)
	defDur(&c.FlushInterval, 20*time.Millisecond)
	defDur(&c.AckWait, 30*time.Second)
	defDur(&c.MaxRetryDelay, 2*time.Minute)
}

// Worker consumes ingest events. Any number of workers, in one process or
// many, share the durable consumer.
type Worker struct {
	held     held
	cfg      Config
	consumer jetstream.Consumer
	decode   pipeline.DecodeConfig
}

// Run consumes until ctx is done, then stops fetching, finishes the batches
// in flight, settles their messages and returns nil. Messages are processed
// with a context that outlives ctx, so that shutdown never abandons a write
// halfway. It returns an error only when consuming cannot start.
func (w *Worker) Run(ctx context.Context) error {
	// JetStream hands out at most MaxAckPending unacknowledged messages, so
	// the handler never blocks and every message is held from its receipt.
	msgs := make(chan jetstream.Msg, w.cfg.MaxAckPending)
	cc, err := w.consumer.Consume(func(m jetstream.Msg) { w.held.add(m); msgs <- m },
		jetstream.PullMaxMessages(w.cfg.BatchSize),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			w.cfg.Logger.Warn().Err(err).Msg("consume")
		}))
	if err != nil {
		return fmt.Errorf("consume %s: %w", ConsumerName, err)
	}
	w.cfg.Logger.Info().Str("consumer", ConsumerName).Int("batch_size", w.cfg.BatchSize).
		Int("concurrency", w.cfg.Concurrency).Msg("worker consuming")

	work := context.WithoutCancel(ctx)
	var inflight errgroup.Group
	inflight.SetLimit(w.cfg.Concurrency)
	go w.reportPending(ctx)
	stopKeepAlive := w.held.keepAlive(w.cfg.AckWait / 3)
	defer stopKeepAlive()

	batch := make([]jetstream.Msg, 0, w.cfg.BatchSize)
	flush := func() {
		if len(batch) == 0 {
			return
		}
		b := batch
		batch = make([]jetstream.Msg, 0, w.cfg.BatchSize)
		inflight.Go(func() error { w.process(work, b); return nil }) // blocks while Concurrency batches run
	}
	timer := time.NewTimer(w.cfg.FlushInterval)
	timer.Stop()
	done, closed := ctx.Done(), (<-chan struct{})(nil)
	for closed != nil || done != nil {
		select {
		case m := <-msgs:
			if len(batch) == 0 {
				timer.Reset(w.cfg.FlushInterval)
			}
			if batch = append(batch, m); len(batch) >= w.cfg.BatchSize {
				timer.Stop()
				flush()
			}
		case <-timer.C:
			flush()
		case <-done:
			// Stop pulling; messages already buffered are still handed over.
			done, closed = nil, cc.Closed()
			cc.Drain()
		case <-closed:
			closed = nil
		}
	}
	for len(msgs) > 0 {
		batch = append(batch, <-msgs)
	}
	flush()
	_ = inflight.Wait()
	w.cfg.Logger.Info().Msg("worker drained")
	return nil
}

// process decodes a batch, hands the good events to the processor and settles
// every message.
func (w *Worker) process(ctx context.Context, batch []jetstream.Msg) {
	defer w.held.remove(batch) // every message of the batch is settled below
	w.cfg.Metrics.BatchSize.Observe(float64(len(batch)))
	events := make([]pipeline.Event, 0, len(batch))
	owners := make([]jetstream.Msg, 0, len(batch))
	attempts := make([]uint64, 0, len(batch))
	for _, m := range batch {
		meta, err := m.Metadata()
		if err != nil {
			w.cfg.Logger.Error().Err(err).Str("subject", m.Subject()).Msg("message without JetStream metadata")
			_ = m.Term()
			continue
		}
		e, err := pipeline.Decode(w.decode, m.Subject(), m.Data(), m.Headers().Get(HeaderVersion), meta.Sequence.Stream)
		if err != nil {
			r := &pipeline.Rejection{}
			errors.As(err, &r) // Decode fails only with rejections
			w.deadLetter(ctx, m, r.UserID, r.Collection, r.Version, cmp.Or(r.Reason, err.Error()))
			continue
		}
		if meta.NumDelivered > uint64(w.cfg.MaxDeliver) {
			// A previous attempt died without settling (e.g. the process crashed).
			w.deadLetter(ctx, m, e.UserID, e.Collection, e.Version,
				fmt.Sprintf("delivered %d times, more than RAGPIPE_MAX_DELIVER=%d", meta.NumDelivered, w.cfg.MaxDeliver))
			continue
		}
		events = append(events, e)
		owners = append(owners, m)
		attempts = append(attempts, meta.NumDelivered)
	}
	if len(events) == 0 {
		return
	}
	errs := w.cfg.Processor.Process(ctx, events)
	for i, err := range errs {
		w.settle(ctx, owners[i], events[i], attempts[i], err)
	}
}

// reportPending updates the consumer-pending gauge, and tells cfg.Backlog,
// until ctx is done.
func (w *Worker) reportPending(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		if info, err := w.consumer.Info(ctx); err == nil {
			w.cfg.Metrics.ConsumerPending.Set(float64(info.NumPending))
			if w.cfg.Backlog != nil {
				w.cfg.Backlog(ctx, info.NumPending)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
