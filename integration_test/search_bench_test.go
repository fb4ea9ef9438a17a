package integration_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// BenchmarkSearch compares, on the same data, query vectors and tenant
// filter, the latency of a search through rag.search (a `ragpipe searcher`
// process: NATS round trip, JSON, embedding the query text, Qdrant Query)
// with the latency of the raw Qdrant Query call alone, at concurrency 1 and
// 8, and prints p50 and p99 of each. Data: 10,000 one-chunk documents of
// five tenants (2,000 each), 1024 dimensions, per-tenant HNSW; top_k 10.
// Run it without the race detector:
//
//	go test -run XXX -bench Search -benchtime 3000x ./integration_test
func BenchmarkSearch(b *testing.B) {
	const (
		dims    = 1024
		perUser = 2000
		queries = 500
	)
	s := newSystem(b, fmt.Sprintf("RAGPIPE_COLLECTIONS=docs:%d:cosine", dims))
	emb, err := embedder.NewHash(dims)
	if err != nil {
		b.Fatal(err)
	}
	store, err := qdrantstore.New(b.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: s.qdrant.GRPCPort()})
	if err != nil {
		b.Fatal(err)
	}
	defer store.Close()
	if err := store.EnsureCollection(b.Context(), pipeline.Collection{Name: "docs", Dims: dims}, true); err != nil {
		b.Fatal(err)
	}
	r := rand.New(rand.NewPCG(21, 22))
	var texts []string
	for _, user := range users {
		writes := make([]pipeline.DocWrite, perUser)
		batch := make([]string, perUser)
		for i := range batch {
			batch[i] = text(r, 300)
		}
		vectors, err := emb.Embed(b.Context(), batch)
		if err != nil {
			b.Fatal(err)
		}
		for i := range writes {
			doc := fmt.Sprint("doc-", i)
			writes[i] = pipeline.DocWrite{UserID: user, DocID: doc, Version: 1, Points: []pipeline.Point{{
				ID: pipeline.PointID(user, doc, 0), Vector: vectors[i], ChunkCount: 1, Text: batch[i],
				Metadata: map[string]any{"n": int64(i % 10)},
			}}}
		}
		if err := store.Apply(b.Context(), "docs", writes); err != nil {
			b.Fatal(err)
		}
		if user == users[0] {
			texts = batch
		}
	}
	// Queries: a sentence of alice's documents, as text for rag.search and
	// embedded for the raw call.
	bodies := make([][]byte, queries)
	raws := make([]*qdrant.QueryPoints, queries)
	for i := range queries {
		q := texts[r.IntN(len(texts))][:80]
		bodies[i], _ = json.Marshal(map[string]any{"query": q, "top_k": 10})
		v, err := emb.Embed(b.Context(), []string{q})
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = &qdrant.QueryPoints{
			CollectionName: "docs",
			Query:          qdrant.NewQueryDense(v[0]),
			Filter:         &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("user_id", "alice")}},
			Limit:          qdrant.PtrOf(uint64(10)),
			WithPayload:    qdrant.NewWithPayloadInclude("user_id", "doc_id", "chunk_index", "text", "metadata", "version"),
		}
	}
	s.startSearcher("searcher", nil)
	nc := natstest.Connect(b, s.nats)
	paths := map[string]func(i int) error{
		"rag.search": func(i int) error {
			msg, err := nc.Request("rag.search.alice.docs", bodies[i%queries], 10*time.Second)
			if err == nil && msg.Header.Get("Nats-Service-Error-Code") != "" {
				err = fmt.Errorf("error reply: %s", msg.Data)
			}
			return err
		},
		"qdrant": func(i int) error {
			_, err := s.qc.Query(b.Context(), raws[i%queries])
			return err
		},
	}
	for _, path := range []string{"rag.search", "qdrant"} { // warm up connections and caches
		if _, err := measure(paths[path], 200, 4); err != nil {
			b.Fatal(err)
		}
	}

	type row struct {
		path     string
		conc     int
		p50, p99 time.Duration
		n        int
	}
	var names []string
	rows := map[string]row{} // by sub-benchmark, the last (largest) run
	for _, conc := range []int{1, 8} {
		for _, path := range []string{"rag.search", "qdrant"} {
			name := fmt.Sprintf("%s/c%d", path, conc)
			names = append(names, name)
			b.Run(name, func(b *testing.B) {
				lat, err := measure(paths[path], b.N, conc)
				if err != nil {
					b.Fatal(err)
				}
				p50, p99 := lat[len(lat)/2], lat[min(len(lat)-1, len(lat)*99/100)]
				b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
				b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
				rows[name] = row{path, conc, p50, p99, b.N}
			})
		}
	}
	fmt.Fprintf(os.Stdout, "\nsearch latency, tenant filter, top_k 10, %d points (%d of the tenant), %d dims\n", perUser*len(users), perUser, dims)
	fmt.Fprintf(os.Stdout, "%-12s %5s %8s %10s %10s\n", "path", "conc", "requests", "p50", "p99")
	for _, name := range names {
		r := rows[name]
		fmt.Fprintf(os.Stdout, "%-12s %5d %8d %10s %10s\n", r.path, r.conc, r.n, r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond))
	}
}

// measure runs call n times over conc goroutines and returns the sorted
// latencies.
func measure(call func(i int) error, n, conc int) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	errs := make(chan error, conc)
	var wg sync.WaitGroup
	for g := range conc {
		wg.Go(func() {
			for i := g; i < n; i += conc {
				start := time.Now()
				if err := call(i); err != nil {
					errs <- err
					return
				}
				lat[i] = time.Since(start)
			}
		})
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return nil, err
	}
	slices.Sort(lat)
	return lat, nil
}
