package main

import (
	"cmp"
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/localstore"
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

func runDev(ctx context.Context, env *environment, o searchOptions) error {
	cfg, log := env.cfg, env.log
	if err := o.validate(); err != nil {
		return err
	}
	if err := os.MkdirAll(cfg.DataDir, 0o755); err != nil {
		return fmt.Errorf("RAGPIPE_DATA_DIR=%s: %w", cfg.DataDir, err)
	}
	ns, err := startNATSServer(cfg.NATS, cfg.DataDir, log, storeEncryption(cfg.MasterKeys))
	if err != nil {
		return err
	}
	defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
	if cfg.MasterKeys != nil {
		log.Info().Str("master_key", cfg.MasterKeys.Primary()).Msg("embedded NATS store encrypted at rest")
	}
	open, where := devStore(ctx, env)
	s, store, err := startService(ctx, env, "ragpipe-dev", "connecting to "+where, open)
	if err != nil {
		return err
	}
	defer s.Close()
	in, err := startIngest(ctx, env, s, store)
	if err != nil {
		return err
	}
	svc, err := startSearch(ctx, env, s, store, o)
	if err != nil {
		return err
	}
	s.ready.Started(map[string]telemetry.Check{
		"nats": natsReady(s.nc), "store": store.health, "embedders": in.stage.Ready,
	})
	printDevBanner(env.stdout, cfg, ns.ClientURL(), where)

	runErr := in.run(ctx) // until SIGINT/SIGTERM, then drains
	if err := stopSearch(ctx, env, svc, o); err != nil && runErr == nil {
		runErr = err
	}
	if err := s.nc.FlushTimeout(cfg.Worker.AckWait); err != nil && runErr == nil {
		runErr = err
	}
	log.Info().Msg("stopped")
	return runErr
}

// devStore returns the opener of the store `ragpipe dev` runs on, for
// startService, and where that store is: the Qdrant of QDRANT_URL when it is
// set, else the embedded store under RAGPIPE_DATA_DIR.
func devStore(ctx context.Context, env *environment) (open func() (storeRoles, error), where string) {
	cfg, log := env.cfg, env.log
	if cfg.Qdrant.Explicit {
		return func() (storeRoles, error) {
			q, err := newQdrant(ctx, cfg, log)
			if err != nil {
				return storeRoles{}, err
			}
			return qdrantRoles(q, cfg.Worker.DeferIndexing), nil
		}, "Qdrant at " + cfg.Qdrant.URL
	}
	dir := filepath.Join(cfg.DataDir, "vectors")
	return func() (storeRoles, error) {
		l, err := localstore.Open(ctx, localstore.Config{Dir: dir, NoKeywords: !cfg.Keywords, Logger: log})
		if err != nil {
			return storeRoles{}, err
		}
		if cfg.Worker.DeferIndexing > 0 {
			log.Warn().Msg("RAGPIPE_DEFER_INDEXING has no effect on the embedded store, which builds no index")
		}
		return localRoles(l), nil
	}, "embedded store in " + dir
}

// printDevBanner tells where `ragpipe dev` serves and how to try it.
func printDevBanner(w io.Writer, cfg *config.Config, natsURL, vectors string) {
	collection := "documents"
	if len(cfg.Collections) > 0 {
		collection = cfg.Collections[0].Name
	}
	fmt.Fprintf(w, `ragpipe dev is running (Ctrl-C to stop)
  NATS      %s  (JetStream data in %s)
  vectors   %s
  HTTP      %s  (/healthz, /readyz, /metrics)

Try, in another terminal:
  ragpipe publish --user alice --collection %[5]s examples/corpus
  ragpipe query --user alice --collection %[5]s "disaster recovery drill restore time"
`, natsURL, filepath.Join(cfg.DataDir, "nats"), vectors, cmp.Or(cfg.HTTPAddr, "(off)"), collection)
}
