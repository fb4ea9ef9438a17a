// Package telemetry holds ragpipe's Prometheus metrics (CONTRACT §8: the names
// are stable) and serves the operational endpoints /healthz, /readyz and
// /metrics.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/rs/zerolog"
)

// Event outcomes, the values of the outcome label of ragpipe_events_total.
const (
	Acked        = "acked"
	Retried      = "retried"
	DeadLettered = "dead_lettered"
)

// Metrics are the metrics ragpipe exports (CONTRACT §8). Its fields are safe
// for concurrent use.
type Metrics struct {
	// Events counts ingest events by collection and outcome.
	Events *CounterVec
	// ChunksEmbedded counts texts sent to an embedder, by collection; its
	// rate is the embedding stage's texts per second.
	ChunksEmbedded *CounterVec
	// ChunksReused counts chunks that took the stored vector of an unchanged
	// chunk instead of being embedded, by collection.
	ChunksReused *CounterVec
	// EmbedBatchSize observes the texts of each request to an embedding
	// service, by embedder profile.
	EmbedBatchSize *prometheus.HistogramVec
	// EmbedRetries counts retried requests to an embedding service, by
	// embedder profile and reason (an HTTP status, "timeout" or "network").
	EmbedRetries *prometheus.CounterVec
	// EmbedSeconds and UpsertSeconds time the embed and store stages, by collection.
	EmbedSeconds, UpsertSeconds *HistogramVec
	// ConsumerPending is the number of messages waiting in the worker consumer.
	ConsumerPending prometheus.Gauge
	// BatchSize observes the number of messages of each batch the worker processes.
	BatchSize prometheus.Histogram
	// SearchRequests counts search, list and status requests by collection
	// and code.
	SearchRequests *CounterVec
	// SearchSeconds times search requests, by collection.
	SearchSeconds *HistogramVec

	registry    *prometheus.Registry
	collections *collectionLabels
}

// NewMetrics returns the metrics registered in a fresh registry that also
// carries the Go runtime and process collectors.
func NewMetrics() *Metrics {
	labels := &collectionLabels{}
	counter := func(opts prometheus.CounterOpts, more ...string) *CounterVec {
		return &CounterVec{vec: prometheus.NewCounterVec(opts, append([]string{"collection"}, more...)), labels: labels}
	}
	histogram := func(opts prometheus.HistogramOpts) *HistogramVec {
		return &HistogramVec{vec: prometheus.NewHistogramVec(opts, []string{"collection"}), labels: labels}
	}
	m := &Metrics{
		Events: counter(prometheus.CounterOpts{
			Name: "ragpipe_events_total",
			Help: "Ingest events by collection and outcome (acked, retried, dead_lettered).",
		}, "outcome"),
		ChunksEmbedded: counter(prometheus.CounterOpts{
			Name: "ragpipe_chunks_embedded_total",
			Help: "Texts sent to an embedder, by collection.",
		}),
		ChunksReused: counter(prometheus.CounterOpts{
			Name: "ragpipe_chunks_reused_total",
			Help: "Chunks that reused the stored vector of an unchanged chunk instead of being embedded, by collection.",
		}),
		EmbedBatchSize: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "ragpipe_embed_batch_size",
			Help:    "Texts per request to an embedding service, by embedder profile.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}, []string{"embedder"}),
		EmbedRetries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "ragpipe_embed_retries_total",
			Help: "Retried requests to an embedding service, by embedder profile and reason (HTTP status, timeout, network).",
		}, []string{"embedder", "reason"}),
		EmbedSeconds: histogram(prometheus.HistogramOpts{
			Name:    "ragpipe_embed_seconds",
			Help:    "Latency of one embedder call, by collection.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		UpsertSeconds: histogram(prometheus.HistogramOpts{
			Name:    "ragpipe_upsert_seconds",
			Help:    "Latency of one durable store write, by collection.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		BatchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "ragpipe_batch_size",
			Help:    "Messages per batch processed by the worker.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		ConsumerPending: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "ragpipe_consumer_pending",
			Help: "Messages waiting in the ragpipe-worker consumer.",
		}),
		SearchRequests: counter(prometheus.CounterOpts{
			Name: "ragpipe_search_requests_total",
			Help: "Search, list and status requests by collection and code (200, 400, 404, 503, 500).",
		}, "code"),
		SearchSeconds: histogram(prometheus.HistogramOpts{
			Name:    "ragpipe_search_seconds",
			Help:    "Latency of search requests, by collection.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		registry:    prometheus.NewRegistry(),
		collections: labels,
	}
	m.registry.MustRegister(m.Events.vec, m.ChunksEmbedded.vec, m.ChunksReused.vec, m.EmbedBatchSize, m.EmbedRetries,
		m.EmbedSeconds.vec, m.UpsertSeconds.vec,
		m.ConsumerPending, m.BatchSize, m.SearchRequests.vec, m.SearchSeconds.vec,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// Check reports whether a dependency is usable; a nil error means it is.
type Check func(ctx context.Context) error

// ServerConfig configures Serve.
type ServerConfig struct {
	Addr    string     // listen address, e.g. ":9090"
	Metrics *Metrics   // exported on /metrics
	Ready   *Readiness // what /readyz reports; nil: always ready
	Logger  zerolog.Logger
}

// Serve listens on cfg.Addr and serves /healthz (the process is alive),
// /readyz (200 when cfg.Ready passes; else 503 and a body naming what is
// not ready), /metrics and the Go profiles under /debug/pprof/ until ctx is
// done. It returns once the listener is bound, with the bound address, or
// with the error that prevented binding.
func Serve(ctx context.Context, cfg ServerConfig) (net.Addr, error) {
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("RAGPIPE_HTTP_ADDR=%s: %w", cfg.Addr, err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if failed := cfg.Ready.failures(ctx); len(failed) > 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte("not ready\n" + strings.Join(failed, "\n") + "\n"))
			return
		}
		_, _ = w.Write([]byte("ready\n"))
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(cfg.Metrics.registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			cfg.Logger.Error().Err(err).Msg("http server stopped")
		}
	}()
	go func() {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shutdownCtx)
	}()
	return ln.Addr(), nil
}
