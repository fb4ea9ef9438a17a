package worker_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/worker"
)

// TestRejectedDeadLettered: events that can never be decoded (a bad subject,
// a body that is not a valid event) are dead-lettered without reaching the
// stage, to rag.dlq._invalid._invalid when the subject has no valid tenant
// and collection; the good event published among them is processed.
func TestRejectedDeadLettered(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, subject, body string
		dlq                 string // the dead letter's subject
		version             string // "seq": the stream sequence
		reason              string // a part of the reason
	}{
		{"bad user token", "rag.ingest.bad!user.docs", `{"doc_id":"a","text":"x"}`, "rag.dlq._invalid._invalid", "seq", "subject"},
		{"bad collection token", "rag.ingest.alice.Docs", `{"doc_id":"a","text":"x"}`, "rag.dlq._invalid._invalid", "seq", "subject"},
		{"missing token", "rag.ingest.alice", `{"doc_id":"a","text":"x"}`, "rag.dlq._invalid._invalid", "seq", "<collection>"},
		{"extra token", "rag.ingest.alice.docs.more", `{"doc_id":"a","text":"x","version":4}`, "rag.dlq._invalid._invalid", "4", "tokens after"},
		{"not JSON", "rag.ingest.alice.docs", `this is not json`, "rag.dlq.alice.docs", "seq", "not valid JSON"},
		{"empty body", "rag.ingest.alice.docs", ``, "rag.dlq.alice.docs", "seq", "empty"},
		{"not an object", "rag.ingest.alice.docs", `[1,2]`, "rag.dlq.alice.docs", "seq", "not an object"},
		{"missing doc_id", "rag.ingest.alice.docs", `{"text":"x","version":3}`, "rag.dlq.alice.docs", "3", "doc_id"},
		{"user mismatch", "rag.ingest.alice.docs", `{"doc_id":"a","text":"x","user_id":"bob","version":7}`, "rag.dlq.alice.docs", "7", "user_id"},
		{"too large", "rag.ingest.alice.docs", `{"doc_id":"a","text":"` + strings.Repeat("x", 1100) + `"}`, "rag.dlq.alice.docs", "seq", "larger than the limit of 1024"},
	}
	st := &stage{}
	h := newHarness(t, worker.Config{MaxEventBytes: 1024}, st)
	h.run()
	seqs := make([]uint64, len(cases))
	for i, c := range cases {
		seqs[i] = h.publish(c.subject, c.body, nil)
	}
	h.publish("rag.ingest.alice.docs", `{"doc_id":"good","text":"fine"}`, nil)
	dls := h.waitDeadLetters(len(cases), 10*time.Second)
	h.waitSettled(10 * time.Second)

	if calls := st.Calls(); len(calls) != 1 || calls[0].event.DocID != "good" {
		t.Errorf("the stage got %d events, want only the good one: %+v", len(calls), calls)
	}
	bySubjectBody := map[string]*jetstream.RawStreamMsg{}
	for _, dl := range dls {
		bySubjectBody[dl.Header.Get(worker.HeaderSubject)+" "+string(dl.Data)] = dl
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dl := bySubjectBody[c.subject+" "+c.body]
			if dl == nil {
				t.Fatalf("no dead letter with subject %s and the original body", c.subject)
			}
			if c.version == "seq" {
				c.version = fmt.Sprint(seqs[i])
			}
			checkDeadLetter(t, dl, c.dlq, c.subject, c.body, c.version, c.reason)
		})
	}
	h.wantEvents("_invalid", 0, 0, 4)
	h.wantEvents("docs", 1, 0, len(cases)-4)
}

// TestDeadLetterCutToFit: a dead letter whose body would not fit in one
// message with its headers is cut to fit, and says the original size in
// Ragpipe-Truncated, instead of never being stored; one that fits is whole.
func TestDeadLetterCutToFit(t *testing.T) {
	t.Parallel()
	const maxPayload = 32 << 10
	cases := []struct {
		name string
		size int
		cut  bool
	}{
		{"fits", 20 << 10, false},
		{"fits with its headers", maxPayload - 1000, false},
		{"leaves too little room for headers", maxPayload - 200, true},
		{"as large as a message", maxPayload - 30, true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			st := &stage{}
			h := newHarness(t, worker.Config{MaxEventBytes: 1024}, st, func(o *server.Options) { o.MaxPayload = maxPayload })
			h.run()
			body := []byte(`{"doc_id":"huge","text":"` + strings.Repeat("x", c.size-28) + `"}`)
			h.publish("rag.ingest.alice.docs", string(body), nil)
			dls := h.waitDeadLetters(1, 10*time.Second)
			h.waitSettled(10 * time.Second)
			dl := dls[0]
			truncated := dl.Header.Get(worker.HeaderTruncated)
			switch {
			case !c.cut && (truncated != "" || !bytes.Equal(dl.Data, body)):
				t.Errorf("a dead letter that fits was cut: %s %q, %d of %d bytes", worker.HeaderTruncated, truncated, len(dl.Data), len(body))
			case c.cut && (truncated != fmt.Sprint(len(body)) || len(dl.Data) >= len(body) || !bytes.HasPrefix(body, dl.Data)):
				t.Errorf("%s %q, %d of %d bytes: want the body's beginning and its size", worker.HeaderTruncated, truncated, len(dl.Data), len(body))
			}
			if !strings.Contains(dl.Header.Get(worker.HeaderError), "1024") {
				t.Errorf("reason %q", dl.Header.Get(worker.HeaderError))
			}
			if len(st.Calls()) != 0 {
				t.Error("an event over MaxEventBytes reached the stage")
			}
		})
	}
}

// TestDeadLetterReasonCut: a long reason is cut, on a character boundary,
// and marked as cut, so that the dead letter's headers stay small.
func TestDeadLetterReasonCut(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("é", 3000) // 6000 bytes
	st := &stage{decide: func(context.Context, pipeline.Event, int) error {
		return pipeline.Permanent(errors.New(long))
	}}
	h := newHarness(t, worker.Config{}, st)
	h.run()
	h.publish("rag.ingest.alice.docs", `{"doc_id":"a","text":"x"}`, nil)
	reason := h.waitDeadLetters(1, 10*time.Second)[0].Header.Get(worker.HeaderError)
	short, cut := strings.CutSuffix(reason, "…")
	if !cut || !utf8.ValidString(reason) || !strings.HasPrefix(long, short) || len(short) < 1024 || len(short) > 2048 {
		t.Errorf("reason of %d bytes, valid UTF-8 %v, marked as cut %v; want a prefix of the error of at most 2048 bytes",
			len(reason), utf8.ValidString(reason), cut)
	}
}

// TestDeadLetterNotStoredIsRetried: when the dead letter cannot be stored
// (here, no stream takes rag.dlq), the event is not terminated but
// redelivered later, and dead-lettered once the stream takes it.
func TestDeadLetterNotStoredIsRetried(t *testing.T) {
	t.Parallel()
	st := &stage{decide: func(context.Context, pipeline.Event, int) error {
		return pipeline.Permanent(errors.New("unknown op"))
	}}
	h := newHarness(t, worker.Config{}, st)
	ctx := t.Context()
	// An operator's RAG_DLQ, which New leaves as it is, not taking rag.dlq.>.
	dlq, err := h.js.Stream(ctx, worker.DLQStream)
	if err != nil {
		t.Fatal(err)
	}
	cfg := dlq.CachedInfo().Config
	cfg.Subjects = []string{"elsewhere.>"}
	if _, err := h.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	h.run()
	body := `{"doc_id":"a","text":"x","version":3}`
	h.publish("rag.ingest.alice.docs", body, nil)
	checkfor.Until(t, 10*time.Second, "a second attempt", func() error {
		if n := len(st.Calls()); n < 2 {
			return fmt.Errorf("%d attempts", n)
		}
		return nil
	})
	if n := h.streamMsgs(worker.IngestStream); n != 1 {
		t.Fatalf("%d events in %s: the event was dropped without its dead letter", n, worker.IngestStream)
	}
	cfg.Subjects = []string{"rag.dlq.>"}
	if _, err := h.js.UpdateStream(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	dls := h.waitDeadLetters(1, 20*time.Second)
	h.waitSettled(10 * time.Second)
	checkDeadLetter(t, dls[0], "rag.dlq.alice.docs", "rag.ingest.alice.docs", body, "3", "unknown op")
}

// TestDeadLetterLongSubjectFits: the room kept for a dead letter's headers
// must hold the original subject, which may be up to about 4 KiB long (the
// server's control line); otherwise a body just under the cut is never
// stored as a dead letter and the event is retried forever.
func TestDeadLetterLongSubjectFits(t *testing.T) {
	t.Parallel()
	const maxPayload = 32 << 10
	h := newHarness(t, worker.Config{MaxEventBytes: 1024}, &stage{}, func(o *server.Options) { o.MaxPayload = maxPayload })
	h.run()
	subject := "rag.ingest." + strings.Repeat("u", 3990) + ".docs"
	body := `{"doc_id":"huge","text":"` + strings.Repeat("x", maxPayload-4096-28) + `"}`
	h.publish(subject, body, nil)
	dl := h.waitDeadLetters(1, 10*time.Second)[0]
	h.waitSettled(10 * time.Second)
	if dl.Subject != "rag.dlq._invalid._invalid" || dl.Header.Get(worker.HeaderSubject) != subject ||
		!bytes.HasPrefix([]byte(body), dl.Data) {
		t.Errorf("dead letter on %s, subject of %d bytes, body of %d bytes", dl.Subject, len(dl.Header.Get(worker.HeaderSubject)), len(dl.Data))
	}
}
