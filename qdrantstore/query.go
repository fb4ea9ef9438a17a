package qdrantstore

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"time"

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

// Search runs sq with Qdrant's Query API, one request whatever the mode,
// among the points whose user_id is sq.UserID (a must condition of every
// query and prefetch) and whose metadata match sq.Filter; it returns at most
// sq.TopK hits, best first:
//
//   - pipeline.ModeDense: the nearest neighbours of sq.Vector; the score is
//     the collection's similarity (a distance for euclid and manhattan);
//   - pipeline.ModeKeyword: the points sharing terms with sq.Keywords, scored
//     by the sum over shared terms of the point's weight times the term's IDF
//     (Qdrant's idf modifier); a query without terms has no hits;
//   - pipeline.ModeHybrid: both, each side fetching
//     pipeline.PrefetchLimit(sq.TopK) candidates, fused by reciprocal rank:
//     the score is 1/(pipeline.RRFK + dense rank) plus
//     pipeline.KeywordWeight/(RRFK + keyword rank), so at most 3/(RRFK+1),
//     about 0.049; without query terms, the dense list is fused alone;
//   - pipeline.ModeAuto: as sq.ModeFor says: hybrid for a query with terms
//     in a collection with keyword vectors, else dense.
//
// Keyword and hybrid searches of a collection without keyword vectors fail
// with pipeline.ErrNoKeywords. sq.ScoreThreshold drops hits scoring below it
// (a hit scoring exactly the threshold is kept) in the score of the mode
// used: a threshold meant for cosine similarities drops every hybrid hit.
//
// A missing collection gives an error wrapping pipeline.ErrUnknownCollection.
// Transient failures are retried with backoff until ctx ends (or
// MaxRetryTime passes), then returned unmarked: pipeline.IsPermanent is false
// for them. An invalid sq is a permanent error. A point of another tenant in
// Qdrant's answer is never returned: it fails the search permanently. The
// hits' strings share one copy of Qdrant's reply (see queryReply), which
// for a search sent in a batch (coalesce.go) is the whole batch's.
func (q *Store) Search(ctx context.Context, collection string, sq pipeline.Query) ([]pipeline.Hit, error) {
	if err := sq.Validate(); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("qdrant search %q: %w", collection, err))
	}
	var c pipeline.Collection
	if sq.Mode != pipeline.ModeDense || sq.ScoreThreshold != nil {
		var err error
		if c, err = q.shape(ctx, collection); err != nil {
			return nil, err
		}
	}
	mode := sq.ModeFor(c.Keywords)
	if mode != pipeline.ModeDense && !c.Keywords {
		return nil, fmt.Errorf("qdrant search %q: %w", collection, pipeline.ErrNoKeywords)
	}
	terms := sq.Keywords != nil && len(sq.Keywords.Indices) > 0
	if mode == pipeline.ModeKeyword && !terms {
		return []pipeline.Hit{}, nil
	}
	req := searchRequest(collection, mode, sq)
	req.ReadConsistency = q.reading
	if t := sq.ScoreThreshold; t != nil && mode == pipeline.ModeDense {
		// Qdrant keeps only scores strictly better than its threshold; a hit
		// scoring exactly ours must stay, so ask for one float32 step worse:
		// lower for similarities, higher for distances (euclid, manhattan).
		worse := float32(math.Inf(-1))
		if c.Distance == pipeline.Euclid || c.Distance == pipeline.Manhattan {
			worse = float32(math.Inf(1))
		}
		req.ScoreThreshold = qdrant.PtrOf(math.Nextafter32(*t, worse))
	}
	var reply *queryReply
	err := q.retry(ctx, "query", collection, func(ctx context.Context) error {
		var err error
		reply, err = q.queryCoalesced(ctx, collection, req)
		return err
	})
	if err != nil {
		return nil, q.readError(collection, err)
	}
	var threshold *float32
	if mode != pipeline.ModeDense {
		threshold = sq.ScoreThreshold
	}
	return reply.results(collection, sq.UserID, threshold)
}

// searchRequest builds the query of sq in mode (not ModeAuto). Each query
// and prefetch carries the tenant and metadata filter. Qdrant's RRF scores
// rank r (from 0) 1/(k + r), so k is pipeline.RRFK + 1 for 1/(RRFK + rank)
// with rank from 1; its RRF takes no weights, so the keyword prefetch is
// repeated pipeline.KeywordWeight times (a list counted twice weighs twice).
func searchRequest(collection string, mode pipeline.SearchMode, sq pipeline.Query) *qdrant.QueryPoints {
	filter := tenantFilter(sq.UserID, metadataConditions(sq.Filter)...)
	req := &qdrant.QueryPoints{
		CollectionName: collection,
		Filter:         filter,
		Limit:          qdrant.PtrOf(uint64(sq.TopK)),
		WithPayload:    hitPayload,
	}
	switch mode {
	case pipeline.ModeDense:
		req.Query = qdrant.NewQueryDense(sq.Vector)
	case pipeline.ModeKeyword:
		req.Query = qdrant.NewQuerySparse(sq.Keywords.Indices, sq.Keywords.Values)
		req.Using = qdrant.PtrOf(keywordsVector)
	case pipeline.ModeHybrid:
		limit := qdrant.PtrOf(uint64(pipeline.PrefetchLimit(sq.TopK)))
		req.Prefetch = []*qdrant.PrefetchQuery{{Query: qdrant.NewQueryDense(sq.Vector), Filter: filter, Limit: limit}}
		if kw := sq.Keywords; kw != nil && len(kw.Indices) > 0 {
			keyword := &qdrant.PrefetchQuery{
				Query: qdrant.NewQuerySparse(kw.Indices, kw.Values), Using: qdrant.PtrOf(keywordsVector),
				Filter: filter, Limit: limit,
			}
			for range pipeline.KeywordWeight {
				req.Prefetch = append(req.Prefetch, keyword)
			}
		}
		req.Query = qdrant.NewQueryRRF(&qdrant.Rrf{K: qdrant.PtrOf(uint32(pipeline.RRFK + 1))})
	}
	return req
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
	info, err := q.collectionInfo(ctx, want.Name)
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
	return sameOwner(collection, userID, payload[keyUserID].GetStringValue())
}

// sameOwner is sameTenant of a point whose user_id is owner.
func sameOwner(collection, userID, owner string) error {
	if owner != userID {
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

// shape returns the collection's dimensions, distance and keyword vector:
// as EnsureCollection verified them, or as read from Qdrant within the last
// shapeTTL, so that a search process notices a collection recreated with
// keyword vectors (forgotten at once when Qdrant says it is gone).
func (q *Store) shape(ctx context.Context, collection string) (pipeline.Collection, error) {
	if c, ok := q.known.Load(collection); ok {
		return c.(pipeline.Collection), nil
	}
	if s, ok := q.shapes.Load(collection); ok && time.Since(s.(shapeRead).at) < shapeTTL {
		return s.(shapeRead).c, nil
	}
	info, err := q.collectionInfo(ctx, collection)
	if err != nil {
		return pipeline.Collection{}, q.readError(collection, err)
	}
	c, err := collectionOf(collection, info)
	if err != nil {
		return pipeline.Collection{}, err
	}
	q.shapes.Store(collection, shapeRead{c, time.Now()})
	return c, nil
}

// shapeTTL is how long a search trusts a collection's shape read from Qdrant.
const shapeTTL = time.Minute

// shapeRead is a collection's shape and when it was read.
type shapeRead struct {
	c  pipeline.Collection
	at time.Time
}
