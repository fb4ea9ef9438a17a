package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// DeadLetter is one message of the dead-letter stream.
type DeadLetter struct {
	Sequence uint64    `json:"seq"`     // in RAG_DLQ
	Time     time.Time `json:"time"`    // when it was dead-lettered
	Subject  string    `json:"subject"` // the original ingest subject
	Reason   string    `json:"reason"`
	Version  uint64    `json:"version,omitempty"` // the event's effective version, 0 if unknown
	// Truncated is the size of the event's body when Body holds only its
	// beginning (it did not fit in a dead letter); 0 when Body is whole.
	Truncated int    `json:"truncated,omitempty"`
	Body      []byte `json:"body"`
}

// DeadLetters reads, replays and purges the dead-letter stream.
type DeadLetters struct {
	js     jetstream.JetStream
	prefix string
	copies *copier
}

// NewDeadLetters returns the dead-letter tools for subjects under prefix.
func NewDeadLetters(js jetstream.JetStream, prefix string) *DeadLetters {
	return &DeadLetters{js: js, prefix: prefix, copies: newCopier(js)}
}

// Filter is the dead-letter subject of a tenant and collection; an empty
// user or collection matches all.
func (d *DeadLetters) Filter(userID, collection string) string {
	return d.prefix + ".dlq." + orWildcard(userID) + "." + orWildcard(collection)
}

func orWildcard(token string) string {
	if token == "" {
		return "*"
	}
	return token
}

// Each calls fn for every dead letter on subjects matching filter, oldest
// first, until fn returns an error or the letters present at the start have
// all been seen.
func (d *DeadLetters) Each(ctx context.Context, filter string, fn func(DeadLetter) error) error {
	stream, err := d.js.Stream(ctx, DLQStream)
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", DLQStream, err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return fmt.Errorf("dead-letter stream %s: %w", DLQStream, err)
	}
	if info.State.Msgs == 0 {
		return nil
	}
	last := info.State.LastSeq
	for seq := info.State.FirstSeq; seq <= last; {
		msg, err := stream.GetMsg(ctx, seq, jetstream.WithGetMsgSubject(filter))
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			return nil // none left at or after seq
		}
		if err != nil {
			return fmt.Errorf("read dead letter %d: %w", seq, err)
		}
		if msg.Sequence > last {
			return nil
		}
		truncated, _ := strconv.Atoi(msg.Header.Get(HeaderTruncated))
		if err := fn(DeadLetter{
			Sequence: msg.Sequence, Time: msg.Time, Subject: msg.Header.Get(HeaderSubject),
			Reason: msg.Header.Get(HeaderError), Version: uintHeader(msg.Header, HeaderVersion),
			Truncated: truncated, Body: msg.Data,
		}); err != nil {
			return err
		}
		seq = msg.Sequence + 1
	}
	return nil
}

// Replayed is what Replay did.
type Replayed struct {
	Replayed int // dead letters republished and deleted
	// Truncated are the dead letters left alone because their body is cut
	// (DeadLetter.Truncated): replaying them would store a different event.
	Truncated []DeadLetter
}

// Replay republishes every dead letter matching filter to its original
// subject, with its version in the Ragpipe-Version header so that it never
// outranks a newer event, and deletes it from the dead-letter stream only
// once JetStream has stored the republished event. A dead letter whose body
// was cut is left alone and reported. A replay run again after an
// interruption between the two steps may store an event twice, which is
// harmless: both copies have the same version.
func (d *DeadLetters) Replay(ctx context.Context, filter string) (Replayed, error) {
	var r Replayed
	stream, err := d.js.Stream(ctx, DLQStream)
	if err != nil {
		return r, fmt.Errorf("dead-letter stream %s: %w", DLQStream, err)
	}
	err = d.Each(ctx, filter, func(dl DeadLetter) error {
		if dl.Truncated > 0 {
			r.Truncated = append(r.Truncated, dl)
			return nil
		}
		m := nats.NewMsg(dl.Subject)
		m.Data = dl.Body
		if dl.Version > 0 {
			m.Header.Set(HeaderVersion, strconv.FormatUint(dl.Version, 10))
		}
		m.Header.Set(jetstream.MsgIDHeader, d.copies.id("replay", DLQStream, dl.Sequence, dl.Time))
		if err := d.copies.publish(ctx, m); err != nil {
			return fmt.Errorf("replay dead letter %d to %s: %w", dl.Sequence, dl.Subject, err)
		}
		if err := stream.DeleteMsg(ctx, dl.Sequence); err != nil {
			return fmt.Errorf("delete replayed dead letter %d: %w", dl.Sequence, err)
		}
		r.Replayed++
		return nil
	})
	return r, err
}

// Purge deletes every dead letter matching filter and returns how many.
func (d *DeadLetters) Purge(ctx context.Context, filter string) (uint64, error) {
	stream, err := d.js.Stream(ctx, DLQStream)
	if err != nil {
		return 0, fmt.Errorf("dead-letter stream %s: %w", DLQStream, err)
	}
	info, err := stream.Info(ctx, jetstream.WithSubjectFilter(filter))
	if err != nil {
		return 0, err
	}
	var n uint64
	for _, count := range info.State.Subjects {
		n += count
	}
	if err := stream.Purge(ctx, jetstream.WithPurgeSubject(filter)); err != nil {
		return 0, fmt.Errorf("purge %s: %w", filter, err)
	}
	return n, nil
}
