package qdrantstore

import (
	"context"
	"fmt"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// EraseTenant deletes every point of userID in collection with one filtered
// delete (wait=true, the store's write ordering) and returns how many points
// an exact count found just before it. A point the tenant gains between the
// count and the delete is deleted without being counted; one gained after
// the delete stays. Running it again finds nothing and deletes nothing.
//
// Qdrant drops a deleted point's payload from disk when it next optimizes
// the segment that held it; snapshots taken before keep it.
//
// An invalid user id is a permanent error; a missing collection wraps
// pipeline.ErrUnknownCollection; transient failures are retried for up to
// MaxRetryTime.
func (q *Store) EraseTenant(ctx context.Context, collection, userID string) (int, error) {
	if !pipeline.ValidUserID(userID) {
		return 0, pipeline.Permanent(fmt.Errorf("qdrant erase %q: user %s: invalid", collection, pipeline.ShortQuote(userID)))
	}
	filter := tenantFilter(userID)
	var n uint64
	err := q.retry(ctx, "count tenant", collection, func(ctx context.Context) (err error) {
		n, err = q.client.Count(ctx, &qdrant.CountPoints{
			CollectionName: collection, Filter: filter, Exact: qdrant.PtrOf(true), ReadConsistency: q.reading,
		})
		return err
	})
	if err != nil {
		return 0, q.readError(collection, err)
	}
	err = q.retry(ctx, "delete tenant", collection, func(ctx context.Context) error {
		_, err := q.client.Delete(ctx, &qdrant.DeletePoints{
			CollectionName: collection, Points: qdrant.NewPointsSelectorFilter(filter),
			Wait: qdrant.PtrOf(true), Ordering: q.ordering,
		})
		return err
	})
	if err != nil {
		return 0, q.readError(collection, err)
	}
	return int(n), nil
}
