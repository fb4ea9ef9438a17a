package main

import (
	"context"
	"flag"

	"github.com/ragpipe/ragpipe/telemetry"
)

var workerCommand = command{
	name:    "worker",
	summary: "Consume ingest events from JetStream, chunk and embed them, and store them in Qdrant, in every generation of their collection; carry out the jobs of ragpipe reindex. Run as many replicas as you like.",
	usage:   "worker",
	flags: func(*flag.FlagSet) func(context.Context, *environment, []string) error {
		return runWorker
	},
}

func runWorker(ctx context.Context, env *environment, _ []string) error {
	step, open := openQdrant(ctx, env)
	svc, q, err := startService(ctx, env, "ragpipe-worker", step, open)
	if err != nil {
		return err
	}
	defer svc.Close()
	in, err := startIngest(ctx, env, svc, qdrantRoles(q, env.cfg.Worker.DeferIndexing))
	if err != nil {
		return err
	}
	svc.ready.Started(map[string]telemetry.Check{
		"nats": natsReady(svc.nc), "qdrant": q.Health, "embedders": in.stage.Ready,
	})
	if err := in.run(ctx); err != nil {
		return err
	}
	// Make sure the server has the last acknowledgements before exiting.
	return svc.nc.FlushTimeout(env.cfg.Worker.AckWait)
}
