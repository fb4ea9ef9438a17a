package integration_test

import (
	"context"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// openAIEnv configures the default embedder of ragpipe processes for fake.
func openAIEnv(fake *embedtest.Server, model, key string) []string {
	return []string{
		"RAGPIPE_EMBEDDER=openai", "RAGPIPE_EMBEDDER_URL=" + fake.URL + "/v1",
		"RAGPIPE_EMBEDDER_MODEL=" + model, "RAGPIPE_EMBEDDER_API_KEY=" + key,
		"RAGPIPE_EMBEDDER_TIMEOUT=5s",
	}
}

// withTextHash adds to the expected points of want the text_hash a chunk
// embedded by identity carries.
func withTextHash(want map[string]map[string]any, identity string) map[string]map[string]any {
	for _, p := range want {
		p["text_hash"] = pipeline.TextHash(identity, p["text"].(string))
	}
	return want
}

// assertVectors fails the test unless every point of collection holds the
// fake's vector of its text.
func (s *system) assertVectors(collection string, dims int) {
	s.t.Helper()
	var offset *qdrant.PointId
	for {
		pts, next, err := s.qc.ScrollAndOffset(context.Background(), &qdrant.ScrollPoints{
			CollectionName: collection, Offset: offset, Limit: qdrant.PtrOf(uint32(200)),
			WithPayload: qdrant.NewWithPayloadInclude("text"), WithVectors: qdrant.NewWithVectors(true),
		})
		if err != nil {
			s.t.Fatal(err)
		}
		for _, p := range pts {
			text := p.Payload["text"].GetStringValue()
			got, want := denseVector(p.Vectors), embedtest.Vector(text, dims)
			if len(got) != len(want) {
				s.t.Fatalf("point %s: %d dimensions, want %d", p.Id.GetUuid(), len(got), len(want))
			}
			for i := range got {
				if math.Abs(float64(got[i]-want[i])) > 1e-5 {
					s.t.Fatalf("point %s does not hold the vector of its text %q", p.Id.GetUuid(), text)
				}
			}
		}
		if next == nil {
			return
		}
		offset = next
	}
}

// embeddedTexts returns the chunk texts fake embedded: every text but the
// worker's start-up probes.
func embeddedTexts(fake *embedtest.Server) []string {
	return slices.DeleteFunc(fake.Texts(), func(t string) bool { return t == ingest.ProbeText })
}

// metricValue reads one series from a /metrics page, 0 when it is absent.
func metricValue(t testing.TB, page, series string) float64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(page)
	if m == nil {
		return 0
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// revise returns the next version of a document's text, one kind of update
// in three: the text unchanged (a metadata update), a paragraph appended, or
// a word in the middle overwritten in place. Every new paragraph and word is
// unique, so no chunk text ever comes back once it changed; edits that shift
// chunks are TestEmbedderReuseShifted's.
func revise(r *rand.Rand, old string, round, doc int) string {
	switch (round + doc) % 3 {
	case 0:
		return old
	case 1:
		return old + fmt.Sprintf("\n\nRevision %d of document %d adds ", round, doc) + text(r, 120)
	default:
		at := len(old)/2 + strings.IndexByte(old[len(old)/2:], ' ') + 1
		end := at + strings.IndexAny(old[at:], " .\n")
		return old[:at] + fmt.Sprintf("%0*d", end-at, round*1000+doc)[:end-at] + old[end:]
	}
}

// TestEmbedderReuse runs a worker with the openai provider against a fake of
// the OpenAI API and real Qdrant through an update-heavy workload: 40
// documents, each updated five times (metadata only, a paragraph appended or
// a word overwritten), every round drained before the next. Each distinct
// chunk text must be embedded exactly once: unchanged chunks reuse their
// stored vectors. The log reports the embedder calls saved; run it with
//
//	go test -count=1 -run TestEmbedderReuse -v ./integration_test
func TestEmbedderReuse(t *testing.T) {
	const dims, model, key, docs, rounds = 64, "text-embedding-3-small", "sk-test-key", 40, 6
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: dims, Key: key, Model: model, Reverse: true, MaxBatch: 16})
	s := newSystem(t, append(append(chunking, openAIEnv(fake, model, key)...),
		"RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_EMBEDDER_BATCH_SIZE=16")...)
	w := s.startWorker()
	base := "http://" + httpAddr(t, w)

	r := rand.New(rand.NewPCG(3, 4))
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	m := newModel(t, 300, 30, dims)
	texts := make([]string, docs)
	distinct := map[string]bool{}
	chunks := 0
	for round := range rounds {
		var events []event
		for i := range docs {
			if round == 0 {
				texts[i] = text(r, 900+r.IntN(900))
			} else {
				texts[i] = revise(r, texts[i], round, i)
			}
			doc, meta := fmt.Sprint("doc-", i), map[string]any{"round": round}
			events = append(events, event{user: users[i%len(users)], collection: "docs", body: map[string]any{
				"doc_id": doc, "text": texts[i], "metadata": meta, "version": round + 1,
			}})
			m.add("docs", users[i%len(users)], doc, "upsert", texts[i], normalize(meta), uint64(round+1))
			for _, c := range chunker.Split(texts[i]) {
				distinct[c] = true
				chunks++
			}
		}
		s.publish(events)
		s.waitDrained(2 * time.Minute)
	}
	s.assertStored("docs", withTextHash(m.want("docs"), "openai/"+model))
	s.assertVectors("docs", dims)

	embedded := embeddedTexts(fake)
	if len(embedded) != len(distinct) {
		t.Errorf("%d texts embedded, want %d: the distinct chunk texts", len(embedded), len(distinct))
	}
	sorted := slices.Sorted(slices.Values(embedded))
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] {
			t.Errorf("text embedded twice: %.60q", sorted[i])
		}
	}
	page := get(t, base+"/metrics", 200)
	if n := metricValue(t, page, `ragpipe_chunks_embedded_total{collection="docs"}`); n != float64(len(distinct)) {
		t.Errorf("ragpipe_chunks_embedded_total %v, want %d", n, len(distinct))
	}
	if n := metricValue(t, page, `ragpipe_chunks_reused_total{collection="docs"}`); n != float64(chunks-len(distinct)) {
		t.Errorf("ragpipe_chunks_reused_total %v, want %d", n, chunks-len(distinct))
	}
	if n := metricValue(t, page, `ragpipe_embed_batch_size_count{embedder="default"}`); n < float64(len(distinct))/16 {
		t.Errorf("ragpipe_embed_batch_size_count %v: batches not counted", n)
	}
	for _, req := range fake.Requests() {
		if len(req.Texts) > 16 {
			t.Errorf("a request of %d texts, more than RAGPIPE_EMBEDDER_BATCH_SIZE=16", len(req.Texts))
		}
	}
	t.Logf("update-heavy workload: %d documents x %d versions = %d chunks; %d embedded, %d reused: %.0f%% of embedder calls saved",
		docs, rounds, chunks, len(embedded), chunks-len(embedded), 100*float64(chunks-len(embedded))/float64(chunks))
}

// TestEmbedderMisconfigured: an embedding service that refuses the API key
// (401) makes the worker log one clear line and report not ready; the events
// are retried, beyond RAGPIPE_MAX_DELIVER, and never dead-lettered. Once the
// service accepts the key, they are stored and the worker is ready again.
func TestEmbedderMisconfigured(t *testing.T) {
	const dims, model = 16, "text-embedding-3-small"
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: dims, Key: "sk-right"})
	s := newSystem(t, append(openAIEnv(fake, model, "sk-wrong-secret"),
		"RAGPIPE_COLLECTIONS=docs:16:cosine", "RAGPIPE_MAX_DELIVER=2")...)
	w := s.startWorker()
	base := "http://" + httpAddr(t, w)
	checkfor.Until(t, 30*time.Second, "/readyz failing", func() error {
		return status(base+"/readyz", 503, `embedders: embedder of collection "docs"`)
	})
	if body, _ := fetch(base+"/readyz", 503, ""); !strings.Contains(body, "401 Unauthorized: Incorrect API key provided") {
		t.Errorf("/readyz does not say why:\n%s", body)
	}

	m := newModel(t, 2000, 200, dims)
	var events []event
	for i := range 5 {
		doc := fmt.Sprint("doc-", i)
		events = append(events, event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "text": "text of " + doc}})
	}
	// A producer's publish expectation holds for the original only: a
	// requeued copy must not carry it.
	events = append(events, event{user: "bob", collection: "docs", body: map[string]any{"doc_id": "b", "text": "text of b"},
		header: nats.Header{"Nats-Expected-Last-Subject-Sequence": []string{"0"}, "Nats-Msg-Id": []string{"b-1"}}})
	seqs := s.publish(events)
	for i, e := range events {
		m.add("docs", e.user, e.body["doc_id"].(string), "upsert", e.body["text"].(string), nil, seqs[i])
	}
	// Each event is tried at least three times: more than RAGPIPE_MAX_DELIVER.
	checkfor.Until(t, time.Minute, "events retried", func() error {
		page, err := fetch(base+"/metrics", 200, "")
		if err != nil {
			return err
		}
		if n := metricValue(t, page, `ragpipe_events_total{collection="docs",outcome="retried"}`); n < 18 {
			return fmt.Errorf("%v retries", n)
		}
		return nil
	})
	if dl := s.deadLetters(); len(dl) > 0 {
		t.Fatalf("%d events dead-lettered because of the embedder's configuration: %s", len(dl), dl[0].header.Get("Ragpipe-Error"))
	}
	logs := w.log.String()
	if n := strings.Count(logs, "embedder misconfigured"); n != 1 {
		t.Errorf("the misconfiguration is logged %d times, want once", n)
	}
	if strings.Contains(logs, "sk-wrong-secret") {
		t.Error("the API key appears in the log")
	}

	fake.SetKey("sk-wrong-secret") // the service now accepts the worker's key
	s.waitDrained(time.Minute)
	checkfor.Until(t, 10*time.Second, "/readyz recovering", func() error { return status(base+"/readyz", 200, "ready") })
	s.assertStored("docs", withTextHash(m.want("docs"), "openai/"+model))
	if !strings.Contains(w.log.String(), "embedder works again") {
		t.Error("the recovery is not logged")
	}
	if dl := s.deadLetters(); len(dl) > 0 {
		t.Fatalf("%d events dead-lettered", len(dl))
	}
}

// TestEmbedderDimensionsMismatch: a model whose vectors do not have the
// collection's dimensions stops the worker at start, naming both numbers.
func TestEmbedderDimensionsMismatch(t *testing.T) {
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.Ollama, Dims: 768})
	s := newSystem(t)
	code, out := run(t, append(s.env, "RAGPIPE_COLLECTIONS=docs:1024:cosine",
		"RAGPIPE_EMBEDDER=ollama", "RAGPIPE_EMBEDDER_URL="+fake.URL, "RAGPIPE_EMBEDDER_MODEL=nomic-embed-text"), "worker")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if code == 0 || !strings.Contains(last, `collection "docs" has 1024 dimensions`) || !strings.Contains(last, "returns 768-dimensional vectors") {
		t.Fatalf("exit %d, last line %q; want a failure naming 1024 and 768", code, last)
	}
	if n := len(fake.Requests()); n != 1 {
		t.Errorf("%d probe requests, want 1", n)
	}
}

// TestEmbedderProfiles: collections name embedder profiles, so one worker
// embeds a 32-dimensional collection with TEI and a 16-dimensional one, and
// collections created on first use, with the default Ollama embedder.
func TestEmbedderProfiles(t *testing.T) {
	ollama := embedtest.Start(t, embedtest.Config{API: embedtest.Ollama, Dims: 16, Model: "nomic-embed-text"})
	tei := embedtest.Start(t, embedtest.Config{API: embedtest.TEI, Dims: 32, Key: "tei-secret", MaxBatch: 8})
	s := newSystem(t, "RAGPIPE_COLLECTIONS=notes:16:cosine,big:32:dot:BGE",
		"RAGPIPE_EMBEDDER=ollama", "RAGPIPE_EMBEDDER_URL="+ollama.URL, "RAGPIPE_EMBEDDER_MODEL=nomic-embed-text",
		"RAGPIPE_EMBEDDER_BGE_KIND=tei", "RAGPIPE_EMBEDDER_BGE_URL="+tei.URL, "RAGPIPE_EMBEDDER_BGE_MODEL=BAAI/bge-m3",
		"RAGPIPE_EMBEDDER_BGE_API_KEY=tei-secret", "RAGPIPE_EMBEDDER_BGE_BATCH_SIZE=8")
	w := s.startWorker()
	if strings.Contains(w.log.String(), "tei-secret") {
		t.Error("the profile's API key appears in the log")
	}
	r := rand.New(rand.NewPCG(7, 7))
	models := map[string]*model{"notes": newModel(t, 2000, 200, 16), "big": newModel(t, 2000, 200, 32), "auto": newModel(t, 2000, 200, 16)}
	var events []event
	for i := range 30 {
		collection := []string{"notes", "big", "auto"}[i%3]
		doc, body := fmt.Sprint("doc-", i), text(r, 200)
		events = append(events, event{user: "alice", collection: collection, body: map[string]any{"doc_id": doc, "text": body, "version": 1}})
		models[collection].add(collection, "alice", doc, "upsert", body, nil, 1)
	}
	s.publish(events)
	s.waitDrained(time.Minute)
	identities := map[string]string{"notes": "ollama/nomic-embed-text", "big": "tei/BAAI/bge-m3", "auto": "ollama/nomic-embed-text"}
	for _, c := range slices.Sorted(maps.Keys(models)) {
		s.assertStored(c, withTextHash(models[c].want(c), identities[c]))
		s.assertVectors(c, models[c].dims)
	}
	if n := len(embeddedTexts(tei)); n != 10 {
		t.Errorf("TEI embedded %d texts, want big's 10", n)
	}
	if n := len(embeddedTexts(ollama)); n != 20 {
		t.Errorf("Ollama embedded %d texts, want the 20 of notes and auto", n)
	}
}

// TestEmbedderReuseShifted: a document's unchanged chunks keep their vectors
// when an edit before them shifts their index, both ways; only the new texts
// are embedded. In process, against real Qdrant and NATS.
func TestEmbedderReuseShifted(t *testing.T) {
	l := newLocal(t, qdrantstore.Config{})
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
	emb, err := embedder.NewOpenAI(embedder.Config{URL: fake.URL, Model: "m", Dimensions: 16})
	if err != nil {
		t.Fatal(err)
	}
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	stage := l.newStage(t, ingest.StageConfig{Embedder: emb, Chunker: chunker, Reuse: l.store,
		Collections: []pipeline.Collection{{Name: "docs", Dims: 16, Distance: pipeline.Cosine}}})
	r := rand.New(rand.NewPCG(1, 1))
	paragraphs := make([]string, 8)
	for i := range paragraphs {
		paragraphs[i] = fmt.Sprintf("Paragraph %d. %s", i, text(r, 150))
	}
	s := &system{t: t, qc: l.store.Client()}
	var stored []string // chunk texts of the stored version
	for version, body := range []string{
		strings.Join(paragraphs[2:], "\n\n"),        // first version
		strings.Join(paragraphs, "\n\n"),            // two paragraphs inserted before
		strings.Join(paragraphs[3:], "\n\n"),        // three paragraphs removed at the start
		strings.Join(paragraphs[3:], "\n\n") + " .", // the last chunk changed
	} {
		before := len(embeddedTexts(fake))
		e := pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "doc", Text: body, Version: uint64(version + 1)}
		if errs := stage.Process(t.Context(), []pipeline.Event{e}); errs[0] != nil {
			t.Fatal(errs[0])
		}
		chunks := chunker.Split(body)
		var fresh []string
		for _, c := range chunks {
			if !slices.Contains(stored, c) {
				fresh = append(fresh, c)
			}
		}
		if got := embeddedTexts(fake)[before:]; !slices.Equal(got, fresh) {
			t.Errorf("version %d: embedded %d texts, want the %d new ones of %d chunks", version+1, len(got), len(fresh), len(chunks))
		}
		if version > 0 && len(fresh) >= len(chunks) {
			t.Fatalf("version %d: no chunk left unchanged; the test needs some", version+1)
		}
		stored = chunks
	}
	s.assertVectors("docs", 16)
}
