package integration_test

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/embedtest"
)

// pollReady polls url every 5ms until stop is called, which returns the
// polls made and the statuses other than 200.
func pollReady(url string) (stop func() (polls int, failed []int)) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	var polls int
	var failed []int
	wg.Go(func() {
		client := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-done:
				return
			case <-time.After(5 * time.Millisecond):
			}
			polls++
			resp, err := client.Get(url)
			if err != nil {
				failed = append(failed, 0)
				continue
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				failed = append(failed, resp.StatusCode)
			}
		}
	})
	return func() (int, []int) {
		close(done)
		wg.Wait()
		return polls, failed
	}
}

// TestRefusedTextsDeadLettered: 200 events of which 5 carry a text the
// embedding service refuses with OpenAI's 400 context_length_exceeded. The
// worker dead-letters exactly those 5 with the service's reason, stores the
// 195 others, stays ready throughout and retries no event; finding the
// refused texts costs at most 2·(1+log2(32)) requests per refused text. Run
// it with
//
//	go test -count=1 -run TestRefusedTextsDeadLettered -v ./integration_test
func TestRefusedTextsDeadLettered(t *testing.T) {
	const dims, model, key, batch, maxChars = 16, "text-embedding-3-small", "sk-test", 32, 1000
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: dims, Key: key, Model: model, MaxInputChars: maxChars})
	s := newSystem(t, append(openAIEnv(fake, model, key), "RAGPIPE_COLLECTIONS=docs:16:cosine",
		fmt.Sprint("RAGPIPE_EMBEDDER_BATCH_SIZE=", batch))...)
	w := s.startWorker()
	base := "http://" + httpAddr(t, w)
	stop := pollReady(base + "/readyz")

	r := rand.New(rand.NewPCG(11, 12))
	m := newModel(t, 2000, 200, dims)
	var events []event
	bad := map[string]bool{} // bodies of the events to refuse
	for i := range 200 {
		doc := fmt.Sprint("doc-", i)
		body := text(r, 100+r.IntN(300))
		if i%40 == 17 {
			body = text(r, maxChars+200+r.IntN(500)) // one chunk, longer than the model's context
		}
		e := event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "text": body, "version": 1}}
		events = append(events, e)
		if len(body) > maxChars {
			raw, err := json.Marshal(e.body)
			if err != nil {
				t.Fatal(err)
			}
			bad[string(raw)] = true
			continue
		}
		m.add("docs", "alice", doc, "upsert", body, nil, 1)
	}
	if len(bad) != 5 {
		t.Fatalf("%d events to refuse, want 5", len(bad))
	}
	before := len(fake.Requests())
	s.publish(events)
	s.waitDrained(time.Minute)
	polls, failed := stop()

	s.assertStored("docs", withTextHash(m.want("docs"), "openai/"+model))
	letters := s.deadLetters()
	if len(letters) != len(bad) {
		t.Errorf("%d dead letters, want %d", len(letters), len(bad))
	}
	for _, d := range letters {
		reason := d.header.Get("Ragpipe-Error")
		if !bad[string(d.body)] || d.subject != "rag.dlq.alice.docs" {
			t.Errorf("dead letter on %s of a text the service accepts: %.80s", d.subject, d.body)
		}
		if !strings.Contains(reason, "context_length_exceeded") || !strings.Contains(reason, "maximum context length is 1000 tokens") {
			t.Errorf("Ragpipe-Error %q does not carry the service's reason", reason)
		}
	}
	if len(failed) > 0 || polls == 0 {
		t.Errorf("/readyz failed %d of %d polls: %v", len(failed), polls, head(failed))
	}
	page := get(t, base+"/metrics", 200)
	if n := metricValue(t, page, `ragpipe_events_total{collection="docs",outcome="retried"}`); n != 0 {
		t.Errorf("%v events retried, want none", n)
	}
	if n := metricValue(t, page, `ragpipe_chunks_embedded_total{collection="docs"}`); n != float64(len(m.want("docs"))) {
		t.Errorf("ragpipe_chunks_embedded_total %v, want the %d chunks stored", n, len(m.want("docs")))
	}

	// Requests that carry a text sent before are the cost of finding the
	// refused texts: the bisection.
	seen := map[string]bool{}
	var requests, resent int
	for _, req := range fake.Requests()[before:] {
		if slices.Contains(req.Texts, ingest.ProbeText) {
			continue
		}
		requests++
		again := false
		for _, text := range req.Texts {
			again = again || seen[text]
			seen[text] = true
		}
		if again {
			resent++
		}
	}
	most := len(bad) * 2 * (1 + int(math.Log2(batch)))
	if resent > most {
		t.Errorf("%d requests re-sent texts to find %d refused ones, want at most %d", resent, len(bad), most)
	}
	t.Logf("200 events, %d refused: %d dead-lettered, %d points stored; %d embedding requests, %d of them re-sending texts (bound %d); /readyz 200 on %d of %d polls",
		len(bad), len(letters), len(m.want("docs")), requests, resent, most, polls-len(failed), polls)
}

// TestCollectionLimits: RAGPIPE_AUTO_CREATE names the collections events may
// create and RAGPIPE_MAX_COLLECTIONS how many; an event for a collection
// either refuses is dead-lettered with the setting's name, and the events of
// existing collections go on being stored.
func TestCollectionLimits(t *testing.T) {
	s := newSystem(t, "RAGPIPE_AUTO_CREATE=notes,team-*", "RAGPIPE_MAX_COLLECTIONS=2")
	s.startWorker()
	ev := func(collection, doc string) event {
		return event{user: "alice", collection: collection, body: map[string]any{"doc_id": doc, "text": "text of " + doc, "version": 1}}
	}
	s.publish([]event{ev("team-a", "a1"), ev("notes", "n1")})
	s.waitDrained(time.Minute)
	// Two collections created: the limit is reached.
	s.publish([]event{ev("team-b", "b1"), ev("other", "o1"), ev("documents", "d1"), ev("notes", "n2"), ev("team-a", "a2")})
	s.waitDrained(time.Minute)

	reasons := map[string]string{}
	for _, d := range s.deadLetters() {
		reasons[d.subject] = d.header.Get("Ragpipe-Error")
	}
	if len(reasons) != 2 {
		t.Errorf("dead letters %v, want those of team-b and other", reasons)
	}
	if r := reasons["rag.dlq.alice.team-b"]; !strings.Contains(r, "RAGPIPE_MAX_COLLECTIONS=2") {
		t.Errorf("team-b: reason %q, want RAGPIPE_MAX_COLLECTIONS=2 named", r)
	}
	if r := reasons["rag.dlq.alice.other"]; !strings.Contains(r, "RAGPIPE_AUTO_CREATE") {
		t.Errorf("other: reason %q, want RAGPIPE_AUTO_CREATE named", r)
	}
	for collection, want := range map[string]int{"team-a": 2, "notes": 2, "documents": 1} {
		if got := len(s.stored(collection)); got != want {
			t.Errorf("%s holds %d points, want %d", collection, got, want)
		}
	}
	names, err := s.store().CollectionNames(t.Context())
	if err != nil || !slices.Equal(names, []string{"documents", "notes", "team-a"}) {
		t.Errorf("collections %v (%v), want documents, notes and team-a", names, err)
	}
	// Each is the alias of its first generation; no refused one was created.
	generations, err := s.qc.ListCollections(t.Context())
	if slices.Sort(generations); err != nil || !slices.Equal(generations, []string{"documents__g1", "notes__g1", "team-a__g1"}) {
		t.Errorf("Qdrant collections %v (%v), want documents__g1, notes__g1 and team-a__g1", generations, err)
	}
}
