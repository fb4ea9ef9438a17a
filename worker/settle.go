package worker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/retry"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// settle acknowledges, retries later or dead-letters one processed event;
// the caller releases its message, and counts it as acknowledged when
// settle returns true. ctx is the processing context: once it is cancelled
// (shutdown), a failed event is left for immediate redelivery.
func (w *Worker) settle(ctx context.Context, d *delivery, err error) (acked bool) {
	e := &d.event
	// Built only when there is something to say: not on the ack of every event.
	log := func() zerolog.Logger {
		return w.cfg.Logger.With().Str("collection", e.Collection).Str("user_id", e.UserID).
			Str("doc_id", e.DocID).Uint64("version", e.Version).Uint64("attempt", d.attempt).Logger()
	}
	switch {
	case err == nil:
		if ackErr := d.msg.Ack(); ackErr != nil {
			l := log()
			l.Warn().Err(ackErr).Msg("ack failed; the event will be redelivered and rewritten idempotently")
			return false
		}
		return true
	case pipeline.IsPermanent(err):
		w.deadLetter(ctx, d.msg, d.origin(), err.Error())
	case ctx.Err() != nil:
		// Shutting down: what did not finish in time is left for another
		// worker, at once.
		_ = d.msg.Nak()
		w.cfg.Metrics.Events.WithLabelValues(e.Collection, telemetry.Retried).Inc()
	case pipeline.IsMisconfigured(err):
		// Not the event's fault (a refused API key, a master key file
		// without the key its tenant's data key is wrapped by): it waits
		// for the fix however long that takes and is never dead-lettered.
		// The stage logged the problem once, and /readyz shows it.
		l := log()
		l.Debug().Err(err).Msg("event waits for the deployment to be fixed")
		if d.attempt >= uint64(w.cfg.MaxDeliver) {
			// Its attempts are used up through no fault of its own: a fresh
			// copy starts counting again.
			w.retry(ctx, d, 0, l)
			return false
		}
		w.retry(ctx, d, d.attempt, l)
	case d.attempt >= uint64(w.cfg.MaxDeliver):
		w.deadLetter(ctx, d.msg, d.origin(), fmt.Sprintf("still failing after %d attempts: %v", d.attempt, err))
	default:
		l := log()
		l.Warn().Err(err).Dur("retry_in", w.retryDelay(d.attempt)).Msg("event failed, will retry")
		w.retry(ctx, d, d.attempt, l)
	}
	return false
}

// retry has a failed event tried again after the retry delay of its
// attempt. An event of the shared consumer is parked (see parking), so that
// it stops holding the consumer's delivery budget; a parked one is
// redelivered by its collection's consumer after the delay. attempts is what
// the event's count starts from: its attempt, or 0 for a fresh count. When
// parking fails, the event is redelivered by the shared consumer.
func (w *Worker) retry(ctx context.Context, d *delivery, attempts uint64, log zerolog.Logger) {
	w.cfg.Metrics.Events.WithLabelValues(d.event.Collection, telemetry.Retried).Inc()
	delay := w.retryDelay(d.attempt)
	if d.parked && attempts > 0 {
		_ = d.msg.NakWithDelay(delay)
		return
	}
	if err := w.parks.park(ctx, d, attempts, delay); err != nil {
		log.Warn().Err(err).Msg("event could not be parked; the shared consumer redelivers it")
		_ = d.msg.NakWithDelay(delay)
	}
}

// retryDelay is the redelivery delay after the attempt-th failed delivery:
// the retry policy's delay, from a second, doubling up to MaxRetryDelay, up to
// 20% shorter at random so that replicas do not retry in lockstep.
func (w *Worker) retryDelay(attempt uint64) time.Duration {
	p := retry.Policy{Initial: time.Second, Max: w.cfg.MaxRetryDelay, Jitter: 0.2}
	return p.Delay(int(min(attempt, 1<<20)))
}

// origin is what a dead letter says of the event it copies.
type origin struct {
	subject            string // the ingest subject
	userID, collection string // "" when the subject has no valid ones
	version, seq       uint64 // 0 when unknown
}

// deadLetter copies the message to the dead-letter stream with the reason and
// then terminates it. If the copy cannot be stored, the message is redelivered
// later instead: it is never dropped. The caller releases the message.
func (w *Worker) deadLetter(ctx context.Context, m jetstream.Msg, o origin, reason string) {
	userID, collection := o.userID, o.collection
	if userID == "" || collection == "" {
		userID, collection = "_invalid", "_invalid"
	}
	if len(reason) > maxReason {
		reason = strings.ToValidUTF8(reason[:maxReason], "") + "…"
	}
	dl := nats.NewMsg(w.cfg.Prefix + ".dlq." + userID + "." + collection)
	dl.Header.Set(HeaderSubject, o.subject)
	dl.Header.Set(HeaderError, reason)
	if o.version > 0 {
		dl.Header.Set(HeaderVersion, strconv.FormatUint(o.version, 10))
	}
	if o.seq > 0 {
		dl.Header.Set(HeaderSequence, strconv.FormatUint(o.seq, 10))
	}
	if meta, err := m.Metadata(); err == nil {
		dl.Header.Set(jetstream.MsgIDHeader, w.copies.idOf("dlq", meta))
	}
	dl.Data = fitBody(dl, m.Data(), int(w.cfg.JetStream.Conn().MaxPayload()))
	log := w.cfg.Logger.With().Str("subject", o.subject).Str("reason", reason).Logger()
	if err := w.copies.publish(ctx, dl); err != nil {
		log.Error().Err(err).Msg("dead letter could not be stored; will retry")
		_ = m.NakWithDelay(w.retryDelay(1))
		return
	}
	_ = m.TermWithReason(reason)
	log.Warn().Msg("event dead-lettered")
	w.cfg.Metrics.Events.WithLabelValues(collection, telemetry.DeadLettered).Inc()
}

// fitBody returns body, or its beginning when it would not fit with msg's
// headers in one message of maxPayload bytes; then it marks msg with the
// original size (HeaderTruncated). msg's other headers must all be set.
func fitBody(msg *nats.Msg, body []byte, maxPayload int) []byte {
	if headerSize(msg.Header)+len(body) <= maxPayload {
		return body
	}
	msg.Header.Set(HeaderTruncated, strconv.Itoa(len(body)))
	limit := max(maxPayload-headerSize(msg.Header), 0)
	return body[:min(limit, len(body))]
}
