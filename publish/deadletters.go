package publish

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Names the worker gives its dead letters (CONTRACT §2).
const (
	ingestStream  = "RAG_INGEST"
	dlqStream     = "RAG_DLQ"
	headerSubject = "Ragpipe-Subject"
	headerError   = "Ragpipe-Error"
	headerVersion = "Ragpipe-Version"
	// headerSequence, on a dead letter and on a parked copy, is the event's
	// sequence in RAG_INGEST.
	headerSequence = "Ragpipe-Sequence"
	parkedStream   = "RAG_PARKED" // events of failing collections, retried apart
)

// deadLetter is what Wait reads of one message of RAG_DLQ.
type deadLetter struct {
	subject string // the event's subject
	seq     uint64 // the event's stream sequence, 0 if unknown
	version uint64 // the event's effective version, 0 if unknown
	docID   string // the body's doc_id, if readable
	reason  string
}

// deadLetterStart returns the first sequence of RAG_DLQ that a dead letter
// of an event published from now on can have.
func deadLetterStart(ctx context.Context, js jetstream.JetStream, prefix string) (uint64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, dlqStream)
	if err != nil {
		return 0, fmt.Errorf("%s (dead letters on %s.dlq.>): %w", dlqStream, prefix, err)
	}
	info := s.CachedInfo()
	return info.State.LastSeq + 1, nil
}

// readDeadLetter parses one dead letter.
func readDeadLetter(m jetstream.Msg) deadLetter {
	h := m.Headers()
	dl := deadLetter{subject: h.Get(headerSubject), reason: h.Get(headerError)}
	dl.seq, _ = strconv.ParseUint(h.Get(headerSequence), 10, 64)
	dl.version, _ = strconv.ParseUint(h.Get(headerVersion), 10, 64)
	dl.docID = docIDOf(m.Data())
	return dl
}

// deadLetterWatch reads RAG_DLQ from a sequence on, in the background.
type deadLetterWatch struct {
	mu     sync.Mutex
	unread []deadLetter
	wake   chan struct{} // a dead letter arrived
	stop   func()
}

// watchDeadLetters starts reading RAG_DLQ from sequence from.
func watchDeadLetters(ctx context.Context, js jetstream.JetStream, from uint64) (*deadLetterWatch, error) {
	c, err := js.OrderedConsumer(ctx, dlqStream, jetstream.OrderedConsumerConfig{
		DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: from,
	})
	if err != nil {
		return nil, err
	}
	w := &deadLetterWatch{wake: make(chan struct{}, 1)}
	cc, err := c.Consume(func(m jetstream.Msg) {
		dl := readDeadLetter(m)
		w.mu.Lock()
		w.unread = append(w.unread, dl)
		w.mu.Unlock()
		select {
		case w.wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return nil, err
	}
	w.stop = cc.Stop
	return w, nil
}

// take returns the dead letters read since the last call; none from a nil watch.
func (w *deadLetterWatch) take() []deadLetter {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	out := w.unread
	w.unread = nil
	return out
}

// woken is ready when a dead letter arrived; never for a nil watch.
func (w *deadLetterWatch) woken() <-chan struct{} {
	if w == nil {
		return nil
	}
	return w.wake
}
