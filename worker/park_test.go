package worker_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/worker"
)

// waitStaged waits until the stage has succeeded with every doc of docs.
func waitStaged(t *testing.T, st *stage, within time.Duration, docs ...string) {
	t.Helper()
	checkfor.Until(t, within, fmt.Sprintf("%d events processed", len(docs)), func() error {
		for _, doc := range docs {
			if len(st.CallsOf(doc)) == 0 {
				return fmt.Errorf("%s not processed yet", doc)
			}
		}
		return nil
	})
}

// TestFailingCollectionIsolated: the events of a collection that keeps
// failing transiently, ten times more than the shared consumer's delivery
// budget, do not stop another tenant's events, which are processed while
// the failure lasts; the failing events are neither dead-lettered nor
// lost, keep their versions, and all succeed once the cause is fixed.
func TestFailingCollectionIsolated(t *testing.T) {
	t.Parallel()
	fixed := make(chan struct{})
	st := &stage{decide: func(_ context.Context, e pipeline.Event, _ int) error {
		if e.Collection != "broken" {
			return nil
		}
		select {
		case <-fixed:
			return nil
		default:
			return errors.New("embedder: 503 Service Unavailable")
		}
	}}
	// A budget of 20: without parking, the failing events would hold it, each
	// redelivered after a second and then more.
	h := newHarness(t, worker.Config{BatchSize: 10, Concurrency: 1, MaxAckPending: 20, MaxDeliver: 100, MaxRetryDelay: time.Second}, st)
	h.run()
	seqs := map[string]uint64{}
	for i := range 200 {
		doc := fmt.Sprint("broken-", i)
		seqs[doc] = h.publish("rag.ingest.alice.broken", fmt.Sprintf(`{"doc_id":%q,"text":"x"}`, doc), nil)
	}
	var healthy []string
	for i := range 50 {
		healthy = append(healthy, fmt.Sprint("fine-", i))
		h.publish("rag.ingest.bob.docs", fmt.Sprintf(`{"doc_id":%q,"text":"x"}`, healthy[i]), nil)
	}
	waitStaged(t, st, 10*time.Second, healthy...)
	if n := h.parked(); n == 0 {
		t.Error("no event parked while the collection fails")
	}
	close(fixed)
	h.waitSettled(30 * time.Second)
	for doc, seq := range seqs {
		calls := st.CallsOf(doc)
		if len(calls) == 0 {
			t.Fatalf("%s never processed", doc)
		}
		if last := calls[len(calls)-1]; last.event.Version != seq || last.event.UserID != "alice" {
			t.Fatalf("%s processed last as %s version %d, want alice's version %d", doc, last.event.UserID, last.event.Version, seq)
		}
	}
	if dls := h.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters, first: %s", len(dls), dls[0].Header.Get(worker.HeaderError))
	}
	h.wantEvents("docs", 50, 0, 0)
	if got := h.events("broken", "acked"); got != 200 {
		t.Errorf("%d events of the failing collection acknowledged, want 200", got)
	}
}

// TestHangingCollectionDetached: a collection whose processing hangs (an
// embedder that never answers) holds neither the batch's slot nor the
// other collections: after SuspectAfter its events are parked, the other
// events go on, and the hanging ones are settled once they return.
func TestHangingCollectionDetached(t *testing.T) {
	t.Parallel()
	release, wait := block(t)
	st := &stage{decide: func(_ context.Context, e pipeline.Event, _ int) error {
		if e.Collection == "slow" {
			wait()
		}
		return nil
	}}
	h := newHarness(t, worker.Config{BatchSize: 5, Concurrency: 1, SuspectAfter: 300 * time.Millisecond}, st)
	for i := range 10 {
		h.publish("rag.ingest.alice.slow", fmt.Sprintf(`{"doc_id":"slow-%d","text":"x"}`, i), nil)
	}
	var healthy []string
	for i := range 20 {
		healthy = append(healthy, fmt.Sprint("fine-", i))
		h.publish("rag.ingest.bob.docs", fmt.Sprintf(`{"doc_id":%q,"text":"x"}`, healthy[i]), nil)
	}
	h.run()
	waitStaged(t, st, 10*time.Second, healthy...)
	close(release)
	h.waitSettled(20 * time.Second)
	h.wantEvents("slow", 10, 0, 0)
	h.wantEvents("docs", 20, 0, 0)
}

// TestParkedAttemptsCount: attempts count across parking: an event failing
// transiently is dead-lettered with the last error after MaxDeliver
// attempts, the first on the shared consumer and the others parked, each
// after the retry delay.
func TestParkedAttemptsCount(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(context.Context, pipeline.Event, int) error { return errors.New("qdrant: unavailable") }}
	h := newHarness(t, worker.Config{MaxDeliver: 4, MaxRetryDelay: 100 * time.Millisecond}, st)
	h.run()
	body := `{"doc_id":"a","text":"x","version":9}`
	h.publish("rag.ingest.alice.docs", body, nil)
	dls := h.waitDeadLetters(1, 10*time.Second)
	h.waitSettled(10 * time.Second)
	checkDeadLetter(t, dls[0], "rag.dlq.alice.docs", "rag.ingest.alice.docs", body, "9", "still failing after 4 attempts: qdrant: unavailable")
	calls := st.Calls()
	if len(calls) != 4 {
		t.Fatalf("%d attempts, want 4", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		if gap := calls[i].at.Sub(calls[i-1].at); gap < 70*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous one: want the retry delay", i+1, gap)
		}
	}
	h.wantEvents("docs", 0, 3, 1)
}

// TestParkedCopyKeepsPredictableIDsOut: a tenant that published, before the
// event, a message carrying the Nats-Msg-Id the worker used to give a
// requeued copy (ragpipe-requeue-<seq>) or a dead letter (ragpipe-dlq-<seq>)
// no longer makes the copy a dropped duplicate: the event is retried and
// succeeds, and the dead letter is stored.
func TestParkedCopyKeepsPredictableIDsOut(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(_ context.Context, e pipeline.Event, n int) error {
		switch {
		case e.DocID == "bad":
			return pipeline.Permanent(errors.New("unknown op"))
		case e.DocID == "victim" && n < 3:
			return pipeline.Misconfigured(errors.New("embedder: 401 Unauthorized"))
		}
		return nil
	}}
	h := newHarness(t, worker.Config{MaxDeliver: 1, MaxRetryDelay: 50 * time.Millisecond}, st)
	// Sequences 1 and 2 carry the ids of the copies of sequences 3 and 4.
	h.publish("rag.ingest.alice.docs", `{"doc_id":"decoy-1","text":"x"}`, nats.Header{jetstream.MsgIDHeader: {"ragpipe-requeue-3"}})
	h.publish("rag.ingest.alice.docs", `{"doc_id":"decoy-2","text":"x"}`, nats.Header{jetstream.MsgIDHeader: {"ragpipe-parked-3"}})
	h.publish("rag.ingest.alice.docs", `{"doc_id":"victim","text":"x"}`, nil)
	if _, err := h.js.PublishMsg(t.Context(), &nats.Msg{Subject: "rag.dlq.alice.docs", Data: []byte("decoy"),
		Header: nats.Header{jetstream.MsgIDHeader: {"ragpipe-dlq-4"}}}); err != nil {
		t.Fatal(err)
	}
	h.publish("rag.ingest.alice.docs", `{"doc_id":"bad","text":"x"}`, nil)
	h.run()
	dls := h.waitDeadLetters(2, 10*time.Second)
	h.waitSettled(10 * time.Second)
	checkDeadLetter(t, dls[1], "rag.dlq.alice.docs", "rag.ingest.alice.docs", `{"doc_id":"bad","text":"x"}`, "4", "unknown op")
	if n := len(st.CallsOf("victim")); n != 3 {
		t.Errorf("the requeued event was processed %d times, want 3", n)
	}
	h.wantEvents("docs", 3, 2, 1)
}

// TestSlowCollectionNotSuspected: a collection whose batches always take
// longer than SuspectAfter (a large model on CPU) is suspected at most until
// the worker has seen how long its batches take: then its events are
// processed on the shared consumer, not parked one batch after another.
func TestSlowCollectionNotSuspected(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(_ context.Context, e pipeline.Event, _ int) error {
		if e.DocID[len(e.DocID)-1] == '0' { // one event of each batch makes it slow
			time.Sleep(150 * time.Millisecond)
		}
		return nil
	}}
	h := newHarness(t, worker.Config{BatchSize: 10, Concurrency: 1, SuspectAfter: 30 * time.Millisecond}, st)
	h.run()
	for round := range 10 { // a stream: two batches, then two more once they are done
		for i := range 20 {
			h.publish("rag.ingest.alice.docs", fmt.Sprintf(`{"doc_id":"d%d-%d","text":"x"}`, round, i), nil)
		}
		h.waitSettled(10 * time.Second)
	}
	h.wantEvents("docs", 200, 0, 0)
	s, err := h.js.Stream(t.Context(), worker.ParkedStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if parked := info.State.LastSeq; parked > 40 {
		t.Errorf("%d of 200 events parked: the slow collection was taken for a failing one batch after batch", parked)
	}
}

// TestParkedWithoutConsumerRescued: parked events whose collection has no
// parked consumer (deleted as idle while an event was being parked) are
// found by the worker, given a consumer and processed, with the version,
// tenant and attempts their copy carries.
func TestParkedWithoutConsumerRescued(t *testing.T) {
	t.Parallel()
	st := &stage{}
	h := newHarness(t, worker.Config{}, st)
	if _, err := h.js.CreateStream(t.Context(), jetstream.StreamConfig{
		Name: worker.ParkedStream, Subjects: []string{"rag.parked.>"}, Retention: jetstream.WorkQueuePolicy,
	}); err != nil {
		t.Fatal(err)
	}
	m := nats.NewMsg("rag.parked.alice.docs")
	m.Data = []byte(`{"doc_id":"a","text":"x"}`)
	m.Header.Set(worker.HeaderVersion, "7")
	m.Header.Set(worker.HeaderSequence, "3")
	m.Header.Set(worker.HeaderAttempts, "2")
	if _, err := h.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	h.run()
	h.waitSettled(10 * time.Second)
	calls := st.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	if e := calls[0].event; e.UserID != "alice" || e.Collection != "docs" || e.DocID != "a" || e.Version != 7 {
		t.Errorf("processed %+v, want alice's docs/a at version 7", e)
	}
	h.wantEvents("docs", 1, 0, 0)
}
