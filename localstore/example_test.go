package localstore_test

import (
	"context"
	"fmt"
	"log"
	"os"

	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// oneChunk is a one-chunk document write of user's document at version.
func oneChunk(user, id string, version uint64, text string, vector ...float32) pipeline.DocWrite {
	return pipeline.DocWrite{UserID: user, DocID: id, Version: version, Points: []pipeline.Point{{
		ID: pipeline.PointID(user, id, 0), Vector: vector, ChunkCount: 1, Text: text,
	}}}
}

// Example opens a store, creates a collection, writes documents and searches
// one tenant's points. A late, older version of a document changes nothing,
// and what was acknowledged is still there after reopening.
func Example() {
	dir, err := os.MkdirTemp("", "localstore-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx := context.Background()

	s, err := localstore.Open(ctx, localstore.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	coll := pipeline.Collection{Name: "docs", Dims: 3, Distance: pipeline.Cosine}
	if err := s.EnsureCollection(ctx, coll, true); err != nil {
		log.Fatal(err)
	}
	err = s.Apply(ctx, "docs", []pipeline.DocWrite{
		oneChunk("alice", "runbook", 2, "restart the worker, then check its lag", 1, 0, 0),
		oneChunk("alice", "oncall", 1, "the rota changes on Mondays", 3, 4, 0),
		oneChunk("bob", "runbook", 1, "bob's tenant is never searched by alice", 1, 0, 0),
	})
	if err != nil {
		log.Fatal(err)
	}
	// An older version arriving late leaves version 2 in place.
	if err := s.Apply(ctx, "docs", []pipeline.DocWrite{oneChunk("alice", "runbook", 1, "stale", 0, 1, 0)}); err != nil {
		log.Fatal(err)
	}
	if err := s.Close(); err != nil {
		log.Fatal(err)
	}

	s, err = localstore.Open(ctx, localstore.Config{Dir: dir})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close()
	hits, err := s.Search(ctx, "docs", pipeline.Query{UserID: "alice", Vector: []float32{2, 0, 0}, TopK: 10})
	if err != nil {
		log.Fatal(err)
	}
	for _, h := range hits {
		fmt.Printf("%s v%d %.2f %s\n", h.DocID, h.Version, h.Score, h.Text)
	}
	// Output:
	// runbook v2 1.00 restart the worker, then check its lag
	// oncall v1 0.60 the rota changes on Mondays
}
