package qdrantstore_test

import (
	"reflect"
	"sync"
	"testing"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// TestSearchCoalesced runs many searches at once through a store that
// sends one request of a collection's searches at a time, so that the
// others wait and go in batches (Qdrant counts QueryBatch calls): each
// search gets the hits it gets alone, in a store that never coalesces, and
// a search Qdrant refuses (a vector of the wrong dimensions) fails alone,
// with its own permanent error.
func TestSearchCoalesced(t *testing.T) {
	node := qdranttest.Start(t)
	alone := newSink(t, node, func(c *qdrantstore.Config) { c.QueriesInFlight = -1 })
	ensure(t, alone, "coalesce", pipeline.Cosine)
	users := []string{"alice", "bob", "carol"}
	for _, u := range users {
		storeSearchDocs(t, alone, "coalesce", u)
	}
	threshold := float32(0.8)
	queries := make([]pipeline.Query, 60)
	for i := range queries {
		q := pipeline.Query{UserID: users[i%len(users)], Vector: angled(float64(i * 7 % 90)), TopK: 1 + i%6, Mode: pipeline.ModeDense}
		switch i % 4 {
		case 1:
			q.Filter = map[string][]any{"env": {"prod"}}
		case 2:
			q.ScoreThreshold = &threshold
		}
		queries[i] = q
	}
	const bad = 17
	queries[bad].Vector = queries[bad].Vector[:3]
	want := make([][]pipeline.Hit, len(queries))
	for i, q := range queries {
		hits, err := alone.Search(t.Context(), "coalesce", q)
		if (err != nil) != (i == bad) {
			t.Fatalf("search %d alone: %v", i, err)
		}
		want[i] = hits
	}

	s := newSink(t, node, func(c *qdrantstore.Config) { c.QueriesInFlight = 1 })
	batches := node.GRPCCalls(t, "/qdrant.Points/QueryBatch")
	got := make([][]pipeline.Hit, len(queries))
	errs := make([]error, len(queries))
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i, q := range queries {
		wg.Go(func() {
			<-start
			got[i], errs[i] = s.Search(t.Context(), "coalesce", q)
		})
	}
	close(start)
	wg.Wait()
	for i := range queries {
		if i == bad {
			if errs[i] == nil || !pipeline.IsPermanent(errs[i]) {
				t.Errorf("search %d, a vector of 3 dimensions: error %v, want a permanent one", i, errs[i])
			}
			continue
		}
		if errs[i] != nil || !reflect.DeepEqual(got[i], want[i]) {
			t.Errorf("search %d coalesced: %v, %v\nwant %v", i, hitIDs(got[i]), errs[i], hitIDs(want[i]))
		}
	}
	if n := node.GRPCCalls(t, "/qdrant.Points/QueryBatch") - batches; n == 0 {
		t.Fatal("no QueryBatch sent: the searches were not coalesced")
	} else {
		t.Logf("%d searches: %d batches, the rest alone", len(queries), n)
	}
}
