package localstore

import (
	"context"
	"slices"

	"github.com/ragpipe/ragpipe/pipeline"
)

// DocumentPoints returns every point stored for the documents docIDs of
// userID in collection, with vectors (as stored: normalised for cosine),
// keyword vectors and payload, as the Qdrant store's method of the same name
// does. Writes are atomic here, so the points of a document are always those
// of one version; an unknown collection is an error wrapping
// pipeline.ErrUnknownCollection.
func (s *Store) DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error) {
	var out []pipeline.Point
	err := s.read(ctx, collection, func(c *coll) error {
		t := c.st.tenants[userID]
		if t == nil {
			return nil
		}
		for _, doc := range slices.Compact(slices.Sorted(slices.Values(docIDs))) {
			for _, p := range t.docs[doc] {
				out = append(out, pipeline.Point{
					ID: p.id.String(), Vector: slices.Clone(p.t.vec(p.slot)), UserID: p.user, DocID: p.doc,
					ChunkIndex: p.chunk, ChunkCount: p.count, Text: p.text, Metadata: copyMap(p.meta),
					Version: p.version, TextHash: p.hash, Keywords: cloneSparse(p.kw),
				})
			}
		}
		return nil
	})
	return out, err
}
