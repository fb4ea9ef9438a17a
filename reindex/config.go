package reindex

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Registry is what a Runner needs of the States; *generation.Registry
// implements it.
type Registry interface {
	// All returns every State as last seen; it never blocks.
	All() []generation.State
	// Update applies fn to collection's current State and stores the
	// result unless someone else updated it meanwhile (then it reads and
	// applies again); see generation.Registry.Update.
	Update(ctx context.Context, collection string, fn func(s *generation.State, exists bool) error) (generation.State, error)
}

// Stage writes documents to given generations with last-version-wins
// claims; *ingest.Stage implements it.
type Stage interface {
	// ProcessTo makes the effect of events durable in targets alone and
	// returns one error per event: nil when written or superseded by a
	// newer version, pipeline.IsPermanent when it can never succeed.
	ProcessTo(ctx context.Context, events []pipeline.Event, targets []ingest.Target) []error
}

// TenantKey opens the texts encryption at rest stored; keyring.TenantKey
// implements it.
type TenantKey interface {
	// Open returns the clear text of the stored text of chunk chunkIndex of
	// document docID in (ragpipe) collection, or an error when it was not
	// sealed for that point under this key.
	Open(collection, docID string, chunkIndex int, stored string) (string, error)
}

// Config configures a Runner. Registry, Store, Stage, Embedder and Defaults
// are required; the other fields take the documented defaults.
type Config struct {
	Registry Registry
	// Store reads the generations and creates, switches and drops them.
	Store Store
	// NoKeywords says that Store creates generations without keyword
	// vectors (RAGPIPE_KEYWORDS=false). A build whose target settings are
	// the serving generation's is carried out only to give the collection
	// what the store creates: keyword vectors dropped with NoKeywords,
	// added without. Default false: generations get keyword vectors.
	NoKeywords bool
	// Stage writes the copied documents to the building generation, with
	// the claims and conditional writes of every event.
	Stage Stage
	// Embedder returns the embedder of a profile ("" for the default
	// RAGPIPE_EMBEDDER) producing dims-dimensional vectors, as the Stage's
	// Router has them. A profile this process lacks is a
	// pipeline.Misconfigured error: the Job waits, retrying, and shows it.
	Embedder func(profile string, dims int) (ingest.Embedder, error)
	// Defaults returns how a collection without a State is served by this
	// process (its embedder profile, chunk size and overlap, as configured;
	// other fields are ignored): the settings of the serving generation a
	// first reindex adopts. Its dimensions and distance are the store's.
	Defaults func(collection string) generation.Generation
	// Keys, with encryption at rest, returns a tenant's key without ever
	// creating one (keyring's Lookup), to open the stored texts: nil and no
	// error for a tenant without a key (keyring.ErrNoKey), whose texts were
	// stored in clear. It blocks until done or ctx ends. nil without
	// encryption.
	Keys func(ctx context.Context, tenant string) (TenantKey, error)

	// Owner names this runner in the Jobs it takes. Default: the host
	// name, the process id and a random suffix.
	Owner string
	// Poll is how often the States are looked at for a Job to take.
	// Default 1s.
	Poll time.Duration
	// Lease is how long a Job's heartbeat stays valid: another runner takes
	// over a Job whose heartbeat is older. Default 30s.
	Lease time.Duration
	// Heartbeat is how often the runner of a Job renews its heartbeat, at
	// most. Default Lease/6 (5s).
	Heartbeat time.Duration
	// Batch is how many documents are copied per write. Default 64.
	Batch int
	// Checkpoint is the least time between two checkpoints of a copy,
	// which update the State every worker and searcher watches: a copy
	// resumed after a kill writes again at most this long's batches.
	// Default 1s.
	Checkpoint time.Duration
	// Samples is the number of sample searches of the checks. Default 20.
	Samples int
	// Settle is how long, at most, documents that differ between the
	// generations are read again before the check reports them (workers
	// are writing both meanwhile). Default 5s.
	Settle time.Duration
	// Logger receives a line for every step of a Job. The zero Logger
	// discards them.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.Registry == nil || c.Store == nil || c.Stage == nil || c.Embedder == nil || c.Defaults == nil {
		return errors.New("reindex: a runner needs a registry, a store, a stage, embedders and the collections' defaults")
	}
	if c.Owner == "" {
		host, _ := os.Hostname()
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		c.Owner = fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
	}
	if c.Poll <= 0 {
		c.Poll = time.Second
	}
	if c.Lease <= 0 {
		c.Lease = 30 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = c.Lease / 6
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
	c.Batch = min(c.Batch, pipeline.MaxLimit)
	if c.Checkpoint <= 0 {
		c.Checkpoint = time.Second
	}
	if c.Samples <= 0 {
		c.Samples = 20
	}
	if c.Settle <= 0 {
		c.Settle = 5 * time.Second
	}
	return nil
}
