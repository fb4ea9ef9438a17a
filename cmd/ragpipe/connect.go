package main

import (
	"context"
	"fmt"
	"time"

	"github.com/cenkalti/backoff/v4"
	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/sink"
)

// connectNATS connects to cfg.NATS, retrying with backoff until ctx ends, and
// keeps reconnecting for the life of the connection.
func connectNATS(ctx context.Context, cfg config.NATS, name string, log zerolog.Logger) (*nats.Conn, error) {
	opts := []nats.Option{
		nats.Name(name),
		nats.MaxReconnects(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil { // nil on a deliberate close
				log.Warn().Err(err).Msg("NATS disconnected")
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("NATS reconnected")
		}),
	}
	switch {
	case cfg.Creds != "":
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	case cfg.Token != "":
		opts = append(opts, nats.Token(cfg.Token))
	case cfg.User != "":
		opts = append(opts, nats.UserInfo(cfg.User, cfg.Password))
	}
	var nc *nats.Conn
	connect := func() (err error) {
		nc, err = nats.Connect(cfg.URL, opts...)
		return err
	}
	b := backoff.WithContext(backoff.NewExponentialBackOff(backoff.WithMaxElapsedTime(0), backoff.WithMaxInterval(5*time.Second)), ctx)
	notify := func(err error, wait time.Duration) {
		log.Warn().Err(err).Dur("retry_in", wait).Msg("NATS not reachable yet")
	}
	if err := backoff.RetryNotify(connect, b, notify); err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", err)
	}
	log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("NATS connected")
	return nc, nil
}

// newEmbedder returns the embedder the settings name.
func newEmbedder(cfg *config.Config) (pipeline.Embedder, error) {
	if cfg.Embedder.Kind != "hash" {
		return nil, fmt.Errorf("RAGPIPE_EMBEDDER=%s is not available in this version; use hash", cfg.Embedder.Kind)
	}
	dims := 1024
	if len(cfg.Collections) > 0 {
		dims = cfg.Collections[0].Dims
	}
	return embedder.NewHash(dims)
}

// newQdrant connects to the Qdrant the settings name.
func newQdrant(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*sink.Qdrant, error) {
	return sink.NewQdrant(ctx, sink.QdrantConfig{
		Host: cfg.Qdrant.Host, Port: cfg.Qdrant.Port, TLS: cfg.Qdrant.TLS, APIKey: cfg.Qdrant.APIKey,
		Timeout: cfg.Qdrant.Timeout, PoolSize: cfg.Qdrant.PoolSize, Compression: cfg.Qdrant.Compression,
		Shards: cfg.Shards, ReplicationFactor: cfg.ReplicationFactor, WriteConsistency: cfg.WriteConsistency,
		HNSW: cfg.HNSW, WriteOrdering: cfg.Qdrant.WriteOrdering,
		Logger: log,
	})
}
