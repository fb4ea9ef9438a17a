package integration_test

import (
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// TestReindexAdopt reindexes a collection created before generations: a
// plain Qdrant collection `documents`. Its first reindex adopts it as
// generation 0 and builds documents__g1 beside it, under events and
// searches. After the switch ragpipe serves documents__g1 while the plain
// collection, which Qdrant lets no alias replace, is kept exact for readers
// outside ragpipe; --drop-previous deletes it and puts the alias documents
// in its place.
func TestReindexAdopt(t *testing.T) {
	fake := startReindexFake(t, embedtest.Config{})
	s := newSystem(t, reindexEnv(fake)...)
	store, err := qdrantstore.New(t.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: s.qdrant.GRPCPort()})
	if err != nil {
		t.Fatal(err)
	}
	// The collection as ragpipe created it before generations: under the
	// ragpipe name itself.
	if err := store.CreateGeneration(t.Context(), pipeline.Collection{Name: "documents", Dims: oldDims, Distance: pipeline.Cosine}); err != nil {
		t.Fatal(err)
	}
	store.Close()
	s.startWorker()
	s.startSearcher("searcher", nil)
	w := newWorkload(t, reindexDocs(1000), 6)
	w.initial(s)
	s.assertQdrantGeneration(w, "documents", oldDims, "")
	states := watchStates(t, s.js, "documents")

	st := reindexUnderLoad(t, s, states, w, "adopted collection", toSmall...)
	mustServe(t, st, "documents__g1", "documents")
	if st.Previous.Number != 0 || st.Serving.Number != 1 {
		t.Fatalf("State %s: want the plain collection adopted as generation 0", describeState(st))
	}
	s.waitDrained(2 * time.Minute)
	s.assertQdrantServes("") // documents is a collection, not an alias, until dropped
	s.assertQdrantGeneration(w, "documents__g1", newDims, reindexIdentity)
	s.assertQdrantGeneration(w, "documents", oldDims, "")

	runToEnd(t, s, "reindex --drop-previous", reindexCommand("--drop-previous"))
	mustServe(t, states.done(), "documents__g1", "")
	s.assertQdrantServes("documents__g1")
	s.assertQdrantGeneration(w, "documents", newDims, reindexIdentity)
}
