package localstore_test

import (
	"context"

	"github.com/ragpipe/ragpipe/pipeline"
)

func (r *reopeningStore) DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error) {
	return r.s.DocumentPoints(ctx, collection, userID, docIDs)
}
