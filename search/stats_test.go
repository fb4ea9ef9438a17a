package search_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/telemetry"
)

// slowIndex is the store behind the service with every search delayed by
// delay, then held while the test holds hold; searches of collection
// "flaky" then fail as an unreachable store does (a transient error: 503).
type slowIndex struct {
	search.Index
	delay time.Duration
	hold  *sync.RWMutex
}

func (x slowIndex) Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error) {
	select {
	case <-time.After(x.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	x.hold.RLock() // waits while the test holds it
	x.hold.RUnlock()
	if collection == "flaky" {
		return nil, errors.New("qdrant: connection refused")
	}
	return x.Index.Search(ctx, collection, q)
}

// countingEmbedder counts the calls to an embedder.
type countingEmbedder struct {
	search.Embedder
	calls atomic.Int64
}

func (c *countingEmbedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	c.calls.Add(1)
	return c.Embedder.Embed(ctx, texts)
}

// searchStats returns the $SRV.STATS numbers of the search endpoint.
func searchStats(t *testing.T, f *fixture) *micro.EndpointStats {
	t.Helper()
	var stats micro.Stats
	discover(t, f.nc, "$SRV.STATS.ragpipe-search", &stats)
	for _, e := range stats.Endpoints {
		if e.Name == "search" {
			return e
		}
	}
	t.Fatalf("no search endpoint in %+v", stats)
	return nil
}

// TestSearchServiceStats checks what `nats micro stats` reads: after a 404,
// a 503 and a success, the search endpoint counts 3 requests and 2 errors,
// and its processing time covers the store's work, however many handlers
// run at once.
func TestSearchServiceStats(t *testing.T) {
	const delay = 300 * time.Millisecond
	var hold sync.RWMutex
	f := newFixture(t, func(c *search.Config) {
		c.Index = slowIndex{Index: c.Index, delay: delay, hold: &hold}
		c.Concurrency = 4
	})
	vector := `{"vector":[` + strings.TrimSuffix(strings.Repeat("0.5,", dims), ",") + `]}`
	for _, r := range []struct {
		subject, body string
		code          int
	}{
		{"rag.search.alice.nope", `{"query":"fox"}`, 404},
		{"rag.search.alice.flaky", vector, 503},
		{"rag.search.alice.docs", `{"query":"fox"}`, 200},
	} {
		if code, msg, _ := f.request(t, r.subject, r.body); code != r.code {
			t.Fatalf("%s: %d %s, want %d", r.subject, code, msg, r.code)
		}
	}
	e := searchStats(t, f)
	if e.NumRequests != 3 || e.NumErrors != 2 || !strings.HasPrefix(e.LastError, "503:") {
		t.Errorf("stats %+v, want 3 requests, 2 errors, the last a 503", e)
	}
	if e.ProcessingTime < 2*delay || e.AverageProcessingTime < 2*delay/3 {
		t.Errorf("processing time %s (average %s), want at least the two searches' %s", e.ProcessingTime, e.AverageProcessingTime, 2*delay)
	}

	// Four slow searches at once: the four handlers hold them together
	// (the index keeps them until all four are in flight), and each one's
	// time is counted.
	start := time.Now()
	hold.Lock()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if code, msg, _ := f.request(t, "rag.search.alice.docs", `{"query":"fox"}`); code != 200 {
				t.Errorf("search: %d %s", code, msg)
			}
		})
	}
	checkfor.Until(t, 10*time.Second, "4 searches in flight", func() error {
		var data struct {
			InFlight int `json:"in_flight"`
		}
		if err := json.Unmarshal(searchStats(t, f).Data, &data); err != nil || data.InFlight != 4 {
			return fmt.Errorf("in flight: %d, %v", data.InFlight, err)
		}
		return nil
	})
	hold.Unlock()
	wg.Wait()
	took := time.Since(start)
	after := searchStats(t, f)
	if after.NumRequests != 7 || after.NumErrors != 2 || after.ProcessingTime-e.ProcessingTime < 4*delay {
		t.Errorf("after 4 more searches: %+v, want 7 requests, 2 errors, %s more processing time", after, 4*delay)
	}
	t.Logf("4 searches of %s on 4 handlers answered in %s; $SRV.STATS: %d requests, %d errors, processing time %s (average %s)",
		delay, took, after.NumRequests, after.NumErrors, after.ProcessingTime, after.AverageProcessingTime)
}

// TestSearchServiceUnknownCollection checks that a search of a collection
// that does not exist is answered 404 without embedding the query (a paid
// call with a remote embedder), and that the collection label of the
// metrics stays bounded whatever collections tenants name.
func TestSearchServiceUnknownCollection(t *testing.T) {
	metrics := telemetry.NewMetrics()
	metrics.LimitCollections([]string{"docs"}, 2)
	var emb *countingEmbedder
	f := newFixture(t, func(c *search.Config) {
		emb = &countingEmbedder{Embedder: c.Embedder("docs")}
		c.Embedder = func(string) search.Embedder { return emb }
		c.Metrics = metrics
	})
	if code, _, _ := f.request(t, "rag.search.alice.nope", `{"query":"fox"}`); code != 404 || emb.calls.Load() != 0 {
		t.Errorf("search of a missing collection: %d after %d embedder calls, want 404 after none", code, emb.calls.Load())
	}
	for range 2 {
		if code, _, _ := f.request(t, "rag.search.alice.docs", `{"query":"fox"}`); code != 200 {
			t.Errorf("search: %d", code)
		}
	}
	if n := emb.calls.Load(); n != 2 {
		t.Errorf("%d embedder calls for 2 searches, want 2", n)
	}

	// 1,000 collections nobody created, searched, listed and asked about.
	const n = 1000
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := w; i < n; i += 8 {
				subject := fmt.Sprintf("rag.%s.alice.unknown-%d", []string{"search", "list", "status"}[i%3], i)
				if code, msg, _ := f.request(t, subject, `{"query":"fox","doc_ids":["a"]}`); code != 404 {
					t.Errorf("%s: %d %s, want 404", subject, code, msg)
				}
			}
		})
	}
	wg.Wait()
	if calls := emb.calls.Load(); calls != 2 {
		t.Errorf("%d embedder calls after searches of missing collections, want still 2", calls)
	}
	values := labelValues(t, metrics, "ragpipe_search_requests_total")
	t.Logf("after requests naming %d missing collections: %d embedder calls, collection label values %v", n, emb.calls.Load(), values)
	if len(values) > 3 || !values["docs"] || !values[telemetry.OtherCollection] {
		t.Errorf("ragpipe_search_requests_total has collection label values %v, want docs and %s", values, telemetry.OtherCollection)
	}
}

var collectionLabel = regexp.MustCompile(`collection="([^"]*)"`)

// labelValues serves metrics over HTTP and returns the values of the
// collection label of metric.
func labelValues(t *testing.T, m *telemetry.Metrics, metric string) map[string]bool {
	t.Helper()
	addr, err := telemetry.Serve(t.Context(), telemetry.ServerConfig{Addr: "127.0.0.1:0", Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + addr.String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]bool{}
	for line := range strings.SplitSeq(string(body), "\n") {
		if strings.HasPrefix(line, metric+"{") {
			values[collectionLabel.FindStringSubmatch(line)[1]] = true
		}
	}
	return values
}
