package worker

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// delivery is one received event and what settling it needs.
type delivery struct {
	msg     jetstream.Msg
	subject string // the ingest subject: the message's, or the one a parked copy came from
	event   pipeline.Event
	seq     uint64 // the event's sequence in the ingest stream
	attempt uint64 // the number of this attempt, from 1, counting the attempts before it was parked
	parked  bool   // read from the parked stream
}

func (d *delivery) origin() origin {
	return origin{subject: d.subject, userID: d.event.UserID, collection: d.event.Collection, version: d.event.Version, seq: d.seq}
}

// outcome sums up a processed batch.
type outcome struct {
	succeeded  bool   // some event was stored
	failed     bool   // some event failed and will be retried
	minAttempt uint64 // the lowest attempt of the failed events
}

func (o *outcome) add(p outcome) {
	if p.failed && (!o.failed || p.minAttempt < o.minAttempt) {
		o.minAttempt = p.minAttempt
	}
	o.succeeded, o.failed = o.succeeded || p.succeeded, o.failed || p.failed
}

// process decodes a batch, hands the events of each collection to the
// processor in a call of its own, all calls at once, and settles every
// message. Events of
// a collection known to be failing are parked without being processed.
//
// For the shared consumer (parked false) it returns once every collection is
// settled or has been processing for longer than it usually takes (see
// parking.suspectAfter): such a collection is treated as failing from then
// on, and its events finish in the background (w.running), so that a
// collection whose embedder or store hangs holds neither the batch's slot
// nor the next batches. A parked batch is one collection's and is waited
// for.
func (w *Worker) process(ctx context.Context, batch []jetstream.Msg, parked bool) outcome {
	w.cfg.Metrics.BatchSize.Observe(float64(len(batch)))
	var order []string
	groups := make(map[string][]*delivery)
	deliveries := make([]delivery, len(batch))
	for i, m := range batch {
		if d := &deliveries[i]; w.receive(ctx, m, parked, d) {
			c := d.event.Collection
			if groups[c] == nil {
				order = append(order, c)
			}
			groups[c] = append(groups[c], d)
		}
	}
	type result struct {
		collection string
		outcome
	}
	results := make(chan result, len(order))
	running := make(map[string]bool)
	for _, c := range order {
		if !parked && w.parks.routes(c) {
			w.parkAll(ctx, groups[c])
			continue
		}
		running[c] = true
		w.running.Go(func() { results <- result{c, w.processGroup(ctx, c, groups[c])} })
	}
	var sum outcome
	start := time.Now()
	suspectAt := make(map[string]time.Time, len(running))
	for c := range running {
		suspectAt[c] = start.Add(w.parks.suspectAfter(c))
	}
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for len(running) > 0 {
		var fire <-chan time.Time
		if !parked {
			next := time.Time{}
			for c := range running {
				if next.IsZero() || suspectAt[c].Before(next) {
					next = suspectAt[c]
				}
			}
			timer.Reset(time.Until(next))
			fire = timer.C
		}
		select {
		case r := <-results:
			sum.add(r.outcome)
			delete(running, r.collection)
		case now := <-fire:
			for len(results) > 0 { // settled meanwhile: not suspect
				r := <-results
				sum.add(r.outcome)
				delete(running, r.collection)
			}
			for c := range running {
				if !now.Before(suspectAt[c]) {
					w.parks.suspect(ctx, c) // it goes on in the background
					delete(running, c)
				}
			}
		}
	}
	return sum
}

// errUnanswered fails an event the processor gave no answer for.
var errUnanswered = errors.New("the processor returned no answer for this event")

// processGroup processes the events of one collection, settles them,
// releases their messages and records how the collection fared.
func (w *Worker) processGroup(ctx context.Context, collection string, ds []*delivery) outcome {
	events := make([]pipeline.Event, len(ds))
	for i, d := range ds {
		events[i] = d.event
	}
	start := time.Now()
	fenced, release := w.held.fence(ctx, ds)
	errs := w.cfg.Processor.Process(fenced, events)
	release()
	took := time.Since(start)
	var o outcome
	acked := 0
	msgs := make([]jetstream.Msg, len(ds))
	for i, d := range ds {
		err := errUnanswered
		if i < len(errs) {
			err = errs[i]
		}
		switch {
		case err == nil:
			o.succeeded = true
		case !pipeline.IsPermanent(err):
			o.add(outcome{failed: true, minAttempt: d.attempt})
		}
		if w.settle(ctx, d, err) {
			acked++
		}
		msgs[i] = d.msg
	}
	w.held.remove(msgs...)
	if acked > 0 {
		w.cfg.Metrics.Events.WithLabelValues(collection, telemetry.Acked).Add(float64(acked))
	}
	if len(errs) != len(ds) {
		w.cfg.Logger.Error().Str("collection", collection).Int("events", len(ds)).Int("answers", len(errs)).
			Msg("the processor did not answer once per event; the unanswered events are retried")
	}
	if ctx.Err() == nil {
		w.parks.record(collection, o)
		if o.succeeded && !o.failed && !ds[0].parked {
			w.parks.observe(collection, took)
		}
	}
	return o
}

// parkAll parks the events of a failing collection without processing them:
// this delivery was not an attempt.
func (w *Worker) parkAll(ctx context.Context, ds []*delivery) {
	msgs := make([]jetstream.Msg, len(ds))
	for i, d := range ds {
		if err := w.parks.park(ctx, d, d.attempt-1, 0); err != nil {
			// Parking is broken: the event is processed here again.
			w.cfg.Logger.Warn().Err(err).Str("collection", d.event.Collection).Msg("event could not be parked; it is redelivered")
			w.parks.unroute(d.event.Collection)
			_ = d.msg.Nak()
		}
		msgs[i] = d.msg
	}
	w.held.remove(msgs...)
}

// receive reads one message into d and returns true, or settles it at once
// and returns false: a message that is not an event or has used up its
// attempts is dead-lettered, and the first delivery of a parked copy that
// asks for a delay is redelivered after it.
func (w *Worker) receive(ctx context.Context, m jetstream.Msg, parked bool, d *delivery) bool {
	meta, err := m.Metadata()
	if err != nil {
		w.cfg.Logger.Error().Err(err).Str("subject", m.Subject()).Msg("message without JetStream metadata")
		_ = m.Term()
		w.held.remove(m)
		return false
	}
	*d = delivery{msg: m, subject: m.Subject(), seq: meta.Sequence.Stream, attempt: meta.NumDelivered, parked: parked}
	if parked {
		h := m.Headers()
		d.subject = w.cfg.Prefix + ".ingest." + strings.TrimPrefix(d.subject, w.cfg.Prefix+".parked.")
		d.seq = cmp.Or(uintHeader(h, HeaderSequence), d.seq)
		d.attempt += uintHeader(h, HeaderAttempts)
		if wait, err := time.ParseDuration(h.Get(HeaderRetryIn)); err == nil && wait > 0 {
			if meta.NumDelivered == 1 {
				_ = m.NakWithDelay(min(wait, w.cfg.MaxRetryDelay))
				w.held.remove(m)
				return false
			}
			d.attempt-- // the first delivery was that wait
		}
	}
	e, err := pipeline.Decode(w.decode, d.subject, m.Data(), m.Headers().Get(HeaderVersion), d.seq)
	if err != nil {
		r := &pipeline.Rejection{}
		errors.As(err, &r) // Decode fails only with rejections
		w.deadLetter(ctx, m, origin{subject: d.subject, userID: r.UserID, collection: r.Collection, version: r.Version, seq: d.seq},
			cmp.Or(r.Reason, err.Error()))
		w.held.remove(m)
		return false
	}
	d.event = e
	if d.attempt > uint64(w.cfg.MaxDeliver) {
		// A previous attempt died without settling (e.g. the process crashed).
		w.deadLetter(ctx, m, d.origin(), fmt.Sprintf("delivered %d times, more than RAGPIPE_MAX_DELIVER=%d", d.attempt, w.cfg.MaxDeliver))
		w.held.remove(m)
		return false
	}
	return true
}
