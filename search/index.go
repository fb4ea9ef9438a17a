// Package search answers tenant-scoped search and list requests over NATS
// (CONTRACT §4-5).
package search

import "context"

// Query is one search, always scoped to one tenant.
type Query struct {
	UserID string    // the tenant, from the request subject; every hit belongs to it
	Vector []float32 // the query embedding
	TopK   int       // most hits to return, 1-100
	// Filter holds metadata equality conditions: every key must match one
	// of its values (string, int64, float64 or bool).
	Filter map[string][]any
	// ScoreThreshold drops hits scoring below it when not nil.
	ScoreThreshold *float32
}

// Hit is one matching chunk.
type Hit struct {
	DocID      string         `json:"doc_id"`
	ChunkIndex int            `json:"chunk_index"`
	Score      float32        `json:"score"`
	Text       string         `json:"text"`
	Metadata   map[string]any `json:"metadata"`
	Version    uint64         `json:"version"`
}

// Doc is one stored document of a tenant, as listed.
type Doc struct {
	DocID      string         `json:"doc_id"`
	Version    uint64         `json:"version"`
	ChunkCount int            `json:"chunk_count"`
	Metadata   map[string]any `json:"metadata"`
}

// Index is the vector store as the search service needs it; the Qdrant sink
// and the embedded store implement it. Errors wrapping
// pipeline.ErrUnknownCollection mean the collection does not exist (404);
// errors for which pipeline.IsPermanent is false mean the store is
// unavailable (503).
type Index interface {
	// Search returns the best hits of q in collection, best first.
	Search(ctx context.Context, collection string, q Query) ([]Hit, error)
	// List returns up to limit documents of userID in collection, each once,
	// after the opaque cursor ("" for the first page), and the cursor of the
	// next page ("" after the last).
	List(ctx context.Context, collection, userID string, limit int, cursor string) (docs []Doc, next string, err error)
}
