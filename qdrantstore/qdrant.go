package qdrantstore

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/qdrant/go-client/qdrant"
	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sync/singleflight"
	"google.golang.org/grpc"
	grpcbackoff "google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding/gzip"
	"google.golang.org/grpc/status"

	"github.com/ragpipe/ragpipe/pipeline"
)

// HNSW modes of the collections the sink creates.
const (
	HNSWTenant = "tenant" // per-tenant graphs only: m=0, payload_m=16
	HNSWGlobal = "global" // Qdrant's default global graph
)

// Write orderings (Qdrant WriteOrdering) the sink may use for its updates.
const (
	OrderingWeak   = "weak"
	OrderingMedium = "medium"
	OrderingStrong = "strong"
)

// Config configures the Qdrant sink; zero fields take the documented
// defaults.
type Config struct {
	// Host is Qdrant's host name. Default "localhost".
	Host string
	// Port is Qdrant's gRPC port. Default 6334.
	Port int
	// TLS connects with TLS (QDRANT_URL https://).
	TLS bool
	// APIKey is sent with every request; it never appears in logs or errors.
	APIKey string

	// Timeout bounds each request (each attempt of a retried call). Default 30s.
	Timeout time.Duration
	// PoolSize is the number of gRPC connections. Default 3.
	PoolSize int
	// Compression gzips requests and responses on the gRPC connection.
	Compression bool

	// Shards is the shard_number of created collections. Default 1.
	Shards uint32
	// ReplicationFactor is the replication_factor of created collections. Default 1.
	ReplicationFactor uint32
	// WriteConsistency is the write_consistency_factor of created collections. Default 1.
	WriteConsistency uint32
	// HNSW is "tenant" (default: m=0, payload_m=16, a graph per tenant) or
	// "global" (Qdrant's defaults) for created collections.
	HNSW string

	// WriteOrdering is "weak", "medium" (default) or "strong": the Qdrant
	// write ordering of every update.
	WriteOrdering string
	// ReadConsistency is how many replicas of a shard answer a search or a
	// list: "all", "majority", "quorum" or a number; empty for Qdrant's
	// default (one).
	ReadConsistency string
	// BatchPoints is the most points one update request carries; one
	// document's write is never split, so a larger document goes alone.
	// Default 256.
	BatchPoints int
	// Parallelism is the most update requests one Apply or Prune runs at
	// once. Default 4.
	Parallelism int

	// MaxRetryTime bounds how long one call keeps retrying transient
	// failures. Default 20s.
	MaxRetryTime time.Duration
	// RetryInitialInterval is the first wait between attempts; later waits
	// grow exponentially, with jitter. Default 100ms.
	RetryInitialInterval time.Duration
	// RetryMaxInterval caps the wait between attempts. Default 5s.
	RetryMaxInterval time.Duration
	// ConnectTimeout bounds how long New waits for Qdrant to answer.
	// Default 30s.
	ConnectTimeout time.Duration

	// Logger receives retries and connection attempts. The zero Logger
	// discards everything.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	def := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	defInt := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defU32 := func(v *uint32, d uint32) {
		if *v == 0 {
			*v = d
		}
	}
	if c.Host == "" {
		c.Host = "localhost"
	}
	defInt(&c.Port, 6334)
	def(&c.Timeout, 30*time.Second)
	defInt(&c.PoolSize, 3)
	defU32(&c.Shards, 1)
	defU32(&c.ReplicationFactor, 1)
	defU32(&c.WriteConsistency, 1)
	if c.HNSW == "" {
		c.HNSW = HNSWTenant
	}
	if c.WriteOrdering == "" {
		c.WriteOrdering = OrderingMedium
	}
	defInt(&c.BatchPoints, 256)
	defInt(&c.Parallelism, 4)
	def(&c.MaxRetryTime, 20*time.Second)
	def(&c.RetryInitialInterval, 100*time.Millisecond)
	def(&c.RetryMaxInterval, 5*time.Second)
	def(&c.ConnectTimeout, 30*time.Second)

	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", c.Port))
	}
	for name, v := range map[string]time.Duration{
		"timeout": c.Timeout, "max retry time": c.MaxRetryTime, "connect timeout": c.ConnectTimeout,
		"retry initial interval": c.RetryInitialInterval, "retry max interval": c.RetryMaxInterval,
	} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %s is negative", name, v))
		}
	}
	for name, v := range map[string]int{"pool size": c.PoolSize, "batch points": c.BatchPoints, "parallelism": c.Parallelism} {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s %d is negative", name, v))
		}
	}
	if c.WriteConsistency > c.ReplicationFactor {
		errs = append(errs, fmt.Errorf("write consistency %d exceeds replication factor %d", c.WriteConsistency, c.ReplicationFactor))
	}
	if c.HNSW != HNSWTenant && c.HNSW != HNSWGlobal {
		errs = append(errs, fmt.Errorf("hnsw %q: want %q or %q", c.HNSW, HNSWTenant, HNSWGlobal))
	}
	if _, ok := orderings[c.WriteOrdering]; !ok {
		errs = append(errs, fmt.Errorf("write ordering %q: want weak, medium or strong", c.WriteOrdering))
	}
	if c.ReadConsistency != "" && readConsistency(c.ReadConsistency) == nil {
		errs = append(errs, fmt.Errorf("read consistency %q: want all, majority, quorum or a number >= 1", c.ReadConsistency))
	}
	return errors.Join(errs...)
}

var orderings = map[string]qdrant.WriteOrderingType{
	OrderingWeak:   qdrant.WriteOrderingType_Weak,
	OrderingMedium: qdrant.WriteOrderingType_Medium,
	OrderingStrong: qdrant.WriteOrderingType_Strong,
}

var distances = map[pipeline.Distance]qdrant.Distance{
	pipeline.Cosine:    qdrant.Distance_Cosine,
	pipeline.Dot:       qdrant.Distance_Dot,
	pipeline.Euclid:    qdrant.Distance_Euclid,
	pipeline.Manhattan: qdrant.Distance_Manhattan,
}

// Store is the Qdrant sink: it implements ingest.Sink over gRPC. It is
// safe for concurrent use.
type Store struct {
	client   *qdrant.Client
	cfg      Config
	log      zerolog.Logger
	ordering *qdrant.WriteOrdering
	reading  *qdrant.ReadConsistency // nil for Qdrant's default

	known     sync.Map // collection name -> pipeline.Collection verified against Qdrant
	distances sync.Map // collection name -> pipeline.Distance, as read by searches
	creating  singleflight.Group

	mu     sync.RWMutex // held for reading by every request, for writing by Close
	closed bool
}

// ErrClosed is returned by calls made after Close. It is transient: the
// event was not processed and another process may still do it.
var ErrClosed = errors.New("qdrant sink closed")

// call runs one request, bounded by Timeout, unless the sink is closed;
// Close waits for it.
func (q *Store) call(ctx context.Context, op func(ctx context.Context) error) error {
	q.mu.RLock()
	defer q.mu.RUnlock()
	if q.closed {
		return ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, q.cfg.Timeout)
	defer cancel()
	return op(ctx)
}

// New builds the client and waits, retrying with exponential backoff and
// logging each failed attempt at warn, until Qdrant answers a health check and
// accepts the credentials, or ConnectTimeout passes or ctx ends. It fails at
// once on invalid settings and on errors no retry can fix.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("qdrant sink: %w", err)
	}
	opts := []grpc.DialOption{
		// Reconnect quickly once Qdrant is back: gRPC's default backoff
		// grows to two minutes, far beyond MaxRetryTime.
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff: grpcbackoff.Config{
				BaseDelay:  100 * time.Millisecond,
				Multiplier: 1.6,
				Jitter:     0.2,
				MaxDelay:   2 * time.Second,
			},
			MinConnectTimeout: min(cfg.Timeout, 20*time.Second),
		}),
	}
	if cfg.Compression {
		opts = append(opts, grpc.WithDefaultCallOptions(grpc.UseCompressor(gzip.Name)))
	}
	client, err := qdrant.NewClient(&qdrant.Config{
		Host:                   cfg.Host,
		Port:                   cfg.Port,
		APIKey:                 cfg.APIKey,
		UseTLS:                 cfg.TLS,
		PoolSize:               uint(cfg.PoolSize),
		GrpcOptions:            opts,
		SkipCompatibilityCheck: true, // it blocks up to a minute without a context
	})
	if err != nil {
		return nil, fmt.Errorf("qdrant sink: %s:%d: %w", cfg.Host, cfg.Port, err)
	}
	q := &Store{
		client:   client,
		cfg:      cfg,
		log:      cfg.Logger.With().Str("component", "qdrant").Logger(),
		ordering: &qdrant.WriteOrdering{Type: orderings[cfg.WriteOrdering]},
		reading:  readConsistency(cfg.ReadConsistency),
	}
	if err := q.connect(ctx); err != nil {
		client.Close()
		return nil, err
	}
	return q, nil
}

// connect waits until Qdrant answers a health check and the credentials are
// accepted.
func (q *Store) connect(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, q.cfg.ConnectTimeout)
	defer cancel()
	b := backoff.NewExponentialBackOff()
	b.InitialInterval = q.cfg.RetryInitialInterval
	b.MaxInterval = q.cfg.RetryMaxInterval
	b.MaxElapsedTime = 0 // bounded by ctx
	attempt := 0
	var last error
	err := backoff.RetryNotify(func() error {
		attempt++
		actx, acancel := context.WithTimeout(ctx, q.cfg.Timeout)
		defer acancel()
		reply, err := q.client.HealthCheck(actx)
		if err == nil {
			// The health check needs no credentials; this call does.
			_, err = q.client.ListCollections(actx)
			if isCode(err, codes.Unauthenticated) || isCode(err, codes.PermissionDenied) {
				return backoff.Permanent(fmt.Errorf("credentials refused: %w", err))
			}
		}
		if err != nil {
			last = err
			if !Retryable(err) {
				return backoff.Permanent(err)
			}
			return err
		}
		q.log.Info().Str("address", q.addr()).Str("version", reply.GetVersion()).Msg("connected to qdrant")
		return nil
	}, backoff.WithContext(b, ctx), func(err error, wait time.Duration) {
		q.log.Warn().Err(err).Str("address", q.addr()).Int("attempt", attempt).Dur("retry_in", wait).
			Msg("qdrant not reachable yet")
	})
	if err == nil {
		return nil
	}
	if last == nil {
		last = err
	}
	return fmt.Errorf("qdrant sink: connect to %s (%d attempts in up to %s): %w", q.addr(), attempt, q.cfg.ConnectTimeout, last)
}

func (q *Store) addr() string { return fmt.Sprintf("%s:%d", q.cfg.Host, q.cfg.Port) }

// Health reports whether Qdrant answers its health check within Timeout; for
// /readyz.
func (q *Store) Health(ctx context.Context) error {
	err := q.call(ctx, func(ctx context.Context) error {
		_, err := q.client.HealthCheck(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("qdrant %s: %w", q.addr(), err)
	}
	return nil
}

// Client is the underlying go-client, for searches and tests. It must not be
// used after Close.
func (q *Store) Client() *qdrant.Client { return q.client }

// Close waits for requests in flight (at most Timeout), then closes the gRPC
// connections; later calls, and retries of calls in flight, fail with
// ErrClosed. Closing twice is harmless.
func (q *Store) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	return q.client.Close()
}

// EnsureCollection makes sure collection c exists with c's dimensions and
// distance (an empty distance means cosine) and with the payload indexes on
// user_id (keyword, tenant key), doc_id (keyword) and version (integer).
//
// A missing collection is created when create is true, with the configured
// shards, replication, write consistency and HNSW mode; otherwise the error
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

func (q *Store) ensure(ctx context.Context, c pipeline.Collection, create bool) error {
	var info *qdrant.CollectionInfo
	err := q.retry(ctx, "get collection", c.Name, func(ctx context.Context) error {
		var err error
		info, err = q.client.GetCollectionInfo(ctx, c.Name)
		return err
	})
	if isCode(err, codes.NotFound) {
		if !create {
			return pipeline.Permanent(fmt.Errorf("collection %q: %w", c.Name, pipeline.ErrUnknownCollection))
		}
		if err := q.create(ctx, c); err != nil {
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

// create creates c; losing a race with another creator is fine.
func (q *Store) create(ctx context.Context, c pipeline.Collection) error {
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
	q.log.Info().Str("collection", c.Name).Int("dims", c.Dims).Str("distance", string(c.Distance)).
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

// collectionOf reads the dimensions and distance of an existing collection.
func collectionOf(name string, info *qdrant.CollectionInfo) (pipeline.Collection, error) {
	params := info.GetConfig().GetParams().GetVectorsConfig().GetParams()
	if params == nil {
		return pipeline.Collection{}, pipeline.Permanent(fmt.Errorf(
			"collection %q in Qdrant has no single unnamed dense vector; ragpipe cannot use it", name))
	}
	have := pipeline.Collection{Name: name, Dims: int(params.GetSize())}
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

// forget drops a collection from the cache after Qdrant said it is gone, so
// that the next EnsureCollection looks again.
func (q *Store) forget(collection string, err error) {
	if isCode(err, codes.NotFound) {
		q.known.Delete(collection)
	}
}

// Apply stores writes: each write's points are upserted, overwriting only
// stored points whose version is <= w.Version (missing points are inserted),
// then the document's points whose version is < w.Version are deleted. A
// write without points (a delete) has only the delete. In a collection of
// one replica, a request whose documents have no stored point at all (a
// bulk load) skips the delete, after one read that says so.
//
// Writes are packed into UpdateBatch requests (wait=true, with the configured
// ordering) of about BatchPoints points, a write never split; each request
// carries one upsert operation for all its writes' points and one delete
// operation for all their older points (see the package documentation for
// why two operations, not two per write). Several writes of one document in
// one call are applied in the given order, one after another. Up to
// Parallelism requests run at once. Transient failures are retried for up to
// MaxRetryTime per request; every operation is idempotent.
//
// Apply returns nil once every write is durable. If a request fails
// permanently, its writes are retried one by one so that one bad write does
// not fail the others; when all failures are permanent the error is a
// *pipeline.BatchError saying which writes failed (the others are stored), otherwise
// it is transient. It is safe for concurrent use.
//
// Versions are compared by Qdrant's range filter, which works in float64:
// exact up to 2^53; above that, versions closer than float64's spacing there
// (e.g. 256 near 1.7e18, nanosecond timestamps) are indistinguishable.
func (q *Store) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	dims := 0 // unknown: Qdrant checks
	if c, ok := q.known.Load(collection); ok {
		dims = c.(pipeline.Collection).Dims
	}
	units := make([]unit, 0, len(writes))
	errs := make([]error, len(writes))
	for i := range writes {
		u, err := q.writeUnit(&writes[i], dims)
		if err != nil {
			errs[i] = pipeline.Permanent(err)
			continue
		}
		u.index = i
		units = append(units, u)
	}
	return q.run(ctx, "apply", collection, units, errs)
}

// Prune deletes, for each document, its points whose version is < d.Version,
// packed into UpdateBatch requests like Apply's, with the same errors.
func (q *Store) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	units := make([]unit, 0, len(docs))
	errs := make([]error, len(docs))
	for i, d := range docs {
		if err := pipeline.CheckDoc(d.UserID, d.DocID, d.Version); err != nil {
			errs[i] = pipeline.Permanent(err)
			continue
		}
		units = append(units, unit{index: i, doc: docKey{d.UserID, d.DocID}, version: d.Version, weight: 1})
	}
	return q.run(ctx, "prune", collection, units, errs)
}

// writeUnit builds the unit of one write. With dims > 0 it checks vector
// lengths, sparing Qdrant a batch it would refuse.
func (q *Store) writeUnit(w *pipeline.DocWrite, dims int) (unit, error) {
	if err := pipeline.CheckDoc(w.UserID, w.DocID, w.Version); err != nil {
		return unit{}, err
	}
	u := unit{doc: docKey{w.UserID, w.DocID}, version: w.Version, weight: max(len(w.Points), 1)}
	u.points = make([]*qdrant.PointStruct, len(w.Points))
	for i := range w.Points {
		if n := len(w.Points[i].Vector); dims > 0 && n != dims {
			return unit{}, fmt.Errorf("point %s of %s/%s: vector of %d dimensions, collection has %d",
				w.Points[i].ID, w.UserID, w.DocID, n, dims)
		}
		p, err := pointStruct(w, &w.Points[i])
		if err != nil {
			return unit{}, err
		}
		u.points[i] = p
	}
	return u, nil
}

// docKey names a document within a collection.
type docKey struct{ userID, docID string }

// unit is one write or prune: points to upsert over versions <= version,
// then the document's points below version to delete. It is never split
// across requests.
type unit struct {
	index   int // in the caller's slice
	doc     docKey
	version uint64
	points  []*qdrant.PointStruct
	weight  int // points carried, at least 1
}

// operations returns the operations of one request carrying units, at most
// one of each document: one upsert of all their points, whose update_filter
// lets each point overwrite only a stored point of its own write's version or
// older, then, with deleteOlder, one delete of each document's points below
// its write's version.
func operations(units []unit, deleteOlder bool) []*qdrant.PointsUpdateOperation {
	var points []*qdrant.PointStruct
	ids := make(map[uint64][]*qdrant.PointId) // by the version their write carries
	var older []*qdrant.Filter
	for _, u := range units {
		for _, p := range u.points {
			points = append(points, p)
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

// rounds splits units into rounds holding at most one unit per document, the
// k-th unit of each document in round k, so that running the rounds one
// after another applies a document's units in order.
func rounds(units []unit) [][]unit {
	var out [][]unit
	seen := make(map[docKey]int)
	for _, u := range units {
		k := seen[u.doc]
		seen[u.doc]++
		if k == len(out) {
			out = append(out, nil)
		}
		out[k] = append(out[k], u)
	}
	return out
}

// pack groups units into requests of about maxWeight points.
func pack(units []unit, maxWeight int) [][]unit {
	var reqs [][]unit
	var cur []unit
	weight := 0
	for _, u := range units {
		if len(cur) > 0 && weight+u.weight > maxWeight {
			reqs = append(reqs, cur)
			cur, weight = nil, 0
		}
		cur = append(cur, u)
		weight += u.weight
	}
	if len(cur) > 0 {
		reqs = append(reqs, cur)
	}
	return reqs
}

// run sends units, round by round (see rounds), in packed requests,
// Parallelism at a time, and reports failures per unit in errs, which holds
// those found while building the units already (one per write or prune).
func (q *Store) run(ctx context.Context, what, collection string, units []unit, errs []error) error {
	var mu sync.Mutex
	fail := func(u unit, err error) {
		mu.Lock()
		errs[u.index] = err
		mu.Unlock()
	}
	for _, round := range rounds(units) {
		var g errgroup.Group
		g.SetLimit(q.cfg.Parallelism)
		for _, r := range pack(round, q.cfg.BatchPoints) {
			g.Go(func() error {
				err := q.send(ctx, what, collection, r)
				if err == nil {
					return nil
				}
				// Only a refused operation (a bad vector, a bad id) is
				// specific to one write; anything else fails them all.
				if !isCode(err, codes.InvalidArgument) || len(r) == 1 || ctx.Err() != nil {
					for _, u := range r {
						fail(u, err)
					}
					return nil
				}
				// One bad write must not fail the others: some of the
				// request's points may be stored already; replay the
				// writes one by one (all idempotent).
				q.log.Warn().Err(err).Str("collection", collection).Int("writes", len(r)).
					Msg("qdrant refused a batch; retrying its writes one by one")
				for _, u := range r {
					if err := q.send(ctx, what, collection, []unit{u}); err != nil {
						fail(u, err)
					}
				}
				return nil
			})
		}
		_ = g.Wait()
	}

	failed := 0
	var transient error
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if transient == nil && !pipeline.IsPermanent(err) {
			transient = err
		}
	}
	switch {
	case failed == 0:
		return nil
	case transient != nil:
		// Something is merely unavailable: the caller retries the whole
		// call, which is harmless.
		return fmt.Errorf("qdrant %s: %d of %d failed: %w", what, failed, len(errs), transient)
	default:
		return &pipeline.BatchError{Op: "qdrant " + what, Collection: collection, Errs: errs}
	}
}

// send runs the units' operations as one UpdateBatch request, with retries.
func (q *Store) send(ctx context.Context, what, collection string, units []unit) error {
	deleteOlder := what != "apply" || !q.nothingStored(ctx, collection, units)
	ops := operations(units, deleteOlder)
	if len(ops) == 0 {
		return nil // deletes of documents that have nothing stored
	}
	req := &qdrant.UpdateBatchPoints{
		CollectionName: collection,
		Wait:           qdrant.PtrOf(true),
		Operations:     ops,
		Ordering:       q.ordering,
	}
	err := q.retry(ctx, what, collection, func(ctx context.Context) error {
		_, err := q.client.UpdateBatch(ctx, req)
		return err
	})
	if _, vanished := q.known.Load(collection); vanished && isCode(err, codes.NotFound) {
		// An ensured collection vanished (deleted by an operator, or not yet
		// visible on this peer): not the events' fault. Transient, so that
		// the caller ensures it again and retries. A collection never
		// ensured stays a permanent error.
		q.forget(collection, err)
		return fmt.Errorf("qdrant %s %q: %w (%v)", what, collection, pipeline.ErrUnknownCollection, status.Convert(err).Message())
	}
	return err
}

// nothingStored reports whether none of the units' documents has a stored
// point, so that their deletes of older points can be left out. It answers
// only for a collection of one replica, where a read sees every
// acknowledged write; with replicas a read may miss a write another replica
// acknowledged, so it answers false, as it does when the read fails.
//
// Why skipping is then safe: a point of an older version written after
// this read was written after this write's version was claimed (the claim
// comes first), so its writer's re-read of the version register sees the
// newer version and prunes it (see the package documentation).
func (q *Store) nothingStored(ctx context.Context, collection string, units []unit) bool {
	c, ok := q.known.Load(collection)
	if !ok || c.(pipeline.Collection).ReplicationFactor != 1 {
		return false
	}
	docs := make([]*qdrant.Filter, 0, len(units))
	for _, u := range units {
		docs = append(docs, &qdrant.Filter{Must: []*qdrant.Condition{
			qdrant.NewMatchKeyword(keyUserID, u.doc.userID),
			qdrant.NewMatchKeyword(keyDocID, u.doc.docID),
		}})
	}
	var found int
	err := q.call(ctx, func(ctx context.Context) error {
		points, err := q.client.Scroll(ctx, &qdrant.ScrollPoints{
			CollectionName: collection, Filter: anyOf(docs), Limit: qdrant.PtrOf(uint32(1)),
			WithPayload: qdrant.NewWithPayload(false), WithVectors: qdrant.NewWithVectors(false),
		})
		found = len(points)
		return err
	})
	return err == nil && found == 0
}

// readConsistency parses a read consistency setting; nil for "" or a bad one.
func readConsistency(s string) *qdrant.ReadConsistency {
	switch s {
	case "all":
		return qdrant.NewReadConsistencyType(qdrant.ReadConsistencyType_All)
	case "majority":
		return qdrant.NewReadConsistencyType(qdrant.ReadConsistencyType_Majority)
	case "quorum":
		return qdrant.NewReadConsistencyType(qdrant.ReadConsistencyType_Quorum)
	}
	if n, err := strconv.ParseUint(s, 10, 64); err == nil && n >= 1 {
		return qdrant.NewReadConsistencyFactor(n)
	}
	return nil
}
