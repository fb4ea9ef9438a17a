package qdrantstore

import (
	"cmp"
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/pipeline"
)

// EnsureCollection makes sure collection c exists with c's dimensions and
// distance (an empty distance means cosine) and with the payload indexes on
// user_id (keyword, tenant key), doc_id (keyword) and version (integer).
//
// A missing collection is created when create is true, with the configured
// shards, replication, write consistency and HNSW mode, and with keyword
// vectors (c.Keywords is ignored); an existing collection is used with or
// without them, as it was created, and Apply writes the points' keyword
// vectors only where it has them. Otherwise the error
// wraps pipeline.ErrUnknownCollection. An existing collection of other
// dimensions or distance is a permanent error naming both values. Several
// workers may race to create the same collection. Once verified, a
// collection is remembered and later calls return without a request. It
// retries transient failures for up to MaxRetryTime.
func (q *Store) EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error {
	if c.Distance == "" {
		c.Distance = pipeline.Cosine
	}
	if v, ok := q.known.Load(c.Name); ok {
		return pipeline.CollectionMismatch("Qdrant", c, v.(pipeline.Collection))
	}
	if c.Name == "" || c.Dims <= 0 {
		return pipeline.Permanent(fmt.Errorf("collection %q with %d dimensions: invalid", c.Name, c.Dims))
	}
	if _, ok := distances[c.Distance]; !ok {
		return pipeline.Permanent(fmt.Errorf("collection %q: unknown distance %q", c.Name, c.Distance))
	}
	key := fmt.Sprintf("%s\x00%d\x00%s\x00%t", c.Name, c.Dims, c.Distance, create)
	_, err, _ := q.creating.Do(key, func() (any, error) { return nil, q.ensure(ctx, c, create) })
	return err
}

// collectionInfo reads collection's configuration, retrying transient
// failures; the caller classifies the error (readError, NotFound).
func (q *Store) collectionInfo(ctx context.Context, collection string) (*qdrant.CollectionInfo, error) {
	var info *qdrant.CollectionInfo
	err := q.retry(ctx, "get collection", collection, func(ctx context.Context) (err error) {
		info, err = q.client.GetCollectionInfo(ctx, collection)
		return err
	})
	return info, err
}

func (q *Store) ensure(ctx context.Context, c pipeline.Collection, create bool) error {
	info, err := q.collectionInfo(ctx, c.Name)
	if isCode(err, codes.NotFound) {
		if !create {
			return pipeline.Permanent(fmt.Errorf("collection %q: %w", c.Name, pipeline.ErrUnknownCollection))
		}
		if err := q.create(ctx, c, true); err != nil {
			return err
		}
		err = q.retry(ctx, "get collection", c.Name, func(ctx context.Context) error {
			var err error
			info, err = q.client.GetCollectionInfo(ctx, c.Name)
			if isCode(err, codes.NotFound) {
				// Behind a load balancer a peer may not have applied the
				// creation yet: transient (%v drops the status code).
				return fmt.Errorf("created collection not visible yet: %v", err)
			}
			return err
		})
	}
	if err != nil {
		return err
	}
	have, err := collectionOf(c.Name, info)
	if err != nil {
		return err
	}
	if err := pipeline.CollectionMismatch("Qdrant", c, have); err != nil {
		return err
	}
	if err := q.ensureIndexes(ctx, c.Name, info.GetPayloadSchema()); err != nil {
		return err
	}
	// Recorded for the sink's own use (nothingStored). collectionOf leaves
	// the layout out, so that a copied collection (migrate) gets the
	// target's configured layout.
	have.ReplicationFactor = info.GetConfig().GetParams().GetReplicationFactor()
	q.known.Store(c.Name, have)
	q.log.Debug().Str("collection", c.Name).Int("dims", c.Dims).Str("distance", string(c.Distance)).Msg("collection ready")
	return nil
}

// CreateWithoutKeywords creates collection c as ragpipe created collections
// before keyword vectors: with the dense vector alone, and without payload
// indexes (EnsureCollection adds them). It lets tests check how such
// collections are written and searched (storetest.WithoutKeywords).
func (q *Store) CreateWithoutKeywords(ctx context.Context, c pipeline.Collection) error {
	if _, ok := distances[cmp.Or(c.Distance, pipeline.Cosine)]; !ok || c.Name == "" || c.Dims <= 0 {
		return pipeline.Permanent(fmt.Errorf("collection %q with %d dimensions, distance %q: invalid", c.Name, c.Dims, c.Distance))
	}
	c.Distance = cmp.Or(c.Distance, pipeline.Cosine)
	return q.create(ctx, c, false)
}

// create creates c, with keyword vectors if keywords; losing a race with
// another creator is fine.
func (q *Store) create(ctx context.Context, c pipeline.Collection, keywords bool) error {
	req := &qdrant.CreateCollection{
		CollectionName: c.Name,
		VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{
			Size:     uint64(c.Dims),
			Distance: distances[c.Distance],
		}),
		ShardNumber:            qdrant.PtrOf(cmp.Or(c.Shards, q.cfg.Shards)),
		ReplicationFactor:      qdrant.PtrOf(cmp.Or(c.ReplicationFactor, q.cfg.ReplicationFactor)),
		WriteConsistencyFactor: qdrant.PtrOf(cmp.Or(c.WriteConsistency, q.cfg.WriteConsistency)),
		Timeout:                qdrant.PtrOf(uint64(max(q.cfg.Timeout/time.Second, 1))),
	}
	if keywords {
		req.SparseVectorsConfig = keywordsConfig()
	}
	if q.cfg.HNSW == HNSWTenant {
		req.HnswConfig = &qdrant.HnswConfigDiff{M: qdrant.PtrOf(uint64(0)), PayloadM: qdrant.PtrOf(uint64(16))}
	}
	err := q.retry(ctx, "create collection", c.Name, func(ctx context.Context) error {
		err := q.client.CreateCollection(ctx, req)
		if isCode(err, codes.AlreadyExists) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	q.log.Info().Str("collection", c.Name).Int("dims", c.Dims).Str("distance", string(c.Distance)).Bool("keywords", keywords).
		Uint32("shards", cmp.Or(c.Shards, q.cfg.Shards)).Uint32("replication_factor", cmp.Or(c.ReplicationFactor, q.cfg.ReplicationFactor)).
		Str("hnsw", q.cfg.HNSW).Msg("created qdrant collection")
	return nil
}

// payloadIndex is one payload index every collection carries.
type payloadIndex struct {
	field  string
	typ    qdrant.FieldType
	schema qdrant.PayloadSchemaType
	params *qdrant.PayloadIndexParams
}

var payloadIndexes = []payloadIndex{
	{keyUserID, qdrant.FieldType_FieldTypeKeyword, qdrant.PayloadSchemaType_Keyword,
		qdrant.NewPayloadIndexParamsKeyword(&qdrant.KeywordIndexParams{IsTenant: qdrant.PtrOf(true)})},
	{keyDocID, qdrant.FieldType_FieldTypeKeyword, qdrant.PayloadSchemaType_Keyword, nil},
	{keyVersion, qdrant.FieldType_FieldTypeInteger, qdrant.PayloadSchemaType_Integer,
		qdrant.NewPayloadIndexParamsInt(&qdrant.IntegerIndexParams{Lookup: qdrant.PtrOf(true), Range: qdrant.PtrOf(true)})},
}

// ensureIndexes creates the payload indexes schema lacks, waiting for each.
func (q *Store) ensureIndexes(ctx context.Context, collection string, schema map[string]*qdrant.PayloadSchemaInfo) error {
	for _, ix := range payloadIndexes {
		if have, ok := schema[ix.field]; ok {
			if have.GetDataType() != ix.schema {
				return pipeline.Permanent(fmt.Errorf("collection %q: payload index on %q has type %s, want %s",
					collection, ix.field, have.GetDataType(), ix.schema))
			}
			continue
		}
		req := &qdrant.CreateFieldIndexCollection{
			CollectionName:   collection,
			Wait:             qdrant.PtrOf(true),
			FieldName:        ix.field,
			FieldType:        ix.typ.Enum(),
			FieldIndexParams: ix.params,
			Ordering:         q.ordering,
		}
		err := q.retry(ctx, "create index "+ix.field, collection, func(ctx context.Context) error {
			_, err := q.client.CreateFieldIndex(ctx, req)
			return err
		})
		if err != nil {
			return err
		}
	}
	return nil
}

// keywordsVector names the sparse vector that holds the points' keyword
// vectors (pipeline.Keywords) beside the unnamed dense one.
const keywordsVector = "keywords"

// keywordsConfig declares the keyword vector of a new collection. Qdrant
// multiplies its weights by each term's IDF over the shard's points
// (Modifier_Idf), the part of BM25 that needs the whole collection.
func keywordsConfig() *qdrant.SparseVectorConfig {
	return qdrant.NewSparseVectorsConfig(map[string]*qdrant.SparseVectorParams{
		keywordsVector: {Modifier: qdrant.Modifier_Idf.Enum()},
	})
}

// collectionOf reads the dimensions, distance and keyword vector of an
// existing collection.
func collectionOf(name string, info *qdrant.CollectionInfo) (pipeline.Collection, error) {
	params := info.GetConfig().GetParams().GetVectorsConfig().GetParams()
	if params == nil {
		return pipeline.Collection{}, pipeline.Permanent(fmt.Errorf(
			"collection %q in Qdrant has no single unnamed dense vector; ragpipe cannot use it", name))
	}
	sparse := info.GetConfig().GetParams().GetSparseVectorsConfig().GetMap()
	have := pipeline.Collection{Name: name, Dims: int(params.GetSize()), Keywords: sparse[keywordsVector] != nil}
	for d, qd := range distances {
		if qd == params.GetDistance() {
			have.Distance = d
		}
	}
	if have.Distance == "" {
		have.Distance = pipeline.Distance(strings.ToLower(params.GetDistance().String()))
	}
	return have, nil
}

// forget drops a collection from the caches after Qdrant said it is gone, so
// that the next EnsureCollection looks again.
func (q *Store) forget(collection string, err error) {
	if isCode(err, codes.NotFound) {
		q.known.Delete(collection)
		q.shapes.Delete(collection)
	}
}
