package erase_test

import (
	"context"
	"fmt"
	"maps"
	"testing"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/erase"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// generationStore is a store that creates generations, as a reindex does.
type generationStore interface {
	store
	CreateGeneration(ctx context.Context, c pipeline.Collection) error
}

func TestForgetGenerationsQdrant(t *testing.T) { testForgetGenerations(t, qdrantStore(t)) }

func TestForgetGenerationsEmbedded(t *testing.T) { testForgetGenerations(t, embeddedStore(t)) }

// testForgetGenerations: a tenant forgotten while docs has a second
// generation (one a reindex builds, holding copies of the documents) loses
// its points in both generations; the report counts those of docs itself.
func testForgetGenerations(t *testing.T, s generationStore) {
	ctx := t.Context()
	w := newWorld(t, s)
	stop := w.run()
	var copies []pipeline.Event
	for _, e := range []struct{ user, doc string }{{"alice", "a1"}, {"alice", "a2"}, {"bob", "b1"}} {
		text := e.doc + " of " + e.user
		w.publish("rag.ingest."+e.user+".docs", fmt.Sprintf(`{"doc_id":%q,"text":%q,"version":5}`, e.doc, text))
		copies = append(copies, pipeline.Event{Op: pipeline.OpUpsert, UserID: e.user, Collection: "docs", DocID: e.doc, Text: text, Version: 5})
	}
	w.waitPoints("docs", map[string]int{"alice": 2, "bob": 1})
	stop()

	next := pipeline.Collection{Name: generation.Name("docs", 2), Dims: 16, Distance: pipeline.Cosine}
	if err := s.CreateGeneration(ctx, next); err != nil {
		t.Fatal(err)
	}
	emb, err := embedder.NewHash(16)
	if err != nil {
		t.Fatal(err)
	}
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	for i, err := range w.stage.ProcessTo(ctx, copies, []ingest.Target{{Collection: next, Embedder: emb, Chunker: chunker}}) {
		if err != nil {
			t.Fatalf("copy of %s: %v", copies[i].DocID, err)
		}
	}
	w.waitPoints(next.Name, map[string]int{"alice": 2, "bob": 1})

	r, err := erase.Forget(ctx, erase.Config{JetStream: w.js, Store: s, Versions: w.register}, "alice")
	if err != nil || !maps.Equal(r.Points, map[string]int{"docs": 2, "notes": 0}) {
		t.Fatalf("Forget = %+v, %v; want 2 points of docs, none of notes", r, err)
	}
	w.waitPoints("docs", map[string]int{"bob": 1})
	w.waitPoints(next.Name, map[string]int{"bob": 1})
}
