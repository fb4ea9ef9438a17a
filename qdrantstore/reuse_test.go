package qdrantstore_test

import (
	"fmt"
	"testing"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestStoredVectorsPages stores 300 chunks with text hashes in a collection
// of 4096 dimensions, so that a reply page holds about 126 vectors, and looks
// them up over several pages. What a lookup returns is the contract suite's
// (StoredVectors, run against Qdrant too).
func TestStoredVectorsPages(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	const d, n = 4096, 300
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "reuse", Dims: d, Distance: pipeline.Dot}, true); err != nil {
		t.Fatal(err)
	}
	storetest.Apply(t, s, "reuse", storetest.ReuseWrite(n, d))
	ids, hashes := storetest.ReuseLookup(n)
	got, err := s.StoredVectors(t.Context(), "reuse", ids, append(hashes, "hash-unknown", ""))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != n/2 {
		t.Errorf("%d vectors, want %d", len(got), n/2)
	}
	for k := 0; k < n; k += 2 {
		if v := got[fmt.Sprint("hash-", k)]; len(v) != d || v[0] != float32(k) || v[1] != 1 {
			t.Fatalf("vector of hash-%d wrong: %d dimensions, starts %v", k, len(v), v[:min(len(v), 2)])
		}
	}
}
