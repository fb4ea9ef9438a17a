package qdrantstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// EraseTenant deletes every point of userID in collection (an alias: in
// its target) and in every generation collection__gN of it (the building
// and previous generations of a reindex), so that ragpipe forget, which
// erases each listed collection, reaches them too. It returns how many
// points of the tenant collection held, the ones its searches read. In each
// store collection it deletes with one filtered delete (wait=true, the
// store's write ordering) after an exact count: a point the tenant gains
// between the count and the delete is deleted without being counted; one
// gained after the delete stays. Running it again finds nothing and
// deletes nothing.
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
	collections, aliases, err := q.listing(ctx)
	if err != nil {
		return 0, err
	}
	named := collection
	if target := aliases[collection]; target != "" {
		named = target
	}
	n, err := q.eraseIn(ctx, named, userID)
	if err != nil {
		return 0, err
	}
	for _, g := range generationsOf(collection, collections) {
		if g == named {
			continue
		}
		_, err := q.eraseIn(ctx, g, userID)
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			continue // dropped meanwhile
		}
		if err != nil {
			return n, fmt.Errorf("qdrant erase %q: generation %q: %w", collection, g, err)
		}
	}
	return n, nil
}

// eraseIn deletes every point of userID in the store collection collection
// and returns how many an exact count found just before.
func (q *Store) eraseIn(ctx context.Context, collection, userID string) (int, error) {
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
