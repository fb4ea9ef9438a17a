package worker_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/worker"
)

// TestAckOnlyAfterSuccess: while the stage is still working on an event its
// message stays unacknowledged in the stream; once the stage reports
// success it is acknowledged, and removed from the work queue.
func TestAckOnlyAfterSuccess(t *testing.T) {
	t.Parallel()
	release, wait := block(t)
	st := &stage{decide: func(context.Context, pipeline.Event, int) error { wait(); return nil }}
	h := newHarness(t, worker.Config{}, st)
	h.run()
	h.publish("rag.ingest.alice.docs", `{"doc_id":"a","text":"hello","version":7,"metadata":{"env":"prod"}}`, nil)

	checkfor.Until(t, 10*time.Second, "the stage called", func() error {
		if len(st.Calls()) == 0 {
			return errors.New("not yet")
		}
		return nil
	})
	if info := h.consumer(); info.NumAckPending != 1 {
		t.Errorf("%d unacknowledged while the stage works, want 1", info.NumAckPending)
	}
	if n := h.streamMsgs(worker.IngestStream); n != 1 {
		t.Errorf("%d messages in %s while the stage works, want 1", n, worker.IngestStream)
	}
	h.wantEvents("docs", 0, 0, 0)

	close(release)
	h.waitSettled(10 * time.Second)
	h.wantEvents("docs", 1, 0, 0)
	if info := h.consumer(); info.NumRedelivered != 0 {
		t.Errorf("%d redelivered", info.NumRedelivered)
	}
	calls := st.Calls()
	if len(calls) != 1 {
		t.Fatalf("%d calls, want 1", len(calls))
	}
	e := calls[0].event
	if e.Op != pipeline.OpUpsert || e.UserID != "alice" || e.Collection != "docs" || e.DocID != "a" ||
		e.Text != "hello" || e.Version != 7 || e.Metadata["env"] != "prod" {
		t.Errorf("the stage got %+v", e)
	}
}

// TestSettlePerEvent: the stage answers each event of a batch on its own,
// and each message is settled by its own answer.
func TestSettlePerEvent(t *testing.T) {
	t.Parallel()
	cases := []struct {
		doc       string
		err       func(attempt int) error
		wantCalls int
	}{
		{"ok", func(int) error { return nil }, 1},
		{"transient-once", func(n int) error {
			if n == 1 {
				return errors.New("store unavailable")
			}
			return nil
		}, 2},
		{"permanent", func(int) error { return pipeline.Permanent(errors.New("vector of 3 dimensions, collection has 8")) }, 1},
	}
	st := &stage{decide: func(_ context.Context, e pipeline.Event, n int) error {
		for _, c := range cases {
			if c.doc == e.DocID {
				return c.err(n)
			}
		}
		return fmt.Errorf("unexpected doc %q", e.DocID)
	}}
	h := newHarness(t, worker.Config{MaxRetryDelay: 50 * time.Millisecond, FlushInterval: 50 * time.Millisecond}, st)
	for _, c := range cases { // published before the worker runs: one batch
		h.publish("rag.ingest.alice.docs", fmt.Sprintf(`{"doc_id":%q,"text":"x"}`, c.doc), nil)
	}
	h.run()
	h.waitSettled(10 * time.Second)
	for _, c := range cases {
		if got := len(st.CallsOf(c.doc)); got != c.wantCalls {
			t.Errorf("%s: %d calls, want %d", c.doc, got, c.wantCalls)
		}
	}
	h.wantEvents("docs", 2, 1, 1)
	if dls := h.deadLetters(); len(dls) != 1 || !strings.Contains(string(dls[0].Data), `"permanent"`) {
		t.Errorf("dead letters %v, want the permanent event's only", dls)
	}
}

// TestTransientRetriedWithGrowingDelay: an event that fails transiently is
// redelivered, counted as retried, after a delay of about a second that
// grows with each attempt, and acknowledged once it succeeds.
func TestTransientRetriedWithGrowingDelay(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(_ context.Context, _ pipeline.Event, n int) error {
		if n < 3 {
			return errors.New("qdrant: unavailable")
		}
		return nil
	}}
	h := newHarness(t, worker.Config{}, st) // default MaxRetryDelay: the delays are not capped
	h.run()
	h.publish("rag.ingest.alice.docs", `{"doc_id":"a","text":"hello"}`, nil)
	h.waitSettled(30 * time.Second)

	calls := st.Calls()
	if len(calls) != 3 {
		t.Fatalf("%d calls, want 3", len(calls))
	}
	gap1, gap2 := calls[1].at.Sub(calls[0].at), calls[2].at.Sub(calls[1].at)
	// About a second, then about twice that: with the jitter, [0.8s, 1s]
	// then [1.6s, 2s]; a delay that does not grow stays under 1.2s.
	if gap1 < 700*time.Millisecond || gap2 < 1400*time.Millisecond || gap2 <= gap1 {
		t.Errorf("redelivered after %v then %v: want about a second, then about twice that", gap1, gap2)
	}
	h.wantEvents("docs", 1, 2, 0)
	if dls := h.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters for a transient failure", len(dls))
	}
}

// TestRetryDelayCapped: MaxRetryDelay bounds the delay between attempts.
func TestRetryDelayCapped(t *testing.T) {
	t.Parallel()
	const maxDelay = 100 * time.Millisecond
	st := &stage{decide: func(_ context.Context, _ pipeline.Event, n int) error {
		if n < 5 {
			return errors.New("timeout")
		}
		return nil
	}}
	h := newHarness(t, worker.Config{MaxRetryDelay: maxDelay}, st)
	h.run()
	h.publish("rag.ingest.alice.docs", `{"doc_id":"a","text":"hello"}`, nil)
	h.waitSettled(20 * time.Second)
	calls := st.Calls()
	if len(calls) != 5 {
		t.Fatalf("%d calls, want 5", len(calls))
	}
	for i := 1; i < len(calls); i++ {
		// Uncapped, the third attempt would come 2s after the second.
		if gap := calls[i].at.Sub(calls[i-1].at); gap < maxDelay*7/10 || gap > 1200*time.Millisecond {
			t.Errorf("attempt %d came %v after the previous one, want about %v", i+1, gap, maxDelay)
		}
	}
	h.wantEvents("docs", 1, 4, 0)
}

// TestPermanentDeadLettered: an event the stage rejects for good is
// terminated after one attempt and copied to rag.dlq.<user>.<collection>
// with its subject, reason, effective version and original body.
func TestPermanentDeadLettered(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, body string
		header     nats.Header
		version    string // "seq": the stream sequence
	}{
		{"body version", `{"doc_id":"a","text":"x","version":42}`, nil, "42"},
		{"header version", `{"doc_id":"a","text":"x"}`, nats.Header{worker.HeaderVersion: {"9"}}, "9"},
		{"body wins over header", `{"doc_id":"a","text":"x","version":42}`, nats.Header{worker.HeaderVersion: {"9"}}, "42"},
		{"stream sequence", `{"doc_id":"a","text":"x"}`, nil, "seq"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st := &stage{decide: func(context.Context, pipeline.Event, int) error {
				return pipeline.Permanent(errors.New(`collection "docs" has 8 dimensions, the vector 3`))
			}}
			h := newHarness(t, worker.Config{}, st)
			h.run()
			seq := h.publish("rag.ingest.alice.docs", c.body, c.header)
			dls := h.waitDeadLetters(1, 10*time.Second)
			h.waitSettled(10 * time.Second)
			if c.version == "seq" {
				c.version = fmt.Sprint(seq)
			}
			checkDeadLetter(t, dls[0], "rag.dlq.alice.docs", "rag.ingest.alice.docs", c.body, c.version, "has 8 dimensions, the vector 3")
			// Its id makes a second copy by this worker a duplicate, and nobody
			// else can know it.
			if id := dls[0].Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(id, "ragpipe-dlq-") || id == fmt.Sprint("ragpipe-dlq-", seq) {
				t.Errorf("%s %q: want an unpredictable ragpipe-dlq- id", jetstream.MsgIDHeader, id)
			}
			if got := dls[0].Header.Get(worker.HeaderSequence); got != fmt.Sprint(seq) {
				t.Errorf("%s %q, want %d", worker.HeaderSequence, got, seq)
			}
			if n := len(st.Calls()); n != 1 {
				t.Errorf("%d calls, want 1: a permanent failure is not retried", n)
			}
			h.wantEvents("docs", 0, 0, 1)
		})
	}
}

// TestDeliveredTooOftenDeadLettered: a message already delivered more than
// MaxDeliver times (earlier attempts died without settling it, as in a
// crash) is dead-lettered without reaching the stage.
func TestDeliveredTooOftenDeadLettered(t *testing.T) {
	t.Parallel()
	st := &stage{}
	h := newHarness(t, worker.Config{MaxDeliver: 2}, st)
	body := `{"doc_id":"a","text":"hello"}`
	seq := h.publish("rag.ingest.alice.docs", body, nil)
	c, err := h.js.Consumer(t.Context(), worker.IngestStream, worker.ConsumerName)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // two deliveries that end without the worker settling them
		batch, err := c.Fetch(1, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			t.Fatal(err)
		}
		for m := range batch.Messages() {
			if err := m.Nak(); err != nil {
				t.Fatal(err)
			}
		}
		if batch.Error() != nil {
			t.Fatal(batch.Error())
		}
	}
	h.run()
	dls := h.waitDeadLetters(1, 10*time.Second)
	h.waitSettled(10 * time.Second)
	checkDeadLetter(t, dls[0], "rag.dlq.alice.docs", "rag.ingest.alice.docs", body, fmt.Sprint(seq),
		"delivered 3 times, more than RAGPIPE_MAX_DELIVER=2")
	if n := len(st.Calls()); n != 0 {
		t.Errorf("the stage was called %d times", n)
	}
	h.wantEvents("docs", 0, 0, 1)
}

// TestMisconfiguredRequeued: an event failing because of the deployment
// (the embedder refuses the API key) is retried beyond MaxDeliver and never
// dead-lettered: it is parked with its subject, body, own headers and
// effective version, without NATS's headers, the original is acknowledged,
// and when its attempts run out it is parked again as a fresh copy.
func TestMisconfiguredRequeued(t *testing.T) {
	t.Parallel()
	inspected, wait := block(t)
	misconfigured := pipeline.Misconfigured(errors.New("embedder: 401 Unauthorized"))
	st := &stage{decide: func(_ context.Context, _ pipeline.Event, n int) error {
		switch {
		case n == 2: // the parked copy's first attempt: the test looks at the copy
			wait()
			return misconfigured
		case n < 5:
			return misconfigured
		}
		return nil
	}}
	h := newHarness(t, worker.Config{MaxDeliver: 2, MaxRetryDelay: 20 * time.Millisecond}, st)
	h.run()
	body := `{"doc_id":"a","text":"hello"}`
	// A producer's dedup id and publish expectation hold for the original
	// only: the copy would be dropped or refused if it carried them.
	seq := h.publish("rag.ingest.alice.docs", body, nats.Header{
		jetstream.MsgIDHeader: {"producer-1"}, jetstream.ExpectedLastSubjSeqHeader: {"0"}, "Trace-Id": {"t-1"},
	})

	checkfor.Until(t, 10*time.Second, "the parked copy processed", func() error {
		if n := len(st.Calls()); n < 2 {
			return fmt.Errorf("%d calls", n)
		}
		return nil
	})
	s, err := h.js.Stream(t.Context(), worker.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetMsg(t.Context(), seq); !errors.Is(err, jetstream.ErrMsgNotFound) {
		t.Errorf("the original is still in the stream (err %v): it should have been acknowledged", err)
	}
	parked, err := h.js.Stream(t.Context(), worker.ParkedStream)
	if err != nil {
		t.Fatal(err)
	}
	cp, err := parked.GetLastMsgForSubject(t.Context(), "rag.parked.alice.docs")
	if err != nil {
		t.Fatalf("the parked copy: %v", err)
	}
	if string(cp.Data) != body {
		t.Errorf("the copy is %q", cp.Data)
	}
	for k, want := range map[string]string{
		worker.HeaderVersion:                fmt.Sprint(seq), // still ranks as the original
		worker.HeaderSequence:               fmt.Sprint(seq),
		worker.HeaderAttempts:               "1",
		"Trace-Id":                          "t-1",
		jetstream.ExpectedLastSubjSeqHeader: "",
	} {
		if got := cp.Header.Get(k); got != want {
			t.Errorf("the copy's %s is %q, want %q", k, got, want)
		}
	}
	if id := cp.Header.Get(jetstream.MsgIDHeader); !strings.HasPrefix(id, "ragpipe-parked-") {
		t.Errorf("the copy's %s is %q", jetstream.MsgIDHeader, id)
	}
	close(inspected)

	h.waitSettled(10 * time.Second)
	checkfor.Until(t, 10*time.Second, "the parked stream empty", func() error {
		if n := h.streamMsgs(worker.ParkedStream); n != 0 {
			return fmt.Errorf("%d parked", n)
		}
		return nil
	})
	calls := st.Calls()
	if len(calls) != 5 {
		t.Errorf("%d calls, want 5", len(calls))
	}
	for _, c := range calls {
		if c.event.Version != seq {
			t.Errorf("attempt %d had version %d, want the original's %d", c.attempt, c.event.Version, seq)
		}
	}
	if dls := h.deadLetters(); len(dls) != 0 {
		t.Errorf("%d dead letters for a misconfiguration: %s", len(dls), dls[0].Header.Get(worker.HeaderError))
	}
	h.wantEvents("docs", 1, 4, 0)
}
