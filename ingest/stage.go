// Package ingest turns batches of events into durable writes.
package ingest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// StageConfig configures a Stage. Sink, Versions, Embedder and Chunker are required.
type StageConfig struct {
	Sink     Sink
	Versions lww.Versions
	// Embedder embeds the texts of every collection that Embedders does not
	// name, including collections created on first use.
	Embedder Embedder
	// Embedders holds the embedders of particular collections, by name.
	Embedders map[string]Embedder
	Chunker   *pipeline.Chunker
	// Collections are created by Setup; their dimensions must match their
	// embedder's.
	Collections []pipeline.Collection
	// AutoCreate says whether an event for the unknown collection name may
	// create it, with the embedder's dimensions and cosine distance; the
	// events of a collection it refuses fail permanently. nil refuses all.
	AutoCreate func(name string) bool
	// Reuse, when set, is asked for the stored vectors of chunks whose text
	// hash is unchanged, so that they are not embedded again (see Identified).
	Reuse VectorSource
	// Parallelism bounds concurrent version-register calls per Process, default 64.
	Parallelism int
	// Metrics, when set, records chunks embedded and reused and embed and
	// store latency.
	Metrics Metrics
	// Logger receives one line when a collection's embedder turns out to be
	// misconfigured and one when it works again. The zero Logger discards them.
	Logger zerolog.Logger
}

// ProbeText is the text Setup embeds once per configured collection to check
// its embedder.
const ProbeText = "ragpipe embedder probe"

// Stage turns batches of events into durable writes with last-version-wins
// semantics. It is safe for concurrent use.
//
// For each collection of a batch it claims the events' versions (package
// lww), chunks and embeds the texts of the events that hold their document's
// newest version, has the Sink apply their writes, and settles the claims,
// which prunes what newer versions superseded. Package lww states the
// protocol and why it leaves exactly the newest version stored.
//
// With an embedder that implements Identified, a text is embedded only once:
// every chunk is stored with its text hash, a chunk whose hash matches a
// stored chunk of its document (StageConfig.Reuse) takes that chunk's vector,
// and equal texts within a batch share one.
type Stage struct {
	cfg   StageConfig
	lww   *lww.Protocol
	known sync.Map // collection name -> pipeline.Collection, once ensured in the sink

	mu            sync.Mutex
	misconfigured map[string]error // collection -> why its embedder cannot be used
}

// NewStage validates cfg and returns a Stage.
func NewStage(cfg StageConfig) (*Stage, error) {
	if cfg.Sink == nil || cfg.Versions == nil || cfg.Embedder == nil || cfg.Chunker == nil {
		return nil, errors.New("pipeline: stage needs a sink, a version register, an embedder and a chunker")
	}
	p, err := lww.New(lww.Config{Versions: cfg.Versions, Pruner: cfg.Sink, Parallelism: cfg.Parallelism})
	if err != nil {
		return nil, err
	}
	return &Stage{cfg: cfg, lww: p, misconfigured: make(map[string]error)}, nil
}

// Setup creates the configured collections if they are missing, checks that
// their dimensions match their embedder's and the store's, and probes each
// collection's embedder once by embedding ProbeText. It fails when a
// collection's dimensions differ from its embedder's, naming both. An
// embedder that refuses the probe does not stop Setup: a misconfigured one
// makes Ready fail until it works, an unavailable one is retried by the
// events. It blocks until done.
func (s *Stage) Setup(ctx context.Context) error {
	for _, c := range s.cfg.Collections {
		if dims := s.embedder(c.Name).Dimensions(); c.Dims != dims {
			return fmt.Errorf("collection %q is configured with %d dimensions but the embedder produces %d", c.Name, c.Dims, dims)
		}
		if err := s.cfg.Sink.EnsureCollection(ctx, c, true); err != nil {
			return fmt.Errorf("collection %q: %w", c.Name, err)
		}
		s.known.Store(c.Name, c)
		if err := s.probe(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// probe embeds ProbeText with c's embedder and fails only when the vector does
// not have c's dimensions.
func (s *Stage) probe(ctx context.Context, c pipeline.Collection) error {
	vectors, err := s.embedder(c.Name).Embed(ctx, []string{ProbeText})
	if err == nil {
		err = s.check(c, vectors, 1)
	}
	if dims, ok := errors.AsType[*dimensionsError](err); ok {
		return fmt.Errorf("collection %q has %d dimensions but its embedder (%s) returns %d-dimensional vectors; change the collection's dimensions or the model",
			c.Name, c.Dims, profile(c), dims.got)
	}
	switch {
	case err == nil || pipeline.IsMisconfigured(err):
		s.health(c.Name, err)
	default:
		s.cfg.Logger.Warn().Err(err).Str("collection", c.Name).Msg("embedder probe failed; its answers are checked when events arrive")
	}
	return nil
}

// profile names c's embedder profile for messages.
func profile(c pipeline.Collection) string {
	if c.Embedder == "" {
		return "the default RAGPIPE_EMBEDDER"
	}
	return "profile " + c.Embedder
}

// Ready reports, for /readyz, every collection whose embedder was found
// misconfigured by its last call; nil when there is none.
func (s *Stage) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var errs []error
	for _, name := range slices.Sorted(maps.Keys(s.misconfigured)) {
		errs = append(errs, fmt.Errorf("embedder of collection %q: %w", name, s.misconfigured[name]))
	}
	return errors.Join(errs...)
}

// health records the outcome of a call to collection's embedder: a
// misconfiguration or, with nil, success. It logs when the state or the
// reason changes, so that a refused API key is one line, not one per event.
func (s *Stage) health(collection string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.misconfigured[collection]
	switch {
	case err != nil && (!had || prev.Error() != err.Error()):
		s.misconfigured[collection] = err
		s.cfg.Logger.Error().Err(err).Str("collection", collection).
			Msg("embedder misconfigured: the collection's events are retried, never dead-lettered, until it is fixed; /readyz reports it")
	case err == nil && had:
		delete(s.misconfigured, collection)
		s.cfg.Logger.Info().Str("collection", collection).Msg("embedder works again")
	}
}

// embedder returns the embedder of collection.
func (s *Stage) embedder(collection string) Embedder {
	if e, ok := s.cfg.Embedders[collection]; ok {
		return e
	}
	return s.cfg.Embedder
}

// Process makes the effect of events durable and returns one error per event,
// in order: nil when the event is stored or was superseded by a newer version
// of its document, an error satisfying pipeline.IsPermanent when it can never succeed,
// any other error when it may succeed on retry. It blocks until done.
func (s *Stage) Process(ctx context.Context, events []pipeline.Event) []error {
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
// records their outcome in errs. It takes the writer's steps of package lww:
// claim the versions, write the held ones, then settle the claims, which is
// done whatever the writes' outcome.
func (s *Stage) processCollection(ctx context.Context, name string, events []pipeline.Event, idx []int, errs []error) {
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
	docs := make([]pipeline.DocVersion, len(idx))
	for j, i := range idx {
		docs[j] = pipeline.DocVersion{UserID: events[i].UserID, DocID: events[i].DocID, Version: events[i].Version}
	}
	claims := s.lww.Claim(ctx, name, docs)
	var written []int // indexes in docs
	defer func() {
		for j, err := range claims.Settle(ctx, written) {
			if err != nil {
				errs[idx[j]] = err
			}
		}
	}()
	held := claims.Held()
	if len(held) == 0 {
		return
	}
	heldIdx := make([]int, len(held))
	first := make(map[int]bool, len(held))
	for k, j := range held {
		heldIdx[k] = idx[j]
		first[idx[j]] = claims.First(j)
	}
	writes, err := s.writes(ctx, coll, events, heldIdx, first)
	if err != nil {
		fail(heldIdx, err)
		return
	}
	start := time.Now()
	err = s.cfg.Sink.Apply(ctx, name, writes)
	if errors.Is(err, pipeline.ErrUnknownCollection) && !pipeline.IsPermanent(err) {
		s.known.Delete(name) // gone from the store: ensure it again on retry
	}
	if m := s.cfg.Metrics; m != nil {
		m.ObserveStore(name, time.Since(start), err)
	}
	for k, err := range pipeline.ItemErrors(err, len(writes)) {
		errs[heldIdx[k]] = err
		if err == nil && events[heldIdx[k]].Op == pipeline.OpUpsert { // a delete leaves no points to prune
			written = append(written, held[k])
		}
	}
}

// collection returns the collection's description, ensuring it exists in the
// sink (created when auto-create is on) the first time it is seen.
func (s *Stage) collection(ctx context.Context, name string) (pipeline.Collection, error) {
	if c, ok := s.known.Load(name); ok {
		return c.(pipeline.Collection), nil
	}
	c := pipeline.Collection{Name: name, Dims: s.embedder(name).Dimensions(), Distance: pipeline.Cosine}
	create := s.cfg.AutoCreate != nil && s.cfg.AutoCreate(name)
	if err := s.cfg.Sink.EnsureCollection(ctx, c, create); err != nil {
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			return c, pipeline.Permanent(fmt.Errorf("collection %q does not exist and RAGPIPE_AUTO_CREATE does not allow creating it: %w", name, err))
		}
		return c, err
	}
	s.known.Store(name, c)
	return c, nil
}

// validate rejects events whose precomputed vector does not fit the
// collection and returns the indexes of the others.
func (s *Stage) validate(c pipeline.Collection, events []pipeline.Event, idx []int, errs []error) []int {
	kept := idx[:0:0]
	for _, i := range idx {
		if v := events[i].Vector; v != nil && events[i].Op == pipeline.OpUpsert && len(v) != c.Dims {
			errs[i] = pipeline.Permanent(fmt.Errorf("vector has %d dimensions, collection %q has %d", len(v), c.Name, c.Dims))
			continue
		}
		kept = append(kept, i)
	}
	return kept
}

// writes chunks the events at idx and gives every chunk a vector: the
// event's own, a stored one (see reuse) or one from a single embedder call.
// Events in first are their document's first version.
func (s *Stage) writes(ctx context.Context, c pipeline.Collection, events []pipeline.Event, idx []int, first map[int]bool) ([]pipeline.DocWrite, error) {
	var identity string
	if id, ok := s.embedder(c.Name).(Identified); ok {
		identity = id.Identity()
	}
	writes := make([]pipeline.DocWrite, len(idx))
	var pending []*pipeline.Point // chunks to embed
	for j, i := range idx {
		e := events[i]
		w := pipeline.DocWrite{UserID: e.UserID, DocID: e.DocID, Version: e.Version}
		if e.Op == pipeline.OpUpsert {
			chunks := []string{e.Text}
			if e.Vector == nil {
				chunks = s.cfg.Chunker.Split(e.Text)
			}
			w.Points = make([]pipeline.Point, len(chunks))
			for k, text := range chunks {
				w.Points[k] = pipeline.Point{
					ID: pipeline.PointID(e.UserID, e.DocID, k), Vector: e.Vector,
					UserID: e.UserID, DocID: e.DocID, ChunkIndex: k, ChunkCount: len(chunks),
					Text: text, Metadata: e.Metadata, Version: e.Version,
				}
				if e.Vector == nil {
					if identity != "" {
						w.Points[k].TextHash = pipeline.TextHash(identity, text)
					}
					pending = append(pending, &w.Points[k])
				}
			}
		}
		writes[j] = w
	}
	var err error
	if identity != "" {
		var known []pipeline.DocWrite // documents that may have stored chunks
		for j, w := range writes {
			if !first[idx[j]] {
				known = append(known, w)
			}
		}
		if pending, err = s.reuse(ctx, c, known, pending); err != nil {
			return nil, err
		}
	}
	if err := s.embedPending(ctx, c, pending, identity != ""); err != nil {
		return nil, err
	}
	return writes, nil
}

// reuse gives each pending chunk whose text hash matches a stored chunk of
// one of the documents of known that chunk's vector, and returns the chunks
// still without one. A document's stored chunks are looked up by point id,
// at the indexes below twice its new chunk count, so that unchanged chunks
// are found even when an edit before them shifted them. known leaves out
// documents new to the version register, which normally have nothing
// stored. A lookup the store refuses for good costs
// embedder calls, not the events; a transient failure fails them.
func (s *Stage) reuse(ctx context.Context, c pipeline.Collection, writes []pipeline.DocWrite, pending []*pipeline.Point) ([]*pipeline.Point, error) {
	if s.cfg.Reuse == nil || len(pending) == 0 {
		return pending, nil
	}
	var ids []string
	for _, w := range writes {
		if len(w.Points) > 0 && w.Points[0].Vector == nil {
			for k := range 2 * len(w.Points) {
				ids = append(ids, pipeline.PointID(w.UserID, w.DocID, k))
			}
		}
	}
	if len(ids) == 0 {
		return pending, nil
	}
	var hashes []string
	seen := make(map[string]bool, len(pending))
	for _, p := range pending {
		if !seen[p.TextHash] {
			seen[p.TextHash] = true
			hashes = append(hashes, p.TextHash)
		}
	}
	stored, err := s.cfg.Reuse.StoredVectors(ctx, c.Name, ids, hashes)
	if err != nil {
		if !pipeline.IsPermanent(err) {
			return nil, fmt.Errorf("look up stored vectors: %w", err)
		}
		s.cfg.Logger.Warn().Err(err).Str("collection", c.Name).Msg("cannot look up stored vectors; embedding every chunk")
		return pending, nil
	}
	rest := pending[:0:0]
	for _, p := range pending {
		if v := stored[p.TextHash]; len(v) == c.Dims {
			p.Vector = v
			continue
		}
		rest = append(rest, p)
	}
	if m := s.cfg.Metrics; m != nil {
		m.ObserveReuse(c.Name, len(pending)-len(rest))
	}
	return rest, nil
}

// embedPending gives the pending chunks vectors from one embedder call; with
// distinct, equal texts are sent once.
func (s *Stage) embedPending(ctx context.Context, c pipeline.Collection, pending []*pipeline.Point, distinct bool) error {
	if len(pending) == 0 {
		return nil
	}
	texts := make([]string, 0, len(pending))
	slot := make([]int, len(pending)) // pending[k] takes vector slot[k]
	first := make(map[string]int)
	for k, p := range pending {
		if n, ok := first[p.Text]; ok && distinct {
			slot[k] = n
			continue
		}
		first[p.Text] = len(texts)
		slot[k] = len(texts)
		texts = append(texts, p.Text)
	}
	start := time.Now()
	vectors, err := s.embedder(c.Name).Embed(ctx, texts)
	if err == nil {
		err = s.check(c, vectors, len(texts))
	}
	if m := s.cfg.Metrics; m != nil {
		m.ObserveEmbed(c.Name, len(texts), time.Since(start), err)
	}
	if err == nil || pipeline.IsMisconfigured(err) {
		s.health(c.Name, err)
	}
	if err != nil {
		return fmt.Errorf("embed %d chunks: %w", len(texts), err)
	}
	for k, p := range pending {
		p.Vector = vectors[slot[k]]
	}
	return nil
}

// dimensionsError reports vectors whose length is not the collection's.
type dimensionsError struct {
	collection string
	want, got  int
}

func (e *dimensionsError) Error() string {
	return fmt.Sprintf("embedder returned %d-dimensional vectors, collection %q has %d dimensions", e.got, e.collection, e.want)
}

// check verifies that an embedder answered n texts with n vectors of c's
// dimensions. Anything else is the embedder's fault, never the events':
// the error is a misconfiguration.
func (s *Stage) check(c pipeline.Collection, vectors [][]float32, n int) error {
	if len(vectors) != n {
		return pipeline.Misconfigured(fmt.Errorf("embedder returned %d vectors for %d texts", len(vectors), n))
	}
	for _, v := range vectors {
		if len(v) != c.Dims {
			return pipeline.Misconfigured(&dimensionsError{collection: c.Name, want: c.Dims, got: len(v)})
		}
	}
	return nil
}
