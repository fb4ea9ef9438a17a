package pipeline

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/telemetry"
)

// StageConfig configures a Stage. Sink, Versions, Embedder and Chunker are required.
type StageConfig struct {
	Sink     Sink
	Versions Versions
	Embedder Embedder
	Chunker  *Chunker
	// Collections are created by Setup; their dimensions must match the embedder's.
	Collections []Collection
	// AutoCreate lets an event for an unknown collection create it with the
	// embedder's dimensions and cosine distance. Without it such events fail
	// permanently.
	AutoCreate bool
	// Parallelism bounds concurrent version-register calls per Process, default 64.
	Parallelism int
	// Metrics, when set, records chunks embedded and embed and store latency.
	Metrics *telemetry.Metrics
}

// Stage turns batches of events into durable writes with last-version-wins
// semantics. It is safe for concurrent use.
//
// For each event it (1) claims the event's version in the Versions register,
// skipping the event when a newer version is already claimed, (2) chunks and
// embeds the text, (3) has the Sink upsert the points over older ones only and
// delete the document's older points, and (4) re-reads the register: when a
// newer version was claimed meanwhile, it prunes everything older than that
// version, including what it just wrote. See package sink for why this leaves
// exactly the newest version stored.
type Stage struct {
	cfg   StageConfig
	known sync.Map // collection name -> Collection, once ensured in the sink
}

// NewStage validates cfg and returns a Stage.
func NewStage(cfg StageConfig) (*Stage, error) {
	if cfg.Sink == nil || cfg.Versions == nil || cfg.Embedder == nil || cfg.Chunker == nil {
		return nil, errors.New("pipeline: stage needs a sink, a version register, an embedder and a chunker")
	}
	if cfg.Parallelism <= 0 {
		cfg.Parallelism = 64
	}
	return &Stage{cfg: cfg}, nil
}

// Setup creates the configured collections if they are missing and checks that
// their dimensions match the embedder's and the store's. It blocks until done.
func (s *Stage) Setup(ctx context.Context) error {
	dims := s.cfg.Embedder.Dimensions()
	for _, c := range s.cfg.Collections {
		if c.Dims != dims {
			return fmt.Errorf("collection %q is configured with %d dimensions but the embedder produces %d", c.Name, c.Dims, dims)
		}
		if err := s.cfg.Sink.EnsureCollection(ctx, c, true); err != nil {
			return fmt.Errorf("collection %q: %w", c.Name, err)
		}
		s.known.Store(c.Name, c)
	}
	return nil
}

// VersionKey is the register key of a document: a string of NATS subject
// token characters, unique per (collection, user_id, doc_id).
func VersionKey(collection, userID, docID string) string {
	sum := sha256.Sum256([]byte(docID))
	return collection + "." + userID + "." + base64.RawURLEncoding.EncodeToString(sum[:])
}

// Process makes the effect of events durable and returns one error per event,
// in order: nil when the event is stored or was superseded by a newer version
// of its document, an error satisfying IsPermanent when it can never succeed,
// any other error when it may succeed on retry. It blocks until done.
func (s *Stage) Process(ctx context.Context, events []Event) []error {
	errs := make([]error, len(events))
	byCollection := make(map[string][]int)
	for i, e := range events {
		byCollection[e.Collection] = append(byCollection[e.Collection], i)
	}
	var wg sync.WaitGroup
	for name, idx := range byCollection {
		wg.Go(func() { s.processCollection(ctx, name, events, idx, errs) })
	}
	wg.Wait()
	return errs
}

// processCollection handles the events at idx, all of one collection, and
// records their outcome in errs.
func (s *Stage) processCollection(ctx context.Context, name string, events []Event, idx []int, errs []error) {
	fail := func(idx []int, err error) {
		for _, i := range idx {
			errs[i] = err
		}
	}
	coll, err := s.collection(ctx, name)
	if err != nil {
		fail(idx, err)
		return
	}
	idx = s.validate(coll, events, idx, errs)
	idx = newestPerDocument(events, idx)
	idx = s.claim(ctx, events, idx, errs)
	if len(idx) == 0 {
		return
	}
	writes, err := s.writes(ctx, name, events, idx)
	if err != nil {
		fail(idx, err)
		return
	}
	start := time.Now()
	err = s.cfg.Sink.Apply(ctx, name, writes)
	if s.cfg.Metrics != nil && err == nil {
		s.cfg.Metrics.UpsertSeconds.WithLabelValues(name).Observe(time.Since(start).Seconds())
	}
	for j, err := range perItem(err, len(writes)) {
		errs[idx[j]] = err
	}
	ok := idx[:0:0]
	for _, i := range idx {
		if errs[i] == nil {
			ok = append(ok, i)
		}
	}
	s.pruneOvertaken(ctx, name, events, ok, errs)
}

// collection returns the collection's description, ensuring it exists in the
// sink (created when auto-create is on) the first time it is seen.
func (s *Stage) collection(ctx context.Context, name string) (Collection, error) {
	if c, ok := s.known.Load(name); ok {
		return c.(Collection), nil
	}
	c := Collection{Name: name, Dims: s.cfg.Embedder.Dimensions(), Distance: Cosine}
	if err := s.cfg.Sink.EnsureCollection(ctx, c, s.cfg.AutoCreate); err != nil {
		if errors.Is(err, ErrUnknownCollection) {
			return c, Permanent(fmt.Errorf("collection %q does not exist and RAGPIPE_AUTO_CREATE is false: %w", name, err))
		}
		return c, err
	}
	s.known.Store(name, c)
	return c, nil
}

// validate rejects events whose precomputed vector does not fit the
// collection and returns the indexes of the others.
func (s *Stage) validate(c Collection, events []Event, idx []int, errs []error) []int {
	kept := idx[:0:0]
	for _, i := range idx {
		if v := events[i].Vector; v != nil && events[i].Op == OpUpsert && len(v) != c.Dims {
			errs[i] = Permanent(fmt.Errorf("vector has %d dimensions, collection %q has %d", len(v), c.Name, c.Dims))
			continue
		}
		kept = append(kept, i)
	}
	return kept
}

// newestPerDocument keeps, of several events for one document, only the one
// with the highest version; the others are superseded and succeed as they are.
func newestPerDocument(events []Event, idx []int) []int {
	type doc struct{ user, id string }
	newest := make(map[doc]int, len(idx))
	for _, i := range idx {
		d := doc{events[i].UserID, events[i].DocID}
		if j, ok := newest[d]; !ok || events[i].Version > events[j].Version {
			newest[d] = i
		}
	}
	kept := idx[:0:0]
	for _, i := range idx {
		if newest[doc{events[i].UserID, events[i].DocID}] == i {
			kept = append(kept, i)
		}
	}
	return kept
}

// claim records each event's version in the register and returns the indexes
// of the events that hold their document's newest version.
func (s *Stage) claim(ctx context.Context, events []Event, idx []int, errs []error) []int {
	held := make([]bool, len(idx))
	s.each(len(idx), func(j int) {
		e := events[idx[j]]
		ok, err := s.cfg.Versions.Claim(ctx, VersionKey(e.Collection, e.UserID, e.DocID), e.Version)
		if err != nil {
			errs[idx[j]] = fmt.Errorf("claim version %d of %q: %w", e.Version, e.DocID, err)
			return
		}
		held[j] = ok
	})
	kept := idx[:0:0]
	for j, i := range idx {
		if held[j] {
			kept = append(kept, i)
		}
	}
	return kept
}

// writes chunks and embeds the events at idx, in one embedder call.
func (s *Stage) writes(ctx context.Context, collection string, events []Event, idx []int) ([]DocWrite, error) {
	writes := make([]DocWrite, len(idx))
	var texts []string
	var targets []*Point
	for j, i := range idx {
		e := events[i]
		w := DocWrite{UserID: e.UserID, DocID: e.DocID, Version: e.Version}
		if e.Op == OpUpsert {
			chunks := []string{e.Text}
			if e.Vector == nil {
				chunks = s.cfg.Chunker.Split(e.Text)
			}
			w.Points = make([]Point, len(chunks))
			for k, text := range chunks {
				w.Points[k] = Point{
					ID: PointID(e.UserID, e.DocID, k), Vector: e.Vector,
					UserID: e.UserID, DocID: e.DocID, ChunkIndex: k, ChunkCount: len(chunks),
					Text: text, Metadata: e.Metadata, Version: e.Version,
				}
				if e.Vector == nil {
					texts = append(texts, text)
					targets = append(targets, &w.Points[k])
				}
			}
		}
		writes[j] = w
	}
	if len(texts) == 0 {
		return writes, nil
	}
	start := time.Now()
	vectors, err := s.cfg.Embedder.Embed(ctx, texts)
	if m := s.cfg.Metrics; m != nil {
		m.ChunksEmbedded.WithLabelValues(collection).Add(float64(len(texts)))
		if err == nil {
			m.EmbedSeconds.WithLabelValues(collection).Observe(time.Since(start).Seconds())
		}
	}
	if err != nil {
		return nil, fmt.Errorf("embed %d chunks: %w", len(texts), err)
	}
	if len(vectors) != len(texts) {
		return nil, fmt.Errorf("embedder returned %d vectors for %d chunks", len(vectors), len(texts))
	}
	for k, p := range targets {
		p.Vector = vectors[k]
	}
	return writes, nil
}

// pruneOvertaken re-reads the register for the written events at idx and
// prunes the documents whose newest version moved past the written one.
func (s *Stage) pruneOvertaken(ctx context.Context, collection string, events []Event, idx []int, errs []error) {
	latest := make([]uint64, len(idx))
	s.each(len(idx), func(j int) {
		e := events[idx[j]]
		v, err := s.cfg.Versions.Latest(ctx, VersionKey(e.Collection, e.UserID, e.DocID))
		if err != nil {
			errs[idx[j]] = fmt.Errorf("read version of %q: %w", e.DocID, err)
			return
		}
		latest[j] = v
	})
	var prune []DocVersion
	var pruned []int
	for j, i := range idx {
		if errs[i] == nil && latest[j] > events[i].Version {
			prune = append(prune, DocVersion{UserID: events[i].UserID, DocID: events[i].DocID, Version: latest[j]})
			pruned = append(pruned, i)
		}
	}
	if len(prune) == 0 {
		return
	}
	for j, err := range perItem(s.cfg.Sink.Prune(ctx, collection, prune), len(prune)) {
		if err != nil {
			errs[pruned[j]] = fmt.Errorf("prune versions overtaken by newer ones: %w", err)
		}
	}
}

// each runs fn(0..n-1) with bounded parallelism and waits for all.
func (s *Stage) each(n int, fn func(j int)) {
	var g errgroup.Group
	g.SetLimit(s.cfg.Parallelism)
	for j := range n {
		g.Go(func() error { fn(j); return nil })
	}
	_ = g.Wait()
}
