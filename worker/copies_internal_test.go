package worker

import (
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
)

// TestCopyDuplicate: a copy JetStream reports as a duplicate counts as
// stored only when the message stored under its id is that copy; one that
// collides with another message fails with errCopyDropped.
func TestCopyDuplicate(t *testing.T) {
	t.Parallel()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "S", Subjects: []string{"s.>"}, Duplicates: time.Minute}); err != nil {
		t.Fatal(err)
	}
	c := newCopier(js)
	id := c.id("parked", "RAG_INGEST", 7, time.Unix(0, 42))
	if other := newCopier(js).id("parked", "RAG_INGEST", 7, time.Unix(0, 42)); other == id {
		t.Error("two copiers derive the same id: it is predictable")
	}
	if again := c.id("parked", "RAG_INGEST", 7, time.Unix(0, 42)); again != id {
		t.Error("one copier derives two ids for one copy")
	}
	copyOf := func(body string) *nats.Msg {
		m := nats.NewMsg("s.a")
		m.Data = []byte(body)
		m.Header.Set(jetstream.MsgIDHeader, id)
		m.Header.Set(HeaderVersion, "3")
		return m
	}
	if err := c.publish(ctx, copyOf("event")); err != nil {
		t.Fatal(err)
	}
	if err := c.publish(ctx, copyOf("event")); err != nil {
		t.Errorf("the same copy again (a retry): %v", err)
	}
	if err := c.publish(ctx, copyOf("another event")); !errors.Is(err, errCopyDropped) {
		t.Errorf("a different message under a used id: %v, want errCopyDropped", err)
	}
}
