package integration_test

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/internal/checkfor"
)

// Small chunks make most test documents multi-chunk without megabytes of text.
var chunking = []string{"RAGPIPE_CHUNK_SIZE=300", "RAGPIPE_CHUNK_OVERLAP=30"}

var users = []string{"alice", "bob", "carol-1", "dave_2", "Eve"}

var vocabulary = strings.Fields(`instance volume bucket cluster region eu-west-1 us-east-1 prod staging
owner platform payments search tagged env tier web database replica backup snapshot encrypted
public private subnet gateway lambda queue topic retention policy cost center team alert latency
throughput migration schema index shard node memory disk cpu network firewall rule certificate`)

// text returns a text of about n characters made of sentences and paragraphs.
func text(r *rand.Rand, n int) string {
	var b strings.Builder
	for b.Len() < n {
		words := 4 + r.IntN(12)
		for w := range words {
			if w > 0 {
				b.WriteByte(' ')
			}
			b.WriteString(vocabulary[r.IntN(len(vocabulary))])
		}
		b.WriteString(". ")
		if r.IntN(6) == 0 {
			b.WriteString("\n\n")
		}
	}
	return strings.TrimSpace(b.String())
}

// TestIngestExactState publishes 2,000 documents over 3 collections (one of
// them created on first use) and 5 users, most of them multi-chunk, and
// checks every stored point and payload, and that nothing else is stored.
func TestIngestExactState(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=alpha:1024:cosine,beta:1024:Cosine")...)
	s.startWorker()
	r := rand.New(rand.NewPCG(1, 2))
	m := newModel(t, 300, 30, 1024)
	collections := []string{"alpha", "beta", "gamma"}
	var events []event
	for i := range 2000 {
		e := event{user: users[i%5], collection: collections[i%3], body: map[string]any{
			"doc_id": fmt.Sprintf("doc/%04d", i), "text": text(r, 50+r.IntN(1500)),
		}}
		switch i % 4 {
		case 0:
			e.body["metadata"] = map[string]any{"env": "prod", "n": i, "ratio": 0.5, "ok": true, "tags": []any{"a", "b"}}
		case 1:
			e.body["version"] = 1000 + i
		case 2:
			e.header = nats.Header{"Ragpipe-Version": []string{strconv.Itoa(5000 + i)}}
		}
		events = append(events, e)
	}
	seqs := s.publish(events)
	for i, e := range events {
		version := seqs[i]
		if v, ok := e.body["version"].(int); ok {
			version = uint64(v)
		} else if e.header != nil {
			version = uint64(5000 + i)
		}
		meta, _ := e.body["metadata"].(map[string]any)
		m.add(e.collection, e.user, e.body["doc_id"].(string), "upsert", e.body["text"].(string), normalize(meta), version)
	}
	s.waitDrained(3 * time.Minute)
	total := 0
	for _, c := range collections {
		want := m.want(c)
		total += len(want)
		s.assertStored(c, want)
	}
	if dl := s.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none; first: %s %v", len(dl), dl[0].subject, dl[0].header)
	}
	t.Logf("2000 documents stored as %d chunks", total)
}

// normalize turns JSON-decoded test metadata into the types Qdrant returns.
func normalize(meta map[string]any) map[string]any {
	if meta == nil {
		return nil
	}
	out := map[string]any{}
	for k, v := range meta {
		switch v := v.(type) {
		case int:
			out[k] = int64(v)
		default:
			out[k] = v
		}
	}
	return out
}

// TestLastVersionWins publishes, for many documents, versions out of order:
// updates that shrink and grow the chunk count, deletes, stale upserts after
// deletes, and redeliveries, consumed by two worker processes at once with
// small batches so that they interleave. The newest version of each document,
// and nothing else, must remain.
func TestLastVersionWins(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_BATCH_SIZE=8", "RAGPIPE_CONCURRENCY=4")...)
	r := rand.New(rand.NewPCG(3, 4))
	m := newModel(t, 300, 30, 64)
	var events []event
	for d := range 300 {
		user, doc := users[d%5], fmt.Sprintf("doc-%d", d)
		last := 3 + r.IntN(6) // versions 2..last; 1 is kept for a stale upsert
		for v := 2; v <= last; v++ {
			op := "upsert"
			if r.IntN(4) == 0 || (d%7 == 0 && v == last) {
				op = "delete" // every seventh document ends deleted
			}
			body := map[string]any{"op": op, "doc_id": doc, "version": v}
			txt := ""
			if op == "upsert" {
				txt = text(r, 20+r.IntN(1500)) // 1 to 6 chunks: updates shrink and grow
				body["text"] = txt
				body["metadata"] = map[string]any{"v": v}
			}
			m.add("docs", user, doc, op, txt, map[string]any{"v": int64(v)}, uint64(v))
			e := event{user: user, collection: "docs", body: body}
			events = append(events, e)
			if r.IntN(5) == 0 {
				events = append(events, e) // a producer's duplicate: processed twice
			}
		}
		if d%7 == 0 {
			// Stale upserts after the final delete must not resurrect the document.
			txt := text(r, 900)
			m.add("docs", user, doc, "upsert", txt, nil, 1)
			events = append(events, event{user: user, collection: "docs", body: map[string]any{
				"doc_id": doc, "version": 1, "text": txt}})
		}
	}
	// Hot documents: many versions of few documents, alternating between many
	// and few chunks, so that concurrent batches often hold two versions of
	// one document and a newer version overtakes an older one mid-write.
	for d := range 8 {
		doc := fmt.Sprintf("hot-%d", d)
		for v := 1; v <= 60; v++ {
			txt := text(r, 20+(v%2)*1500)
			m.add("docs", "alice", doc, "upsert", txt, map[string]any{"v": int64(v)}, uint64(v))
			events = append(events, event{user: "alice", collection: "docs", body: map[string]any{
				"doc_id": doc, "version": v, "text": txt, "metadata": map[string]any{"v": v}}})
		}
	}
	r.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	s.createStreams()
	s.publish(events)
	s.startWorker()
	s.startWorker()
	s.waitDrained(3 * time.Minute)
	s.assertStored("docs", m.want("docs"))
	if dl := s.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none", len(dl))
	}
}

// TestWorkerKilledAndRestarted SIGKILLs a worker mid-ingestion and starts a
// new one: nothing is lost, nothing doubled.
func TestWorkerKilledAndRestarted(t *testing.T) {
	// A short ack wait: the killed worker's messages are redelivered sooner.
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_BATCH_SIZE=16", "RAGPIPE_ACK_WAIT=3s")...)
	events, m := corpus(t, 10000)
	s.createStreams()
	s.publish(events)
	w := s.startWorker()
	waitProgress(s, 200)
	if err := w.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-w.done
	info, err := s.consumer().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending+uint64(info.NumAckPending) == 0 {
		t.Fatalf("worker finished before it was killed; the test proves nothing")
	}
	t.Logf("killed with %d events delivered but unacknowledged, %d not yet delivered", info.NumAckPending, info.NumPending)
	s.startWorker()
	s.waitDrained(3 * time.Minute)
	s.assertStored("docs", m.want("docs"))
}

// TestWorkerSIGTERM stops a worker mid-ingestion with SIGTERM: it exits 0
// and leaves no message unacknowledged; a new worker then finishes the work.
func TestWorkerSIGTERM(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_BATCH_SIZE=16")...)
	events, m := corpus(t, 10000)
	s.createStreams()
	s.publish(events)
	w := s.startWorker()
	waitProgress(s, 200)
	if code := w.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	info, err := s.consumer().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 0 {
		t.Fatalf("%d messages left unacknowledged after SIGTERM", info.NumAckPending)
	}
	if info.NumPending == 0 {
		t.Fatalf("worker finished before SIGTERM; the test proves nothing")
	}
	s.startWorker()
	s.waitDrained(3 * time.Minute)
	s.assertStored("docs", m.want("docs"))
}

// TestQdrantKilledAndRestarted SIGKILLs Qdrant mid-ingestion and restarts it
// a few seconds later: the worker retries, and the final state is exact with
// no dead letters.
func TestQdrantKilledAndRestarted(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_BATCH_SIZE=16")...)
	events, m := corpus(t, 10000)
	s.createStreams()
	s.publish(events)
	s.startWorker()
	waitProgress(s, 200)
	s.qdrant.Kill(t)
	time.Sleep(3 * time.Second) // an outage long enough for retries and redeliveries
	s.qdrant.Restart(t)
	s.waitDrained(3 * time.Minute)
	s.assertStored("docs", m.want("docs"))
	if dl := s.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none; first: %v", len(dl), dl[0].header)
	}
}

// corpus returns n single-version documents for user alice in "docs" and
// their expected state.
func corpus(t testing.TB, n int) ([]event, *model) {
	r := rand.New(rand.NewPCG(uint64(n), 5))
	m := newModel(t, 300, 30, 64)
	events := make([]event, n)
	for i := range events {
		doc, txt := fmt.Sprintf("doc-%d", i), text(r, 100+r.IntN(1000))
		events[i] = event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "text": txt, "version": 1}}
		m.add("docs", "alice", doc, "upsert", txt, nil, 1)
	}
	return events, m
}

// waitProgress waits until the worker has acknowledged at least n messages.
func waitProgress(s *system, n uint64) {
	s.t.Helper()
	checkfor.Until(s.t, time.Minute, "ingestion progress", func() error {
		info, err := s.consumerInfo()
		if err != nil {
			return err
		}
		if info.AckFloor.Consumer < n {
			return fmt.Errorf("%d acknowledged", info.AckFloor.Consumer)
		}
		return nil
	})
}

// TestCollectionDeleted: an operator deletes a collection while a worker
// runs; the next events recreate it (auto-create) instead of being
// dead-lettered.
func TestCollectionDeleted(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:8:cosine")
	s.startWorker()
	m := newModel(t, 2000, 200, 8)
	batch := func(from int) {
		var events []event
		for i := from; i < from+10; i++ {
			doc := fmt.Sprint("doc-", i)
			events = append(events, event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "text": "text " + doc, "version": 1}})
			m.add("docs", "alice", doc, "upsert", "text "+doc, nil, 1)
		}
		s.publish(events)
		s.waitDrained(time.Minute)
	}
	batch(0)
	s.dropCollection("docs")
	m = newModel(t, 2000, 200, 8) // what was stored is gone with the collection
	batch(10)
	s.assertStored("docs", m.want("docs"))
	if dl := s.deadLetters(); len(dl) != 0 {
		t.Fatalf("%d dead letters, want none; first: %v", len(dl), dl[0].header)
	}
}
