package pipeline_test

import (
	"hash/fnv"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// TestKeywordsWith checks that the term-id function replaces FNV-1a for
// every term, compound wholes included, and changes nothing else.
func TestKeywordsWith(t *testing.T) {
	fnv32 := func(b []byte) uint32 {
		h := fnv.New32a()
		h.Write(b)
		return h.Sum32()
	}
	var seen []string
	other := func(b []byte) uint32 {
		seen = append(seen, string(b))
		return fnv32(b) ^ 0x5bd1e995
	}
	const text = "The consumer's maxAckPending bounds queries; see /etc/nats/nats.conf, qdrant QDRANT"
	plain, keyed := pipeline.Keywords(text), pipeline.KeywordsWith(text, other)
	if got := pipeline.KeywordsWith(text, fnv32); !slices.Equal(got.Indices, plain.Indices) || !slices.Equal(got.Values, plain.Values) {
		t.Fatalf("KeywordsWith(FNV-1a) = %v, Keywords = %v", got, plain)
	}
	for _, term := range []string{"maxackpending", "query", "etcnatsnatsconf", "qdrant", "consumer"} {
		if !slices.Contains(seen, term) {
			t.Errorf("term %q not given to the term-id function (got %q)", term, seen)
		}
	}
	if len(keyed.Indices) != len(plain.Indices) {
		t.Fatalf("keyed vector has %d terms, plain %d", len(keyed.Indices), len(plain.Indices))
	}
	for _, id := range keyed.Indices {
		if _, found := slices.BinarySearch(plain.Indices, id); found {
			t.Fatalf("keyed index %d is also a plain one", id)
		}
	}
	if !slices.IsSorted(keyed.Indices) {
		t.Fatalf("keyed indices %v are not sorted", keyed.Indices)
	}
	q := pipeline.QueryKeywordsWith("qdrant consumers", other)
	for _, id := range q.Indices {
		if _, found := slices.BinarySearch(keyed.Indices, id); !found {
			t.Fatalf("query index %d not among the chunk's keyed indices %v", id, keyed.Indices)
		}
	}
	if got := pipeline.QueryKeywordsWith("qdrant consumers", fnv32); !slices.Equal(got.Indices, pipeline.QueryKeywords("qdrant consumers").Indices) {
		t.Fatalf("QueryKeywordsWith(FNV-1a) = %v", got)
	}
	// The pool's tokenizers forget the function.
	if got := pipeline.Keywords(text); !slices.Equal(got.Indices, plain.Indices) {
		t.Fatalf("Keywords after KeywordsWith = %v, want %v", got, plain)
	}
}

func BenchmarkKeywordsWith(b *testing.B) {
	termID := func(b []byte) uint32 { // the cost of a keyed 64-bit hash, roughly
		h := uint64(0x9e3779b97f4a7c15)
		for _, c := range b {
			h = (h ^ uint64(c)) * 0x100000001b3
		}
		return uint32(h)
	}
	b.SetBytes(int64(len(keywordText)))
	b.ReportAllocs()
	for b.Loop() {
		pipeline.KeywordsWith(keywordText, termID)
	}
}
