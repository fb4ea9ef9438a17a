package qdrantstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Payload keys a search hit and a listed document need.
var (
	hitPayload = qdrant.NewWithPayloadInclude(keyUserID, keyDocID, keyChunkIndex, keyText, keyMetadata, keyVersion)
	docPayload = qdrant.NewWithPayloadInclude(keyUserID, keyDocID, keyChunkCount, keyMetadata, keyVersion)
)

// Search runs q with Qdrant's Query API: nearest neighbours of q.Vector
// among the points whose user_id is q.UserID (always a must condition) and
// whose metadata match q.Filter, at most q.TopK, none scoring below
// q.ScoreThreshold (a hit scoring exactly the threshold is kept), best first.
//
// A missing collection gives an error wrapping pipeline.ErrUnknownCollection.
// Transient failures are retried with backoff until ctx ends (or
// MaxRetryTime passes), then returned unmarked: pipeline.IsPermanent is false
// for them. An invalid q is a permanent error. A point of another tenant in
// Qdrant's answer is never returned: it fails the search permanently.
func (q *Store) Search(ctx context.Context, collection string, sq pipeline.Query) ([]pipeline.Hit, error) {
	if err := sq.Validate(); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("qdrant search %q: %w", collection, err))
	}
	req := &qdrant.QueryPoints{
		CollectionName:  collection,
		Query:           qdrant.NewQueryDense(sq.Vector),
		Filter:          tenantFilter(sq.UserID, metadataConditions(sq.Filter)...),
		Limit:           qdrant.PtrOf(uint64(sq.TopK)),
		WithPayload:     hitPayload,
		ReadConsistency: q.reading,
	}
	if t := sq.ScoreThreshold; t != nil {
		// Qdrant keeps only scores strictly better than its threshold; a hit
		// scoring exactly ours must stay, so ask for one float32 step worse:
		// lower for similarities, higher for distances (euclid, manhattan).
		worse := float32(math.Inf(-1))
		d, err := q.distance(ctx, collection)
		if err != nil {
			return nil, err
		}
		if d == pipeline.Euclid || d == pipeline.Manhattan {
			worse = float32(math.Inf(1))
		}
		req.ScoreThreshold = qdrant.PtrOf(math.Nextafter32(*t, worse))
	}
	var points []*qdrant.ScoredPoint
	err := q.retry(ctx, "query", collection, func(ctx context.Context) error {
		var err error
		points, err = q.client.Query(ctx, req)
		return err
	})
	if err != nil {
		return nil, q.readError(collection, err)
	}
	hits := make([]pipeline.Hit, len(points))
	for i, p := range points {
		pl := p.GetPayload()
		if err := sameTenant(collection, sq.UserID, pl); err != nil {
			return nil, err
		}
		hits[i] = pipeline.Hit{
			DocID:      pl[keyDocID].GetStringValue(),
			ChunkIndex: int(pl[keyChunkIndex].GetIntegerValue()),
			Score:      p.GetScore(),
			Text:       pl[keyText].GetStringValue(),
			Metadata:   PayloadMap(pl[keyMetadata].GetStructValue().GetFields()),
			Version:    uint64(pl[keyVersion].GetIntegerValue()),
		}
	}
	return hits, nil
}

// List scrolls through the points of userID with chunk_index 0, one per
// document, in point id order: each document of the tenant appears exactly
// once over the pages of an unchanging collection. The cursor is an opaque
// encoding of Qdrant's next-page offset; a cursor List did not return gives
// an error wrapping pipeline.ErrInvalidCursor. Errors are classified as
// Search's.
func (q *Store) List(ctx context.Context, collection, userID string, limit int, cursor string) ([]pipeline.Doc, string, error) {
	if !pipeline.ValidUserID(userID) || limit < 1 || limit > pipeline.MaxLimit {
		return nil, "", pipeline.Permanent(fmt.Errorf("qdrant list %q: user %q, limit %d: invalid", collection, userID, limit))
	}
	offset, err := decodeCursor(cursor)
	if err != nil {
		return nil, "", pipeline.Permanent(fmt.Errorf("qdrant list %q: %w", collection, err))
	}
	req := &qdrant.ScrollPoints{
		CollectionName:  collection,
		Filter:          tenantFilter(userID, qdrant.NewMatchInt(keyChunkIndex, 0)),
		Offset:          offset,
		Limit:           qdrant.PtrOf(uint32(limit)),
		WithPayload:     docPayload,
		WithVectors:     qdrant.NewWithVectors(false),
		ReadConsistency: q.reading,
	}
	var (
		points []*qdrant.RetrievedPoint
		next   *qdrant.PointId
	)
	err = q.retry(ctx, "scroll", collection, func(ctx context.Context) error {
		var err error
		points, next, err = q.client.ScrollAndOffset(ctx, req)
		return err
	})
	if err != nil {
		return nil, "", q.readError(collection, err)
	}
	docs := make([]pipeline.Doc, len(points))
	for i, p := range points {
		pl := p.GetPayload()
		if err := sameTenant(collection, userID, pl); err != nil {
			return nil, "", err
		}
		docs[i] = pipeline.Doc{
			DocID:      pl[keyDocID].GetStringValue(),
			Version:    uint64(pl[keyVersion].GetIntegerValue()),
			ChunkCount: int(pl[keyChunkCount].GetIntegerValue()),
			Metadata:   PayloadMap(pl[keyMetadata].GetStructValue().GetFields()),
		}
	}
	cursor, err = encodeCursor(next)
	if err != nil {
		return nil, "", pipeline.Permanent(fmt.Errorf("qdrant list %q: %w", collection, err))
	}
	return docs, cursor, nil
}

// CheckCollection verifies, without changing anything, that collection
// want.Name exists with want's dimensions and distance (empty means cosine).
// A missing collection gives an error wrapping pipeline.ErrUnknownCollection,
// a different one a permanent error naming both values. Transient failures
// are retried for up to MaxRetryTime.
func (q *Store) CheckCollection(ctx context.Context, want pipeline.Collection) error {
	if want.Distance == "" {
		want.Distance = pipeline.Cosine
	}
	var info *qdrant.CollectionInfo
	err := q.retry(ctx, "get collection", want.Name, func(ctx context.Context) error {
		var err error
		info, err = q.client.GetCollectionInfo(ctx, want.Name)
		return err
	})
	if err != nil {
		return q.readError(want.Name, err)
	}
	have, err := collectionOf(want.Name, info)
	if err != nil {
		return err
	}
	return pipeline.CollectionMismatch("Qdrant", want, have)
}

// readError marks a missing collection as pipeline.ErrUnknownCollection;
// retry has already classified everything else.
func (q *Store) readError(collection string, err error) error {
	if isCode(err, codes.NotFound) {
		q.forget(collection, err)
		return fmt.Errorf("collection %q: %w: %w", collection, pipeline.ErrUnknownCollection, err)
	}
	return err
}

// tenantFilter is the filter of every read: user_id = userID, a must
// condition no other condition can widen, plus conds.
func tenantFilter(userID string, conds ...*qdrant.Condition) *qdrant.Filter {
	return &qdrant.Filter{Must: append([]*qdrant.Condition{qdrant.NewMatchKeyword(keyUserID, userID)}, conds...)}
}

// metadataConditions turns a search filter into conditions on
// metadata.<key>, one per key: the stored value (or, for an array, one of
// its elements) equals one of the key's values. Strings and integers match
// exactly; a float matches numerically, as a range of one value.
func metadataConditions(filter map[string][]any) []*qdrant.Condition {
	conds := make([]*qdrant.Condition, 0, len(filter))
	for key, values := range filter {
		field := keyMetadata + "." + key
		var (
			strs  []string
			ints  []int64
			anyOf []*qdrant.Condition
		)
		for _, v := range values {
			switch v := v.(type) {
			case string:
				strs = append(strs, v)
			case int64:
				ints = append(ints, v)
			case bool:
				anyOf = append(anyOf, qdrant.NewMatchBool(field, v))
			case float64:
				anyOf = append(anyOf, qdrant.NewRange(field, &qdrant.Range{Gte: qdrant.PtrOf(v), Lte: qdrant.PtrOf(v)}))
			}
		}
		if len(strs) > 0 {
			anyOf = append(anyOf, qdrant.NewMatchKeywords(field, strs...))
		}
		if len(ints) > 0 {
			anyOf = append(anyOf, qdrant.NewMatchInts(field, ints...))
		}
		if len(anyOf) == 1 {
			conds = append(conds, anyOf[0])
		} else {
			conds = append(conds, qdrant.NewFilterAsCondition(&qdrant.Filter{Should: anyOf}))
		}
	}
	return conds
}

// sameTenant fails, permanently, when a point Qdrant returned belongs to
// another tenant than the filter asked for: that would be a bug, and its
// result must never reach the caller.
func sameTenant(collection, userID string, payload map[string]*qdrant.Value) error {
	if owner := payload[keyUserID].GetStringValue(); owner != userID {
		return pipeline.Permanent(fmt.Errorf("qdrant %q: a read for tenant %q returned a point of tenant %q", collection, userID, owner))
	}
	return nil
}

// Cursor encoding: base64url of one kind byte and the offset point id.
const (
	cursorUUID = 'u' // then the 16 bytes of a UUID
	cursorNum  = 'n' // then 8 bytes, big endian
)

func encodeCursor(id *qdrant.PointId) (string, error) {
	switch {
	case id == nil:
		return "", nil
	case id.GetUuid() != "":
		u, err := uuid.Parse(id.GetUuid())
		if err != nil {
			return "", fmt.Errorf("next page offset %q: %w", id.GetUuid(), err)
		}
		return base64.RawURLEncoding.EncodeToString(append([]byte{cursorUUID}, u[:]...)), nil
	default:
		return base64.RawURLEncoding.EncodeToString(binary.BigEndian.AppendUint64([]byte{cursorNum}, id.GetNum())), nil
	}
}

func decodeCursor(cursor string) (*qdrant.PointId, error) {
	if cursor == "" {
		return nil, nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	switch {
	case err == nil && len(b) == 17 && b[0] == cursorUUID:
		return qdrant.NewIDUUID(uuid.UUID(b[1:]).String()), nil
	case err == nil && len(b) == 9 && b[0] == cursorNum:
		return qdrant.NewIDNum(binary.BigEndian.Uint64(b[1:])), nil
	}
	return nil, fmt.Errorf("cursor %q: %w", cursor, pipeline.ErrInvalidCursor)
}

// distance returns the collection's distance, read once from Qdrant.
func (q *Store) distance(ctx context.Context, collection string) (pipeline.Distance, error) {
	if d, ok := q.distances.Load(collection); ok {
		return d.(pipeline.Distance), nil
	}
	var info *qdrant.CollectionInfo
	err := q.retry(ctx, "get collection", collection, func(ctx context.Context) (err error) {
		info, err = q.client.GetCollectionInfo(ctx, collection)
		return err
	})
	if err != nil {
		return "", q.readError(collection, err)
	}
	c, err := collectionOf(collection, info)
	if err != nil {
		return "", err
	}
	q.distances.Store(collection, c.Distance)
	return c.Distance, nil
}
