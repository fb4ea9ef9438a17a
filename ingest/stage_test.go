package ingest_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// store is a sink the Stage writes to that the test can read back.
type store interface {
	ingest.Sink
	ingest.CollectionLister
	List(ctx context.Context, collection, userID string, limit int, cursor string) ([]pipeline.Doc, string, error)
}

// stores open each store against a real server or directory.
var stores = []struct {
	name string
	open func(t *testing.T) store
}{
	{"qdrant", func(t *testing.T) store {
		node := qdranttest.Start(t)
		q, err := qdrantstore.New(t.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: node.GRPCPort()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { q.Close() })
		return q
	}},
	{"local", func(t *testing.T) store {
		l, err := localstore.Open(t.Context(), localstore.Config{Dir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}},
}

// register starts NATS and returns a version register on it.
func register(t testing.TB) *lww.Register {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	r, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// newStage builds and sets up a Stage writing to sink, embedding with an
// OpenAI client of fake (16 dimensions, batches of 8), with the collection
// "docs" configured; cfg's other fields are kept.
func newStage(t *testing.T, sink ingest.Sink, fake *embedtest.Server, key string, cfg ingest.StageConfig) *ingest.Stage {
	t.Helper()
	emb, err := embedder.NewOpenAI(embedder.Config{URL: fake.URL, Model: "m", APIKey: key, Dimensions: 16, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Sink, cfg.Versions, cfg.Embedder, cfg.Chunker = sink, register(t), emb, chunker
	cfg.Collections = []pipeline.Collection{{Name: "docs", Dims: 16, Distance: pipeline.Cosine}}
	stage, err := ingest.NewStage(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return stage
}

// words returns n characters of words, unique to seed.
func words(seed, n int) string {
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "w%d-%d ", seed, i)
	}
	return strings.TrimSpace(b.String()[:n])
}

// docIDs lists the documents of user in collection.
func docIDs(t *testing.T, s store, collection, user string) []string {
	t.Helper()
	var ids []string
	for cursor := ""; ; {
		docs, next, err := s.List(t.Context(), collection, user, 100, cursor)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			ids = append(ids, d.DocID)
		}
		if cursor = next; cursor == "" {
			slices.Sort(ids)
			return ids
		}
	}
}

// TestRefusedTexts: an embedding service that refuses some texts as longer
// than its model's context (OpenAI's 400 context_length_exceeded) fails
// exactly the events with such a chunk, permanently and with the reason, and
// every event sharing that text; the other events of the batch are stored,
// the Stage stays ready, and finding the refused texts costs at most
// 2·log2(8) requests per refused text (plus one control request).
func TestRefusedTexts(t *testing.T) {
	const maxChars = 250
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := st.open(t)
			fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16, MaxInputChars: maxChars})
			stage := newStage(t, s, fake, "", ingest.StageConfig{})
			shared := words(-1, 290) // refused, in two documents
			var events []pipeline.Event
			for i := range 40 {
				text := words(i, 120)
				switch {
				case i%9 == 4:
					text = words(i, 290) // one chunk, refused
				case i == 6:
					text = words(i, 120) + "\n\n" + words(1000+i, 290) // a good chunk and a refused one
				case i == 7 || i == 8:
					text = shared
				}
				events = append(events, pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs",
					DocID: fmt.Sprint("doc-", i), Text: text, Version: 1})
			}
			before := len(fake.Requests())
			errs := stage.Process(t.Context(), events)

			chunker, _ := pipeline.NewChunker(300, 30)
			var stored []string
			refusedTexts := map[string]bool{}
			for i, e := range events {
				var refused bool
				for _, c := range chunker.Split(e.Text) {
					if len(c) > maxChars {
						refused, refusedTexts[c] = true, true
					}
				}
				switch {
				case refused && (!pipeline.IsPermanent(errs[i]) || !strings.Contains(fmt.Sprint(errs[i]), "maximum context length is 250 tokens")):
					t.Errorf("%s: err %v, want a permanent error with the service's reason", e.DocID, errs[i])
				case !refused && errs[i] != nil:
					t.Errorf("%s: err %v", e.DocID, errs[i])
				case !refused:
					stored = append(stored, e.DocID)
				}
			}
			slices.Sort(stored)
			if got := docIDs(t, s, "docs", "alice"); !slices.Equal(got, stored) {
				t.Errorf("stored %v, want %v", got, stored)
			}
			if err := stage.Ready(t.Context()); err != nil {
				t.Errorf("Ready: %v", err)
			}
			if len(stored) < 30 || len(refusedTexts) < 5 {
				t.Fatalf("%d events stored, %d texts refused: the test needs more of both", len(stored), len(refusedTexts))
			}
			requests := len(fake.Requests()) - before
			batches := int(math.Ceil(float64(len(events)-1) / 8)) // distinct texts: 40 events, two share one
			if most := batches + len(refusedTexts)*2*3 + 1; requests > most {
				t.Errorf("%d requests for %d batches and %d refused texts, want at most %d", requests, batches, len(refusedTexts), most)
			}
			t.Logf("%d events, %d texts refused: %d requests, %d without refusals", len(events), len(refusedTexts), requests, batches)
		})
	}
}

// TestRefusedKey: a service that refuses the API key (401) is a
// misconfiguration: no event fails for good, and Ready says why.
func TestRefusedKey(t *testing.T) {
	s := stores[1].open(t)
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16, Key: "sk-right"})
	stage := newStage(t, s, fake, "sk-wrong", ingest.StageConfig{})
	if err := stage.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Fatalf("Ready after the probe: %v, want the 401", err)
	}
	errs := stage.Process(t.Context(), []pipeline.Event{{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: "text", Version: 1}})
	if !pipeline.IsMisconfigured(errs[0]) || pipeline.IsPermanent(errs[0]) {
		t.Fatalf("err %v, want a misconfiguration", errs[0])
	}
	if err := stage.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), "401 Unauthorized") {
		t.Errorf("Ready: %v, want the 401", err)
	}
}

// listings counts the listings of a store's collections.
type listings struct {
	store
	n atomic.Int32
}

func (l *listings) CollectionNames(ctx context.Context) ([]string, error) {
	l.n.Add(1)
	return l.store.CollectionNames(ctx)
}

// TestMaxCollections: with MaxCollections 2, events may create two
// collections besides the configured ones; an event for a third fails for
// good, naming the setting, without listing the store again each time. A
// collection that exists already is used whatever the count.
func TestMaxCollections(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			s := &listings{store: st.open(t)}
			fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
			stage := newStage(t, s, fake, "", ingest.StageConfig{MaxCollections: 2, AutoCreate: func(string) bool { return true }})
			process := func(collection string) error {
				t.Helper()
				return stage.Process(t.Context(), []pipeline.Event{{Op: pipeline.OpUpsert, UserID: "alice", Collection: collection,
					DocID: "d", Text: "text of " + collection, Version: 1}})[0]
			}
			for _, c := range []string{"docs", "a", "b", "a", "docs"} {
				if err := process(c); err != nil {
					t.Fatalf("%s: %v", c, err)
				}
			}
			for range 3 {
				if err := process("c"); !pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "RAGPIPE_MAX_COLLECTIONS=2") {
					t.Fatalf("c: err %v, want a permanent error naming RAGPIPE_MAX_COLLECTIONS=2", err)
				}
			}
			if n := s.n.Load(); n != 2 {
				t.Errorf("%d listings, want 2: one per collection created; the count is known at the limit", n)
			}
			// Created by another replica: it exists, so its events are stored.
			if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "d", Dims: 16, Distance: pipeline.Cosine}, true); err != nil {
				t.Fatal(err)
			}
			if err := process("d"); err != nil {
				t.Errorf("d, existing: %v", err)
			}
			names, err := s.store.CollectionNames(t.Context())
			if slices.Sort(names); err != nil || !slices.Equal(names, []string{"a", "b", "d", "docs"}) {
				t.Errorf("collections %v (%v), want a, b, d and docs", names, err)
			}
		})
	}
}

// TestMaxCollectionsNeedsLister: a limit on a sink that cannot list its
// collections is refused at construction.
func TestMaxCollectionsNeedsLister(t *testing.T) {
	var sink struct{ ingest.Sink }
	sink.Sink = stores[1].open(t)
	emb, err := embedder.NewHash(16)
	if err != nil {
		t.Fatal(err)
	}
	chunker, _ := pipeline.NewChunker(300, 30)
	_, err = ingest.NewStage(ingest.StageConfig{Sink: sink, Versions: register(t), Embedder: emb, Chunker: chunker, MaxCollections: 1})
	if err == nil || !strings.Contains(err.Error(), "MaxCollections") {
		t.Fatalf("err %v, want MaxCollections refused", err)
	}
}

// applied records the writes and points a sink is asked to apply.
type applied struct {
	store
	writes []pipeline.DocWrite
	points []pipeline.Point
}

func (a *applied) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	a.writes = append(a.writes, writes...)
	for _, w := range writes {
		a.points = append(a.points, w.Points...)
	}
	return a.store.Apply(ctx, collection, writes)
}

// TestFirst: a write is First exactly when its version was the first its
// document's register entry held, which is what lets a store write it
// insert-only; a newer version, a redelivery or a document of another
// tenant with the same id are told apart.
func TestFirst(t *testing.T) {
	s := &applied{store: stores[1].open(t)}
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
	stage := newStage(t, s, fake, "", ingest.StageConfig{})
	upsert := func(user, doc string, v uint64) pipeline.Event {
		return pipeline.Event{Op: pipeline.OpUpsert, UserID: user, Collection: "docs", DocID: doc, Text: words(int(v), 100), Version: v}
	}
	steps := []struct {
		event pipeline.Event
		first bool
	}{
		{upsert("alice", "d", 1), true},
		{upsert("alice", "d", 2), false},
		{upsert("alice", "d", 2), false}, // redelivered
		{upsert("bob", "d", 1), true},
	}
	for _, step := range steps {
		s.writes = nil
		if err := stage.Process(t.Context(), []pipeline.Event{step.event})[0]; err != nil {
			t.Fatal(err)
		}
		if len(s.writes) != 1 || s.writes[0].First != step.first {
			t.Fatalf("%s/%s v%d: writes %+v, want one with First %t", step.event.UserID, step.event.DocID, step.event.Version, s.writes, step.first)
		}
	}
}

// TestKeywords: every point the Stage writes carries its text's keyword
// vector, whether its vector is embedded or comes with the event; a point
// without text has none.
func TestKeywords(t *testing.T) {
	s := &applied{store: stores[1].open(t)}
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
	stage := newStage(t, s, fake, "", ingest.StageConfig{})
	vector := make([]float32, 16)
	vector[0] = 1
	events := []pipeline.Event{
		{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "text", Text: words(1, 280) + "\n\n" + words(2, 280), Version: 1},
		{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "vector", Text: "set maxAckPending", Vector: vector, Version: 1},
		{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "bare", Vector: vector, Version: 1},
	}
	for i, err := range stage.Process(t.Context(), events) {
		if err != nil {
			t.Fatalf("%s: %v", events[i].DocID, err)
		}
	}
	if len(s.points) < 4 {
		t.Fatalf("%d points written, want the text's chunks and two", len(s.points))
	}
	for _, p := range s.points {
		want := pipeline.Keywords(p.Text)
		if (want == nil) != (p.DocID == "bare") {
			t.Fatalf("%s: the test's texts are wrong", p.DocID)
		}
		if want == nil && p.Keywords != nil ||
			want != nil && (p.Keywords == nil || !slices.Equal(p.Keywords.Indices, want.Indices) || !slices.Equal(p.Keywords.Values, want.Values)) {
			t.Errorf("%s/%d: keywords %v, want %v", p.DocID, p.ChunkIndex, p.Keywords, want)
		}
	}
}

// described is applied with its store's Describe, so that the Stage learns
// which collections store keyword vectors.
type described struct{ *applied }

func (d described) Describe(ctx context.Context, collection string) (pipeline.Collection, error) {
	return d.store.(ingest.Describer).Describe(ctx, collection)
}

// TestKeywordsOnlyWhereStored: the points of a collection created without
// keyword vectors, written by its own name or as a generation, carry none;
// those of a collection with them carry theirs.
func TestKeywordsOnlyWhereStored(t *testing.T) {
	q := stores[0].open(t).(*qdrantstore.Store)
	old := pipeline.Collection{Name: "old", Dims: 16, Distance: pipeline.Cosine}
	if err := q.CreateWithoutKeywords(t.Context(), old); err != nil {
		t.Fatal(err)
	}
	s := described{&applied{store: q}}
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
	emb, _ := embedder.NewHash(16)
	chunker, _ := pipeline.NewChunker(300, 30)
	r := &router{}
	stage := newStage(t, s, fake, "", ingest.StageConfig{Router: r})
	event := func(collection, docID string) pipeline.Event {
		return pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: collection, DocID: docID, Text: "set maxAckPending", Version: 1}
	}
	events := []pipeline.Event{event("docs", "a"), event("old", "b")}
	mustProcess(t, events, stage.Process(t.Context(), events))
	r.set(func(r *router) {
		r.route = ingest.Route{Revision: 1, Targets: []ingest.Target{{Collection: old, Embedder: emb, Chunker: chunker}}}
	})
	events = []pipeline.Event{event("notes", "c")}
	mustProcess(t, events, stage.Process(t.Context(), events))
	if len(s.points) != 3 {
		t.Fatalf("%d points written, want 3", len(s.points))
	}
	for _, p := range s.points {
		if got, want := p.Keywords != nil, p.DocID == "a"; got != want {
			t.Errorf("%s: keywords %v, want them: %t", p.DocID, p.Keywords, want)
		}
	}
}
