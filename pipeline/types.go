package pipeline

import (
	"context"
	"errors"
	"fmt"
)

// Op is what an event does to its document.
type Op string

// The operations an event may carry.
const (
	OpUpsert Op = "upsert"
	OpDelete Op = "delete"
)

// Event is a decoded, validated ingest event. UserID and Collection come from
// the subject, never from the body.
type Event struct {
	Op         Op
	UserID     string
	Collection string
	DocID      string
	Text       string
	Metadata   map[string]any // nil when the event has none
	Version    uint64         // effective version: body, header or stream sequence
	Vector     []float32      // precomputed embedding, nil when the text is to be embedded
}

// Point is one stored chunk, with the payload of CONTRACT §3.
type Point struct {
	ID         string // UUIDv5, see PointID
	Vector     []float32
	UserID     string
	DocID      string
	ChunkIndex int
	ChunkCount int
	Text       string
	Metadata   map[string]any
	Version    uint64
	// TextHash identifies the text and the model its vector came from (see
	// TextHash); empty when the vector was not embedded by ragpipe.
	TextHash string
}

// DocWrite is the effect of one event on the store: the points of its version
// (none for a delete).
type DocWrite struct {
	UserID  string
	DocID   string
	Version uint64
	Points  []Point
}

// DocVersion names a document and a version bound, used to prune older chunks.
type DocVersion struct {
	UserID  string
	DocID   string
	Version uint64
}

// Distance is a collection's similarity function.
type Distance string

// Distances a collection may use.
const (
	Cosine    Distance = "cosine"
	Dot       Distance = "dot"
	Euclid    Distance = "euclid"
	Manhattan Distance = "manhattan"
)

// Collection describes a vector collection.
type Collection struct {
	Name     string
	Dims     int
	Distance Distance
	// Embedder names the embedder profile that embeds the collection's
	// texts; empty for the default embedder.
	Embedder string
	// Shards, ReplicationFactor and WriteConsistency lay the collection out
	// when it is created in a cluster; 0 takes the store's defaults.
	Shards, ReplicationFactor, WriteConsistency uint32
}

// Embedder turns texts into vectors of a fixed dimension.
type Embedder interface {
	// Embed returns one vector per text, in order. It blocks until done or ctx ends.
	// Errors for which IsMisconfigured is true mean the embedding service
	// refuses the deployment's settings (key, model, URL), not the texts.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dimensions is the length of every vector Embed returns.
	Dimensions() int
}

// Identified is implemented by embedders that can say which model produces
// their vectors. The stage stores a hash of that identity and each chunk's
// text with the chunk (TextHash) and reuses a stored vector only for a chunk
// with the same hash: the same text embedded by the same model. Vectors of an
// embedder that does not implement Identified are never reused.
type Identified interface {
	// Identity names the provider and model, such as
	// "openai/text-embedding-3-small". It must change whenever the vectors
	// for a text would.
	Identity() string
}

// VectorSource finds the stored vectors of chunks embedded before, so that an
// updated document's unchanged chunks are not embedded again.
type VectorSource interface {
	// StoredVectors looks among the points ids of collection for those whose
	// text hash is one of hashes and returns their vectors keyed by text
	// hash. Points that do not exist or have another hash are left out. It
	// blocks until done or ctx ends.
	StoredVectors(ctx context.Context, collection string, ids, hashes []string) (map[string][]float32, error)
}

// Sink stores points durably: every method returns only once its effect is
// persisted (Qdrant wait=true).
type Sink interface {
	// EnsureCollection creates c if it is missing, with its payload indexes. It
	// fails if c exists with other dimensions. With create false, a missing
	// collection yields an error wrapping ErrUnknownCollection.
	EnsureCollection(ctx context.Context, c Collection, create bool) error
	// Apply, for each write in order, upserts its points, overwriting only
	// stored points whose version is <= w.Version, then deletes the document's
	// points whose version is < w.Version.
	Apply(ctx context.Context, collection string, writes []DocWrite) error
	// Prune deletes, for each document, its points whose version is < d.Version.
	Prune(ctx context.Context, collection string, docs []DocVersion) error
}

// Versions is the per-document version register that makes the last version
// win across redeliveries and concurrent workers.
type Versions interface {
	// Claim records v as the newest version of key unless a version >= v is
	// already recorded, and says what it found.
	Claim(ctx context.Context, key string, v uint64) (Claimed, error)
	// Latest returns the newest recorded version of each key, 0 if none. The
	// reads are linearizable: they see every Claim that returned before
	// Latest was called.
	Latest(ctx context.Context, keys []string) ([]uint64, error)
}

// Claimed is the outcome of Versions.Claim.
type Claimed struct {
	// Held is true when the caller holds the newest version: v was recorded,
	// or was already (so that redeliveries proceed).
	Held bool
	// Latest is the newest version recorded after the call.
	Latest uint64
	// First is true when Claim recorded v where no version was recorded
	// before: the document is new to the register (its points, if any,
	// predate the register, e.g. copied by ragpipe migrate).
	First bool
}

// BatchError is returned by a Sink when some items of a call (writes or
// documents) failed permanently and all the others are durable. It is
// permanent: IsPermanent reports true for it.
type BatchError struct {
	Op         string  // what failed, e.g. "qdrant apply"
	Collection string  // the collection written to
	Errs       []error // one per item, in the caller's order; nil where it succeeded
}

func (e *BatchError) Error() string {
	failed := e.Unwrap()
	var first error
	if len(failed) > 0 {
		first = failed[0]
	}
	return fmt.Sprintf("%s %q: %d of %d failed permanently, first: %v", e.Op, e.Collection, len(failed), len(e.Errs), first)
}

// Unwrap returns the failures, all permanent.
func (e *BatchError) Unwrap() []error {
	var errs []error
	for _, err := range e.Errs {
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// perItem spreads the error of a call over its n items: a *BatchError's own
// per-item errors, or err for every item.
func perItem(err error, n int) []error {
	errs := make([]error, n)
	var be *BatchError
	if errors.As(err, &be) && len(be.Errs) == n {
		copy(errs, be.Errs)
		return errs
	}
	for i := range errs {
		errs[i] = err
	}
	return errs
}

// ErrUnknownCollection reports a collection that does not exist and may not be
// created.
var ErrUnknownCollection = errors.New("unknown collection")

// ErrPermanent marks failures that no retry can fix: the event is dead-lettered.
var ErrPermanent = errors.New("permanent failure")

// Permanent wraps err so that IsPermanent reports true for it.
func Permanent(err error) error { return mark(err, ErrPermanent) }

// IsPermanent reports whether err can never succeed on retry. Everything else
// (unavailable stores, timeouts, rate limits, bad credentials) is transient.
func IsPermanent(err error) bool { return errors.Is(err, ErrPermanent) }

// ErrMisconfigured marks failures caused by the deployment rather than by the
// event: an embedding service that refuses the API key, does not know the
// model or answers with vectors of the wrong length. They are transient for
// the event, which is retried for as long as the fix takes and never
// dead-lettered.
var ErrMisconfigured = errors.New("misconfigured")

// Misconfigured wraps err so that IsMisconfigured reports true for it.
func Misconfigured(err error) error { return mark(err, ErrMisconfigured) }

// IsMisconfigured reports whether err is a configuration problem of the
// deployment (see ErrMisconfigured).
func IsMisconfigured(err error) bool { return errors.Is(err, ErrMisconfigured) }

// mark wraps err so that errors.Is(err, sentinel) holds; nil stays nil.
func mark(err, sentinel error) error {
	if err == nil {
		return nil
	}
	return markedError{err, sentinel}
}

// markedError is an error with a sentinel attached, its message unchanged.
type markedError struct {
	error
	sentinel error
}

func (e markedError) Unwrap() []error { return []error{e.error, e.sentinel} }
