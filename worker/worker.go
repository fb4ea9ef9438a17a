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
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/internal/retry"
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

// New creates the ingest and dead-letter streams and the consumer when they
// are missing, and returns a worker ready to Run.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if cfg.JetStream == nil || cfg.Processor == nil || cfg.Metrics == nil {
		return nil, errors.New("worker: JetStream, Processor and Metrics are required")
	}
	if _, err := ensureStream(ctx, cfg.JetStream, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "ragpipe: events that can never succeed, with the reason",
		Subjects:    []string{cfg.Prefix + ".dlq.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.StreamReplicas,
	}); err != nil {
		return nil, err
	}
	ingest, err := ensureStream(ctx, cfg.JetStream, jetstream.StreamConfig{
		Name:        IngestStream,
		Description: "ragpipe: document events waiting to be indexed",
		Subjects:    []string{cfg.Prefix + ".ingest.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.StreamReplicas,
		// Work queue: a message is removed once acknowledged, so the stream
		// holds exactly the backlog and nothing unprocessed ever ages out.
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	consumer, err := ingest.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "ragpipe workers, shared by every replica",
		FilterSubject: cfg.Prefix + ".ingest.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		// The worker counts attempts itself (NumDelivered) and dead-letters
		// the event, so JetStream must never silently stop redelivering.
		MaxDeliver: -1,
		Replicas:   0, // inherit the stream's
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	return &Worker{
		cfg:      cfg,
		consumer: consumer,
		decode:   pipeline.DecodeConfig{Prefix: cfg.Prefix, MaxEventBytes: cfg.MaxEventBytes},
	}, nil
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

// settle acknowledges, redelivers later or dead-letters one processed message.
func (w *Worker) settle(ctx context.Context, m jetstream.Msg, e pipeline.Event, attempt uint64, err error) {
	// Built only when there is something to say: not on the ack of every event.
	log := func() zerolog.Logger {
		return w.cfg.Logger.With().Str("collection", e.Collection).Str("user_id", e.UserID).
			Str("doc_id", e.DocID).Uint64("version", e.Version).Uint64("attempt", attempt).Logger()
	}
	switch {
	case err == nil:
		if ackErr := m.Ack(); ackErr != nil {
			l := log()
			l.Warn().Err(ackErr).Msg("ack failed; the event will be redelivered and rewritten idempotently")
			return
		}
		w.cfg.Metrics.Events.WithLabelValues(e.Collection, telemetry.Acked).Inc()
	case pipeline.IsPermanent(err):
		w.deadLetter(ctx, m, e.UserID, e.Collection, e.Version, err.Error())
	case pipeline.IsMisconfigured(err):
		// Not the event's fault (a refused API key, say): it waits for the
		// fix however long that takes and is never dead-lettered. The
		// stage logged the problem once, and /readyz shows it.
		l := log()
		l.Debug().Err(err).Msg("event waits for the embedder to be fixed")
		if attempt >= uint64(w.cfg.MaxDeliver) {
			w.requeue(ctx, m, e, l)
			return
		}
		_ = m.NakWithDelay(w.retryDelay(attempt))
		w.cfg.Metrics.Events.WithLabelValues(e.Collection, telemetry.Retried).Inc()
	case attempt >= uint64(w.cfg.MaxDeliver):
		w.deadLetter(ctx, m, e.UserID, e.Collection, e.Version,
			fmt.Sprintf("still failing after %d attempts: %v", attempt, err))
	default:
		delay := w.retryDelay(attempt)
		l := log()
		l.Warn().Err(err).Dur("retry_in", delay).Msg("event failed, will retry")
		_ = m.NakWithDelay(delay)
		w.cfg.Metrics.Events.WithLabelValues(e.Collection, telemetry.Retried).Inc()
	}
}

// requeue republishes a message that used up its attempts through no fault
// of its own as a fresh copy, so that the delivery count that dead-letters
// events starts again, then acknowledges it. The copy keeps the subject, the
// body, the headers but NATS's own and the effective version (header
// Ragpipe-Version), so it still ranks below any newer version. If the copy cannot be stored, the
// message is redelivered later instead.
func (w *Worker) requeue(ctx context.Context, m jetstream.Msg, e pipeline.Event, log zerolog.Logger) {
	meta, err := m.Metadata()
	if err != nil { // process settles only messages with metadata
		_ = m.NakWithDelay(w.cfg.MaxRetryDelay)
		return
	}
	cp := nats.NewMsg(m.Subject())
	cp.Data = m.Data()
	for k, v := range m.Headers() {
		if !strings.HasPrefix(k, "Nats-") { // publish expectations and ids would refuse or drop the copy
			cp.Header[k] = v
		}
	}
	cp.Header.Set(HeaderVersion, strconv.FormatUint(e.Version, 10))
	// A crash between the copy and the ack redelivers the message; the
	// second copy is then dropped by JetStream.
	cp.Header.Set(jetstream.MsgIDHeader, "ragpipe-requeue-"+strconv.FormatUint(meta.Sequence.Stream, 10))
	if _, err := w.cfg.JetStream.PublishMsg(ctx, cp); err != nil {
		log.Error().Err(err).Msg("event could not be requeued; will retry")
		_ = m.NakWithDelay(w.cfg.MaxRetryDelay)
		return
	}
	if err := m.Ack(); err != nil {
		log.Warn().Err(err).Msg("ack of a requeued event failed; its redelivery is harmless")
	}
	w.cfg.Metrics.Events.WithLabelValues(e.Collection, telemetry.Retried).Inc()
}

// retryDelay is the redelivery delay after the attempt-th failed delivery:
// the retry policy's delay, from a second, doubling up to MaxRetryDelay, up to
// 20% shorter at random so that replicas do not retry in lockstep.
func (w *Worker) retryDelay(attempt uint64) time.Duration {
	p := retry.Policy{Initial: time.Second, Max: w.cfg.MaxRetryDelay, Jitter: 0.2}
	return p.Delay(int(min(attempt, 1<<20)))
}

// deadLetter copies the message to the dead-letter stream with the reason and
// then terminates it. If the copy cannot be stored, the message is redelivered
// later instead: it is never dropped.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, userID, collection string, version uint64, reason string) {
	if userID == "" || collection == "" {
		userID, collection = "_invalid", "_invalid"
	}
	meta, _ := m.Metadata()
	dl := nats.NewMsg(w.cfg.Prefix + ".dlq." + userID + "." + collection)
	dl.Data = m.Data()
	if limit := int(w.cfg.JetStream.Conn().MaxPayload()) - dlqHeadroom; len(dl.Data) > limit {
		// Body and headers must fit in one message, or the copy could never
		// be stored and the event would be retried forever.
		dl.Header.Set(HeaderTruncated, strconv.Itoa(len(dl.Data)))
		dl.Data = dl.Data[:limit]
	}
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "") + "…"
	}
	dl.Header.Set(HeaderSubject, m.Subject())
	dl.Header.Set(HeaderError, reason)
	if version > 0 {
		dl.Header.Set(HeaderVersion, strconv.FormatUint(version, 10))
	}
	if meta != nil {
		// A crash between the copy and Term redelivers the message; the
		// duplicate copy is then dropped by JetStream.
		dl.Header.Set(jetstream.MsgIDHeader, "ragpipe-dlq-"+strconv.FormatUint(meta.Sequence.Stream, 10))
	}
	log := w.cfg.Logger.With().Str("subject", m.Subject()).Str("reason", reason).Logger()
	if _, err := w.cfg.JetStream.PublishMsg(ctx, dl); err != nil {
		log.Error().Err(err).Msg("dead letter could not be stored; will retry")
		_ = m.NakWithDelay(w.retryDelay(1))
		return
	}
	_ = m.TermWithReason(reason)
	log.Warn().Msg("event dead-lettered")
	w.cfg.Metrics.Events.WithLabelValues(collection, telemetry.DeadLettered).Inc()
}

// held is the set of messages received and not yet settled. keepAlive tells
// JetStream that they are in progress, so that a message waiting behind busy
// batches, or in a batch retrying a slow store or embedder, is never
// redelivered meanwhile. It is safe for concurrent use.
type held struct {
	mu   sync.Mutex
	msgs map[jetstream.Msg]struct{}
}

func (h *held) add(m jetstream.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msgs == nil {
		h.msgs = make(map[jetstream.Msg]struct{})
	}
	h.msgs[m] = struct{}{}
}

func (h *held) remove(msgs []jetstream.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		delete(h.msgs, m)
	}
}

// keepAlive sends InProgress for every held message at each interval until
// the returned function is called.
func (h *held) keepAlive(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				h.mu.Lock()
				msgs := slices.Collect(maps.Keys(h.msgs))
				h.mu.Unlock()
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
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

// ensureStream returns the stream named in cfg, creating it when missing. An
// existing stream is left as its operator configured it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, cfg.Name) // another replica created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
