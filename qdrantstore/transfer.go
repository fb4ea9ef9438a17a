package qdrantstore

import (
	"context"
	"fmt"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/pipeline"
)

// This file holds what copying a collection between stores needs (ragpipe
// migrate), with the same semantics as the embedded store's methods of the
// same names: Collections, Scroll, Upsert and Count.

// Collections returns every collection in Qdrant that ragpipe can use, by
// the names CollectionNames returns (an alias with the dimensions and
// distance of its target), except those deleted while it reads them.
func (q *Store) Collections(ctx context.Context) ([]pipeline.Collection, error) {
	names, err := q.CollectionNames(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]pipeline.Collection, 0, len(names))
	for _, name := range names {
		info, err := q.collectionInfo(ctx, name)
		if isCode(err, codes.NotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		c, err := collectionOf(name, info)
		if err != nil {
			continue // not a single dense vector: not ragpipe's
		}
		out = append(out, c)
	}
	return out, nil
}

// Scroll returns up to limit points of collection, with vectors (keyword
// vectors too, where the collection has them) and payload, in point id order, starting after the point id after ("" for the first
// page), and the cursor of the next page ("" after the last).
func (q *Store) Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error) {
	req := &qdrant.ScrollPoints{
		CollectionName: collection,
		Limit:          qdrant.PtrOf(uint32(limit + 1)), // Qdrant's offset is inclusive: room to drop it
		WithPayload:    qdrant.NewWithPayload(true),
		WithVectors:    qdrant.NewWithVectors(true),
	}
	if after != "" {
		req.Offset = qdrant.NewIDUUID(after)
	}
	var (
		pts  []*qdrant.RetrievedPoint
		more *qdrant.PointId
	)
	err := q.retry(ctx, "scroll", collection, func(ctx context.Context) (err error) {
		pts, more, err = q.client.ScrollAndOffset(ctx, req)
		return err
	})
	if err != nil {
		return nil, "", err
	}
	out := make([]pipeline.Point, 0, len(pts))
	for _, p := range pts {
		if p.GetId().GetUuid() == after {
			continue
		}
		pt, err := pointOf(p)
		if err != nil {
			return nil, "", pipeline.Permanent(fmt.Errorf("qdrant %q: %w", collection, err))
		}
		out = append(out, pt)
	}
	if len(out) > limit {
		return out[:limit], out[limit-1].ID, nil
	}
	if more != nil && len(out) > 0 {
		return out, out[len(out)-1].ID, nil
	}
	return out, "", nil
}

// pointOf reads a stored point back.
func pointOf(p *qdrant.RetrievedPoint) (pipeline.Point, error) {
	pl := PayloadMap(p.GetPayload())
	user, okUser := pl[keyUserID].(string)
	doc, okDoc := pl[keyDocID].(string)
	index, okIndex := pl[keyChunkIndex].(int64)
	count, okCount := pl[keyChunkCount].(int64)
	version, okVersion := pl[keyVersion].(int64)
	if !okUser || !okDoc || !okIndex || !okCount || !okVersion {
		return pipeline.Point{}, fmt.Errorf("point %s lacks ragpipe's payload", p.GetId().GetUuid())
	}
	text, _ := pl[keyText].(string)
	hash, _ := pl[keyTextHash].(string)
	md, _ := pl[keyMetadata].(map[string]any)
	return pipeline.Point{
		ID: p.GetId().GetUuid(), Vector: denseOf(p.GetVectors()),
		UserID: user, DocID: doc, ChunkIndex: int(index), ChunkCount: int(count),
		Text: text, Metadata: md, Version: uint64(version), TextHash: hash,
		Keywords: keywordsOf(p.GetVectors()),
	}, nil
}

// Upsert stores points as they are, overwriting any stored point with the
// same id whatever its version (a copy, not an event: no last-version-wins).
// Their keyword vectors are stored where the collection has keyword vectors
// and dropped where it has none.
func (q *Store) Upsert(ctx context.Context, collection string, points []pipeline.Point) error {
	c, err := q.shape(ctx, collection)
	if err != nil {
		return err
	}
	units := make([]unit, len(points))
	var metadata []byte // of all the units
	for i := range points {
		p := &points[i]
		w := &pipeline.DocWrite{UserID: p.UserID, DocID: p.DocID, Version: p.Version, Points: points[i : i+1]}
		u, err := q.newUnit(w, c, &metadata)
		if err != nil {
			return pipeline.Permanent(fmt.Errorf("qdrant upsert %q: %w", collection, err))
		}
		units[i] = u
	}
	r := newRequest()
	defer r.release()
	var ok bool
	if r.buf, ok = encodeUpsert(r.buf, collection, q.ordering, units); !ok {
		return nil
	}
	return q.retry(ctx, "upsert", collection, func(ctx context.Context) error {
		return q.updateBatch(ctx, collection, r)
	})
}

// Count returns the number of points of each tenant in collection, exactly.
func (q *Store) Count(ctx context.Context, collection string) (map[string]int, error) {
	var hits []*qdrant.FacetHit
	err := q.retry(ctx, "count", collection, func(ctx context.Context) (err error) {
		hits, err = q.client.Facet(ctx, &qdrant.FacetCounts{
			CollectionName: collection, Key: keyUserID, Exact: qdrant.PtrOf(true),
			Limit: qdrant.PtrOf(uint64(1 << 31)),
		})
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make(map[string]int, len(hits))
	for _, h := range hits {
		out[h.GetValue().GetStringValue()] = int(h.GetCount())
	}
	return out, nil
}
