package pipeline

import (
	"errors"
	"fmt"
	"math"
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
	// Keywords is the chunk's keyword vector (Keywords); nil when the text
	// is empty. Stores keep it only in collections with keyword vectors.
	Keywords *SparseVector
}

// SparseVector is a keyword vector: term ids (hashes of the terms, strictly
// ascending) and their weights, of equal length.
type SparseVector struct {
	Indices []uint32
	Values  []float32
}

// Check reports what makes v unusable: lengths that differ, indices not
// strictly ascending, values that are not finite.
func (v *SparseVector) Check() error {
	if len(v.Indices) != len(v.Values) {
		return fmt.Errorf("%d indices and %d values", len(v.Indices), len(v.Values))
	}
	for i, x := range v.Indices {
		if i > 0 && x <= v.Indices[i-1] {
			return errors.New("indices are not strictly ascending")
		}
		if f := float64(v.Values[i]); math.IsNaN(f) || math.IsInf(f, 0) {
			return errors.New("a value is not finite")
		}
	}
	return nil
}

// DocWrite is the effect of one event on the store: the points of its version
// (none for a delete).
type DocWrite struct {
	UserID  string
	DocID   string
	Version uint64
	Points  []Point
	// First reports that Version is the first its document's register
	// entry held since it was created (or since ragpipe forget deleted
	// it): no writer of another version claimed before it. A store that
	// sees the document has nothing stored may then write it insert-only:
	// points that appear meanwhile are of newer versions or of this one,
	// and are left as they are (forget's condition, nothing of the tenant
	// in flight, rules out writers of older versions claimed before it).
	First bool
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

// Valid reports whether d is one of the distances above.
func (d Distance) Valid() bool {
	switch d {
	case Cosine, Dot, Euclid, Manhattan:
		return true
	}
	return false
}

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
	// Keywords reports whether the collection stores keyword vectors (points'
	// Keywords) for keyword and hybrid search. Collections ragpipe creates
	// have them unless the store is set not to (RAGPIPE_KEYWORDS=false);
	// collections created before them do not.
	Keywords bool
}

// BatchError is returned when some items of a call failed permanently and
// all the others succeeded: by a store for writes or documents (the others
// are durable), by an embedder for texts it refuses (the others have their
// vectors). It is permanent: IsPermanent reports true for it.
type BatchError struct {
	Op         string  // what failed, e.g. "qdrant apply" or "embedder"
	Collection string  // the collection written to, or the embedder profile
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

// ItemErrors spreads the error of a call over its n items: a *BatchError's
// own per-item errors when it has n of them, otherwise err for every item.
func ItemErrors(err error, n int) []error {
	errs := make([]error, n)
	if be, ok := errors.AsType[*BatchError](err); ok && len(be.Errs) == n {
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

// ErrNameTaken reports an alias that cannot be made because a collection
// has its name (a collection created before generations, see package
// generation).
var ErrNameTaken = errors.New("name taken by a collection")

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
