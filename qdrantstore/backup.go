package qdrantstore

import (
	"context"
	"fmt"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// documentPage is how many points DocumentPoints reads per request.
const documentPage = 1024

// DocumentPoints returns every point stored for the documents docIDs of
// userID in collection, with vectors, keyword vectors and payload, in no
// particular order: all versions present, so that a caller reading while a
// worker replaces a document sees both (ragpipe backup keeps one whole
// version). Reads follow the store's read consistency; a missing collection
// gives an error wrapping pipeline.ErrUnknownCollection.
func (q *Store) DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error) {
	if len(docIDs) == 0 {
		return nil, nil
	}
	req := &qdrant.ScrollPoints{
		CollectionName:  collection,
		Filter:          tenantFilter(userID, qdrant.NewMatchKeywords(keyDocID, docIDs...)),
		Limit:           qdrant.PtrOf(uint32(documentPage)),
		WithPayload:     qdrant.NewWithPayload(true),
		WithVectors:     qdrant.NewWithVectors(true),
		ReadConsistency: q.reading,
	}
	var out []pipeline.Point
	for {
		var (
			pts  []*qdrant.RetrievedPoint
			next *qdrant.PointId
		)
		err := q.retry(ctx, "scroll", collection, func(ctx context.Context) (err error) {
			pts, next, err = q.client.ScrollAndOffset(ctx, req)
			return err
		})
		if err != nil {
			return nil, q.readError(collection, err)
		}
		for _, p := range pts {
			if err := sameTenant(collection, userID, p.GetPayload()); err != nil {
				return nil, err
			}
			pt, err := pointOf(p)
			if err != nil {
				return nil, pipeline.Permanent(fmt.Errorf("qdrant %q: %w", collection, err))
			}
			out = append(out, pt)
		}
		if next == nil {
			return out, nil
		}
		req.Offset = next
	}
}

// Describe returns collection as Collections does, with its layout:
// shards, replication factor and write consistency factor. ragpipe backup
// records them in its manifest; a restore lays the collection out as the
// target is configured instead.
func (q *Store) Describe(ctx context.Context, collection string) (pipeline.Collection, error) {
	info, err := q.collectionInfo(ctx, collection)
	if err != nil {
		return pipeline.Collection{}, q.readError(collection, err)
	}
	c, err := collectionOf(collection, info)
	if err != nil {
		return c, err
	}
	p := info.GetConfig().GetParams()
	c.Shards, c.ReplicationFactor, c.WriteConsistency = p.GetShardNumber(), p.GetReplicationFactor(), p.GetWriteConsistencyFactor()
	return c, nil
}
