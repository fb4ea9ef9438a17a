package worker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/ragpipe/ragpipe/internal/retry"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/rs/zerolog"
)

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
