package builtin

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
)

// chunk2000 returns a 2,000-character chunk of English prose, different for
// each i so that no cache helps.
func chunk2000(i int) string {
	const p = "The ingestion worker pulls events from the JetStream consumer, decodes each one, " +
		"splits the text into overlapping chunks and embeds them before the points are written " +
		"to Qdrant with their tenant, document id and version. When the embedding service is " +
		"slow, messages stay unacknowledged and are redelivered after the ack wait expires. "
	s := strings.Repeat(p, 7)
	i %= len(p)
	return (s[i:] + s[:i])[:2000]
}

// BenchmarkEmbedChunk embeds 2,000-character chunks on one goroutine and
// reports chunks/s and chunks per CPU second (the figure that holds on a
// shared machine), reading the first window of 128 pieces (the default) or
// the whole chunk (5 windows).
func BenchmarkEmbedChunk(b *testing.B) {
	m := mustModel(b)
	s := newScratch()
	out := make([]float32, modelDims)
	texts := make([]string, 64)
	for i := range texts {
		texts[i] = chunk2000(i)
	}
	for _, windows := range []int{1, 5} {
		b.Run(fmt.Sprintf("windows=%d", windows), func(b *testing.B) {
			cpu := cputimetest.Now(b)
			for i := 0; b.Loop(); i++ {
				m.embed(s, texts[i%len(texts)], out, windows)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "chunks/s")
			b.ReportMetric(float64(b.N)/(cputimetest.Now(b)-cpu).Seconds(), "chunks/cpu-s")
		})
	}
}

// BenchmarkEmbedParallel embeds batches of 2,000-character chunks through
// Embed, on GOMAXPROCS cores, and reports chunks/s in all and per CPU
// second.
func BenchmarkEmbedParallel(b *testing.B) {
	e, err := New(Config{})
	if err != nil {
		b.Fatal(err)
	}
	texts := make([]string, 32)
	for i := range texts {
		texts[i] = chunk2000(i)
	}
	b.ResetTimer()
	cpu := cputimetest.Now(b)
	for b.Loop() {
		if _, err := e.Embed(context.Background(), texts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(texts))/b.Elapsed().Seconds(), "chunks/s")
	b.ReportMetric(float64(b.N*len(texts))/(cputimetest.Now(b)-cpu).Seconds(), "chunks/cpu-s")
}

// BenchmarkEmbedQuery embeds one short question through Embed, as a search
// does.
func BenchmarkEmbedQuery(b *testing.B) {
	e, err := New(Config{Dimensions: 1024})
	if err != nil {
		b.Fatal(err)
	}
	q := []string{"who talked about being short on money for the cloud bill"}
	for b.Loop() {
		if _, err := e.Embed(context.Background(), q); err != nil {
			b.Fatal(err)
		}
	}
}
