package qdrantstore

import (
	"context"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// maxReplyBytes bounds the vectors of one reply well below gRPC's default
// 4 MiB message limit.
const maxReplyBytes = 2 << 20

// StoredVectors implements ingest.VectorSource: of the points ids of
// collection, it returns the vectors of those whose text_hash payload is one
// of hashes, keyed by text hash. One scroll with a filter on both reads only
// the matching points, in pages small enough for one gRPC message each;
// transient failures are retried like every other call. It is safe for
// concurrent use.
func (q *Store) StoredVectors(ctx context.Context, collection string, ids, hashes []string) (map[string][]float32, error) {
	found := make(map[string][]float32)
	if len(ids) == 0 || len(hashes) == 0 {
		return found, nil
	}
	pointIDs := make([]*qdrant.PointId, len(ids))
	for i, id := range ids {
		pointIDs[i] = qdrant.NewIDUUID(id)
	}
	dims := 1024 // until the collection is verified
	if c, ok := q.known.Load(collection); ok {
		dims = c.(pipeline.Collection).Dims
	}
	req := &qdrant.ScrollPoints{
		CollectionName: collection,
		Filter: &qdrant.Filter{Must: []*qdrant.Condition{
			qdrant.NewHasID(pointIDs...),
			qdrant.NewMatchKeywords(keyTextHash, hashes...),
		}},
		Limit:       qdrant.PtrOf(uint32(max(1, maxReplyBytes/(4*dims+256)))),
		WithPayload: qdrant.NewWithPayloadInclude(keyTextHash),
		WithVectors: qdrant.NewWithVectorsInclude(""), // the dense vector alone, not the keywords
	}
	for {
		var page []*qdrant.RetrievedPoint
		var next *qdrant.PointId
		err := q.retry(ctx, "read stored vectors", collection, func(ctx context.Context) error {
			var err error
			page, next, err = q.client.ScrollAndOffset(ctx, req)
			return err
		})
		if err != nil {
			q.forget(collection, err)
			return nil, err
		}
		for _, p := range page {
			if v := denseOf(p.GetVectors()); len(v) > 0 {
				found[p.GetPayload()[keyTextHash].GetStringValue()] = v
			}
		}
		if next == nil {
			return found, nil
		}
		req.Offset = next
	}
}
