package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ragpipe/ragpipe/pipeline"
)

// New creates the ingest and dead-letter streams and the consumer when they
// are missing, and returns a worker ready to Run.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if cfg.JetStream == nil || cfg.Processor == nil || cfg.Metrics == nil {
		return nil, errors.New("worker: JetStream, Processor and Metrics are required")
	}
	if _, err := ensureStream(ctx, cfg.JetStream, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "ragpipe: events that can never succeed, with the reason",
		Subjects:    []string{cfg.Prefix + ".dlq.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.StreamReplicas,
	}); err != nil {
		return nil, err
	}
	ingest, err := ensureStream(ctx, cfg.JetStream, jetstream.StreamConfig{
		Name:        IngestStream,
		Description: "ragpipe: document events waiting to be indexed",
		Subjects:    []string{cfg.Prefix + ".ingest.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.StreamReplicas,
		// Work queue: a message is removed once acknowledged, so the stream
		// holds exactly the backlog and nothing unprocessed ever ages out.
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: 2 * time.Minute,
	})
	if err != nil {
		return nil, err
	}
	consumer, err := ingest.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "ragpipe workers, shared by every replica",
		FilterSubject: cfg.Prefix + ".ingest.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		// The worker counts attempts itself (NumDelivered) and dead-letters
		// the event, so JetStream must never silently stop redelivering.
		MaxDeliver: -1,
		Replicas:   0, // inherit the stream's
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	return &Worker{
		cfg:      cfg,
		consumer: consumer,
		decode:   pipeline.DecodeConfig{Prefix: cfg.Prefix, MaxEventBytes: cfg.MaxEventBytes},
	}, nil
}

// ensureStream returns the stream named in cfg, creating it when missing. An
// existing stream is left as its operator configured it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, cfg.Name) // another replica created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
