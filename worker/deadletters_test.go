package worker_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/worker"
)

// letter is a dead letter as the worker writes it.
type letter struct {
	user, collection, subject, reason, body string
	version                                 uint64 // 0: no Ragpipe-Version header
}

// storeLetters publishes letters to the dead-letter stream and returns their
// sequences there.
func (h *harness) storeLetters(letters ...letter) []uint64 {
	h.t.Helper()
	seqs := make([]uint64, len(letters))
	for i, l := range letters {
		m := nats.NewMsg(h.prefix + ".dlq." + l.user + "." + l.collection)
		m.Data = []byte(l.body)
		m.Header.Set(worker.HeaderSubject, l.subject)
		m.Header.Set(worker.HeaderError, l.reason)
		if l.version > 0 {
			m.Header.Set(worker.HeaderVersion, fmt.Sprint(l.version))
		}
		ack, err := h.js.PublishMsg(h.t.Context(), m)
		if err != nil {
			h.t.Fatal(err)
		}
		seqs[i] = ack.Sequence
	}
	return seqs
}

var letters = []letter{
	{"alice", "docs", "rag.ingest.alice.docs", "doc_id is required", `{"text":"a"}`, 4},
	{"bob", "docs", "rag.ingest.bob.docs", "unknown op", `{"op":"merge","doc_id":"b"}`, 0},
	{"alice", "notes", "rag.ingest.alice.notes", "not JSON", `nope`, 9},
	{"_invalid", "_invalid", "rag.ingest.alice", "no <collection> token", `{}`, 2},
}

// TestDeadLettersEach: Each returns the letters matching a filter, oldest
// first, with their subject, reason, version and body; it stops at the
// first error of fn and does not chase letters stored while it runs.
func TestDeadLettersEach(t *testing.T) {
	t.Parallel()
	h := newHarness(t, worker.Config{}, &stage{})
	d := worker.NewDeadLetters(h.js, "rag")
	ctx := t.Context()
	if err := d.Each(ctx, d.Filter("", ""), func(worker.DeadLetter) error { return errors.New("called") }); err != nil {
		t.Errorf("Each on no letters: %v", err)
	}
	seqs := h.storeLetters(letters...)
	start := time.Now()

	cases := []struct {
		user, collection string
		want             []int // indexes in letters
	}{
		{"", "", []int{0, 1, 2, 3}},
		{"alice", "", []int{0, 2}},
		{"", "docs", []int{0, 1}},
		{"bob", "docs", []int{1}},
		{"_invalid", "_invalid", []int{3}},
		{"carol", "", nil},
	}
	for _, c := range cases {
		t.Run(d.Filter(c.user, c.collection), func(t *testing.T) {
			var got []worker.DeadLetter
			if err := d.Each(ctx, d.Filter(c.user, c.collection), func(dl worker.DeadLetter) error {
				got = append(got, dl)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(got) != len(c.want) {
				t.Fatalf("%d letters, want %d", len(got), len(c.want))
			}
			for i, dl := range got {
				l := letters[c.want[i]]
				if dl.Sequence != seqs[c.want[i]] || dl.Subject != l.subject || dl.Reason != l.reason ||
					dl.Version != l.version || string(dl.Body) != l.body || dl.Time.Before(start.Add(-time.Minute)) {
					t.Errorf("letter %d is %+v, want %+v at sequence %d", i, dl, l, seqs[c.want[i]])
				}
			}
		})
	}

	stopAt := errors.New("enough")
	n := 0
	if err := d.Each(ctx, d.Filter("", ""), func(worker.DeadLetter) error {
		n++
		h.storeLetters(letters[0]) // stored while Each runs: not seen
		if n == 2 {
			return stopAt
		}
		return nil
	}); !errors.Is(err, stopAt) || n != 2 {
		t.Errorf("Each went on after fn's error: %v, %d calls", err, n)
	}
	n = 0
	if err := d.Each(ctx, d.Filter("bob", ""), func(worker.DeadLetter) error {
		n++
		h.storeLetters(letters[1])
		return nil
	}); err != nil || n != 1 {
		t.Errorf("Each saw %d letters stored before it started, want 1 (err %v)", n, err)
	}
}

// TestDeadLettersPurge: Purge deletes the matching letters only, and says
// how many.
func TestDeadLettersPurge(t *testing.T) {
	t.Parallel()
	h := newHarness(t, worker.Config{}, &stage{})
	d := worker.NewDeadLetters(h.js, "rag")
	h.storeLetters(letters...)
	for _, c := range []struct {
		filter string
		want   uint64
		left   uint64
	}{
		{d.Filter("carol", ""), 0, 4},
		{d.Filter("alice", ""), 2, 2},
		{d.Filter("", ""), 2, 0},
	} {
		n, err := d.Purge(t.Context(), c.filter)
		if err != nil || n != c.want {
			t.Errorf("Purge(%s) = %d, %v; want %d", c.filter, n, err, c.want)
		}
		if left := h.streamMsgs(worker.DLQStream); left != c.left {
			t.Errorf("after Purge(%s), %d letters left, want %d", c.filter, left, c.left)
		}
	}
}

// TestDeadLettersReplay: Replay republishes each matching letter to its
// original subject with its body, its version in Ragpipe-Version and an id
// that makes a second replay of it a duplicate, and deletes it from the
// dead-letter stream; the other letters stay.
func TestDeadLettersReplay(t *testing.T) {
	t.Parallel()
	h := newHarness(t, worker.Config{}, &stage{}) // not running: the replayed events stay in the stream
	d := worker.NewDeadLetters(h.js, "rag")
	seqs := h.storeLetters(letters...)
	r, err := d.Replay(t.Context(), d.Filter("", "docs"))
	if err != nil || r.Replayed != 2 || len(r.Truncated) != 0 {
		t.Fatalf("Replay = %+v, %v; want 2 replayed", r, err)
	}
	var left []string
	if err := d.Each(t.Context(), d.Filter("", ""), func(dl worker.DeadLetter) error {
		left = append(left, dl.Subject)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if want := []string{letters[2].subject, letters[3].subject}; !slices.Equal(left, want) {
		t.Errorf("letters left %v, want %v", left, want)
	}
	ingest, err := h.js.Stream(t.Context(), worker.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	for i, l := range letters[:2] {
		m, err := ingest.GetMsg(t.Context(), uint64(i+1))
		if err != nil {
			t.Fatal(err)
		}
		wantVersion := ""
		if l.version > 0 {
			wantVersion = fmt.Sprint(l.version)
		}
		id := m.Header.Get(jetstream.MsgIDHeader)
		if m.Subject != l.subject || string(m.Data) != l.body || m.Header.Get(worker.HeaderVersion) != wantVersion ||
			!strings.HasPrefix(id, "ragpipe-replay-") || id == fmt.Sprint("ragpipe-replay-", seqs[i]) {
			t.Errorf("replayed %s %q with headers %v; want %s %q, version %q and an unpredictable id", m.Subject, m.Data, m.Header, l.subject, l.body, wantVersion)
		}
	}
}

// TestReplayKeepsVersion: an event dead-lettered by the worker and replayed
// once the cause is fixed reaches the stage again with its original
// version, not the replay's stream sequence, so it never outranks a newer
// event.
func TestReplayKeepsVersion(t *testing.T) {
	t.Parallel()
	fixed := make(chan struct{})
	st := &stage{decide: func(context.Context, pipeline.Event, int) error {
		select {
		case <-fixed:
			return nil
		default:
			return pipeline.Permanent(errors.New(`unknown collection "docs"`))
		}
	}}
	h := newHarness(t, worker.Config{}, st)
	h.run()
	seq := h.publish("rag.ingest.alice.docs", `{"doc_id":"a","text":"x"}`, nil)
	h.waitDeadLetters(1, 10*time.Second)
	h.waitSettled(10 * time.Second)
	close(fixed)

	d := worker.NewDeadLetters(h.js, "rag")
	if r, err := d.Replay(t.Context(), d.Filter("alice", "docs")); err != nil || r.Replayed != 1 {
		t.Fatalf("Replay = %+v, %v; want 1 replayed", r, err)
	}
	h.waitSettled(10 * time.Second)
	calls := st.CallsOf("a")
	if len(calls) != 2 || calls[1].event.Version != seq {
		t.Fatalf("calls %+v: want the replayed event with version %d", calls, seq)
	}
	if n := h.streamMsgs(worker.DLQStream); n != 0 {
		t.Errorf("%d dead letters left after the replay", n)
	}
	h.wantEvents("docs", 1, 0, 1)
}

// TestReplaySkipsTruncated: a dead letter whose body was cut to fit is not
// replayed, which would store another event; it is reported and stays.
func TestReplaySkipsTruncated(t *testing.T) {
	t.Parallel()
	h := newHarness(t, worker.Config{}, &stage{})
	d := worker.NewDeadLetters(h.js, "rag")
	seqs := h.storeLetters(letters[0])
	m := nats.NewMsg("rag.dlq.alice.docs")
	m.Data = []byte(`{"doc_id":"huge","text":"xx`)
	m.Header.Set(worker.HeaderSubject, "rag.ingest.alice.docs")
	m.Header.Set(worker.HeaderError, "too large")
	m.Header.Set(worker.HeaderTruncated, "5000000")
	if _, err := h.js.PublishMsg(t.Context(), m); err != nil {
		t.Fatal(err)
	}
	r, err := d.Replay(t.Context(), d.Filter("", ""))
	if err != nil || r.Replayed != 1 || len(r.Truncated) != 1 {
		t.Fatalf("Replay = %+v, %v; want 1 replayed, 1 truncated", r, err)
	}
	if tr := r.Truncated[0]; tr.Truncated != 5000000 || tr.Sequence != seqs[0]+1 || tr.Subject != "rag.ingest.alice.docs" {
		t.Errorf("truncated letter reported as %+v", tr)
	}
	if n := h.streamMsgs(worker.DLQStream); n != 1 {
		t.Errorf("%d dead letters left, want the truncated one", n)
	}
	if n := h.streamMsgs(worker.IngestStream); n != 1 {
		t.Errorf("%d events replayed, want 1", n)
	}
}

// TestReplayNotDroppedByPredictableID: a tenant that publishes, on its own
// subject, a message with the Nats-Msg-Id a replay used to carry
// (ragpipe-replay-<dead letter sequence>) does not have the replayed event
// dropped as a duplicate while its dead letter is deleted.
func TestReplayNotDroppedByPredictableID(t *testing.T) {
	t.Parallel()
	h := newHarness(t, worker.Config{}, &stage{}) // not running: replayed events stay in the stream
	d := worker.NewDeadLetters(h.js, "rag")
	seqs := h.storeLetters(letters[0])
	h.publish(letters[0].subject, `{"doc_id":"decoy","text":"x"}`, nats.Header{jetstream.MsgIDHeader: {fmt.Sprint("ragpipe-replay-", seqs[0])}})
	if r, err := d.Replay(t.Context(), d.Filter("", "")); err != nil || r.Replayed != 1 {
		t.Fatalf("Replay = %+v, %v; want 1 replayed", r, err)
	}
	ingest, err := h.js.Stream(t.Context(), worker.IngestStream)
	if err != nil {
		t.Fatal(err)
	}
	m, err := ingest.GetLastMsgForSubject(t.Context(), letters[0].subject)
	if err != nil || string(m.Data) != letters[0].body || m.Sequence != 2 {
		t.Fatalf("the replayed event is not stored: last message %+v, %v", m, err)
	}
}
