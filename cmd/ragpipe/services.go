package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/reindex"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// service is what a long-running command (worker, searcher, dev) runs on.
type service struct {
	metrics *telemetry.Metrics
	ready   *telemetry.Readiness // what /readyz reports
	embs    *embedders
	nc      *nats.Conn
	keys    *keyring.Keyring // nil without RAGPIPE_ENCRYPTION_KEY_FILE
	gens    *generation.Registry
	router  *generations // follows gens: the Stage's Router, the searches' Serving
	store   io.Closer
}

// startService serves /healthz, /readyz and /metrics first, so that the
// process is seen alive but not ready while it waits for its dependencies;
// then it logs the settings, builds the embedders, connects to NATS as name
// and, with RAGPIPE_ENCRYPTION_KEY_FILE, opens the tenants' keyring; then it
// loads the collections' generations (warning of configured collections
// whose serving generation differs from their configuration) and opens the
// command's store with open, which returns its concrete type, /readyz
// naming each step (step names the store's). The command calls
// ready.Started once it works. Close releases the store, the generations,
// the keyring and the connection.
func startService[S io.Closer](ctx context.Context, env *environment, name, step string, open func() (S, error)) (*service, S, error) {
	cfg := env.cfg
	s := &service{metrics: telemetry.NewMetrics(), ready: telemetry.NewReadiness("starting")}
	var store S
	configured := make([]string, len(cfg.Collections))
	for i, c := range cfg.Collections {
		configured[i] = c.Name
	}
	s.metrics.LimitCollections(configured, cfg.MaxCollections)
	if err := serveOps(ctx, env, s.metrics, s.ready); err != nil {
		return nil, store, err
	}
	env.log.Info().Object("config", cfg).Msg("starting")
	var err error
	if s.embs, err = newEmbedders(cfg, env.log, s.metrics); err != nil {
		return nil, store, err
	}
	s.ready.Step("connecting to NATS")
	if s.nc, err = connectNATS(ctx, cfg.NATS, name, env.log); err != nil {
		return nil, store, err
	}
	if s.keys, err = openKeyring(ctx, cfg, s); err != nil {
		s.nc.Close()
		return nil, store, err
	}
	if s.gens, err = openGenerations(ctx, env, s, name); err != nil {
		s.closeKeys()
		s.nc.Close()
		return nil, store, err
	}
	s.router = newGenerations(s.gens, s.embs)
	warnGenerations(env, s.gens)
	s.ready.Step(step)
	if store, err = open(); err != nil {
		_ = s.gens.Close()
		s.closeKeys()
		s.nc.Close()
		return nil, store, err
	}
	s.store = store
	return s, store, nil
}

// Close closes the store, the generations, the keyring and the NATS
// connection.
func (s *service) Close() {
	_ = s.store.Close()
	_ = s.gens.Close()
	s.closeKeys()
	s.nc.Close()
}

func (s *service) closeKeys() {
	if s.keys != nil {
		_ = s.keys.Close()
	}
}

// openKeyring opens the keyring of the tenants' data keys (bucket
// RAG_KEYS, replicated like the version register) when the settings hold
// master keys; nil otherwise, and encryption at rest is off.
func openKeyring(ctx context.Context, cfg *config.Config, s *service) (*keyring.Keyring, error) {
	if cfg.MasterKeys == nil {
		return nil, nil
	}
	s.ready.Step("opening the keyring " + keyring.Bucket)
	js, err := jetstream.New(s.nc)
	if err != nil {
		return nil, err
	}
	return keyring.Open(ctx, js, cfg.MasterKeys, keyring.Config{Replicas: cfg.Worker.StreamReplicas})
}

// ingestKeys is the ingest stage's access to the keyring: a tenant's key,
// created on first need. A key record that does not unwrap is a deployment
// problem (a master key file without the key that wraps it, mid-rotation
// say): the tenant's events wait for the fix, as for a refused embedder key,
// instead of being dead-lettered. nil without a keyring.
func ingestKeys(k *keyring.Keyring) func(context.Context, string) (ingest.TenantKey, error) {
	if k == nil {
		return nil
	}
	return func(ctx context.Context, tenant string) (ingest.TenantKey, error) {
		key, err := k.Tenant(ctx, tenant)
		switch {
		case errors.Is(err, keyring.ErrUnknownMasterKey), errors.Is(err, keyring.ErrCorrupt):
			return nil, pipeline.Misconfigured(err)
		case err != nil:
			return nil, err
		}
		return key, nil
	}
}

// searchKeys is the search service's access to the keyring: a tenant's key,
// never created, nil for a tenant without one (never published, or
// forgotten). A key record that does not unwrap is a permanent error (the
// search answers 500): retrying cannot fix a master key file without its
// key. nil without a keyring.
func searchKeys(k *keyring.Keyring) func(context.Context, string) (search.TenantKey, error) {
	if k == nil {
		return nil
	}
	return func(ctx context.Context, tenant string) (search.TenantKey, error) {
		key, err := k.Lookup(ctx, tenant)
		switch {
		case errors.Is(err, keyring.ErrNoKey), errors.Is(err, keyring.ErrForgotten):
			return nil, nil
		case errors.Is(err, keyring.ErrUnknownMasterKey), errors.Is(err, keyring.ErrCorrupt):
			return nil, pipeline.Permanent(err)
		case err != nil:
			return nil, err
		}
		return key, nil
	}
}

// openQdrant opens the Qdrant of the settings, for startService, and names
// the step for /readyz.
func openQdrant(ctx context.Context, env *environment) (step string, open func() (*qdrantstore.Store, error)) {
	return "connecting to Qdrant at " + env.cfg.Qdrant.URL,
		func() (*qdrantstore.Store, error) { return newQdrant(ctx, env.cfg, env.log) }
}

// storeRoles is the vector store of a long-running command, as each of its
// consumers declares it. qdrantRoles and localRoles fill it from the two
// stores, so that `ragpipe dev` can choose one at run time.
type storeRoles struct {
	sink  ingest.Sink
	reuse ingest.VectorSource
	index search.Index
	// versions reads the highest stored versions, for the ingest stream's
	// version floor.
	versions lww.StoredVersions
	health   telemetry.Check
	// check checks an existing collection against its configuration.
	check func(ctx context.Context, want pipeline.Collection) error
	// generations creates, reads, switches and drops generations (reindex).
	generations reindex.Store
	// backlog, when set, is told how many events wait (RAGPIPE_DEFER_INDEXING).
	backlog func(ctx context.Context, pending uint64)
	close   func() error
}

// Close closes the store.
func (r storeRoles) Close() error { return r.close() }

// qdrantRoles is q in every role; indexing is deferred while more than
// deferAbove events wait, unless deferAbove is 0.
func qdrantRoles(q *qdrantstore.Store, deferAbove int) storeRoles {
	r := storeRoles{sink: q, reuse: q, index: q, versions: q, generations: q, health: q.Health, check: q.CheckCollection, close: q.Close}
	if deferAbove > 0 {
		r.backlog = q.DeferIndexing(uint64(deferAbove)).Observe
	}
	return r
}

// localRoles is the embedded store l in every role. It builds no index, so
// it has nothing to defer.
func localRoles(l *localstore.Store) storeRoles {
	return storeRoles{sink: l, reuse: l, index: l, versions: l, generations: l, health: l.Health, check: l.CheckCollection, close: l.Close}
}

// ingestSide is the ingestion side, ready to run.
type ingestSide struct {
	worker  *worker.Worker
	stage   *ingest.Stage
	reindex *reindex.Runner
}

// run runs the worker and the reindex runner until ctx ends (or the worker
// fails), and returns the worker's error once both have stopped.
func (in *ingestSide) run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = in.reindex.Run(ctx) // it stops only when ctx ends
	}()
	err := in.worker.Run(ctx)
	cancel()
	<-done
	return err
}

// startIngest creates the streams, the consumer and the configured
// collections, and returns the worker and the reindex runner ready to run.
func startIngest(ctx context.Context, env *environment, svc *service, store storeRoles) (*ingestSide, error) {
	cfg := env.cfg
	svc.ready.Step("creating the streams and collections")
	chunker, err := pipeline.NewChunker(cfg.ChunkSize, cfg.ChunkOverlap)
	if err != nil {
		return nil, err
	}
	js, err := jetstream.New(svc.nc)
	if err != nil {
		return nil, err
	}
	register, err := lww.NewRegister(ctx, js, cfg.SubjectPrefix, cfg.Worker.StreamReplicas)
	if err != nil {
		return nil, err
	}
	stage, err := ingest.NewStage(ingest.StageConfig{
		Sink: store.sink, Versions: register, Embedder: svc.embs.def, Embedders: svc.embs.byCollection,
		Chunker: chunker, Collections: stageCollections(cfg, svc.gens), AutoCreate: cfg.AutoCreate.Allows, Reuse: store.reuse,
		Metrics: svc.metrics, Logger: env.log, MaxCollections: cfg.MaxCollections, Keys: ingestKeys(svc.keys),
		Router: svc.router,
	})
	if err != nil {
		return nil, err
	}
	if err := stage.Setup(ctx); err != nil {
		return nil, err
	}
	w, err := worker.New(ctx, worker.Config{
		JetStream: js, Processor: stage, Metrics: svc.metrics, Logger: env.log,
		Prefix: cfg.SubjectPrefix, MaxEventBytes: cfg.MaxEventBytes, MaxDeliver: cfg.MaxDeliver,
		BatchSize: cfg.Worker.BatchSize, FlushInterval: cfg.Worker.FlushInterval,
		Concurrency: cfg.Worker.Concurrency, MaxAckPending: cfg.Worker.MaxAckPending,
		AckWait: cfg.Worker.AckWait, StreamReplicas: cfg.Worker.StreamReplicas, Backlog: store.backlog,
		ShutdownTimeout: cfg.ShutdownTimeout, MaxParked: cfg.MaxCollections + len(cfg.Collections),
		VersionFloor: func(ctx context.Context) (uint64, error) { return register.Floor(ctx, store.versions) },
	})
	if err != nil {
		return nil, err
	}
	runner, err := newReindexRunner(env, svc, store, stage)
	if err != nil {
		return nil, err
	}
	return &ingestSide{worker: w, stage: stage, reindex: runner}, nil
}

// searchOptions are the searcher's flags.
type searchOptions struct {
	concurrency int
	timeout     time.Duration
	drain       time.Duration
}

func (o searchOptions) validate() error {
	if o.concurrency < 1 {
		return fmt.Errorf("--concurrency %d: want >= 1", o.concurrency)
	}
	if o.timeout <= 0 || o.drain <= 0 {
		return errors.New("--timeout and --drain-timeout must be > 0")
	}
	return nil
}

// startSearch checks the configured collections and starts the search service.
func startSearch(ctx context.Context, env *environment, s *service, store storeRoles, o searchOptions) (*search.Service, error) {
	s.ready.Step("checking the configured collections")
	if err := checkCollections(ctx, env, s.gens, store.check); err != nil {
		return nil, err
	}
	svc, err := search.Start(ctx, search.Config{
		Conn: s.nc, Index: store.index, Serving: s.router.Serving, Prefix: env.cfg.SubjectPrefix,
		Embedder:    func(c string) search.Embedder { return s.embs.of(c) },
		Concurrency: o.concurrency, Timeout: o.timeout, Metrics: s.metrics, Logger: env.log, Keys: searchKeys(s.keys),
	})
	if err != nil {
		return nil, err
	}
	info := svc.Info()
	env.log.Info().Str("service", info.Name).Str("id", info.ID).Str("version", info.Version).
		Str("search", info.Endpoints[0].Subject).Str("list", info.Endpoints[1].Subject).Str("status", info.Endpoints[2].Subject).
		Int("concurrency", o.concurrency).Dur("timeout", o.timeout).Msg("search service started")
	return svc, nil
}

// stopSearch answers the requests in flight, for at most the drain timeout.
func stopSearch(ctx context.Context, env *environment, svc *search.Service, o searchOptions) error {
	env.log.Info().Msg("stopping search: answering the requests in flight")
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), o.drain)
	defer cancel()
	return svc.Stop(drainCtx)
}

// checkCollections checks that each configured collection that exists in
// the store has the dimensions (and distance) of its configuration, which
// are its embedder's; for a collection with a State, that the generation
// serving it has the State's. A missing one is not an error: it answers 404
// until a worker creates it.
func checkCollections(ctx context.Context, env *environment, gens *generation.Registry, check func(context.Context, pipeline.Collection) error) error {
	for _, c := range env.cfg.Collections {
		want := c
		if s, ok := served(gens, c.Name); ok {
			want = s.Serving.Collection()
		}
		err := check(ctx, want)
		switch {
		case errors.Is(err, pipeline.ErrUnknownCollection):
			env.log.Warn().Str("collection", c.Name).Msg("collection does not exist yet; its requests are answered 404 until a worker creates it")
		case err != nil:
			if want.Name != c.Name {
				return fmt.Errorf("collection %q, generation %s: %w", c.Name, want.Name, err)
			}
			return fmt.Errorf("collection %q: %w", c.Name, err)
		}
	}
	return nil
}

// serveOps serves /healthz, /readyz (as ready says) and /metrics on
// RAGPIPE_HTTP_ADDR until ctx ends; an empty address serves nothing. It
// returns once the listener is bound.
func serveOps(ctx context.Context, env *environment, metrics *telemetry.Metrics, ready *telemetry.Readiness) error {
	if env.cfg.HTTPAddr == "" {
		return nil
	}
	addr, err := telemetry.Serve(ctx, telemetry.ServerConfig{Addr: env.cfg.HTTPAddr, Metrics: metrics, Logger: env.log, Ready: ready})
	if err != nil {
		return err
	}
	env.log.Info().Str("addr", addr.String()).Msg("serving /healthz, /readyz, /metrics")
	return nil
}

// natsReady is the readiness check of a NATS connection.
func natsReady(nc *nats.Conn) telemetry.Check {
	return func(context.Context) error {
		if !nc.IsConnected() {
			return fmt.Errorf("not connected (%s)", nc.Status())
		}
		return nil
	}
}
