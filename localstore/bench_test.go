package localstore_test

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
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

// benchVocabulary is the number of distinct words of the benchmark texts.
const benchVocabulary = 50_000

// benchWords returns n words drawn from a Zipf distribution over
// benchVocabulary words, as natural text has them: a few very common words,
// many rare ones.
func benchWords(z *rand.Zipf, n int) string {
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteByte(' ')
		}
		fmt.Fprintf(&sb, "w%d", z.Uint64())
	}
	return sb.String()
}

// benchTexts returns n chunk texts of 250 words each, about a full chunk.
func benchTexts(rng *rand.Rand, n int) []string {
	z := rand.NewZipf(rng, 1.1, 2, benchVocabulary-1)
	out := make([]string, n)
	for i := range out {
		out[i] = benchWords(z, 250)
	}
	return out
}

// benchIngest stores one document per vector in collection "bench", in
// batches of benchBatch, and returns how long that took. Chunks carry their
// keyword vectors, computed beforehand as the ingest stage computes them.
func benchIngest(b testing.TB, s *localstore.Store, vectors [][]float32, texts []string) time.Duration {
	b.Helper()
	if err := s.EnsureCollection(b.Context(), pipeline.Collection{Name: "bench", Dims: benchDims, Distance: pipeline.Cosine}, true); err != nil {
		b.Fatal(err)
	}
	keywords := make([]*pipeline.SparseVector, len(texts))
	for i, text := range texts {
		keywords[i] = pipeline.Keywords(text)
	}
	start := time.Now()
	for lo := 0; lo < len(vectors); lo += benchBatch {
		ws := make([]pipeline.DocWrite, 0, benchBatch)
		for i := lo; i < min(lo+benchBatch, len(vectors)); i++ {
			doc := fmt.Sprintf("doc-%06d", i)
			ws = append(ws, pipeline.DocWrite{UserID: "tenant", DocID: doc, Version: 1, Points: []pipeline.Point{{
				ID: pipeline.PointID("tenant", doc, 0), Vector: vectors[i], ChunkCount: 1,
				Text: texts[i], Keywords: keywords[i],
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
			rng := rand.New(rand.NewPCG(1, uint64(n)))
			vectors, texts := benchVectors(rng, n), benchTexts(rng, n)
			var took time.Duration
			docs := 0
			for b.Loop() {
				s := openEmbedded(b, b.TempDir(), nil)
				took += benchIngest(b, s, vectors, texts)
				docs += n
				s.Close()
			}
			b.ReportMetric(float64(docs)/took.Seconds(), "docs/s")
		})
	}
}

// BenchmarkEmbeddedSearch measures top-10 searches of one tenant holding all
// the points, in each mode: p50 and p99 latency of Search, unfiltered and
// with a metadata filter matching a tenth of the points. Keyword queries are
// four words drawn as the texts' words are, so common words with long
// posting lists come up as often as in real questions.
func BenchmarkEmbeddedSearch(b *testing.B) {
	for _, n := range benchSizes {
		rng := rand.New(rand.NewPCG(2, uint64(n)))
		vectors, texts := benchVectors(rng, n), benchTexts(rng, n)
		s := openEmbedded(b, b.TempDir(), nil)
		benchIngest(b, s, vectors, texts)
		queries := benchVectors(rng, 64)
		z := rand.NewZipf(rng, 1.1, 2, benchVocabulary-1)
		keywords := make([]*pipeline.SparseVector, len(queries))
		for i := range keywords {
			keywords[i] = pipeline.QueryKeywords(benchWords(z, 4))
		}
		for _, mode := range []pipeline.SearchMode{pipeline.ModeDense, pipeline.ModeKeyword, pipeline.ModeHybrid} {
			for _, filter := range []map[string][]any{nil, {"shard": {int64(3)}}} {
				name := fmt.Sprintf("points=%dK/mode=%s", n/1000, mode)
				if filter != nil {
					name += "/filter=10%"
				}
				b.Run(name, func(b *testing.B) {
					var lat []time.Duration
					for i := 0; b.Loop(); i++ {
						q := pipeline.Query{UserID: "tenant", Mode: mode, Vector: queries[i%len(queries)],
							Keywords: keywords[i%len(keywords)], TopK: 10, Filter: filter}
						start := time.Now()
						hits, err := s.Search(b.Context(), "bench", q)
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
		}
		s.Close()
	}
}

// BenchmarkEmbeddedOpen measures loading a compacted collection at Open,
// keyword index included: seconds per open.
func BenchmarkEmbeddedOpen(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("points=%dK", n/1000), func(b *testing.B) {
			rng := rand.New(rand.NewPCG(3, uint64(n)))
			dir := b.TempDir()
			s := openEmbedded(b, dir, nil)
			benchIngest(b, s, benchVectors(rng, n), benchTexts(rng, n))
			if err := s.Compact(b.Context(), "bench"); err != nil {
				b.Fatal(err)
			}
			s.Close()
			for b.Loop() {
				s, err := localstore.Open(b.Context(), localstore.Config{Dir: dir})
				if err != nil {
					b.Fatal(err)
				}
				s.Close()
			}
		})
	}
}
