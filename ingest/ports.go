package ingest

import (
	"context"
	"time"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// The interfaces below are what the Stage needs of the other parts; the
// embedder and store packages implement them.

// Embedder turns texts into vectors of a fixed dimension.
type Embedder interface {
	// Embed returns one vector per text, in order. It blocks until done or ctx ends.
	// Errors for which pipeline.IsMisconfigured is true mean the embedding service
	// refuses the deployment's settings (key, model, URL), not the texts. A
	// *pipeline.BatchError with one error per text means the service refused
	// the texts whose error is set, for good, and the vectors of the others
	// are returned in place.
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
// persisted (Qdrant wait=true). Apply and Prune follow the conditional-write
// rules of package lww, on which last-version-wins rests.
type Sink interface {
	// EnsureCollection creates c if it is missing, with its payload indexes. It
	// fails if c exists with other dimensions. With create false, a missing
	// collection yields an error wrapping pipeline.ErrUnknownCollection.
	EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error
	// Apply, for each write in order, upserts its points, overwriting only
	// stored points whose version is <= w.Version, then deletes the document's
	// points whose version is < w.Version.
	Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error
	// Prune deletes, for each document, its points whose version is < d.Version.
	lww.Pruner
}

// TenantKey is one tenant's key of encryption at rest, as the Stage uses
// it; keyring.TenantKey implements it. Its methods must be safe for
// concurrent use and must not block.
type TenantKey interface {
	// Seal returns the stored form of the text of chunk chunkIndex of
	// document docID in collection: ciphertext that opens only for that
	// point.
	Seal(collection, docID string, chunkIndex int, text string) string
	// TextHash is pipeline.TextHash keyed by the tenant.
	TextHash(identity, text string) string
	// TermID is the keyword vector index of a term (a lowercased, stemmed
	// word) keyed by the tenant.
	TermID(term []byte) uint32
}

// Describer is implemented by sinks that can say how a store collection is
// laid out. The Stage asks once per collection whether it stores keyword
// vectors, and computes none for the points of one that does not; without
// a Describer every point gets its keyword vector.
type Describer interface {
	// Describe returns collection's dimensions, distance and whether it
	// stores keyword vectors (Keywords). It blocks until done or ctx ends.
	Describe(ctx context.Context, collection string) (pipeline.Collection, error)
}

// CollectionLister lists a store's collections, so that the Stage can bound
// how many it creates (StageConfig.MaxCollections).
type CollectionLister interface {
	// CollectionNames returns the name of every collection in the store. It
	// blocks until done or ctx ends.
	CollectionNames(ctx context.Context) ([]string, error)
}

// Metrics records what the Stage does, by collection; telemetry.Metrics
// implements it. Its methods must be safe for concurrent use.
type Metrics interface {
	// ObserveEmbed records one embedder call of texts texts that took took
	// and ended with err.
	ObserveEmbed(collection string, texts int, took time.Duration, err error)
	// ObserveReuse records chunks that took a stored vector instead of being
	// embedded.
	ObserveReuse(collection string, chunks int)
	// ObserveStore records one Apply call that took took and ended with err.
	ObserveStore(collection string, took time.Duration, err error)
}

// Router says where a collection's events are written: how the Stage
// follows the collection's generations (package generation) without a
// restart. Its methods must be safe for concurrent use.
type Router interface {
	// Route returns the targets collection's events are written to, as
	// last seen; it never blocks.
	Route(collection string) Route
	// Confirm returns collection's route as its source of truth has it
	// now: every change made before the call began is seen. The Stage
	// calls it after its writes, and writes again to the targets of a
	// route that changed meanwhile, so that no generation built from a copy
	// taken after the change misses a write.
	Confirm(ctx context.Context, collection string) (Route, error)
}

// Route is where one collection's events are written.
type Route struct {
	// Revision changes whenever Targets do.
	Revision uint64
	// Targets are the generations written to, serving first; none means
	// the collection alone, by its own name, with the Stage's Embedder,
	// Embedders and Chunker (a collection without generations).
	Targets []Target
	// Err, when set, is why the targets cannot be had (an embedder profile
	// this process lacks, say): the events fail with it.
	Err error
}

// Target is one generation of a collection, and how its points are made.
type Target struct {
	// Collection is the generation's store collection (Name) and its
	// dimensions and distance.
	Collection pipeline.Collection
	Embedder   Embedder
	Chunker    *pipeline.Chunker
	// ReuseFrom names the store collection whose stored vectors may be
	// reused for unchanged chunks (StageConfig.Reuse); "" for
	// Collection.Name itself. Only a collection embedded by the same model
	// at the same dimensions may be named.
	ReuseFrom string
}
