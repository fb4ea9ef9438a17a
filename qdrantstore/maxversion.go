package qdrantstore

import (
	"context"
	"fmt"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/pipeline"
)

// MaxVersion returns the highest version of any point in collection, 0 when
// it holds none. It is one scroll ordered by the integer index on version
// (created with range and lookup by EnsureCollection, as it has been since
// ragpipe's first release), descending, limit 1: Qdrant reads the index, not
// the points.
//
// A collection without an integer index on version holds no ragpipe points
// (ragpipe indexes every collection it writes to), so its MaxVersion is 0. A
// missing collection gives an error wrapping pipeline.ErrUnknownCollection.
// Transient failures are retried as every read is.
func (q *Store) MaxVersion(ctx context.Context, collection string) (uint64, error) {
	req := &qdrant.ScrollPoints{
		CollectionName:  collection,
		Limit:           qdrant.PtrOf(uint32(1)),
		OrderBy:         &qdrant.OrderBy{Key: keyVersion, Direction: qdrant.Direction_Desc.Enum()},
		WithPayload:     qdrant.NewWithPayloadInclude(keyVersion),
		ReadConsistency: q.reading,
	}
	var pts []*qdrant.RetrievedPoint
	err := q.retry(ctx, "max version", collection, func(ctx context.Context) (err error) {
		pts, err = q.client.Scroll(ctx, req)
		return err
	})
	if isCode(err, codes.InvalidArgument) {
		indexed, ierr := q.versionIndexed(ctx, collection)
		switch {
		case ierr != nil:
			return 0, ierr
		case !indexed:
			return 0, nil
		}
	}
	if err != nil {
		return 0, q.readError(collection, err)
	}
	if len(pts) == 0 {
		return 0, nil
	}
	v, ok := PayloadMap(pts[0].GetPayload())[keyVersion].(int64)
	if !ok || v < 0 {
		return 0, pipeline.Permanent(fmt.Errorf("qdrant %q: point %s has version %v, not a ragpipe version",
			collection, pts[0].GetId().GetUuid(), pts[0].GetPayload()[keyVersion]))
	}
	return uint64(v), nil
}

// versionIndexed reports whether collection has an integer payload index on
// version.
func (q *Store) versionIndexed(ctx context.Context, collection string) (bool, error) {
	info, err := q.collectionInfo(ctx, collection)
	if err != nil {
		return false, q.readError(collection, err)
	}
	return info.GetPayloadSchema()[keyVersion].GetDataType() == qdrant.PayloadSchemaType_Integer, nil
}
