// Package reindex carries out the Jobs of package generation in a worker:
// it builds a collection's next generation from what is stored, checks it
// against the serving one, switches to it, and rolls back or drops the
// previous one on request.
package reindex

import (
	"context"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Store is what a reindex needs of the vector store, besides the ingest
// Stage it writes through; the Qdrant store and the embedded store
// implement it. Collection names are store collections (generations) or
// aliases, which every read resolves.
type Store interface {
	// CreateGeneration creates collection c under exactly its name, as
	// EnsureCollection creates collections (keyword vectors unless the
	// store is set to create none, as Config.NoKeywords says; payload
	// indexes; c's layout or the store's defaults), unless it exists with
	// c's dimensions and distance; with others it fails permanently.
	CreateGeneration(ctx context.Context, c pipeline.Collection) error
	// AliasTarget returns the collection the alias name points at; "" when
	// name is not an alias.
	AliasTarget(ctx context.Context, name string) (string, error)
	// SwitchAlias points alias at collection in one atomic step, creating
	// the alias when missing. It fails with an error wrapping
	// pipeline.ErrNameTaken when a collection has the alias' name.
	SwitchAlias(ctx context.Context, alias, collection string) error
	// DropCollection deletes collection and its points; a missing one is no
	// error.
	DropCollection(ctx context.Context, name string) error

	// Describe returns an existing collection's dimensions, distance and
	// keyword vectors.
	Describe(ctx context.Context, collection string) (pipeline.Collection, error)
	// Count returns the number of points of each tenant.
	Count(ctx context.Context, collection string) (map[string]int, error)
	// List returns a page of userID's documents (see search.Index).
	List(ctx context.Context, collection, userID string, limit int, cursor string) ([]pipeline.Doc, string, error)
	// DocumentPoints returns every stored point of the documents, all
	// versions present, with vectors and payload.
	DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error)
	// Search returns the best hits of q in collection.
	Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error)
}
