package telemetry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/telemetry"
)

// serve serves m and ready on a free port until the test ends and returns
// a getter of its paths: status code and body.
func serve(t *testing.T, m *telemetry.Metrics, ready *telemetry.Readiness) func(path string) (int, string) {
	t.Helper()
	addr, err := telemetry.Serve(t.Context(), telemetry.ServerConfig{Addr: "127.0.0.1:0", Metrics: m, Ready: ready})
	if err != nil {
		t.Fatal(err)
	}
	return func(path string) (int, string) {
		t.Helper()
		resp, err := http.Get("http://" + addr.String() + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode, string(body)
	}
}

// TestCollectionLabelsBounded: events and searches of 1,000 collections
// nobody created leave the configured collections, those admitted up to the
// bound and one shared value in /metrics.
func TestCollectionLabelsBounded(t *testing.T) {
	m := telemetry.NewMetrics()
	m.LimitCollections([]string{"docs"}, 2)
	get := serve(t, m, nil)
	for _, c := range []string{"created-1", "created-2", "created-3"} { // the stage writes to them
		m.ObserveStore(c, time.Millisecond, nil)
	}
	for i := range 1000 {
		c := fmt.Sprint("unknown-", i)
		m.Events.WithLabelValues(c, telemetry.DeadLettered).Inc()
		m.SearchRequests.WithLabelValues(c, "404").Inc()
		m.SearchSeconds.WithLabelValues(c).Observe(0.001)
	}
	m.Events.WithLabelValues("docs", telemetry.Acked).Inc()
	m.Events.WithLabelValues("created-2", telemetry.Acked).Inc()
	m.Events.WithLabelValues("created-3", telemetry.Acked).Inc()
	_, body := get("/metrics")
	for _, want := range []string{
		`ragpipe_events_total{collection="_other",outcome="dead_lettered"} 1000`,
		`ragpipe_events_total{collection="_other",outcome="acked"} 1`, // created-3: beyond the bound
		`ragpipe_events_total{collection="docs",outcome="acked"} 1`,
		`ragpipe_events_total{collection="created-2",outcome="acked"} 1`,
		`ragpipe_search_requests_total{code="404",collection="_other"} 1000`,
		`ragpipe_search_seconds_count{collection="_other"} 1000`,
		`ragpipe_upsert_seconds_count{collection="created-1"} 1`,
		`ragpipe_upsert_seconds_count{collection="_other"} 1`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(body, "\nragpipe_events_total{"); n != 4 {
		t.Errorf("%d ragpipe_events_total series, want 4 (docs, created-2, _other twice)", n)
	}
	if strings.Contains(body, "unknown-") {
		t.Error("/metrics names a collection beyond the bound")
	}

	// Unbounded until LimitCollections is called.
	free := telemetry.NewMetrics()
	free.Events.WithLabelValues("any", telemetry.Acked).Inc()
	if _, body := serve(t, free, nil)("/metrics"); !strings.Contains(body, `collection="any"`) {
		t.Error("an unbounded Metrics does not label collection any")
	}
}

// TestReadiness checks /healthz and /readyz while a process starts (the
// step it waits for) and once it has started (its checks).
func TestReadiness(t *testing.T) {
	ready := telemetry.NewReadiness("starting")
	get := serve(t, telemetry.NewMetrics(), ready)
	check := func(code int, want string) {
		t.Helper()
		if got, body := get("/readyz"); got != code || !strings.Contains(body, want) {
			t.Errorf("/readyz: %d %q, want %d with %q", got, body, code, want)
		}
		if got, _ := get("/healthz"); got != 200 {
			t.Errorf("/healthz: %d while /readyz is %d", got, code)
		}
	}
	check(503, "starting: starting")
	ready.Step("connecting to Qdrant at http://127.0.0.1:6334")
	check(503, "not ready\nstarting: connecting to Qdrant at http://127.0.0.1:6334\n")
	down := errors.New("connection refused")
	ready.Started(map[string]telemetry.Check{
		"nats":   func(context.Context) error { return nil },
		"qdrant": func(context.Context) error { return down },
	})
	check(503, "not ready\nqdrant: connection refused\n")
	down = nil
	ready.Started(map[string]telemetry.Check{"qdrant": func(context.Context) error { return down }})
	check(200, "ready")
}
