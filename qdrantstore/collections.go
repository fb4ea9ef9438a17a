package qdrantstore

import (
	"cmp"
	"context"
	"fmt"
	"strings"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// EnsureCollection makes sure collection c exists with c's dimensions and
// distance (an empty distance means cosine) and with the payload indexes on
// user_id (keyword, tenant key), doc_id (keyword) and version (integer).
//
// c.Name is the name ragpipe uses: an alias, a plain collection or a missing
// name. A missing name is created when create is true, as the store
// collection generation.Name(c.Name, 1) plus the alias c.Name pointing at it
// (every request by the alias reaches that collection), whatever c.Name
// looks like: a ragpipe collection may be named like a generation, as
// notes__g2 may. Created collections get the configured
// shards, replication, write consistency and HNSW mode, and keyword vectors
// unless Config.NoKeywords (c.Keywords is ignored); an existing collection
// is used with or without them, as it was created, and Apply writes the
// points' keyword vectors only where it has them. Otherwise the error wraps
// pipeline.ErrUnknownCollection. An existing collection of other dimensions
// or distance is a permanent error naming both values.
//
// Several workers may race to create the same collection: the alias is
// made only where none exists yet, so a creator that finds one (another
// creator's, or a reindex's that has switched it since) uses it as it is.
// Once verified, a name is remembered and later calls return without a
// request. It retries transient failures for up to MaxRetryTime.
func (q *Store) EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error {
	c, err := checked(c)
	if err != nil {
		return err
	}
	if v, ok := q.known.Load(c.Name); ok {
		return pipeline.CollectionMismatch("Qdrant", c, v.(pipeline.Collection))
	}
	key := fmt.Sprintf("%s\x00%d\x00%s\x00%t", c.Name, c.Dims, c.Distance, create)
	_, err, _ = q.creating.Do(key, func() (any, error) { return nil, q.ensure(ctx, c, create) })
	return err
}

// checked returns c with the default distance, or a permanent error when c
// cannot be a collection.
func checked(c pipeline.Collection) (pipeline.Collection, error) {
	c.Distance = cmp.Or(c.Distance, pipeline.Cosine)
	if c.Name == "" || c.Dims <= 0 {
		return c, pipeline.Permanent(fmt.Errorf("collection %q with %d dimensions: invalid", c.Name, c.Dims))
	}
	if _, ok := distances[c.Distance]; !ok {
		return c, pipeline.Permanent(fmt.Errorf("collection %q: unknown distance %q", c.Name, c.Distance))
	}
	return c, nil
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

// createdInfo reads the configuration of a collection (or alias) this
// process has just created, waiting until it is visible.
func (q *Store) createdInfo(ctx context.Context, name string) (*qdrant.CollectionInfo, error) {
	var info *qdrant.CollectionInfo
	err := q.retry(ctx, "get collection", name, func(ctx context.Context) (err error) {
		info, err = q.client.GetCollectionInfo(ctx, name)
		if isCode(err, codes.NotFound) {
			// Behind a load balancer a peer may not have applied the
			// creation yet: transient (%v drops the status code).
			return fmt.Errorf("created collection not visible yet: %v", err)
		}
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
		info, err = q.createFirst(ctx, c)
	}
	if err != nil {
		return err
	}
	return q.verify(ctx, c, info)
}

// createFirst creates the first generation of the missing name c.Name and
// the alias c.Name to it, and returns the configuration c.Name then has.
func (q *Store) createFirst(ctx context.Context, c pipeline.Collection) (*qdrant.CollectionInfo, error) {
	g := c
	g.Name = generation.Name(c.Name, 1)
	if err := q.create(ctx, g, !q.cfg.NoKeywords); err != nil {
		return nil, err
	}
	info, err := q.createdInfo(ctx, g.Name)
	if err != nil {
		return nil, err
	}
	have, err := collectionOf(g.Name, info)
	if err != nil {
		return nil, err
	}
	// A generation left with other dimensions must not get the alias.
	if err := pipeline.CollectionMismatch("Qdrant", g, have); err != nil {
		return nil, err
	}
	if err := q.aliasFirst(ctx, c.Name, g.Name); err != nil {
		return nil, err
	}
	return q.createdInfo(ctx, c.Name)
}

// verify checks that info, the configuration of c.Name, matches c, adds
// the payload indexes it lacks and remembers c.Name as verified.
func (q *Store) verify(ctx context.Context, c pipeline.Collection, info *qdrant.CollectionInfo) error {
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
// indexes (EnsureCollection adds them), whatever Config.NoKeywords says. It
// lets tests check how such collections are written and searched
// (storetest.WithoutKeywords).
func (q *Store) CreateWithoutKeywords(ctx context.Context, c pipeline.Collection) error {
	c, err := checked(c)
	if err != nil {
		return err
	}
	return q.create(ctx, c, false)
}

// create creates c, with keyword vectors if keywords, laid out as c says or
// else as configured; finding it created (by another creator) is fine.
func (q *Store) create(ctx context.Context, c pipeline.Collection, keywords bool) error {
	replicas := cmp.Or(c.ReplicationFactor, q.cfg.ReplicationFactor)
	req := &qdrant.CreateCollection{
		CollectionName: c.Name,
		VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{
			Size:     uint64(c.Dims),
			Distance: distances[c.Distance],
		}),
		ShardNumber:            qdrant.PtrOf(cmp.Or(c.Shards, q.cfg.Shards)),
		ReplicationFactor:      qdrant.PtrOf(replicas),
		WriteConsistencyFactor: qdrant.PtrOf(min(cmp.Or(c.WriteConsistency, q.cfg.WriteConsistency), replicas)),
		Timeout:                q.timeoutSeconds(),
	}
	if keywords {
		req.SparseVectorsConfig = keywordsConfig()
	}
	if q.cfg.HNSW == HNSWTenant {
		req.HnswConfig = &qdrant.HnswConfigDiff{M: qdrant.PtrOf(uint64(0)), PayloadM: qdrant.PtrOf(uint64(16))}
	}
	existed := false
	err := q.retry(ctx, "create collection", c.Name, func(ctx context.Context) error {
		err := q.client.CreateCollection(ctx, req)
		if isCode(err, codes.AlreadyExists) {
			existed = true
			return nil
		}
		return err
	})
	if err != nil || existed {
		return err
	}
	q.log.Info().Str("collection", c.Name).Int("dims", c.Dims).Str("distance", string(c.Distance)).Bool("keywords", keywords).
		Uint32("shards", cmp.Or(c.Shards, q.cfg.Shards)).Uint32("replication_factor", replicas).
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
		q.forgetNames(collection)
	}
}

// forgetNames drops names from the caches: what this process verified or
// read of them no longer holds (a collection dropped, an alias switched).
func (q *Store) forgetNames(names ...string) {
	for _, n := range names {
		q.known.Delete(n)
		q.shapes.Delete(n)
		q.coalescers.Delete(n)
	}
}
