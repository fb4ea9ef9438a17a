package localstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Status implements search.Index as the Qdrant store does: of docIDs, the
// documents of userID stored in collection, keyed by doc_id, read from their
// chunk 0 points (by id, one map lookup each), with the version and chunk
// count of each and no metadata. An unknown collection is an error wrapping
// pipeline.ErrUnknownCollection.
func (s *Store) Status(ctx context.Context, collection, userID string, docIDs []string) (map[string]pipeline.Doc, error) {
	if !pipeline.ValidUserID(userID) {
		return nil, pipeline.Permanent(fmt.Errorf("embedded status in %q: user %q: invalid", collection, userID))
	}
	keys := make([]uuid.UUID, len(docIDs))
	for i, doc := range docIDs {
		keys[i] = uuid.MustParse(pipeline.PointID(userID, doc, 0))
	}
	docs := make(map[string]pipeline.Doc, len(docIDs))
	err := s.read(ctx, collection, func(c *coll) error {
		for _, k := range keys {
			if p := c.st.points[k]; p != nil && p.user == userID && p.chunk == 0 {
				docs[p.doc] = pipeline.Doc{DocID: p.doc, Version: p.version, ChunkCount: p.count}
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return docs, nil
}

// CollectionExists implements search.Index: whether the store holds
// collection.
func (s *Store) CollectionExists(_ context.Context, collection string) (bool, error) {
	_, release, err := s.acquire(collection)
	switch {
	case errors.Is(err, pipeline.ErrUnknownCollection):
		return false, nil
	case err != nil:
		return false, err
	}
	release()
	return true, nil
}
