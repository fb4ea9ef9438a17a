package integration_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestDeadLetterReplay dead-letters events for a collection that does not
// exist yet, creates it, replays them with `ragpipe dlq replay`: they are
// stored exactly once with their versions, and the DLQ is empty. Then
// `ragpipe dlq purge` removes what cannot be fixed.
func TestDeadLetterReplay(t *testing.T) {
	s := newSystem(t, "RAGPIPE_AUTO_CREATE=false")
	w := s.startWorker("RAGPIPE_COLLECTIONS=docs:8:cosine")
	m := newModel(t, 2000, 200, 8)
	var events []event
	for i := range 20 {
		doc := fmt.Sprint("doc-", i)
		events = append(events, event{user: "alice", collection: "later", body: map[string]any{"doc_id": doc, "text": "text " + doc, "version": 100 + i}})
		m.add("later", "alice", doc, "upsert", "text "+doc, nil, uint64(100+i))
	}
	events = append(events, event{user: "bob", collection: "docs", raw: []byte("not json")})
	s.publish(events)
	s.waitDrained(time.Minute)

	dlq := func(args ...string) string {
		t.Helper()
		p := s.start("dlq", "", append([]string{"dlq"}, args...))
		<-p.done
		if p.err != nil {
			t.Fatalf("dlq %v: %v\n%s", args, p.err, p.log.String())
		}
		return p.log.String()
	}
	var listed []map[string]any
	for _, line := range strings.Split(dlq("list", "--json", "--collection", "later"), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) == nil {
			listed = append(listed, l)
		}
	}
	if len(listed) != 20 || listed[0]["subject"] != "rag.ingest.alice.later" ||
		!strings.Contains(fmt.Sprint(listed[0]["reason"]), "RAGPIPE_AUTO_CREATE") || listed[0]["version"] != 100.0 {
		t.Fatalf("listed %d dead letters, first %v", len(listed), listed[0])
	}
	if table := dlq("list"); !strings.Contains(table, "rag.ingest.bob.docs") || !strings.Contains(table, "REASON") {
		t.Errorf("table:\n%s", table)
	}

	// Fix the cause: a worker configured with the collection creates it.
	w.signal(t, syscall.SIGTERM)
	s.startWorker("RAGPIPE_COLLECTIONS=docs:8:cosine,later:8:cosine")
	if out := dlq("replay", "--collection", "later"); !strings.Contains(out, "replayed 20 dead letters") {
		t.Fatalf("replay: %s", out)
	}
	s.waitDrained(time.Minute)
	s.assertStored("later", m.want("later"))
	if out := dlq("replay", "--collection", "later"); !strings.Contains(out, "replayed 0 dead letters") {
		t.Fatalf("second replay: %s", out)
	}
	if n := len(s.deadLetters()); n != 1 {
		t.Fatalf("%d dead letters left, want the one bad JSON event", n)
	}
	if out := dlq("purge"); !strings.Contains(out, "purged 1 dead letters") {
		t.Fatalf("purge: %s", out)
	}
	if n := len(s.deadLetters()); n != 0 {
		t.Fatalf("%d dead letters left after purge", n)
	}
}
