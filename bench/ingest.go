package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/worker"
)

const (
	// publishWindow is the most publishes awaiting their acknowledgement.
	publishWindow = 4096
	// drainPoll is how often the consumer is polled while a drain is timed:
	// the end of a drain is known to within this.
	drainPoll = 5 * time.Millisecond
)

// Embedders of the worker (RAGPIPE_EMBEDDER), set for every process the
// bench starts: the default embedder is not the bench's to choose.
const (
	embedderHash    = "hash"
	embedderBuiltin = "builtin"
)

// drain is one end-to-end ingestion: what its events carry, the worker's
// embedder, and how many documents.
type drain struct {
	name     string // the collection's suffix and the progress label
	body     string // bodyText, bodyVector or bodyVectorB64
	embedder string
	docs     int
	keep     bool // the collection stays (for the search stage)
	// oneChunk reports that each document is one point, so that the exact
	// count must equal the documents (the builtin embedder's chunker may cut
	// a text into several).
	oneChunk bool
	// floor asks for the NATS floor once the drain has succeeded (floor.go).
	floor bool
}

// ingest runs one drain: one worker for a fresh collection, the documents
// published as d says, timed from the first publish to the last
// acknowledgement, then counted, then, when d asks, the NATS floor of its
// events is measured. With a ceiling, it computes the ratios to it.
func (r *runner) ingest(ctx context.Context, d drain, ceiling *Ceiling) (*Ingest, error) {
	res := &Ingest{Docs: d.docs, Body: d.body, Embedder: d.embedder}
	docs, bodies, err := r.events(ctx, d)
	if err != nil {
		return res, err
	}
	collection := r.collection(d.name)
	if !d.keep {
		defer r.cleanup(ctx, collection)
	}
	w, err := r.startWorker(ctx, collection, d.embedder)
	if err != nil && d.embedder == embedderBuiltin {
		res.Skipped = fmt.Sprintf("the worker did not start with RAGPIPE_EMBEDDER=%s (not in this build?): %v", d.embedder, err)
		r.progressf("%s: skipped: %s", d.name, res.Skipped)
		return res, nil
	}
	if err != nil {
		return res, err
	}
	defer w.stop() // when failing; its result is checked below otherwise
	if err := r.pin(w); err != nil {
		return res, err
	}
	cpu := startCPU(r.cfg.QdrantPID, w.pid())
	start := time.Now()
	lastSeq, err := r.publishAll(ctx, docs, bodies, func(user string) string { return r.subject(user, collection) })
	if err != nil {
		return res, err
	}
	published, publishing := time.Since(start), cpu.stop()
	if err := r.waitDrained(ctx, w, lastSeq); err != nil {
		return res, err
	}
	elapsed := time.Since(start)
	res.CPU = cpu.stop()
	res.phases(published, elapsed, publishing)
	if err := r.finish(ctx, d, res, w, collection, elapsed, ceiling); err != nil {
		return res, err
	}
	if d.floor {
		r.floor(ctx, d, res, w, docs, collection, bodies)
	}
	return res, nil
}

// events returns d's documents and the bodies of their events, once the
// stream is checked idle.
func (r *runner) events(ctx context.Context, d drain) ([]doc, [][]byte, error) {
	docs := r.documents()[:d.docs]
	bodies := make([][]byte, len(docs))
	for i := range docs {
		var err error
		if bodies[i], err = docs[i].body(d.body); err != nil {
			return nil, nil, err
		}
	}
	if err := r.checkIdle(ctx); err != nil {
		return nil, nil, err
	}
	return docs, bodies, nil
}

// pin restricts w to the workers' CPUs while the pinned stage runs. A child
// inherits the bench's CPUs; pinning it again covers a thread forked before
// the bench was pinned.
func (r *runner) pin(w *child) error {
	if r.pinOthers == nil {
		return nil
	}
	return pinCPUs(w.pid(), r.pinOthers)
}

// finish completes res once w has drained collection in elapsed: the rate,
// the exact count, the figures per document and the ratios to ceiling;
// then it stops w, and fails unless w exited cleanly and the count is
// right.
func (r *runner) finish(ctx context.Context, d drain, res *Ingest, w *child, collection string, elapsed time.Duration, ceiling *Ceiling) error {
	res.Seconds = round(elapsed.Seconds(), 4)
	res.DocsPerS = round(float64(res.Docs)/elapsed.Seconds(), 1)
	var err error
	if res.Stored, err = r.count(ctx, collection); err != nil {
		return err
	}
	res.perDoc(ceiling)
	r.progressf("%s: %d docs in %s: %.0f docs/s, worker %s µs/doc", d.name, res.Docs, elapsed.Round(time.Millisecond),
		res.DocsPerS, micros(res.WorkerUsPerDoc))
	res.CountOK = res.Stored == uint64(res.Docs) || !d.oneChunk && res.Stored >= uint64(res.Docs)
	if err := w.stop(); err != nil {
		return err
	}
	if !res.CountOK {
		return fmt.Errorf("exact count %d points, want %d", res.Stored, res.Docs)
	}
	return nil
}

// phases fills in how long publishing took and how busy Qdrant was during
// it and after, from the CPU used by then (publishing).
func (in *Ingest) phases(published, elapsed time.Duration, publishing *CPU) {
	in.PublishSeconds = round(published.Seconds(), 3)
	q0, q := publishing.Qdrant, in.CPU.Qdrant
	if q0 == nil || q == nil || published <= 0 || elapsed <= published {
		return
	}
	in.QdrantCoresPublishing = new(round(*q0/published.Seconds(), 2))
	in.QdrantCoresAfter = new(round((*q-*q0)/(elapsed-published).Seconds(), 2))
}

// perDoc fills in the figures per document, and the ratios to ceiling when
// there is one.
func (in *Ingest) perDoc(ceiling *Ceiling) {
	perDoc := func(s *float64) *float64 {
		if s == nil || in.Docs == 0 {
			return nil
		}
		return new(round(*s/float64(in.Docs)*1e6, 1))
	}
	if in.CPU != nil {
		in.WorkerUsPerDoc = perDoc(in.CPU.Worker)
		in.QdrantUsPerDoc = perDoc(in.CPU.Qdrant)
		if w := in.CPU.Worker; w != nil && *w > 0 && in.Stored > 0 {
			in.ChunksPerCoreS = new(round(float64(in.Stored) / *w, 1))
		}
	}
	if ceiling == nil || ceiling.Best == nil {
		return
	}
	if in.DocsPerS > 0 {
		in.RatioToCeiling = new(round(in.DocsPerS/ceiling.Best.PointsPerS, 3))
	}
	if q := ceiling.Best.QdrantUsPerPoint; q != nil && *q > 0 && in.QdrantUsPerDoc != nil {
		in.QdrantVsCeiling = new(round(*in.QdrantUsPerDoc / *q, 3))
	}
}

// consumerInfo returns the state of the workers' consumer: one request
// once the consumer has been found.
func (r *runner) consumerInfo(ctx context.Context) (*jetstream.ConsumerInfo, error) {
	if r.consumer == nil {
		c, err := r.js.Consumer(ctx, worker.IngestStream, worker.ConsumerName)
		if err != nil {
			return nil, fmt.Errorf("consumer %s: %w", worker.ConsumerName, err)
		}
		r.consumer = c
	}
	info, err := r.consumer.Info(ctx)
	if err != nil {
		return nil, fmt.Errorf("consumer %s: %w", worker.ConsumerName, err)
	}
	return info, nil
}

// outstanding is the number of events the consumer has not seen
// acknowledged: not delivered yet, or delivered and not acknowledged.
func outstanding(info *jetstream.ConsumerInfo) uint64 {
	return info.NumPending + uint64(info.NumAckPending)
}

// checkIdle fails unless RAG_INGEST holds nothing to consume: the bench
// counts on the stream carrying its own events only, and its workers must
// not consume anybody else's. A stream or consumer not created yet is idle.
func (r *runner) checkIdle(ctx context.Context) error {
	var n uint64
	info, err := r.consumerInfo(ctx)
	switch {
	case err == nil:
		n = outstanding(info)
	case errors.Is(err, jetstream.ErrStreamNotFound):
	case errors.Is(err, jetstream.ErrConsumerNotFound):
		stream, err := r.js.Stream(ctx, worker.IngestStream)
		if err != nil {
			return fmt.Errorf("stream %s: %w", worker.IngestStream, err)
		}
		n = stream.CachedInfo().State.Msgs
	default:
		return err
	}
	if n > 0 {
		return fmt.Errorf("%s already holds %d unacknowledged event(s); the bench needs a NATS whose %s it alone uses",
			worker.IngestStream, n, worker.IngestStream)
	}
	return nil
}

// waitDrained polls the consumer until every event up to stream sequence
// lastSeq has been acknowledged and nothing is outstanding. It fails when
// w exits, or when nothing changes for stallTimeout.
func (r *runner) waitDrained(ctx context.Context, w *child, lastSeq uint64) error {
	last, changed := uint64(0), time.Now()
	return poll(ctx, drainPoll, w, func() (bool, error) {
		info, err := r.consumerInfo(ctx)
		if err != nil {
			return false, err
		}
		n := outstanding(info)
		if n == 0 && info.AckFloor.Stream >= lastSeq {
			return true, nil
		}
		if n != last {
			last, changed = n, time.Now()
		} else if time.Since(changed) > stallTimeout {
			return false, fmt.Errorf("stalled: %d events outstanding for %s", n, stallTimeout)
		}
		return false, nil
	})
}

// poll calls step at once and then every period until it reports done or
// fails. It returns ctx's error when ctx ends first, and w's exit error
// when w exits first (a nil w never does).
func poll(ctx context.Context, period time.Duration, w *child, step func() (done bool, err error)) error {
	var exited <-chan struct{}
	if w != nil {
		exited = w.done
	}
	tick := time.NewTicker(period)
	defer tick.Stop()
	for {
		if done, err := step(); done || err != nil {
			return err
		}
		select {
		case <-exited:
			return w.exitError()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// publishAll publishes bodies, each to subject(its document's user), and
// returns the highest stream sequence once the stream has acknowledged
// them all.
func (r *runner) publishAll(ctx context.Context, docs []doc, bodies [][]byte, subject func(user string) string) (uint64, error) {
	pub, err := newPublisher(r.cfg.Conn)
	if err != nil {
		return 0, err
	}
	for i := range bodies {
		if err := pub.publish(subject(docs[i].user), bodies[i]); err != nil {
			return 0, err
		}
	}
	return pub.wait(ctx)
}

// publisher publishes events asynchronously, at most publishWindow
// awaiting their acknowledgement, and keeps the highest stream sequence
// acknowledged and the first error.
type publisher struct {
	js jetstream.JetStream

	mu      sync.Mutex
	lastSeq uint64
	err     error
}

func newPublisher(nc *nats.Conn) (*publisher, error) {
	p := &publisher{}
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(publishWindow),
		jetstream.WithPublishAsyncAckHandler(func(_ jetstream.JetStream, _ *nats.Msg, ack *jetstream.PubAck) {
			p.mu.Lock()
			p.lastSeq = max(p.lastSeq, ack.Sequence)
			p.mu.Unlock()
		}),
		jetstream.WithPublishAsyncErrHandler(func(_ jetstream.JetStream, m *nats.Msg, err error) {
			p.mu.Lock()
			if p.err == nil {
				p.err = fmt.Errorf("publish to %s: %w", m.Subject, err)
			}
			p.mu.Unlock()
		}))
	if err != nil {
		return nil, fmt.Errorf("publisher: %w", err)
	}
	p.js = js
	return p, nil
}

// publish publishes body on subject, waiting while the window is full.
func (p *publisher) publish(subject string, body []byte) error {
	if _, err := p.js.PublishAsync(subject, body, jetstream.WithStallWait(stallTimeout)); err != nil {
		return fmt.Errorf("publish to %s: %w", subject, err)
	}
	return nil
}

// wait waits until every publish has been answered and returns the highest
// stream sequence acknowledged, or the first error.
func (p *publisher) wait(ctx context.Context) (uint64, error) {
	select {
	case <-p.js.PublishAsyncComplete():
	case <-ctx.Done():
		return 0, ctx.Err()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.err == nil && p.lastSeq == 0 {
		return 0, errors.New("no publish was acknowledged")
	}
	return p.lastSeq, p.err
}
