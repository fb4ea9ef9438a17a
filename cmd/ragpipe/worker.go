package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
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
	embedders, err := newEmbedders(cfg, log, metrics)
	if err != nil {
		return err
	}
	chunker, err := pipeline.NewChunker(cfg.ChunkSize, cfg.ChunkOverlap)
	if err != nil {
		return err
	}
	nc, err := connectNATS(ctx, cfg.NATS, "ragpipe-worker", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	store, err := newQdrant(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer store.Close()
	register, err := worker.NewRegister(ctx, js, cfg.SubjectPrefix, cfg.Worker.StreamReplicas)
	if err != nil {
		return err
	}
	stage, err := pipeline.NewStage(pipeline.StageConfig{
		Sink: store, Versions: register, Embedder: embedders.def, Embedders: embedders.byCollection,
		Chunker: chunker, Collections: cfg.Collections, AutoCreate: cfg.AutoCreate, Reuse: store,
		Metrics: metrics, Logger: log,
	})
	if err != nil {
		return err
	}
	if err := stage.Setup(ctx); err != nil {
		return err
	}
	w, err := worker.New(ctx, worker.Config{
		JetStream: js, Processor: stage, Metrics: metrics, Logger: log,
		Prefix: cfg.SubjectPrefix, MaxEventBytes: cfg.MaxEventBytes, MaxDeliver: cfg.MaxDeliver,
		BatchSize: cfg.Worker.BatchSize, FlushInterval: cfg.Worker.FlushInterval,
		Concurrency: cfg.Worker.Concurrency, MaxAckPending: cfg.Worker.MaxAckPending,
		AckWait: cfg.Worker.AckWait, StreamReplicas: cfg.Worker.StreamReplicas,
	})
	if err != nil {
		return err
	}
	if cfg.HTTPAddr != "" {
		addr, err := telemetry.Serve(ctx, telemetry.ServerConfig{
			Addr: cfg.HTTPAddr, Metrics: metrics, Logger: log,
			Ready: map[string]telemetry.Check{
				"nats": func(context.Context) error {
					if !nc.IsConnected() {
						return fmt.Errorf("not connected (%s)", nc.Status())
					}
					return nil
				},
				"qdrant":    store.Health,
				"embedders": stage.Ready,
			},
		})
		if err != nil {
			return err
		}
		log.Info().Str("addr", addr.String()).Msg("serving /healthz, /readyz, /metrics")
	}
	if err := w.Run(ctx); err != nil {
		return err
	}
	// Make sure the server has the last acknowledgements before exiting.
	return nc.FlushTimeout(cfg.Worker.AckWait)
}
