package qdrantstore

import (
	"context"
	"fmt"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// statusPayload is what Status reads of a chunk 0 point.
var statusPayload = qdrant.NewWithPayloadInclude(keyUserID, keyDocID, keyChunkCount, keyVersion)

// Status implements search.Index: of docIDs, the documents of userID stored
// in collection, keyed by doc_id, with the version and chunk count of each
// and no metadata.
//
// A document is stored when its chunk 0 point is: a write puts all of a
// version's chunks in one request and removes older ones with it, and List
// reads a document from the same point. Point ids derive from the user and
// doc ids, so one Get of the chunk 0 ids of every doc_id (at most 1,000)
// reads exactly these points, each by id, without a filter or a scan; the
// user_id of every point returned is checked all the same. Errors are
// classified as Search's.
func (q *Store) Status(ctx context.Context, collection, userID string, docIDs []string) (map[string]pipeline.Doc, error) {
	if !pipeline.ValidUserID(userID) {
		return nil, pipeline.Permanent(fmt.Errorf("qdrant status %q: user %q: invalid", collection, userID))
	}
	ids := make([]*qdrant.PointId, 0, len(docIDs))
	seen := make(map[string]bool, len(docIDs))
	for _, doc := range docIDs {
		if !seen[doc] {
			seen[doc] = true
			ids = append(ids, qdrant.NewIDUUID(pipeline.PointID(userID, doc, 0)))
		}
	}
	docs := make(map[string]pipeline.Doc, len(ids))
	if len(ids) == 0 {
		return docs, nil
	}
	req := &qdrant.GetPoints{
		CollectionName:  collection,
		Ids:             ids,
		WithPayload:     statusPayload,
		WithVectors:     qdrant.NewWithVectors(false),
		ReadConsistency: q.reading,
	}
	var points []*qdrant.RetrievedPoint
	err := q.retry(ctx, "get", collection, func(ctx context.Context) error {
		var err error
		points, err = q.client.Get(ctx, req)
		return err
	})
	if err != nil {
		return nil, q.readError(collection, err)
	}
	for _, p := range points {
		pl := p.GetPayload()
		if err := sameTenant(collection, userID, pl); err != nil {
			return nil, err
		}
		doc := pl[keyDocID].GetStringValue()
		docs[doc] = pipeline.Doc{
			DocID:      doc,
			Version:    uint64(pl[keyVersion].GetIntegerValue()),
			ChunkCount: int(pl[keyChunkCount].GetIntegerValue()),
		}
	}
	return docs, nil
}

// CollectionExists implements search.Index: whether Qdrant has collection.
// Transient failures are retried as Search's are.
func (q *Store) CollectionExists(ctx context.Context, collection string) (bool, error) {
	var exists bool
	err := q.retry(ctx, "collection exists", collection, func(ctx context.Context) error {
		var err error
		exists, err = q.client.CollectionExists(ctx, collection)
		return err
	})
	return exists, err
}
