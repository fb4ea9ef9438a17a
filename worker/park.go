package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ragpipe/ragpipe/internal/retry"
)

// ParkedStream holds the events of failing collections, away from the
// shared consumer (see parking).
const ParkedStream = "RAG_PARKED"

// ParkedConsumerPrefix starts the name of each parked collection's consumer:
// ragpipe-parked-<collection>.
const ParkedConsumerPrefix = "ragpipe-parked-"

// Headers of parked events.
const (
	// HeaderSequence is the event's sequence in the ingest stream, on a
	// parked copy and on a dead letter.
	HeaderSequence = "Ragpipe-Sequence"
	// HeaderAttempts, on a parked copy, counts the attempts made before it
	// was parked.
	HeaderAttempts = "Ragpipe-Attempts"
	// HeaderRetryIn, on a parked copy, is the delay (a Go duration) before
	// its first attempt.
	HeaderRetryIn = "Ragpipe-Retry-In"
)

const (
	// parkScan is how often the parked consumers are listed: lanes started
	// for those of other workers, parked events without a consumer given
	// one, idle consumers deleted.
	parkScan = 5 * time.Second
	// parkIdle is how long a parked consumer stays empty before it is deleted.
	parkIdle = time.Minute
	// laneWait is the longest a lane's fetch waits for a first event.
	laneWait = 5 * time.Second
	// laneFill is how long a lane's fetch waits for more events once it has one.
	laneFill = 50 * time.Millisecond
)

// errParkingFull is the failure to park an event of one more collection
// when MaxParked collections already have a parked consumer.
var errParkingFull = errors.New("parked consumers are at MaxParked")

// parking keeps failing collections from holding the shared consumer's
// delivery budget (MaxAckPending), which every collection and every worker
// replica share. An event of the shared consumer that fails and will be
// retried is parked instead of being redelivered: republished to
// <prefix>.parked.<user>.<collection> in the RAG_PARKED stream, with its
// effective version, its ingest sequence, the attempts made and the retry
// delay, then acknowledged. Each parked collection has its own durable
// consumer, ragpipe-parked-<collection>, created on demand (at most
// MaxParked), whose MaxAckPending is max(1, Concurrency/2) batches: a
// failing collection holds only that. Every worker runs a lane per parked
// consumer, as many loops wide: each fetches a batch, processes it like the
// shared consumer's, has what fails redelivered after the retry delay
// (NakWithDelay) and, after a batch that only failed, pauses for that delay.
// The lanes of all collections together process at most
// max(1, Concurrency/2) batches at once.
//
// A collection whose events fail, or whose batch has been processing for
// longer than usual (suspectAfter), is marked failing in this worker: its
// next events from the shared consumer are parked without being processed,
// until an event of it succeeds again, here or in its lane. Attempts count
// across parking, so RAGPIPE_MAX_DELIVER keeps its meaning; an event failing
// through misconfiguration is parked afresh instead of dead-lettered. It is
// safe for concurrent use.
type parking struct {
	w      *Worker
	stream jetstream.Stream
	run    context.Context // ends at shutdown: lanes stop fetching
	work   context.Context // the processing context
	slots  chan struct{}   // lanes processing at once
	lanes  sync.WaitGroup

	mu         sync.Mutex
	typical    map[string]time.Duration // collection -> moving average of its successful batches' processing time
	failing    map[string]bool          // collections whose events are parked without being processed
	consumers  map[string]bool          // collections with a parked consumer
	laned      map[string]bool          // collections with a lane in this worker
	emptySince map[string]time.Time     // parked consumers seen empty
}

// startParking creates the parked stream when it is missing, and starts the
// lanes of the parked consumers and the scan that finds new ones, until run
// ends.
func startParking(run, work context.Context, w *Worker) (*parking, error) {
	stream, err := ensureStream(run, w.cfg.JetStream, jetstream.StreamConfig{
		Name:        ParkedStream,
		Description: "ragpipe: events of failing collections, retried by one consumer per collection",
		Subjects:    []string{w.cfg.Prefix + ".parked.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    w.cfg.StreamReplicas,
		Retention:   jetstream.WorkQueuePolicy,
		Duplicates:  2 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	p := &parking{
		w: w, stream: stream, run: run, work: work,
		typical: map[string]time.Duration{}, failing: map[string]bool{}, consumers: map[string]bool{},
		laned: map[string]bool{}, emptySince: map[string]time.Time{},
	}
	p.slots = make(chan struct{}, p.width())
	p.scan()
	p.lanes.Go(func() {
		t := time.NewTicker(parkScan)
		defer t.Stop()
		for {
			select {
			case <-run.Done():
				return
			case <-t.C:
				p.scan()
			}
		}
	})
	return p, nil
}

// wait waits for the lanes and the scan to stop.
func (p *parking) wait() { p.lanes.Wait() }

// routes says whether the events of collection are to be parked without
// being processed: it is failing and has a lane here.
func (p *parking) routes(collection string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failing[collection] && p.laned[collection]
}

// suspectAfter is how long a batch of collection may be processing before
// the collection is suspected of failing: SuspectAfter, or four times what
// its batches usually take when that is longer, so that a collection that is
// always slow (a large model on CPU) is not mistaken for a failing one.
func (p *parking) suspectAfter(collection string) time.Duration {
	p.mu.Lock()
	defer p.mu.Unlock()
	return max(p.w.cfg.SuspectAfter, 4*p.typical[collection])
}

// observe records that a batch of collection succeeded in took.
func (p *parking) observe(collection string, took time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if prev, ok := p.typical[collection]; ok {
		took = (4*prev + took) / 5
	}
	p.typical[collection] = took
}

// suspect marks collection failing because its batch is slow.
func (p *parking) suspect(ctx context.Context, collection string) {
	if p.ensure(ctx, collection) == nil {
		p.mark(collection, true, "its events have been processing for longer than usual")
	}
}

// record marks collection healthy when o saw an event of it stored, failing
// when its events only failed.
func (p *parking) record(collection string, o outcome) {
	switch {
	case o.succeeded:
		p.mark(collection, false, "")
	case o.failed:
		p.mark(collection, true, "its events fail")
	}
}

// unroute stops parking collection's events without processing them.
func (p *parking) unroute(collection string) { p.mark(collection, false, "") }

func (p *parking) mark(collection string, failing bool, why string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.failing[collection] == failing {
		return
	}
	log := p.w.cfg.Logger
	if failing {
		p.failing[collection] = true
		log.Warn().Str("collection", collection).Str("why", why).
			Msg("collection failing: its events are parked and retried apart, without holding up other collections")
		return
	}
	delete(p.failing, collection)
	log.Info().Str("collection", collection).Msg("collection works again")
}

// park republishes d's event to the parked stream and acknowledges d's
// message. attempts is the count of attempts the copy starts from,
// retryIn the delay before its first attempt.
func (p *parking) park(ctx context.Context, d *delivery, attempts uint64, retryIn time.Duration) error {
	e := d.event
	if err := p.ensure(ctx, e.Collection); err != nil {
		return err
	}
	meta, err := d.msg.Metadata()
	if err != nil {
		return err
	}
	cp := nats.NewMsg(p.w.cfg.Prefix + ".parked." + e.UserID + "." + e.Collection)
	cp.Data = d.msg.Data()
	for k, v := range d.msg.Headers() {
		// Publish expectations and ids would refuse or drop the copy.
		if !strings.HasPrefix(k, "Nats-") {
			cp.Header[k] = v
		}
	}
	cp.Header.Del(HeaderAttempts)
	cp.Header.Del(HeaderRetryIn)
	cp.Header.Set(HeaderVersion, strconv.FormatUint(e.Version, 10))
	cp.Header.Set(HeaderSequence, strconv.FormatUint(d.seq, 10))
	if attempts > 0 {
		cp.Header.Set(HeaderAttempts, strconv.FormatUint(attempts, 10))
	}
	if retryIn > 0 {
		cp.Header.Set(HeaderRetryIn, retryIn.String())
	}
	cp.Header.Set(jetstream.MsgIDHeader, p.w.copies.idOf("parked", meta))
	if err := p.w.copies.publish(ctx, cp); err != nil {
		return fmt.Errorf("park in %s: %w", ParkedStream, err)
	}
	if err := d.msg.Ack(); err != nil {
		// Redelivered, it is parked again: a harmless second copy.
		p.w.cfg.Logger.Warn().Err(err).Str("collection", e.Collection).Msg("ack of a parked event failed")
	}
	return nil
}

// ensure makes sure collection has a parked consumer and a lane here.
func (p *parking) ensure(ctx context.Context, collection string) error {
	p.mu.Lock()
	known, full := p.consumers[collection], len(p.consumers) >= p.w.cfg.MaxParked
	p.mu.Unlock()
	if !known {
		if full {
			return fmt.Errorf("%w (%d)", errParkingFull, p.w.cfg.MaxParked)
		}
		_, err := p.stream.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
			Durable:       ParkedConsumerPrefix + collection,
			Description:   "ragpipe: parked events of collection " + collection,
			FilterSubject: p.w.cfg.Prefix + ".parked.*." + collection,
			AckPolicy:     jetstream.AckExplicitPolicy,
			AckWait:       p.w.cfg.AckWait,
			MaxAckPending: p.w.cfg.BatchSize * p.width(),
			MaxDeliver:    -1, // attempts are counted by the worker, as for the shared consumer
		})
		if err != nil {
			return fmt.Errorf("parked consumer of %q: %w", collection, err)
		}
	}
	p.startLane(collection)
	return nil
}

// startLane records collection's consumer and starts its lane unless one runs.
func (p *parking) startLane(collection string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.consumers[collection] = true
	if p.laned[collection] || p.run.Err() != nil {
		return
	}
	p.laned[collection] = true
	p.lanes.Go(func() { p.lane(collection) })
}

// scan lists the parked consumers: it starts lanes for those of other
// workers, gives parked events without a consumer one (a consumer deleted as
// idle while an event was parked), and deletes consumers that have been
// empty for parkIdle. Failures are retried at the next scan.
func (p *parking) scan() {
	ctx, cancel := context.WithTimeout(p.run, parkScan)
	defer cancel()
	seen := map[string]bool{}
	infos := p.stream.ListConsumers(ctx)
	for info := range infos.Info() {
		c, ok := strings.CutPrefix(info.Name, ParkedConsumerPrefix)
		if !ok {
			continue
		}
		seen[c] = true
		if p.idle(c, info) {
			if err := p.stream.DeleteConsumer(ctx, info.Name); err == nil || errors.Is(err, jetstream.ErrConsumerNotFound) {
				delete(seen, c)
			}
			continue
		}
		p.startLane(c)
	}
	if infos.Err() != nil {
		return
	}
	p.mu.Lock()
	for c := range p.consumers {
		if !seen[c] {
			delete(p.consumers, c) // deleted elsewhere; its lane ends by itself
		}
	}
	p.mu.Unlock()
	info, err := p.stream.Info(ctx, jetstream.WithSubjectFilter(p.w.cfg.Prefix+".parked.>"))
	if err != nil {
		return
	}
	for subject := range info.State.Subjects {
		c := subject[strings.LastIndexByte(subject, '.')+1:]
		if !seen[c] {
			seen[c] = true
			if err := p.ensure(ctx, c); err != nil {
				p.w.cfg.Logger.Warn().Err(err).Str("collection", c).Msg("parked events without a consumer")
			}
		}
	}
}

// idle says whether collection's parked consumer, described by info, has
// been empty for parkIdle while the collection is not failing here.
func (p *parking) idle(collection string, info *jetstream.ConsumerInfo) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if info.NumPending > 0 || info.NumAckPending > 0 || p.failing[collection] {
		delete(p.emptySince, collection)
		return false
	}
	since, ok := p.emptySince[collection]
	if !ok {
		p.emptySince[collection] = time.Now()
		return false
	}
	if time.Since(since) < parkIdle {
		return false
	}
	delete(p.emptySince, collection)
	delete(p.consumers, collection)
	return true
}

// lane consumes collection's parked events until the worker stops or the
// consumer is deleted.
func (p *parking) lane(collection string) {
	defer func() {
		p.mu.Lock()
		delete(p.laned, collection)
		delete(p.failing, collection) // no lane to recover it: the shared consumer tries again
		p.mu.Unlock()
	}()
	cons, err := p.stream.Consumer(p.run, ParkedConsumerPrefix+collection)
	if err != nil {
		return
	}
	var loops sync.WaitGroup
	for range p.width() {
		loops.Go(func() { p.consume(cons) })
	}
	loops.Wait()
}

// width is the number of batches a lane processes at once, and the number
// of slots: max(1, Concurrency/2).
func (p *parking) width() int { return max(1, p.w.cfg.Concurrency/2) }

// consume fetches batches from a parked consumer and processes them, one at
// a time, pausing for the retry delay after a batch that only failed, until
// the worker stops or the consumer is deleted.
func (p *parking) consume(cons jetstream.Consumer) {
	w := p.w
	for p.run.Err() == nil {
		first, err := fetch(p.run, cons, 1, 0, laneWait)
		if len(first) == 0 {
			if err != nil {
				if _, err := cons.Info(p.run); errors.Is(err, jetstream.ErrConsumerNotFound) {
					return // deleted as idle
				}
				_ = retry.Sleep(p.run, time.Second)
			}
			continue
		}
		select {
		case p.slots <- struct{}{}:
		case <-p.run.Done():
		}
		more, _ := fetch(p.run, cons, w.cfg.BatchSize-1, max(w.batchBytes-msgSize(first[0]), 1), laneFill)
		batch := make([]jetstream.Msg, 0, 1+len(more))
		for _, m := range append(first, more...) {
			if p.run.Err() != nil || !w.held.admit(p.run, m) {
				_ = m.Nak() // shutting down: left for redelivery at once
				continue
			}
			batch = append(batch, m)
		}
		if p.run.Err() != nil {
			return // the slot may not be held; no lane takes one any more
		}
		o := w.process(p.work, batch, true)
		<-p.slots
		if o.failed && !o.succeeded {
			_ = retry.Sleep(p.run, w.retryDelay(o.minAttempt))
		}
	}
}

// fetch fetches up to n messages (at most maxBytes when > 0) from cons,
// waiting at most wait or until ctx ends.
func fetch(ctx context.Context, cons jetstream.Consumer, n, maxBytes int, wait time.Duration) ([]jetstream.Msg, error) {
	if n <= 0 {
		return nil, nil
	}
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	opts := []jetstream.FetchOpt{jetstream.FetchContext(ctx)}
	if maxBytes > 0 {
		opts = append(opts, jetstream.FetchMaxBytes(maxBytes))
	}
	b, err := cons.Fetch(n, opts...)
	if err != nil {
		return nil, err
	}
	var msgs []jetstream.Msg
	for m := range b.Messages() {
		msgs = append(msgs, m)
	}
	if err := b.Error(); err != nil && !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, context.Canceled) {
		return msgs, err
	}
	return msgs, nil
}
