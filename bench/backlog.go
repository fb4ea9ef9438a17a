package bench

import (
	"context"
	"fmt"
	"time"
)

// ingestFilled runs drain d from a filled stream: every event is published
// and acknowledged by the stream while no worker consumes, then one worker
// for a fresh collection drains them, timed from its ready line to the last
// acknowledgement, then the points are counted. With a ceiling, it computes
// the ratios to it. Set beside a drain that publishes while the worker
// consumes, it shows how fast the worker and Qdrant go once the publisher
// takes nothing from them.
func (r *runner) ingestFilled(ctx context.Context, d drain, ceiling *Ceiling) (*Ingest, error) {
	res := &Ingest{Docs: d.docs, Body: d.body, Embedder: d.embedder, StreamFilledFirst: true}
	docs, bodies, err := r.events(ctx, d)
	if err != nil {
		return res, err
	}
	collection := r.collection(d.name)
	defer r.cleanup(ctx, collection)
	w, elapsed, err := r.drainFilled(ctx, d, res, docs, bodies, collection)
	if err != nil {
		return res, err
	}
	defer w.stop() // when failing; its result is checked by finish otherwise
	return res, r.finish(ctx, d, res, w, collection, elapsed, ceiling)
}

// drainFilled publishes bodies, to docs' users in collection, while no
// worker consumes, and checks, once the stream has acknowledged them all,
// that the workers' consumer holds every one and has delivered none. Then
// it starts a worker and waits until the consumer has nothing outstanding.
// It records in res how long publishing took, the CPU the worker and Qdrant
// used from the worker's ready line on and the cores Qdrant kept busy
// meanwhile, and returns the worker, still running, and the time from its
// ready line to the last acknowledgement. When it fails, no worker is left
// running.
func (r *runner) drainFilled(ctx context.Context, d drain, res *Ingest, docs []doc, bodies [][]byte, collection string) (w *child, elapsed time.Duration, err error) {
	// The durable consumer outlives the workers: a worker started later
	// finds the events waiting on it.
	if err := r.ensureConsumer(ctx, collection); err != nil {
		return nil, 0, err
	}
	start := time.Now()
	lastSeq, err := r.publishAll(ctx, docs, bodies, func(user string) string { return r.subject(user, collection) })
	if err != nil {
		return nil, 0, err
	}
	res.PublishSeconds = round(time.Since(start).Seconds(), 3)
	info, err := r.consumerInfo(ctx)
	if err != nil {
		return nil, 0, err
	}
	if info.NumPending != uint64(len(docs)) || info.NumAckPending != 0 {
		return nil, 0, fmt.Errorf("the filled stream holds %d events for the workers and %d delivered, want %d and 0",
			info.NumPending, info.NumAckPending, len(docs))
	}
	r.progressf("%s: %d events published in %s before the worker starts", d.name, len(docs),
		time.Since(start).Round(time.Millisecond))

	if w, err = r.startWorker(ctx, collection, d.embedder); err != nil {
		return nil, 0, err
	}
	defer func() {
		if err != nil {
			_ = w.stop()
			w = nil
		}
	}()
	cpu := startCPU(r.cfg.QdrantPID, w.pid())
	ready := w.log.readyAt()
	if err := r.pin(w); err != nil {
		return w, 0, err
	}
	if err := r.waitDrained(ctx, w, lastSeq); err != nil {
		return w, 0, err
	}
	elapsed = time.Since(ready)
	res.CPU = cpu.stop()
	if q := res.CPU.Qdrant; q != nil {
		res.QdrantCoresAfter = new(round(*q/elapsed.Seconds(), 2))
	}
	return w, elapsed, nil
}
