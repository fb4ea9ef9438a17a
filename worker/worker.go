// Package worker is the JetStream side of ingestion: it creates the RAG_INGEST,
// RAG_DLQ and RAG_PARKED streams and the shared durable consumer
// ragpipe-worker, fetches events in batches bounded in count and bytes,
// hands them to the pipeline stage and settles every message: acknowledged
// once its effect is durable, retried later with a growing delay when it
// failed transiently (parked apart, so that a failing collection never holds
// up the others; see ParkedStream), dead-lettered when it can never succeed
// or has used up its attempts. On shutdown it finishes what finishes within
// ShutdownTimeout and leaves the rest for redelivery.
package worker

import (
	"context"
	"fmt"
	"sync"
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

// maxReason bounds the reason a dead letter carries, in bytes.
const maxReason = 2048

// shutdownGrace is how long Run waits, after cancelling the work left at
// the end of ShutdownTimeout, for it to return before leaving its messages
// for redelivery regardless.
const shutdownGrace = time.Second

// Processor makes events durable; ingest.Stage implements it.
type Processor interface {
	// Process returns one error per event: nil once its effect is durable,
	// pipeline.IsPermanent errors for events that can never succeed. An
	// event it gives no answer for is retried.
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
	// MaxHeldBytes bounds the bytes of the events a worker has received and
	// not yet settled, default 32 MiB; a batch holds at most
	// MaxHeldBytes/(Concurrency+1) bytes (at least one event).
	MaxHeldBytes int
	// ShutdownTimeout is how long, once Run's context is done, the work in
	// flight may go on before it is cancelled and its events are left for
	// redelivery, default 20s.
	ShutdownTimeout time.Duration
	// MaxParked bounds the collections with a parked consumer (see
	// ParkedStream), default 100; the failing events of more collections are
	// redelivered by the shared consumer.
	MaxParked int
	// SuspectAfter is how long a collection's events may be processing
	// before the collection is treated as failing and its next events are
	// parked, default 5s; four times what its batches usually take when
	// that is longer.
	SuspectAfter time.Duration
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
	def(&c.MaxHeldBytes, 32<<20)
	def(&c.MaxParked, 100)
	defDur(&c.FlushInterval, 20*time.Millisecond)
	defDur(&c.AckWait, 30*time.Second)
	defDur(&c.MaxRetryDelay, 2*time.Minute)
	defDur(&c.ShutdownTimeout, 20*time.Second)
	defDur(&c.SuspectAfter, 5*time.Second)
}

// Worker consumes ingest events. Any number of workers, in one process or
// many, share the durable consumer.
type Worker struct {
	cfg      Config
	consumer jetstream.Consumer
	decode   pipeline.DecodeConfig

	// Set by Run.
	held       *held
	copies     *copier
	parks      *parking
	batchBytes int            // the most bytes of events in one batch
	running    sync.WaitGroup // collections being processed
}

// Run consumes until ctx is done, then stops fetching and hands the events
// already received to the processor; the work in flight may go on for
// ShutdownTimeout, then it is cancelled and whatever did not finish is left
// for redelivery at once (Nak). Run returns nil within ShutdownTimeout and a
// second of ctx's end, every message settled; it returns an error only when
// consuming cannot start. Run is called once per Worker.
func (w *Worker) Run(ctx context.Context) error {
	maxPayload := int(w.cfg.JetStream.Conn().MaxPayload())
	w.held = newHeld(w.cfg.MaxHeldBytes, w.cfg.AckWait-w.cfg.AckWait/3)
	w.copies = newCopier(w.cfg.JetStream)
	w.batchBytes = max(w.cfg.MaxHeldBytes/(w.cfg.Concurrency+1), 1)
	// Processing outlives ctx by up to ShutdownTimeout, so that shutdown
	// does not abandon writes that are about to finish.
	work, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	parks, err := startParking(ctx, work, w)
	if err != nil {
		return err
	}
	w.parks = parks
	stopKeepAlive := w.held.keepAlive(w.cfg.AckWait/3, func() error {
		return w.cfg.JetStream.Conn().FlushTimeout(w.cfg.AckWait / 3)
	})
	defer stopKeepAlive()

	// JetStream hands out at most MaxAckPending unacknowledged messages, so
	// the channel never fills; the handler waits while the held events
	// weigh MaxHeldBytes, which stops the pulls. A pull asks for a batch's
	// bytes, and always room for the largest message.
	msgs := make(chan jetstream.Msg, w.cfg.MaxAckPending)
	pullMaxBytes := max(w.batchBytes, 4*maxPayload)
	cc, err := w.consumer.Consume(func(m jetstream.Msg) {
		if !w.held.admit(work, m) {
			_ = m.Nak() // shutdown timed out: left for redelivery at once
			return
		}
		msgs <- m
	},
		jetstream.PullMaxBytes(pullMaxBytes),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			w.cfg.Logger.Warn().Err(err).Msg("consume")
		}))
	if err != nil {
		parks.wait()
		return fmt.Errorf("consume %s: %w", ConsumerName, err)
	}
	w.cfg.Logger.Info().Str("consumer", ConsumerName).Int("batch_size", w.cfg.BatchSize).
		Int("concurrency", w.cfg.Concurrency).Int("max_held_bytes", w.cfg.MaxHeldBytes).
		Int("pull_max_bytes", pullMaxBytes).Msg("worker consuming")
	go w.reportPending(ctx)

	finished := make(chan struct{})
	go func() {
		var inflight errgroup.Group
		inflight.SetLimit(w.cfg.Concurrency)
		w.batch(ctx, cc, msgs, func(b []jetstream.Msg) {
			inflight.Go(func() error { w.process(work, b, false); return nil }) // blocks while Concurrency batches run
		})
		_ = inflight.Wait()
		w.running.Wait()
		parks.wait()
		close(finished)
	}()
	select {
	case <-finished:
	case <-ctx.Done():
	}
	stop := time.AfterFunc(w.cfg.ShutdownTimeout, cancelWork)
	defer stop.Stop()
	select {
	case <-finished:
		w.cfg.Logger.Info().Msg("worker drained")
	case <-time.After(w.cfg.ShutdownTimeout + shutdownGrace):
		n, _ := w.held.size()
		w.cfg.Logger.Warn().Int("events", n).Dur("shutdown_timeout", w.cfg.ShutdownTimeout).
			Msg("work did not stop within the shutdown timeout; its events are left for redelivery")
	}
	for _, m := range w.held.snapshot() { // abandoned, or received after the last batch
		_ = m.Nak()
		w.held.remove(m)
	}
	return nil
}

// batch gathers the messages of msgs into batches of BatchSize messages or
// a batch's bytes, handing each to flush when full or FlushInterval after
// its first message. Once ctx is done it stops the consumption (cc), hands
// over what is still delivered, and returns.
func (w *Worker) batch(ctx context.Context, cc jetstream.ConsumeContext, msgs <-chan jetstream.Msg, flush func([]jetstream.Msg)) {
	batch := make([]jetstream.Msg, 0, w.cfg.BatchSize)
	bytes := 0
	send := func() {
		if len(batch) > 0 {
			flush(batch)
			batch, bytes = make([]jetstream.Msg, 0, w.cfg.BatchSize), 0
		}
	}
	add := func(m jetstream.Msg) {
		batch, bytes = append(batch, m), bytes+msgSize(m)
		if len(batch) >= w.cfg.BatchSize || bytes >= w.batchBytes {
			send()
		}
	}
	timer := time.NewTimer(w.cfg.FlushInterval)
	timer.Stop()
	done, closed := ctx.Done(), (<-chan struct{})(nil)
	for done != nil || closed != nil {
		select {
		case m := <-msgs:
			if len(batch) == 0 {
				timer.Reset(w.cfg.FlushInterval)
			}
			add(m)
		case <-timer.C:
			send()
		case <-done:
			// Stop pulling; messages already buffered are still handed over.
			done, closed = nil, cc.Closed()
			cc.Drain()
		case <-closed:
			closed = nil
		}
	}
	timer.Stop()
	for len(msgs) > 0 {
		add(<-msgs)
	}
	send()
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
