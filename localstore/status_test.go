package localstore_test

import (
	"context"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Status and CollectionExists let the contract suite's status test read the
// reopened store.
func (r *reopeningStore) Status(ctx context.Context, collection, userID string, docIDs []string) (map[string]pipeline.Doc, error) {
	return r.s.Status(ctx, collection, userID, docIDs)
}

func (r *reopeningStore) CollectionExists(ctx context.Context, collection string) (bool, error) {
	return r.s.CollectionExists(ctx, collection)
}
