package qdrantstore

import (
	"fmt"
	"maps"
	"slices"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// The model of the UpdateBatch request in the go-client's messages, as the
// sink built it before encodeRequest: tests check that encodeRequest's
// bytes decode to the same request.

// modelUnit is the model's unit: one write's document and version, with its
// points in the go-client's form, or a prune (no points).
type modelUnit struct {
	doc     docKey
	version uint64
	first   bool
	points  []*qdrant.PointStruct
}

// modelPrune is the model of a prune unit.
func modelPrune(u unit) modelUnit { return modelUnit{doc: u.doc, version: u.version} }

// writeUnit builds the model's unit of one write for a collection of shape
// c. With c.Dims > 0 it checks vector lengths; with c.Keywords it stores the
// points' keyword vectors.
func (q *Store) writeUnit(w *pipeline.DocWrite, c pipeline.Collection) (modelUnit, error) {
	dims := c.Dims
	if err := pipeline.CheckDoc(w.UserID, w.DocID, w.Version); err != nil {
		return modelUnit{}, err
	}
	u := modelUnit{doc: docKey{w.UserID, w.DocID}, version: w.Version, first: w.First}
	u.points = make([]*qdrant.PointStruct, len(w.Points))
	for i := range w.Points {
		if n := len(w.Points[i].Vector); dims > 0 && n != dims {
			return modelUnit{}, fmt.Errorf("point %s of %s/%s: vector of %d dimensions, collection has %d",
				w.Points[i].ID, w.UserID, w.DocID, n, dims)
		}
		p, err := pointStruct(w, &w.Points[i], c.Keywords)
		if err != nil {
			return modelUnit{}, err
		}
		u.points[i] = p
	}
	return u, nil
}

// operations returns the operations of one request carrying units, at most
// one of each document: one upsert of all their points, whose update_filter
// lets each point overwrite only a stored point of its own write's version or
// older, then, with deleteOlder, one delete of each document's points below
// its write's version. Without deleteOlder (the read found nothing stored),
// first versions' points are left out of the update_filter, which is
// version < 1 (no point) when none is left.
func operations(units []modelUnit, deleteOlder bool) []*qdrant.PointsUpdateOperation {
	var points []*qdrant.PointStruct
	ids := make(map[uint64][]*qdrant.PointId) // by the version their write carries
	var older []*qdrant.Filter
	for _, u := range units {
		for _, p := range u.points {
			points = append(points, p)
			if u.first && !deleteOlder {
				continue
			}
			ids[u.version] = append(ids[u.version], p.Id)
		}
		if deleteOlder {
			older = append(older, &qdrant.Filter{Must: []*qdrant.Condition{
				qdrant.NewMatchKeyword(keyUserID, u.doc.userID),
				qdrant.NewMatchKeyword(keyDocID, u.doc.docID),
				qdrant.NewRange(keyVersion, &qdrant.Range{Lt: qdrant.PtrOf(float64(u.version))}),
			}})
		}
	}
	var ops []*qdrant.PointsUpdateOperation
	if len(points) > 0 {
		overwritable := make([]*qdrant.Filter, 0, len(ids))
		for _, v := range slices.Sorted(maps.Keys(ids)) {
			overwritable = append(overwritable, &qdrant.Filter{Must: []*qdrant.Condition{
				qdrant.NewHasID(ids[v]...),
				qdrant.NewRange(keyVersion, &qdrant.Range{Lte: qdrant.PtrOf(float64(v))}),
			}})
		}
		if len(overwritable) == 0 {
			overwritable = append(overwritable, &qdrant.Filter{Must: []*qdrant.Condition{
				qdrant.NewRange(keyVersion, &qdrant.Range{Lt: qdrant.PtrOf(1.0)}),
			}})
		}
		ops = append(ops, qdrant.NewPointsUpdateUpsert(&qdrant.PointsUpdateOperation_PointStructList{
			Points: points, UpdateFilter: anyOf(overwritable),
		}))
	}
	if len(older) > 0 {
		ops = append(ops, qdrant.NewPointsUpdateDeletePoints(&qdrant.PointsUpdateOperation_DeletePoints{
			Points: qdrant.NewPointsSelectorFilter(anyOf(older)),
		}))
	}
	return ops
}

// anyOf is the filter matching what any of filters matches.
func anyOf(filters []*qdrant.Filter) *qdrant.Filter {
	if len(filters) == 1 {
		return filters[0]
	}
	conds := make([]*qdrant.Condition, len(filters))
	for i, f := range filters {
		conds[i] = qdrant.NewFilterAsCondition(f)
	}
	return &qdrant.Filter{Should: conds}
}

// pointStruct converts p, a point of w, to its Qdrant form, after
// pipeline.CheckPoint; with keywords (the collection has keyword vectors),
// its keyword vector goes with it, named keywordsVector beside the unnamed
// dense vector. A point without one is stored with the dense vector alone
// and is found by dense searches only.
func pointStruct(w *pipeline.DocWrite, p *pipeline.Point, keywords bool) (*qdrant.PointStruct, error) {
	if err := pipeline.CheckPoint(w, p); err != nil {
		return nil, err
	}
	md, err := metadataValue(p.Metadata)
	if err != nil {
		return nil, fmt.Errorf("point %s: metadata: %w", p.ID, err)
	}
	payload := map[string]*qdrant.Value{
		keyUserID:     qdrant.NewValueString(w.UserID),
		keyDocID:      qdrant.NewValueString(w.DocID),
		keyChunkIndex: qdrant.NewValueInt(int64(p.ChunkIndex)),
		keyChunkCount: qdrant.NewValueInt(int64(p.ChunkCount)),
		keyText:       qdrant.NewValueString(p.Text),
		keyMetadata:   md,
		keyVersion:    qdrant.NewValueInt(int64(w.Version)), // w.Version <= MaxInt64, checked by CheckDoc
	}
	if p.TextHash != "" {
		payload[keyTextHash] = qdrant.NewValueString(p.TextHash)
	}
	vectors := qdrant.NewVectorsDense(p.Vector)
	if kw := p.Keywords; keywords && kw != nil && len(kw.Indices) > 0 {
		if err := kw.Check(); err != nil {
			return nil, fmt.Errorf("point %s: keyword vector: %w", p.ID, err)
		}
		vectors = qdrant.NewVectorsMap(map[string]*qdrant.Vector{
			"":             qdrant.NewVectorDense(p.Vector),
			keywordsVector: qdrant.NewVectorSparse(kw.Indices, kw.Values),
		})
	}
	return &qdrant.PointStruct{
		Id:      qdrant.NewIDUUID(p.ID),
		Vectors: vectors,
		Payload: payload,
	}, nil
}

// metadataValue converts event metadata (see pipeline.PlainMetadata) to a
// payload object; nil becomes {}.
func metadataValue(md map[string]any) (*qdrant.Value, error) {
	plain, err := pipeline.PlainMetadata(md)
	if err != nil {
		return nil, err
	}
	return qdrantValue(plain), nil
}

// qdrantValue converts a plain value (see pipeline.PlainMetadata) to a
// Qdrant payload value.
func qdrantValue(v any) *qdrant.Value {
	switch v := v.(type) {
	case string:
		return qdrant.NewValueString(v)
	case bool:
		return qdrant.NewValueBool(v)
	case int64:
		return qdrant.NewValueInt(v)
	case float64:
		return qdrant.NewValueDouble(v)
	case []any:
		list := make([]*qdrant.Value, len(v))
		for i, e := range v {
			list[i] = qdrantValue(e)
		}
		return qdrant.NewValueList(&qdrant.ListValue{Values: list})
	case map[string]any:
		fields := make(map[string]*qdrant.Value, len(v))
		for k, e := range v {
			fields[k] = qdrantValue(e)
		}
		return qdrant.NewValueFromFields(fields)
	default: // nil
		return qdrant.NewValueNull()
	}
}

// storedQuery is the model of nothingStored's read (encodeStoredQuery).
func storedQuery(collection string, units []unit) *qdrant.ScrollPoints {
	users := make([]string, 0, 8)
	docs := make([]string, 0, len(units))
	for _, u := range units {
		if !slices.Contains(users, u.doc.userID) {
			users = append(users, u.doc.userID)
		}
		docs = append(docs, u.doc.docID)
	}
	filter := &qdrant.Filter{Must: []*qdrant.Condition{
		qdrant.NewMatchKeywords(keyUserID, users...),
		qdrant.NewMatchKeywords(keyDocID, docs...),
	}}
	return &qdrant.ScrollPoints{
		CollectionName: collection, Filter: filter, Limit: qdrant.PtrOf(uint32(1)),
		WithPayload: qdrant.NewWithPayload(false), WithVectors: qdrant.NewWithVectors(false),
	}
}
