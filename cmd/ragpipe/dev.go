package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/telemetry"
)

var devCommand = command{
	name: "dev",
	summary: "Run everything in one process with no outside services: an embedded NATS server with JetStream on NATS_URL's address, " +
		"the worker, the search service, and an embedded persistent vector store under RAGPIPE_DATA_DIR " +
		"(or the Qdrant at QDRANT_URL when QDRANT_URL is set).",
	usage: "dev [flags]",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		o := &searchOptions{}
		searchFlags(fs, o)
		return func(ctx context.Context, env *environment, _ []string) error { return runDev(ctx, env, *o) }
	},
}

var (
	_ vectorStore = (*localstore.Store)(nil)
	_ vectorStore = (*qdrantstore.Store)(nil)
)

func runDev(ctx context.Context, env *environment, o searchOptions) error {
	cfg, log := env.cfg, env.log
	if err := o.validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("RAGPIPE_DATA_DIR=%s: %w", cfg.DataDir, err)
	}
	ns, err := startNATSServer(cfg.NATS, cfg.DataDir, log)
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	where := "Qdrant at " + cfg.Qdrant.URL
	open := qdrantStore(ctx, env)
	if !cfg.Qdrant.Explicit {
		dir := filepath.Join(cfg.DataDir, "vectors")
		where = "embedded store in " + dir
		open = func() (vectorStore, error) {
			return localstore.Open(ctx, localstore.Config{Dir: dir, Logger: log})
		}
	}
	s, err := startService(ctx, env, "ragpipe-dev", open)
	if err != nil {
		return err
	}
	defer s.Close()
	in, err := startIngest(ctx, env, s)
	if err != nil {
		return err
	}
	svc, err := startSearch(ctx, env, s, o)
	if err != nil {
		return err
	}
	if err := serveOps(ctx, env, s.metrics, map[string]telemetry.Check{
		"nats": natsReady(s.nc), "store": s.store.Health, "embedders": in.stage.Ready,
	}); err != nil {
		_ = svc.Stop(context.Background())
		return err
	}
	collection := "documents"
	if len(cfg.Collections) > 0 {
		collection = cfg.Collections[0].Name
	}
	fmt.Fprintf(env.stdout, `ragpipe dev is running (Ctrl-C to stop)
  NATS      %s  (JetStream data in %s)
  vectors   %s
  HTTP      %s  (/healthz, /readyz, /metrics)

Try, in another terminal:
  ragpipe publish --user alice --collection %[5]s examples/corpus
  ragpipe query --user alice --collection %[5]s "disaster recovery drill restore time"
`, ns.ClientURL(), filepath.Join(cfg.DataDir, "nats"), where, cmp.Or(cfg.HTTPAddr, "(off)"), collection)

	runErr := in.worker.Run(ctx) // until SIGINT/SIGTERM, then drains
	if err := stopSearch(ctx, env, svc, o); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.nc.FlushTimeout(cfg.Worker.AckWait); err != nil && runErr == nil {
		runErr = err
	}
	log.Info().Msg("stopped")
	return runErr
}
