// Package generation keeps the generations of ragpipe collections: which
// store collection serves a ragpipe collection now, which one is being built
// to replace it (ragpipe reindex) and which one it replaced, each with the
// embedder, dimensions and chunking of its points.
//
// A ragpipe collection without a State is served by the store collection of
// its own name (an alias to <name>__g1 for collections created since
// generations exist, a plain collection before) with the embedder and
// chunking the process is configured with. Its first reindex gives it a
// State whose Serving generation is that collection.
//
// The State is kept in the JetStream key-value bucket Bucket, one key per
// ragpipe collection, so that every worker and searcher follows it without a
// restart: workers write each event to Serving, Building and Previous alike
// (the building generation misses nothing, the previous one stays exact for
// a rollback), searchers read Serving. The store's alias of the ragpipe name
// follows Serving for readers outside ragpipe. docs/GENERATIONS.md says why
// the protocol loses no write.
package generation

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Bucket is the key-value bucket of the States, keyed by ragpipe collection.
const Bucket = "RAG_GENERATIONS"

// State is the generations of one ragpipe collection.
type State struct {
	// Collection is the ragpipe collection: the name events, searches and
	// the store's alias use.
	Collection string `json:"collection"`
	// Serving answers searches and is the alias' target.
	Serving Generation `json:"serving"`
	// Building is being built by a reindex; nil when none is.
	Building *Generation `json:"building,omitempty"`
	// Previous is the generation Serving replaced, kept until
	// --drop-previous so that --rollback can switch back; nil when none is.
	Previous *Generation `json:"previous,omitempty"`
	// Job is the reindex work asked of the workers, or the last one done.
	Job *Job `json:"job,omitempty"`

	// Revision is the bucket's revision of this State, set when read.
	Revision uint64 `json:"-"`
}

// Targets returns the generations every event is written to: Serving
// first, then Building and Previous when present.
func (s *State) Targets() []Generation {
	t := []Generation{s.Serving}
	for _, g := range []*Generation{s.Building, s.Previous} {
		if g != nil {
			t = append(t, *g)
		}
	}
	return t
}

// Generation is one store collection of a ragpipe collection and how its
// points are made.
type Generation struct {
	// Name is the store collection, such as documents__g2; for a collection
	// created before generations, the ragpipe name itself.
	Name string `json:"name"`
	// Number is the N of <collection>__gN; 0 for a collection created
	// before generations.
	Number int `json:"number"`
	// Embedder is the embedder profile (RAGPIPE_EMBEDDER_<PROFILE>_*); ""
	// for the default RAGPIPE_EMBEDDER.
	Embedder string            `json:"embedder,omitempty"`
	Dims     int               `json:"dims"`
	Distance pipeline.Distance `json:"distance"`
	// ChunkSize and ChunkOverlap are the chunking of its points, in
	// characters (RAGPIPE_CHUNK_SIZE, RAGPIPE_CHUNK_OVERLAP).
	ChunkSize    int `json:"chunk_size"`
	ChunkOverlap int `json:"chunk_overlap"`
	// Shards and ReplicationFactor lay it out in a cluster; 0 for the
	// store's defaults.
	Shards            uint32 `json:"shards,omitempty"`
	ReplicationFactor uint32 `json:"replication_factor,omitempty"`
}

// Collection is g as the stores describe collections.
func (g Generation) Collection() pipeline.Collection {
	return pipeline.Collection{
		Name: g.Name, Dims: g.Dims, Distance: g.Distance, Embedder: g.Embedder,
		Shards: g.Shards, ReplicationFactor: g.ReplicationFactor,
	}
}

// Name returns the store collection of generation n of collection.
func Name(collection string, n int) string { return collection + "__g" + strconv.Itoa(n) }

var nameRE = regexp.MustCompile(`^(.+)__g([1-9][0-9]{0,8})$`)

// Parse splits the name of a generation's store collection into its ragpipe
// collection and number; ok is false for any other name.
func Parse(name string) (collection string, n int, ok bool) {
	m := nameRE.FindStringSubmatch(name)
	if m == nil {
		return "", 0, false
	}
	n, err := strconv.Atoi(m[2])
	return m[1], n, err == nil
}

// Check reports what makes g unusable.
func (g Generation) Check() error {
	var errs []error
	if g.Name == "" {
		errs = append(errs, errors.New("no name"))
	}
	if g.Dims < 1 {
		errs = append(errs, fmt.Errorf("dims %d: want >= 1", g.Dims))
	}
	if !g.Distance.Valid() {
		errs = append(errs, fmt.Errorf("distance %q: want cosine, dot, euclid or manhattan", g.Distance))
	}
	if g.ChunkSize < 1 || g.ChunkOverlap < 0 || g.ChunkOverlap >= g.ChunkSize {
		errs = append(errs, fmt.Errorf("chunk size %d and overlap %d: want size >= 1 and 0 <= overlap < size", g.ChunkSize, g.ChunkOverlap))
	}
	return errors.Join(errs...)
}
