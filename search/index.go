// Package search answers tenant-scoped search, list and status requests over
// NATS (CONTRACT §4, §5, §5b).
package search

import (
	"context"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Index is the vector store as the search service needs it; the Qdrant sink
// and the embedded store implement it. Errors wrapping
// pipeline.ErrUnknownCollection mean the collection does not exist (404);
// errors wrapping pipeline.ErrInvalidCursor mean the caller's cursor is not one List
// returned (400); errors for which pipeline.IsPermanent is false mean the
// store is unavailable (503).
type Index interface {
	// Search returns the best hits of q in collection, best first.
	Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error)
	// List returns up to limit documents of userID in collection, each once,
	// after the opaque cursor ("" for the first page), and the cursor of the
	// next page ("" after the last).
	List(ctx context.Context, collection, userID string, limit int, cursor string) (docs []pipeline.Doc, next string, err error)
	// Status returns, keyed by doc_id, the documents of userID among docIDs
	// that a search can find now: the version and chunk count of each, no
	// metadata. Documents not stored, or stored for another tenant, are
	// absent.
	Status(ctx context.Context, collection, userID string, docIDs []string) (map[string]pipeline.Doc, error)
	// CollectionExists reports whether collection exists.
	CollectionExists(ctx context.Context, collection string) (bool, error)
}

// Embedder embeds search queries with a collection's embedder.
type Embedder interface {
	// Embed returns one vector per text, in order. It blocks until done or ctx ends.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dimensions is the length of every vector Embed returns.
	Dimensions() int
}

// Serving is the generation of a collection that answers its requests now
// (package generation): the store collection Index calls name, and the
// embedder its points were made with.
type Serving struct {
	Collection string
	Embedder   Embedder
}
