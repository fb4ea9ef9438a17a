package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/reindex"
	"github.com/ragpipe/ragpipe/search"
)

// openGenerations opens the Registry of the collections' generations
// (bucket RAG_GENERATIONS, replicated like the version register). The
// searcher only reads it: it may lack the permission to create it, and
// serves every collection by its own name until it can read it.
func openGenerations(ctx context.Context, env *environment, s *service, name string) (*generation.Registry, error) {
	s.ready.Step("loading the generations " + generation.Bucket)
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, err
	}
	return generation.Open(ctx, js, generation.Config{
		Replicas: env.cfg.Worker.StreamReplicas, ReadOnly: name == searcherName, Logger: env.log,
	})
}

// generations is how this process follows the collections' generations:
// the ingest Stage's Router and the search service's Serving, built from
// the Registry and the process's embedders. It is safe for concurrent use.
type generations struct {
	reg  *generation.Registry
	embs *embedders

	mu       sync.Mutex
	chunkers map[[2]int]*pipeline.Chunker // by size and overlap
	routes   map[string]cachedRoute       // by collection
}

// cachedRoute is the route of a collection's generations.
type cachedRoute struct {
	route ingest.Route
	gens  []generation.Generation
}

func newGenerations(reg *generation.Registry, embs *embedders) *generations {
	return &generations{reg: reg, embs: embs, chunkers: make(map[[2]int]*pipeline.Chunker), routes: make(map[string]cachedRoute)}
}

// served returns collection's cached State when it names a serving
// generation. A State without one (a Job asked of a collection not adopted
// yet) leaves the collection served as without a State.
func served(reg *generation.Registry, collection string) (generation.State, bool) {
	s, ok := reg.Cached(collection)
	return s, ok && s.Serving.Name != ""
}

// Route returns the targets of collection's cached State: its generations,
// serving first; none (revision 0) for a collection without a State. It
// never blocks on the network.
func (g *generations) Route(collection string) ingest.Route {
	s, ok := g.reg.Cached(collection)
	if !ok {
		return ingest.Route{}
	}
	return g.routeOf(s)
}

// Confirm returns the route of collection's State as the bucket's leader
// has it now.
func (g *generations) Confirm(ctx context.Context, collection string) (ingest.Route, error) {
	s, ok, err := g.reg.Current(ctx, collection)
	if err != nil || !ok {
		return ingest.Route{}, err
	}
	return g.routeOf(s), nil
}

// routeOf returns the route of s. A route is built once per set of
// generations and keeps the revision at which they were first seen, so
// that the States a reindex checkpoints (its Job's cursor and heartbeat)
// have the Stage write nothing again.
func (g *generations) routeOf(s generation.State) ingest.Route {
	gens := targetsOf(s)
	g.mu.Lock()
	c, ok := g.routes[s.Collection]
	g.mu.Unlock()
	if ok && slices.Equal(c.gens, gens) {
		return c.route
	}
	c = cachedRoute{route: g.route(s), gens: gens}
	g.mu.Lock()
	if old, ok := g.routes[s.Collection]; !ok || old.route.Revision <= c.route.Revision {
		g.routes[s.Collection] = c
	}
	g.mu.Unlock()
	return c.route
}

// targetsOf returns the generations s writes to; none without a serving
// generation.
func targetsOf(s generation.State) []generation.Generation {
	if s.Serving.Name == "" {
		return nil
	}
	return s.Targets()
}

// route builds the targets of s; a generation this process cannot write
// sets Err instead. A State without a serving generation has no targets:
// the collection is written by its own name, at the State's revision.
func (g *generations) route(s generation.State) ingest.Route {
	r := ingest.Route{Revision: s.Revision}
	for _, gen := range targetsOf(s) {
		t, err := g.target(gen)
		if err != nil {
			return ingest.Route{Revision: s.Revision, Err: fmt.Errorf("generation %s of collection %q: %w", gen.Name, s.Collection, err)}
		}
		r.Targets = append(r.Targets, t)
	}
	return r
}

// target returns how the points of gen are made: its store collection, its
// embedder and its chunker. A generation whose embedder or chunking this
// process cannot have is a pipeline.Misconfigured error.
func (g *generations) target(gen generation.Generation) (ingest.Target, error) {
	if err := gen.Check(); err != nil {
		return ingest.Target{}, pipeline.Misconfigured(err)
	}
	emb, err := g.embs.get(gen.Embedder, gen.Dims)
	if err != nil {
		return ingest.Target{}, err
	}
	chunker, err := g.chunker(gen.ChunkSize, gen.ChunkOverlap)
	if err != nil {
		return ingest.Target{}, pipeline.Misconfigured(err)
	}
	return ingest.Target{Collection: gen.Collection(), Embedder: emb, Chunker: chunker}, nil
}

// chunker returns the shared chunker of size and overlap.
func (g *generations) chunker(size, overlap int) (*pipeline.Chunker, error) {
	key := [2]int{size, overlap}
	g.mu.Lock()
	defer g.mu.Unlock()
	if c, ok := g.chunkers[key]; ok {
		return c, nil
	}
	c, err := pipeline.NewChunker(size, overlap)
	if err != nil {
		return nil, err
	}
	g.chunkers[key] = c
	return c, nil
}

// Serving returns the generation serving collection for the search
// service: the store collection and embedder of its State's Serving
// (cached, or read from the bucket's leader when fresh), or without a State
// the collection's own name and configured embedder.
func (g *generations) Serving(ctx context.Context, collection string, fresh bool) (search.Serving, error) {
	var (
		s   generation.State
		ok  bool
		err error
	)
	if fresh {
		s, ok, err = g.reg.Current(ctx, collection)
	} else {
		s, ok = served(g.reg, collection)
	}
	if err != nil {
		return search.Serving{}, err
	}
	if !ok || s.Serving.Name == "" {
		return search.Serving{Collection: collection, Embedder: g.embs.of(collection)}, nil
	}
	emb, err := g.embs.get(s.Serving.Embedder, s.Serving.Dims)
	if err != nil {
		return search.Serving{}, fmt.Errorf("generation %s of collection %q: %w", s.Serving.Name, collection, err)
	}
	return search.Serving{Collection: s.Serving.Name, Embedder: emb}, nil
}

// warnGenerations logs, for each configured collection with a State, how
// its configuration differs from the generation serving it: the State
// wins, since it is what the data is.
func warnGenerations(env *environment, reg *generation.Registry) {
	for _, c := range env.cfg.Collections {
		s, ok := served(reg, c.Name)
		if !ok {
			continue
		}
		sv := s.Serving
		if c.Dims == sv.Dims && c.Distance == sv.Distance && c.Embedder == sv.Embedder {
			continue
		}
		env.log.Warn().Str("collection", c.Name).
			Str("configured", describeCollection(c.Dims, c.Distance, c.Embedder)).
			Str("serving", sv.Name+" "+describeCollection(sv.Dims, sv.Distance, sv.Embedder)).
			Msg("RAGPIPE_COLLECTIONS differs from the generation serving the collection; the generation's settings are used (ragpipe reindex changes them)")
	}
}

// describeCollection gives a collection's settings as RAGPIPE_COLLECTIONS
// writes them, without the name.
func describeCollection(dims int, d pipeline.Distance, profile string) string {
	s := fmt.Sprintf("%d:%s", dims, d)
	if profile != "" {
		s += ":" + profile
	}
	return s
}

// stageCollections returns the configured collections the ingest Stage
// creates and checks at start: those without a State. A collection with
// one is written through its generations, which exist with the State's
// settings whatever the configuration says.
func stageCollections(cfg *config.Config, reg *generation.Registry) []pipeline.Collection {
	var cs []pipeline.Collection
	for _, c := range cfg.Collections {
		if _, ok := served(reg, c.Name); !ok {
			cs = append(cs, c)
		}
	}
	return cs
}

// newReindexRunner returns the runner of the reindex Jobs this process
// carries out, writing through stage with the embedders the Router uses.
func newReindexRunner(env *environment, svc *service, store storeRoles, stage *ingest.Stage) (*reindex.Runner, error) {
	cfg := env.cfg
	return reindex.NewRunner(reindex.Config{
		Registry: svc.gens, Store: store.generations, NoKeywords: !cfg.Keywords, Stage: stage, Embedder: svc.embs.get,
		Defaults: func(collection string) generation.Generation {
			d := generation.Generation{ChunkSize: cfg.ChunkSize, ChunkOverlap: cfg.ChunkOverlap}
			if i := slices.IndexFunc(cfg.Collections, func(c pipeline.Collection) bool { return c.Name == collection }); i >= 0 {
				d.Embedder = cfg.Collections[i].Embedder
			}
			return d
		},
		Keys: reindexKeys(svc.keys), Logger: env.log,
	})
}

// reindexKeys is the reindex copier's access to the keyring: a tenant's
// key, never created, to open the stored texts; nil for a tenant without
// one, whose texts were stored in clear. A forgotten tenant's texts cannot
// be opened: the copy fails rather than copy ciphertext as text. A key
// record that does not unwrap is a deployment problem the Job waits on.
// nil without a keyring.
func reindexKeys(k *keyring.Keyring) func(context.Context, string) (reindex.TenantKey, error) {
	if k == nil {
		return nil
	}
	return func(ctx context.Context, tenant string) (reindex.TenantKey, error) {
		key, err := k.Lookup(ctx, tenant)
		switch {
		case errors.Is(err, keyring.ErrNoKey):
			return nil, nil
		case errors.Is(err, keyring.ErrForgotten):
			return nil, pipeline.Permanent(err)
		case errors.Is(err, keyring.ErrUnknownMasterKey), errors.Is(err, keyring.ErrCorrupt):
			return nil, pipeline.Misconfigured(err)
		case err != nil:
			return nil, err
		}
		return key, nil
	}
}
