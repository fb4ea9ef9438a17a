package worker

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// errCopyDropped is the failure of a copy that JetStream reported as a
// duplicate of a message that is not this copy.
var errCopyDropped = errors.New("the copy was dropped as a duplicate of another message")

// copier publishes the copies ragpipe makes of stored messages: dead
// letters, parked events and replayed dead letters. Each copy carries a
// Nats-Msg-Id derived from the original message (stream, sequence, time it
// was stored) and a secret drawn when the copier is made, so that a retry of
// the same copy by the same process is deduplicated while nobody else can
// predict the id, publish under it first and have the copy dropped.
type copier struct {
	js  jetstream.JetStream
	key [32]byte
}

func newCopier(js jetstream.JetStream) *copier {
	c := &copier{js: js}
	_, _ = rand.Read(c.key[:]) // never fails (crypto/rand)
	return c
}

// id returns the Nats-Msg-Id of the copy of one kind ("dlq", "parked",
// "replay") of the message stored at seq in stream at time stored.
func (c *copier) id(kind, stream string, seq uint64, stored time.Time) string {
	mac := hmac.New(sha256.New, c.key[:])
	fmt.Fprintf(mac, "%s\x00%s\x00%d\x00%d", kind, stream, seq, stored.UnixNano())
	return "ragpipe-" + kind + "-" + base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:18])
}

// idOf is id for a message received from a consumer.
func (c *copier) idOf(kind string, meta *jetstream.MsgMetadata) string {
	return c.id(kind, meta.Stream, meta.Sequence.Stream, meta.Timestamp)
}

// publish stores cp, which carries its id. When JetStream answers that the
// id is a duplicate, the copy counts as stored only if the message stored
// under that id is this very copy (an earlier attempt whose answer was
// lost); otherwise publish fails with errCopyDropped, so that the caller
// keeps the original instead of acknowledging or deleting it.
func (c *copier) publish(ctx context.Context, cp *nats.Msg) error {
	ack, err := c.js.PublishMsg(ctx, cp)
	if err != nil {
		return err
	}
	if !ack.Duplicate {
		return nil
	}
	stream, err := c.js.Stream(ctx, ack.Stream)
	if err != nil {
		return fmt.Errorf("%w (%s): %w", errCopyDropped, ack.Stream, err)
	}
	stored, err := stream.GetMsg(ctx, ack.Sequence)
	if err != nil {
		return fmt.Errorf("%w (message %d of %s): %w", errCopyDropped, ack.Sequence, ack.Stream, err)
	}
	if stored.Subject != cp.Subject || !bytes.Equal(stored.Data, cp.Data) ||
		stored.Header.Get(jetstream.MsgIDHeader) != cp.Header.Get(jetstream.MsgIDHeader) ||
		stored.Header.Get(HeaderVersion) != cp.Header.Get(HeaderVersion) {
		return fmt.Errorf("%w: message %d of %s", errCopyDropped, ack.Sequence, ack.Stream)
	}
	return nil
}

// headerSize is the size of h as NATS sends it, which counts towards the
// server's largest message.
func headerSize(h nats.Header) int {
	n := len("NATS/1.0\r\n\r\n")
	for k, vs := range h {
		for _, v := range vs {
			n += len(k) + len(": \r\n") + len(v)
		}
	}
	return n
}

// uintHeader reads a decimal header; 0 when absent or not a number.
func uintHeader(h nats.Header, key string) uint64 {
	v, _ := strconv.ParseUint(h.Get(key), 10, 64)
	return v
}
