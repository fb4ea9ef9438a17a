package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/sink"
	"github.com/ragpipe/ragpipe/telemetry"
)

var searcherCommand = command{
	name:    "searcher",
	summary: "Answer search and list requests (NATS micro service ragpipe-search on <prefix>.search.<user_id>.<collection> and <prefix>.list.<user_id>.<collection>). Run as many replicas as you like.",
	usage:   "searcher [flags]",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		s := &searcher{}
		fs.IntVar(&s.concurrency, "concurrency", 32, "requests handled at once by this replica")
		fs.DurationVar(&s.timeout, "timeout", 5*time.Second, "deadline of one request, from its arrival to its reply (retries of an unavailable Qdrant included); clients should wait longer")
		fs.DurationVar(&s.drain, "drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to wait for the requests in flight")
		return s.run
	},
}

// searcher runs the search service.
type searcher struct {
	concurrency int
	timeout     time.Duration
	drain       time.Duration
}

func (s *searcher) run(ctx context.Context, env *environment, _ []string) error {
	cfg, log := env.cfg, env.log
	if s.concurrency < 1 {
		return fmt.Errorf("--concurrency %d: want >= 1", s.concurrency)
	}
	if s.timeout <= 0 || s.drain <= 0 {
		return errors.New("--timeout and --drain-timeout must be > 0")
	}
	log.Info().Object("config", cfg).Msg("starting")
	metrics := telemetry.NewMetrics()
	embs, err := newEmbedders(cfg, log, metrics)
	if err != nil {
		return err
	}
	// A query is embedded like its collection's documents: configured
	// collections by their own embedder, the others (created on first use)
	// by the default one.
	embedderOf := func(collection string) pipeline.Embedder {
		if e, ok := embs.byCollection[collection]; ok {
			return e
		}
		return embs.def
	}
	nc, err := connectNATS(ctx, cfg.NATS, "ragpipe-searcher", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := newQdrant(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	if err := checkCollections(ctx, env, store); err != nil {
		return err
	}
	svc, err := search.Start(ctx, search.Config{
		Conn: nc, Index: store, Embedder: embedderOf, Prefix: cfg.SubjectPrefix,
		Concurrency: s.concurrency, Timeout: s.timeout, Metrics: metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	info := svc.Info()
	log.Info().Str("service", info.Name).Str("id", info.ID).Str("version", info.Version).
		Str("search", info.Endpoints[0].Subject).Str("list", info.Endpoints[1].Subject).
		Int("concurrency", s.concurrency).Dur("timeout", s.timeout).Msg("search service started")
	if err := serveOps(ctx, env, metrics, map[string]telemetry.Check{"nats": natsReady(nc), "qdrant": store.Health}); err != nil {
		_ = svc.Stop(context.Background())
		return err
	}
	<-ctx.Done()
	log.Info().Msg("stopping: answering the requests in flight")
	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.drain)
	defer cancel()
	if err := svc.Stop(drainCtx); err != nil {
		return err
	}
	log.Info().Msg("stopped")
	return nil
}

// checkCollections checks that each configured collection that exists in
// Qdrant has the dimensions (and distance) of its configuration, which are
// its embedder's. A missing one is not an error: it answers 404 until a
// worker creates it.
func checkCollections(ctx context.Context, env *environment, store *sink.Qdrant) error {
	for _, c := range env.cfg.Collections {
		err := store.CheckCollection(ctx, c)
		switch {
		case errors.Is(err, pipeline.ErrUnknownCollection):
			env.log.Warn().Str("collection", c.Name).Msg("collection does not exist yet; its requests are answered 404 until a worker creates it")
		case err != nil:
			return fmt.Errorf("collection %q: %w", c.Name, err)
		}
	}
	return nil
}

// serveOps serves /healthz, /readyz (passing when every check does) and
// /metrics on RAGPIPE_HTTP_ADDR until ctx ends; an empty address serves
// nothing. It returns once the listener is bound.
func serveOps(ctx context.Context, env *environment, metrics *telemetry.Metrics, ready map[string]telemetry.Check) error {
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
