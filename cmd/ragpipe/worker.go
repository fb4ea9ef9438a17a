package main

import (
	"context"
	"flag"
	"os"
	"runtime/debug"

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

// The worker's garbage collector settings where the environment sets none
// (docs/PERFORMANCE.md): its live heap is small and every document leaves
// garbage many times its own size (vectors, texts, request buffers), so
// that the default GOGC=100 spends much of its CPU collecting. A larger
// workerGCPercent collects less often; the soft limit workerMemoryLimit
// has the collector run sooner instead of letting the heap pass it.
const (
	workerGCPercent   = 400
	workerMemoryLimit = 150 << 20
)

// tuneGC sets workerGCPercent unless GOGC is set, and then
// workerMemoryLimit unless GOMEMLIMIT is set: the user's settings win.
func tuneGC(getenv func(string) string) {
	if getenv("GOGC") != "" {
		return
	}
	debug.SetGCPercent(workerGCPercent)
	if getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(workerMemoryLimit)
	}
}

func runWorker(ctx context.Context, env *environment, _ []string) error {
	tuneGC(os.Getenv)
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
