package main

import (
	"context"
	"flag"

	"github.com/ragpipe/ragpipe/telemetry"
)

var workerCommand = command{
	name:    "worker",
	summary: "Consume ingest events from JetStream, chunk and embed them, and store them in Qdrant. Run as many replicas as you like.",
	usage:   "worker",
	flags: func(*flag.FlagSet) func(context.Context, *environment, []string) error {
		return runWorker
	},
}

func runWorker(ctx context.Context, env *environment, _ []string) error {
	cfg, log := env.cfg, env.log
	log.Info().Object("config", cfg).Msg("starting")
	metrics := telemetry.NewMetrics()
	embs, err := newEmbedders(cfg, log, metrics)
	if err != nil {
		return err
	}
	nc, err := connectNATS(ctx, cfg.NATS, "ragpipe-worker", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := newQdrant(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	in, err := startIngest(ctx, env, nc, store, embs, metrics)
	if err != nil {
		return err
	}
	if err := serveOps(ctx, env, metrics, map[string]telemetry.Check{
		"nats": natsReady(nc), "qdrant": store.Health, "embedders": in.stage.Ready,
	}); err != nil {
		return err
	}
	if err := in.worker.Run(ctx); err != nil {
		return err
	}
	// Make sure the server has the last acknowledgements before exiting.
	return nc.FlushTimeout(cfg.Worker.AckWait)
}
