package qdrantstore

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/rs/zerolog"

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
	// NoKeywords creates collections with the dense vector alone, without
	// the keyword sparse vector: Qdrant then indexes no terms on writes,
	// and keyword and hybrid searches of them fail (pipeline.ErrNoKeywords).
	// Existing collections are used as they are either way. Default false:
	// created collections carry keyword vectors.
	NoKeywords bool

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
	// QueriesInFlight is how many requests of one collection's searches
	// are sent to Qdrant at once before further searches wait and go
	// together, as one QueryBatch, when one of them returns (coalesce.go).
	// Default 4; negative: every search is sent alone, at once.
	QueriesInFlight int

	// MaxRetryTime bounds how long one call keeps retrying transient
	// failures: no wait starts that would end later. Default 20s.
	MaxRetryTime time.Duration
	// RetryInitialInterval is the first wait between attempts; later waits
	// double up to RetryMaxInterval, each drawn at random between half and
	// all of its value (internal/retry). A wait a rate-limited Qdrant asks
	// for takes the place of the computed one. Default 100ms.
	RetryInitialInterval time.Duration
	// RetryMaxInterval caps the wait between attempts. Default 5s.
	RetryMaxInterval time.Duration
	// ConnectTimeout bounds how long New waits for Qdrant to answer.
	// Default 30s; negative: as long as New's context lasts.
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
	defInt(&c.QueriesInFlight, 4)
	def(&c.MaxRetryTime, 20*time.Second)
	def(&c.RetryInitialInterval, 100*time.Millisecond)
	def(&c.RetryMaxInterval, 5*time.Second)
	def(&c.ConnectTimeout, 30*time.Second)

	var errs []error
	if c.Port < 1 || c.Port > 65535 {
		errs = append(errs, fmt.Errorf("port %d out of range", c.Port))
	}
	for name, v := range map[string]time.Duration{
		"timeout": c.Timeout, "max retry time": c.MaxRetryTime,
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
