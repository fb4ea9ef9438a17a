// Package ingest turns batches of events into durable writes.
package ingest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
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
	// MaxCollections, when positive, bounds the collections in the store
	// besides those of Collections: an event for a new collection that would
	// pass it fails permanently, naming RAGPIPE_MAX_COLLECTIONS. The store is
	// listed only when a collection is to be created. The Sink must then
	// implement CollectionLister. Default 0: no bound.
	MaxCollections int
	// Reuse, when set, is asked for the stored vectors of chunks whose text
	// hash is unchanged, so that they are not embedded again (see Identified).
	Reuse VectorSource
	// Keys, when set, turns on encryption at rest: it returns a tenant's
	// key, creating it on first need, and blocks until done or ctx ends.
	// Each chunk is embedded in clear, then stored with its text sealed by
	// its tenant's key, its text hash and keyword vector keyed by it. An
	// event whose tenant's key cannot be had fails with that error, the
	// others of the batch are written. Default nil: texts, hashes and
	// keyword vectors are stored as they are.
	Keys func(ctx context.Context, tenant string) (TenantKey, error)
	// Parallelism bounds the version-register claims in flight per Process
	// (sent back to back), default 64.
	Parallelism int
	// Metrics, when set, records chunks embedded and reused and embed and
	// store latency.
	Metrics Metrics
	// Logger receives one line when a collection's embedder turns out to be
	// misconfigured and one when it works again. The zero Logger discards them.
	Logger zerolog.Logger
	// Router, when set, says which generations (store collections) each
	// collection's events are written to, with which embedder and chunker:
	// every target of its Route is written, and the route is confirmed
	// after the writes (see Router). A collection whose Route has no
	// targets is written as without a Router. Default nil: every
	// collection is the store collection of its own name, with Embedder,
	// Embedders and Chunker.
	Router Router
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
//
// Every point written to a store collection with keyword vectors carries
// the keyword vector of its text (pipeline.Keywords); the points of one
// without them (created before them), as the Sink describes it (see
// Describer), get none, which the store would drop.
//
// With StageConfig.Keys, a chunk's stored text is ciphertext under its
// tenant's key, and its text hash and keyword term ids are keyed by that
// tenant, so that the store holds nothing of the text in clear.
//
// With StageConfig.Router, a collection's events are claimed once, by the
// collection's name, and written to each of its generations (Route's
// targets), chunked, embedded and reused there as that generation does;
// texts are sealed for the collection's name, the same in every generation,
// and the prunes of Settle reach every generation written.
//
// An event with a chunk the embedder refuses (see Embedder) fails alone,
// permanently, with the embedder's reason; every event sharing that text
// fails with it, and the others of the batch are written.
type Stage struct {
	cfg     StageConfig
	lww     *lww.Protocol
	known   sync.Map // collection name -> pipeline.Collection, once ensured in the sink
	targets sync.Map // pipeline.Collection of a Target -> struct{}, once ensured in the sink
	limit   *limiter // nil without MaxCollections

	mu            sync.Mutex
	misconfigured map[part]error // why a collection's embedder or route, or a tenant's key, cannot be used
}

// part names what a deployment problem is in: a collection's embedder or
// route, or a tenant's encryption key.
type part struct {
	what, of, name string // "embedder", "collection", "docs"
	generationOf   string // for the embedder of a Target, the collection whose route named it
}

func embedderOf(collection string) part {
	return part{what: "embedder", of: "collection", name: collection}
}

func keyOf(tenant string) part { return part{what: "encryption key", of: "tenant", name: tenant} }

// NewStage validates cfg and returns a Stage.
func NewStage(cfg StageConfig) (*Stage, error) {
	if cfg.Sink == nil || cfg.Versions == nil || cfg.Embedder == nil || cfg.Chunker == nil {
		return nil, errors.New("pipeline: stage needs a sink, a version register, an embedder and a chunker")
	}
	p, err := lww.New(lww.Config{Versions: cfg.Versions, Pruner: cfg.Sink, Parallelism: cfg.Parallelism})
	if err != nil {
		return nil, err
	}
	limit, err := newLimiter(cfg)
	if err != nil {
		return nil, err
	}
	return &Stage{cfg: cfg, lww: p, limit: limit, misconfigured: make(map[part]error)}, nil
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
		var known bool
		if c.Keywords, known = s.keywords(ctx, c.Name); known {
			s.known.Store(c.Name, c)
		}
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
		err = s.check(c, vectors, 1, nil)
	}
	if dims, ok := errors.AsType[*dimensionsError](err); ok {
		return fmt.Errorf("collection %q has %d dimensions but its embedder (%s) returns %d-dimensional vectors; change the collection's dimensions or the model",
			c.Name, c.Dims, profile(c), dims.got)
	}
	switch {
	case err == nil || pipeline.IsMisconfigured(err):
		s.health(embedderOf(c.Name), err)
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

// Ready reports, for /readyz, every collection whose embedder or route
// (Route.Err), and every tenant whose encryption key, was found
// misconfigured by its last use; nil when there is none.
func (s *Stage) Ready(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	parts := slices.SortedFunc(maps.Keys(s.misconfigured), func(a, b part) int {
		return cmp.Or(strings.Compare(a.what, b.what), strings.Compare(a.name, b.name))
	})
	var errs []error
	for _, p := range parts {
		errs = append(errs, fmt.Errorf("%s of %s %q: %w", p.what, p.of, p.name, s.misconfigured[p]))
	}
	return errors.Join(errs...)
}

// health records the outcome of a use of p: a misconfiguration or, with
// nil, success. It logs when the state or the reason changes, so that a
// refused API key or a master key file without the key a tenant's data key
// is wrapped by is one line, not one per event.
func (s *Stage) health(p part, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	prev, had := s.misconfigured[p]
	switch {
	case err != nil && (!had || prev.Error() != err.Error()):
		s.misconfigured[p] = err
		s.cfg.Logger.Error().Err(err).Str(p.of, p.name).
			Msg(p.what + " misconfigured: its events are retried, never dead-lettered, until it is fixed; /readyz reports it")
	case err == nil && had:
		delete(s.misconfigured, p)
		s.cfg.Logger.Info().Str(p.of, p.name).Msg(p.what + " works again")
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
//
// With StageConfig.Router, a collection's events are written to every
// target of its Route and the route is confirmed after the writes (see
// writeRouted): an event succeeds once it is stored in every target of the
// confirmed route, but for a text refused for good by the embedder of a
// target other than the first (serving) one, which is logged and leaves
// that target without the event. A Route's Err fails the events, never
// for good, and Ready reports it.
func (s *Stage) Process(ctx context.Context, events []pipeline.Event) []error {
	return each(events, func(name string, idx []int, errs []error) {
		if s.cfg.Router == nil {
			s.write(ctx, name, events, idx, errs, Route{}, false)
			return
		}
		route := s.cfg.Router.Route(name)
		if route.Err != nil {
			route.Err = routeError(route.Err)
		}
		s.health(generationsOf(name), route.Err)
		if route.Err != nil {
			for _, i := range idx {
				errs[i] = route.Err
			}
			return
		}
		s.retire(name, route)
		s.write(ctx, name, events, idx, errs, route, true)
	})
}

// ProcessTo is Process writing to the given targets instead of those of
// the Router, without confirming a route; the first target's failures are
// the events' as the serving one's are in Process. Each event's claim
// (package lww) decides whether it is written: a version older than its
// document's newest writes nothing, the newest is written again, as a
// redelivery would be. Without targets it writes each collection by its
// own name. The reindex copier uses it to write stored documents, at
// their stored versions, to a new generation. It blocks until done.
func (s *Stage) ProcessTo(ctx context.Context, events []pipeline.Event, targets []Target) []error {
	route := Route{Targets: targets}
	return each(events, func(name string, idx []int, errs []error) {
		s.write(ctx, name, events, idx, errs, route, false)
	})
}

// each calls process concurrently for each collection of events, with the
// indexes of its events and the errors to record their outcomes in, and
// returns those errors once every call is done.
func each(events []pipeline.Event, process func(name string, idx []int, errs []error)) []error {
	errs := make([]error, len(events))
	byCollection := make(map[string][]int)
	for i, e := range events {
		byCollection[e.Collection] = append(byCollection[e.Collection], i)
	}
	var wg sync.WaitGroup
	for name, idx := range byCollection {
		wg.Go(func() { process(name, idx, errs) })
	}
	wg.Wait()
	return errs
}

// write handles the events at idx, all of collection name, and records
// their outcome in errs. It takes the writer's steps of package lww: claim
// the versions, write the held ones, then settle the claims, which is done
// whatever the writes' outcome. A route without targets writes the
// collection by its own name; with confirm, the route is confirmed after
// the writes (writeRouted).
func (s *Stage) write(ctx context.Context, name string, events []pipeline.Event, idx []int, errs []error, route Route, confirm bool) {
	fail := func(idx []int, err error) {
		for _, i := range idx {
			errs[i] = err
		}
	}
	dests, err := s.dests(ctx, name, route.Targets)
	if err != nil {
		fail(idx, err)
		return
	}
	idx = s.validate(dests[0].coll, events, idx, errs)
	docs := make([]pipeline.DocVersion, len(idx))
	for j, i := range idx {
		docs[j] = pipeline.DocVersion{UserID: events[i].UserID, DocID: events[i].DocID, Version: events[i].Version}
	}
	routed := confirm || route.Targets != nil
	protocol, fan := s.lww, (*fanOut)(nil)
	if routed {
		fan = &fanOut{sink: s.cfg.Sink}
		fan.add(dests)
		if protocol, err = lww.New(lww.Config{Versions: s.cfg.Versions, Pruner: fan, Parallelism: s.cfg.Parallelism}); err != nil {
			fail(idx, err)
			return
		}
	}
	claims := protocol.Claim(ctx, name, docs)
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
	first := make([]bool, len(events)) // by index in events
	for k, j := range held {
		heldIdx[k] = idx[j]
		first[idx[j]] = claims.First(j)
	}
	keys := s.tenantKeys(ctx, events, heldIdx)
	var outcome []error
	var stored []bool // with a route: the event left points in some store collection
	if routed {
		outcome, stored = s.writeRouted(ctx, name, route, dests, fan, keys, events, heldIdx, first, confirm)
	} else {
		outcome = s.store(ctx, dests[0], keys, events, heldIdx, first)
	}
	for k, err := range outcome {
		errs[heldIdx[k]] = err
		if (err == nil || stored != nil && stored[k]) && events[heldIdx[k]].Op == pipeline.OpUpsert { // a delete leaves no points to prune
			written = append(written, held[k])
		}
	}
}

// store makes d's points of the events at idx (first[i]: events[i] is its
// document's first version) and applies them to d's store collection. It returns one
// error per event: nil once its write is durable.
func (s *Stage) store(ctx context.Context, d *dest, keys tenantKeySet, events []pipeline.Event, idx []int, first []bool) []error {
	out := make([]error, len(idx))
	var writes []pipeline.DocWrite
	var refused []error
	err := s.ensure(ctx, d)
	if err == nil {
		writes, refused, err = s.writes(ctx, d, keys, events, idx, first)
	}
	if err != nil {
		for k := range out {
			out[k] = err
		}
		return out
	}
	var apply []pipeline.DocWrite
	var applied []int // indexes in idx of apply's writes
	for k, w := range writes {
		if refused[k] != nil {
			out[k] = refused[k]
			continue
		}
		apply = append(apply, w)
		applied = append(applied, k)
	}
	if len(apply) == 0 {
		return out
	}
	start := time.Now()
	err = s.cfg.Sink.Apply(ctx, d.coll.Name, apply)
	if errors.Is(err, pipeline.ErrUnknownCollection) {
		err = s.gone(d, err)
	}
	if m := s.cfg.Metrics; m != nil && d.primary {
		m.ObserveStore(d.name, time.Since(start), err)
	}
	for m, err := range pipeline.ItemErrors(err, len(apply)) {
		out[applied[m]] = err
	}
	return out
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
