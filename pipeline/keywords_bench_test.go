package pipeline_test

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// The varied keyword benchmarks cycle through many distinct texts, so that
// neither the branch predictor nor the caches learn one, as in a drain where
// every chunk is a new text.

// benchProseWords are the words of ragpipe bench's generated documents
// (bench/data.go).
var benchProseWords = strings.Fields(`instance volume bucket cluster region eu-west-1 us-east-1 prod staging
owner platform payments search tagged env tier web database replica backup snapshot encrypted
public private subnet gateway lambda queue topic retention policy cost center team alert latency
throughput migration schema index shard node memory disk cpu network firewall rule certificate
restore drill rotation quota budget invoice ticket incident runbook dashboard upgrade rollout`)

// benchProse returns n texts made as ragpipe bench makes its documents:
// sentences of 5 to 14 of its words until the text has 900 characters.
func benchProse(n int) []string {
	r := rand.New(rand.NewPCG(7, 11))
	texts := make([]string, n)
	for i := range texts {
		var sb strings.Builder
		for sb.Len() < 900 {
			if sb.Len() > 0 {
				sb.WriteByte(' ')
			}
			words := 5 + r.IntN(10)
			for w := range words {
				if w > 0 {
					sb.WriteByte(' ')
				}
				sb.WriteString(benchProseWords[r.IntN(len(benchProseWords))])
			}
			sb.WriteByte('.')
		}
		texts[i] = sb.String()
	}
	return texts
}

// corpusChunks returns the repository's corpora split into chunks of at
// most 980 characters, the shorter tails left out.
func corpusChunks(tb testing.TB) []string {
	c, err := pipeline.NewChunker(980, 98)
	if err != nil {
		tb.Fatal(err)
	}
	var chunks []string
	for _, text := range pipeline.CorpusTexts(tb) {
		for _, chunk := range c.Split(text) {
			if len(chunk) >= 700 {
				chunks = append(chunks, chunk)
			}
		}
	}
	return chunks
}

func BenchmarkKeywordsVaried(b *testing.B) {
	benchVariedTexts(b, func(text string) { pipeline.Keywords(text) })
}

// BenchmarkKeywordsScanFloor is the least a tokenizer that reads a text
// word by word does: it finds the runs of ASCII lowercase letters and
// digits and hashes each with FNV-1a, nothing more. Its time is the floor
// of Keywords as written.
func BenchmarkKeywordsScanFloor(b *testing.B) {
	var word [256]bool
	for c := range word {
		word[c] = 'a' <= c && c <= 'z' || '0' <= c && c <= '9'
	}
	var sum uint32
	benchVariedTexts(b, func(text string) {
		for i := 0; i < len(text); i++ {
			h := uint32(2166136261)
			for ; i < len(text) && word[text[i]]; i++ {
				h = (h ^ uint32(text[i])) * 16777619
			}
			sum += h
		}
	})
	if sum == 1 {
		b.Log(sum) // keeps the hashing
	}
}

// benchVariedTexts runs f on ragpipe bench's generated prose and on the
// corpora's chunks.
func benchVariedTexts(b *testing.B, f func(text string)) {
	prose, corpus := benchProse(2000), corpusChunks(b)
	for _, tt := range []struct {
		name  string
		texts []string
	}{
		{"bench_prose", prose},
		{"corpus", corpus},
	} {
		b.Run(tt.name, func(b *testing.B) { benchKeywordTexts(b, tt.texts, f) })
	}
}

// benchKeywordTexts runs f on texts in turn and reports the CPU time per
// text and per byte.
func benchKeywordTexts(b *testing.B, texts []string, f func(text string)) {
	size := 0
	for _, text := range texts {
		size += len(text)
	}
	b.SetBytes(int64(size / len(texts)))
	b.ReportAllocs()
	cpu, n, bytes := cputimetest.Now(b), 0, 0
	for b.Loop() {
		text := texts[n%len(texts)]
		f(text)
		bytes += len(text)
		n++
	}
	used := float64(cputimetest.Now(b) - cpu)
	b.ReportMetric(used/float64(b.N), "cpu-ns/op")
	b.ReportMetric(used/float64(bytes), "cpu-ns/B")
}
