package localstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Benchmark shape: 1024-dim vectors, one tenant holding every
// point (the worst case for a tenant-scoped search), one point per document.
const (
	benchDims  = 1024
	benchBatch = 100 // documents per Apply, as a worker batch
)

var benchSizes = []int{10_000, 100_000}

// benchVectors returns n random unit-length vectors.
func benchVectors(rng *rand.Rand, n int) [][]float32 {
	out := make([][]float32, n)
	for i := range out {
		v := make([]float32, benchDims)
		for j := range v {
			v[j] = float32(rng.NormFloat64())
		}
		out[i] = v
	}
	return out
}

// benchIngest stores one document per vector in collection "bench", in
// batches of benchBatch, and returns how long that took.
func benchIngest(b *testing.B, s *localstore.Store, vectors [][]float32) time.Duration {
	b.Helper()
	if err := s.EnsureCollection(b.Context(), pipeline.Collection{Name: "bench", Dims: benchDims, Distance: pipeline.Cosine}, true); err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	for lo := 0; lo < len(vectors); lo += benchBatch {
		ws := make([]pipeline.DocWrite, 0, benchBatch)
		for i := lo; i < min(lo+benchBatch, len(vectors)); i++ {
			doc := fmt.Sprintf("doc-%06d", i)
			ws = append(ws, pipeline.DocWrite{UserID: "tenant", DocID: doc, Version: 1, Points: []pipeline.Point{{
				ID: pipeline.PointID("tenant", doc, 0), Vector: vectors[i], ChunkCount: 1,
				Text:     fmt.Sprintf("document %d, a sentence or two of text as a chunk would carry", i),
				Metadata: map[string]any{"shard": int64(i % 10), "kind": "bench"},
			}}})
		}
		if err := s.Apply(b.Context(), "bench", ws); err != nil {
			b.Fatal(err)
		}
	}
	return time.Since(start)
}

// BenchmarkEmbeddedIngest measures durable ingestion (one fsync per Apply of
// 100 one-point documents): docs/s.
func BenchmarkEmbeddedIngest(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("points=%dK", n/1000), func(b *testing.B) {
			vectors := benchVectors(rand.New(rand.NewPCG(1, uint64(n))), n)
			var took time.Duration
			docs := 0
			for b.Loop() {
				s := openEmbedded(b, b.TempDir(), nil)
				took += benchIngest(b, s, vectors)
				docs += n
				s.Close()
			}
			b.ReportMetric(float64(docs)/took.Seconds(), "docs/s")
		})
	}
}

// BenchmarkEmbeddedSearch measures top-10 searches of one tenant holding all
// the points: p50 and p99 latency of Search, unfiltered and with a metadata
// filter matching a tenth of the points.
func BenchmarkEmbeddedSearch(b *testing.B) {
	for _, n := range benchSizes {
		rng := rand.New(rand.NewPCG(2, uint64(n)))
		vectors := benchVectors(rng, n)
		s := openEmbedded(b, b.TempDir(), nil)
		benchIngest(b, s, vectors)
		queries := benchVectors(rng, 64)
		for _, filter := range []map[string][]any{nil, {"shard": {int64(3)}}} {
			name := fmt.Sprintf("points=%dK", n/1000)
			if filter != nil {
				name += "/filter=10%"
			}
			b.Run(name, func(b *testing.B) {
				var lat []time.Duration
				for i := 0; b.Loop(); i++ {
					start := time.Now()
					hits, err := s.Search(b.Context(), "bench", pipeline.Query{
						UserID: "tenant", Vector: queries[i%len(queries)], TopK: 10, Filter: filter,
					})
					lat = append(lat, time.Since(start))
					if err != nil || len(hits) != 10 {
						b.Fatalf("%d hits, %v", len(hits), err)
					}
				}
				slices.Sort(lat)
				ms := func(q float64) float64 { return float64(lat[int(q*float64(len(lat)-1))]) / float64(time.Millisecond) }
				b.ReportMetric(ms(0.50), "p50-ms")
				b.ReportMetric(ms(0.99), "p99-ms")
			})
		}
		s.Close()
	}
}
