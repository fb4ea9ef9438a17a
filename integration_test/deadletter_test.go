package integration_test

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBadInputDeadLettered sends every class of bad input of CONTRACT §2
// between good events: each bad one lands in RAG_DLQ with its reason, the
// original body and subject, and its version; the worker keeps running and
// the good events are stored.
func TestBadInputDeadLettered(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:8:cosine", "RAGPIPE_AUTO_CREATE=false",
		"RAGPIPE_MAX_EVENT_BYTES=4096")...)
	s.startWorker()
	vector := func(n int, bad string) string {
		v := strings.Repeat("0.5,", n-1) + "0.5"
		if bad != "" {
			v = strings.Replace(v, "0.5", bad, 1)
		}
		return "[" + v + "]"
	}
	cases := []struct {
		name, subject, body string
		reason              string // a word the reason must contain
		dlq                 string // the dead-letter subject
		version             string // the Ragpipe-Version header, "" if none expected
	}{
		{"not JSON", "rag.ingest.alice.docs", `this is not json`, "JSON", "rag.dlq.alice.docs", "seq"},
		{"not an object", "rag.ingest.alice.docs", `[1,2]`, "object", "rag.dlq.alice.docs", "seq"},
		{"missing doc_id", "rag.ingest.alice.docs", `{"text":"x"}`, "doc_id", "rag.dlq.alice.docs", "seq"},
		{"doc_id too long", "rag.ingest.alice.docs", `{"doc_id":"` + strings.Repeat("d", 513) + `","text":"x"}`, "doc_id", "rag.dlq.alice.docs", "seq"},
		{"missing text", "rag.ingest.alice.docs", `{"doc_id":"a"}`, "text", "rag.dlq.alice.docs", "seq"},
		{"unknown op", "rag.ingest.alice.docs", `{"op":"merge","doc_id":"a","text":"x"}`, "merge", "rag.dlq.alice.docs", "seq"},
		{"version zero", "rag.ingest.alice.docs", `{"doc_id":"a","text":"x","version":0}`, "version", "rag.dlq.alice.docs", "seq"},
		{"version negative", "rag.ingest.alice.docs", `{"doc_id":"a","text":"x","version":-3}`, "version", "rag.dlq.alice.docs", "seq"},
		{"user mismatch", "rag.ingest.alice.docs", `{"doc_id":"a","text":"x","user_id":"bob","version":7}`, "user_id", "rag.dlq.alice.docs", "7"},
		{"vector length", "rag.ingest.alice.docs", `{"doc_id":"v","text":"x","version":9,"vector":` + vector(3, "") + `}`, "dimensions", "rag.dlq.alice.docs", "9"},
		{"vector not finite", "rag.ingest.alice.docs", `{"doc_id":"v","text":"x","vector":` + vector(8, "1e39") + `}`, "vector", "rag.dlq.alice.docs", "seq"},
		{"too large", "rag.ingest.alice.docs", `{"doc_id":"big","text":"` + strings.Repeat("x", 5000) + `"}`, "4096", "rag.dlq.alice.docs", "seq"},
		{"bad user token", "rag.ingest.bad!user.docs", `{"doc_id":"a","text":"x"}`, "subject", "rag.dlq._invalid._invalid", "seq"},
		{"bad collection token", "rag.ingest.alice.Docs", `{"doc_id":"a","text":"x"}`, "subject", "rag.dlq._invalid._invalid", "seq"},
		{"missing token", "rag.ingest.alice", `{"doc_id":"a","text":"x"}`, "subject", "rag.dlq._invalid._invalid", "seq"},
		{"extra token", "rag.ingest.alice.docs.more", `{"doc_id":"a","text":"x"}`, "subject", "rag.dlq._invalid._invalid", "seq"},
		{"unknown collection", "rag.ingest.alice.unknown", `{"doc_id":"a","text":"x","version":3}`, "RAGPIPE_AUTO_CREATE", "rag.dlq.alice.unknown", "3"},
	}
	m := newModel(t, 300, 30, 8)
	var events []event
	for i, c := range cases {
		good := fmt.Sprintf("good-%d", i)
		events = append(events,
			event{subject: c.subject, raw: []byte(c.body)},
			event{user: "alice", collection: "docs", body: map[string]any{"doc_id": good, "text": "fine " + good, "version": 1}})
		m.add("docs", "alice", good, "upsert", "fine "+good, nil, 1)
	}
	seqs := s.publish(events)
	s.waitDrained(time.Minute)
	s.assertStored("docs", m.want("docs"))

	letters := s.deadLetters()
	if len(letters) != len(cases) {
		t.Errorf("%d dead letters, want %d", len(letters), len(cases))
	}
	bySubjectBody := map[string]deadLetter{}
	for _, d := range letters {
		bySubjectBody[d.header.Get("Ragpipe-Subject")+" "+string(d.body)] = d
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, ok := bySubjectBody[c.subject+" "+c.body]
			if !ok {
				t.Fatalf("no dead letter with subject %s and the original body", c.subject)
			}
			if d.subject != c.dlq {
				t.Errorf("dead letter on %s, want %s", d.subject, c.dlq)
			}
			reason := d.header.Get("Ragpipe-Error")
			if !strings.Contains(reason, c.reason) {
				t.Errorf("reason %q does not mention %q", reason, c.reason)
			}
			want := c.version
			if want == "seq" {
				want = fmt.Sprint(seqs[2*i])
			}
			if got := d.header.Get("Ragpipe-Version"); got != want {
				t.Errorf("Ragpipe-Version %q, want %q", got, want)
			}
			if !bytes.Equal(d.body, []byte(c.body)) {
				t.Errorf("body changed")
			}
		})
	}
}

// TestHugeEventDeadLettered: an event rejected for its size, close to the
// server's largest message, is dead-lettered with its body cut to fit and
// its original size in Ragpipe-Truncated, instead of being retried forever
// because its copy cannot be stored.
func TestHugeEventDeadLettered(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:8:cosine", "RAGPIPE_MAX_EVENT_BYTES=4096")
	s.startWorker()
	size := int(s.js.Conn().MaxPayload()) - 40 // the copy's headers would not fit
	body := []byte(`{"doc_id":"huge","text":"` + strings.Repeat("x", size-28) + `"}`)
	s.publish([]event{{user: "alice", collection: "docs", raw: body}})
	s.waitDrained(time.Minute)
	letters := s.deadLetters()
	if len(letters) != 1 {
		t.Fatalf("%d dead letters, want 1", len(letters))
	}
	d := letters[0]
	if d.header.Get("Ragpipe-Truncated") != fmt.Sprint(len(body)) || !bytes.HasPrefix(body, d.body) || len(d.body) >= len(body) {
		t.Errorf("dead letter: Ragpipe-Truncated %q, %d of %d bytes", d.header.Get("Ragpipe-Truncated"), len(d.body), len(body))
	}
	if !strings.Contains(d.header.Get("Ragpipe-Error"), "4096") {
		t.Errorf("reason %q", d.header.Get("Ragpipe-Error"))
	}
}
