package main

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/embedder/builtin"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/retry"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/telemetry"
)

// clientConnectTimeout bounds how long a command run by a person (publish,
// query, dlq) waits for NATS before it gives up with a one-line error.
const clientConnectTimeout = 30 * time.Second

// connectJetStream connects a one-shot command (dlq, forget, keys) to NATS,
// waiting at most clientConnectTimeout, and opens JetStream on the
// connection, which the caller closes.
func connectJetStream(ctx context.Context, cfg config.NATS, name string, log zerolog.Logger) (*nats.Conn, jetstream.JetStream, error) {
	connectCtx, cancel := context.WithTimeout(ctx, clientConnectTimeout)
	defer cancel()
	nc, err := connectNATS(connectCtx, cfg, name, log)
	if err != nil {
		return nil, nil, err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, nil, err
	}
	return nc, js, nil
}

// connectNATS connects to cfg.NATS, retrying with the retry policy until ctx
// ends and logging each failed attempt, and keeps reconnecting for the life
// of the connection.
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
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			ev := log.Warn().Err(err)
			if sub != nil {
				ev = ev.Str("subject", sub.Subject)
			}
			ev.Msg("NATS asynchronous error") // a slow consumer dropping messages, a permission refused
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
	secrets := []string{cfg.Password, cfg.Token}
	for _, server := range strings.Split(cfg.URL, ",") {
		if u, err := url.Parse(strings.TrimSpace(server)); err == nil {
			pw, _ := u.User.Password()
			secrets = append(secrets, pw)
		}
	}
	var nc *nats.Conn
	p := retry.Policy{
		Initial: 500 * time.Millisecond,
		Max:     5 * time.Second,
		OnRetry: func(attempt int, err error, wait time.Duration) {
			log.Warn().Err(redact(err, secrets...)).Int("attempt", attempt).Dur("retry_in", wait).
				Msg("NATS not reachable yet")
		},
	}
	err := p.Do(ctx, func(context.Context) (err error) {
		nc, err = nats.Connect(cfg.URL, opts...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("connect to NATS: %w", redact(err, secrets...))
	}
	log.Info().Str("server", nc.ConnectedUrlRedacted()).Msg("NATS connected")
	return nc, nil
}

// embedders are the embedders of a deployment's collections and
// generations, built by embedder profile and dimensions on first need and
// shared: collections of the same profile and dimensions share one
// embedder, and so its limit of requests in flight. It is safe for
// concurrent use.
type embedders struct {
	// def embeds the collections that name no embedder profile, those
	// created on first use included.
	def ingest.Embedder
	// byCollection holds the embedder of each configured collection.
	byCollection map[string]ingest.Embedder

	cfg     *config.Config
	log     zerolog.Logger
	metrics *telemetry.Metrics

	mu    sync.Mutex
	built map[embedderKey]builtEmbedder
}

type embedderKey struct {
	profile string
	dims    int
}

// builtEmbedder is an embedder, or why it cannot be built: the settings do
// not change while the process runs, so neither does the answer.
type builtEmbedder struct {
	e   ingest.Embedder
	err error
}

// of returns the embedder of collection: its own when configured, else the
// default one (collections created on first use).
func (e *embedders) of(collection string) ingest.Embedder {
	if emb, ok := e.byCollection[collection]; ok {
		return emb
	}
	return e.def
}

// get returns the embedder of profile ("" for the default RAGPIPE_EMBEDDER)
// producing vectors of dims, building it on first need. A profile the
// settings lack, or settings that cannot produce such vectors, is a
// pipeline.Misconfigured error naming what to set.
func (e *embedders) get(profile string, dims int) (ingest.Embedder, error) {
	key := embedderKey{profile, dims}
	e.mu.Lock()
	defer e.mu.Unlock()
	if b, ok := e.built[key]; ok {
		return b.e, b.err
	}
	settings, name, ok := e.cfg.Embedder, "default", true
	if profile != "" {
		settings, ok = e.cfg.Profiles[profile]
		name = profile
	}
	var b builtEmbedder
	if !ok {
		b.err = pipeline.Misconfigured(fmt.Errorf("embedder profile %q is not configured: %s is not set",
			profile, config.ProfileVar("RAGPIPE_EMBEDDER", profile)))
	} else if b.e, b.err = embedderFor(settings, name, dims, e.log, e.metrics); b.err != nil {
		b.err = pipeline.Misconfigured(fmt.Errorf("embedder %s at %d dimensions: %w", name, dims, b.err))
	}
	e.built[key] = b
	return b.e, b.err
}

// newEmbedders builds the embedder of every configured collection and the
// default one; the others are built on first need (get). The default
// embedder produces the dimensions of the first collection that uses it,
// else 1024, the dimensions of collections created on first use.
func newEmbedders(cfg *config.Config, log zerolog.Logger, metrics *telemetry.Metrics) (*embedders, error) {
	e := &embedders{
		cfg: cfg, log: log, metrics: metrics, built: make(map[embedderKey]builtEmbedder),
		byCollection: make(map[string]ingest.Embedder, len(cfg.Collections)),
	}
	dims := 1024
	if i := slices.IndexFunc(cfg.Collections, func(c pipeline.Collection) bool { return c.Embedder == "" }); i >= 0 {
		dims = cfg.Collections[i].Dims
	}
	var err error
	if e.def, err = e.get("", dims); err != nil {
		return nil, err
	}
	for _, c := range cfg.Collections {
		if e.byCollection[c.Name], err = e.get(c.Embedder, c.Dims); err != nil {
			return nil, err
		}
	}
	return e, nil
}

// embedderFor returns the embedder settings describe, producing vectors of
// dims; name labels its logs and metrics.
func embedderFor(settings config.Embedder, name string, dims int, log zerolog.Logger, metrics *telemetry.Metrics) (ingest.Embedder, error) {
	cfg := embedder.Config{
		URL: settings.URL, Model: settings.Model, APIKey: settings.APIKey,
		Dimensions: dims, SendDimensions: settings.SendDimensions, Truncate: settings.Truncate,
		BatchSize: settings.BatchSize, Concurrency: settings.Concurrency,
		Timeout: settings.Timeout, MaxRetryTime: settings.MaxRetryTime,
		Name: name, Logger: log, Metrics: metrics,
	}
	switch settings.Kind {
	case "openai":
		return embedder.NewOpenAI(cfg)
	case "ollama":
		return embedder.NewOllama(cfg)
	case "tei":
		return embedder.NewTEI(cfg)
	case "hash":
		return embedder.NewHash(dims)
	default: // builtin: config.Load accepts nothing else
		return builtin.New(builtin.Config{Dimensions: dims})
	}
}

// newQdrant connects to the Qdrant the settings name, waiting for it with the
// retry policy until ctx ends and logging each failed attempt (see
// qdrantstore.New): a refused key or another error no retry can fix fails at
// once.
func newQdrant(ctx context.Context, cfg *config.Config, log zerolog.Logger) (*qdrantstore.Store, error) {
	return qdrantstore.New(ctx, qdrantstore.Config{
		ConnectTimeout: -1, // until ctx ends
		Host:           cfg.Qdrant.Host, Port: cfg.Qdrant.Port, TLS: cfg.Qdrant.TLS, APIKey: cfg.Qdrant.APIKey,
		Timeout: cfg.Qdrant.Timeout, PoolSize: cfg.Qdrant.PoolSize, Compression: cfg.Qdrant.Compression,
		Shards: cfg.Shards, ReplicationFactor: cfg.ReplicationFactor, WriteConsistency: cfg.WriteConsistency,
		HNSW: cfg.HNSW, NoKeywords: !cfg.Keywords,
		WriteOrdering: cfg.Qdrant.WriteOrdering, ReadConsistency: cfg.Qdrant.ReadConsistency,
		QueriesInFlight: queriesInFlight(cfg.Qdrant.QueriesInFlight),
		Logger:          log,
	})
}

// queriesInFlight is QDRANT_QUERIES_IN_FLIGHT as qdrantstore takes it:
// there, 0 is the default and a negative number sends each search alone.
func queriesInFlight(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// redact replaces the non-empty secrets in err's message; only then is err
// flattened to its message.
func redact(err error, secrets ...string) error {
	msg := err.Error()
	for _, s := range secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "REDACTED")
		}
	}
	if msg == err.Error() {
		return err
	}
	return errors.New(msg)
}
