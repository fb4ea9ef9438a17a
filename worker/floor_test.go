package worker_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// floorNATS is an embedded NATS server for the floor tests, and a counted
// VersionFloor returning floor.
type floorNATS struct {
	t      *testing.T
	js     jetstream.JetStream
	floor  atomic.Uint64
	called atomic.Int32
}

func newFloorNATS(t *testing.T) *floorNATS {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	return &floorNATS{t: t, js: js}
}

// start creates a worker with the VersionFloor.
func (f *floorNATS) start() error {
	_, err := worker.New(f.t.Context(), worker.Config{
		JetStream: f.js, Processor: &stage{}, Metrics: telemetry.NewMetrics(),
		VersionFloor: func(context.Context) (uint64, error) {
			f.called.Add(1)
			return f.floor.Load(), nil
		},
	})
	return err
}

// publish publishes an event and returns its sequence, its default version.
func (f *floorNATS) publish() uint64 {
	f.t.Helper()
	ack, err := f.js.Publish(f.t.Context(), "rag.ingest.u.c", []byte(`{"doc_id":"d","text":"t"}`))
	if err != nil {
		f.t.Fatal(err)
	}
	return ack.Sequence
}

// operatorStream creates RAG_INGEST as an operator would, without a first
// sequence, holding n messages.
func (f *floorNATS) operatorStream(n int) jetstream.Stream {
	f.t.Helper()
	s, err := f.js.CreateStream(f.t.Context(), jetstream.StreamConfig{
		Name: worker.IngestStream, Subjects: []string{"rag.ingest.>"}, Retention: jetstream.WorkQueuePolicy,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	for range n {
		f.publish()
	}
	return s
}

// deleteStream deletes RAG_INGEST, its consumer with it.
func (f *floorNATS) deleteStream() {
	f.t.Helper()
	if err := f.js.DeleteStream(f.t.Context(), worker.IngestStream); err != nil {
		f.t.Fatal(err)
	}
}

// TestFloorCreatesAbove: a worker creating RAG_INGEST starts it above the
// floor; once checked, the stream is not checked again, until it is
// created anew, even from a copy of its and its consumer's configurations.
func TestFloorCreatesAbove(t *testing.T) {
	f := newFloorNATS(t)
	f.floor.Store(41)
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	if seq := f.publish(); seq != 42 {
		t.Fatalf("first event after a floor of 41: sequence %d, want 42", seq)
	}
	f.floor.Store(1000) // a checked stream is not checked again
	if err := f.start(); err != nil || f.called.Load() != 1 {
		t.Fatalf("restart: %v, floor computed %d times, want 1", err, f.called.Load())
	}
	if seq := f.publish(); seq != 43 {
		t.Fatalf("after a restart: sequence %d, want 43", seq)
	}

	s, err := f.js.Stream(t.Context(), worker.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	c, err := s.Consumer(t.Context(), worker.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	stream, consumer := s.CachedInfo().Config, c.CachedInfo().Config // the check's mark included
	f.deleteStream()
	if s, err = f.js.CreateStream(t.Context(), stream); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateConsumer(t.Context(), consumer); err != nil {
		t.Fatal(err)
	}
	if err := f.start(); err != nil || f.called.Load() != 2 {
		t.Fatalf("on a copy: %v, floor computed %d times, want 2", err, f.called.Load())
	}
	if seq := f.publish(); seq != 1001 {
		t.Fatalf("after the stream was created again from a copy: sequence %d, want 1001", seq)
	}
}

// TestFloorRaisesEmptyStream: a stream an operator created again, empty,
// is raised above the floor by a purge (on the embedded nats-server: a purge
// up to a sequence beyond the last moves the next one there), and its
// consumer delivers from there.
func TestFloorRaisesEmptyStream(t *testing.T) {
	f := newFloorNATS(t)
	s := f.operatorStream(3)
	if err := s.Purge(t.Context()); err != nil { // as if consumed
		t.Fatal(err)
	}
	f.floor.Store(100)
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	if seq := f.publish(); seq != 101 {
		t.Fatalf("first event after raising to a floor of 100: sequence %d, want 101", seq)
	}
	c, err := f.js.Consumer(t.Context(), worker.IngestStream, worker.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Fetch(1, jetstream.FetchMaxWait(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for m := range msgs.Messages() {
		meta, _ := m.Metadata()
		seqs = append(seqs, meta.Sequence.Stream)
	}
	if fmt.Sprint(seqs) != "[101]" {
		t.Fatalf("consumer delivered sequences %v, want [101]", seqs)
	}
	// Checked: a higher floor later changes nothing.
	f.floor.Store(500)
	if err := f.start(); err != nil || f.called.Load() != 1 {
		t.Fatalf("restart: %v, floor computed %d times, want 1", err, f.called.Load())
	}
}

// TestFloorRefusesBacklog: a stream created again that already holds events
// below the floor is refused, and its events are left alone; once they are
// gone, it is raised.
func TestFloorRefusesBacklog(t *testing.T) {
	f := newFloorNATS(t)
	s := f.operatorStream(2)
	f.floor.Store(100)
	if err := f.start(); !errors.Is(err, worker.ErrBelowFloor) {
		t.Fatalf("New on a stream holding 2 events below the floor: %v, want ErrBelowFloor", err)
	}
	info, err := s.Info(t.Context())
	if err != nil || info.State.Msgs != 2 {
		t.Fatalf("after the refusal the stream holds %+v (%v), want its 2 events", info.State, err)
	}
	if err := s.Purge(t.Context(), jetstream.WithPurgeSequence(101)); err != nil { // the fix the error names
		t.Fatal(err)
	}
	if err := f.start(); err != nil {
		t.Fatal(err)
	}
	if seq := f.publish(); seq != 101 {
		t.Fatalf("after the purge: sequence %d, want 101", seq)
	}
}

// TestFloorConcurrentStarts: workers starting together, on a missing
// stream and on an empty unchecked one, all start, and the stream starts
// just above the floor.
func TestFloorConcurrentStarts(t *testing.T) {
	f := newFloorNATS(t)
	f.floor.Store(50)
	starts := func() {
		t.Helper()
		var wg sync.WaitGroup
		errs := make([]error, 4)
		for i := range errs {
			wg.Go(func() { errs[i] = f.start() })
		}
		wg.Wait()
		if err := errors.Join(errs...); err != nil {
			t.Fatal(err)
		}
	}
	starts()
	if seq := f.publish(); seq != 51 {
		t.Fatalf("after concurrent creations: sequence %d, want 51", seq)
	}
	f.deleteStream()
	f.operatorStream(0)
	f.floor.Store(70)
	starts()
	if seq := f.publish(); seq != 71 {
		t.Fatalf("after concurrent raises: sequence %d, want 71", seq)
	}
}

// TestFloorErrors: a floor that cannot be computed, or that leaves no room
// below the largest version, stops New.
func TestFloorErrors(t *testing.T) {
	f := newFloorNATS(t)
	f.floor.Store(pipeline.MaxVersion)
	if err := f.start(); !errors.Is(err, worker.ErrBelowFloor) {
		t.Fatalf("floor at the largest version: %v, want ErrBelowFloor", err)
	}
	broken := errors.New("store unavailable")
	_, err := worker.New(t.Context(), worker.Config{
		JetStream: f.js, Processor: &stage{}, Metrics: telemetry.NewMetrics(),
		VersionFloor: func(context.Context) (uint64, error) { return 0, broken },
	})
	if !errors.Is(err, broken) {
		t.Fatalf("failing floor: %v, want it wrapped", err)
	}
}
