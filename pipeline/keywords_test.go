package pipeline_test

import (
	"hash/fnv"
	"slices"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestQueryKeywordsTerms checks the terms of a text against the same terms
// written out as plain lowercase words, which are terms as they are.
func TestQueryKeywordsTerms(t *testing.T) {
	tests := []struct{ text, terms string }{
		{"Hello, World!", "hello world"},
		{"maxAckPending", "max ack pending maxackpending"},
		{"max_ack_pending", "max ack pending maxackpending"},
		{"max-ack-pending", "max ack pending maxackpending"},
		{"nats.Conn", "nat conn natsconn"},
		{"/etc/nats/nats.conf", "etc nat conf etcnatsnatsconf"},
		{`C:\Users\bob`, "c user bob cusersbob"},
		{"HTTPServer", "http server httpserver"},
		{"base64Encode", "base64 encode base64encode"},
		{"eu-west-1", "eu west 1 euwest1"},
		{"the cat is on the mat", "cat mat"},
		{"queries caches files status process toes", "query cache file status process toes"},
		{"isReady", "ready isready"},
		{"don't", "don dont"},
		{"-- leading and trailing. --", "leading trailing"},
		{"Straße ÉCOLE naïve", "straße école naïve"},
		{"检索增强", "检 索 增 强"},
		{"  \t\n", ""},
		{"the of and", ""},
		{strings.Repeat("x", 65) + " kept", "kept"},
		{strings.Repeat("ab_", 40) + "cd", "ab cd"},
	}
	for _, tt := range tests {
		t.Run(tt.text, func(t *testing.T) {
			got := pipeline.QueryKeywords(tt.text)
			want := termVector(tt.terms)
			if want == nil {
				if got != nil {
					t.Fatalf("got %v, want nil", got)
				}
				return
			}
			if got == nil || !slices.Equal(got.Indices, want.Indices) || !slices.Equal(got.Values, want.Values) {
				t.Fatalf("got %v, want the terms %q: %v", got, tt.terms, want)
			}
		})
	}
}

// termVector is the query vector of space-separated terms, built
// independently of the tokenizer: FNV-1a 32 of each term, weight 1.
func termVector(terms string) *pipeline.SparseVector {
	var ids []uint32
	for _, term := range strings.Fields(terms) {
		h := fnv.New32a()
		h.Write([]byte(term))
		ids = append(ids, h.Sum32())
	}
	if len(ids) == 0 {
		return nil
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	v := &pipeline.SparseVector{Indices: ids, Values: make([]float32, len(ids))}
	for i := range v.Values {
		v.Values[i] = 1
	}
	return v
}

func TestKeywordsWeights(t *testing.T) {
	if v := pipeline.Keywords("the of and"); v != nil {
		t.Fatalf("stop words alone: got %v, want nil", v)
	}
	v := pipeline.Keywords("Qdrant stores vectors; qdrant finds vectors. Qdrant!")
	q := pipeline.QueryKeywords("qdrant store vector find")
	if !slices.Equal(v.Indices, q.Indices) || len(v.Values) != len(v.Indices) {
		t.Fatalf("indices %v, want the query's %v", v.Indices, q.Indices)
	}
	if !slices.IsSorted(v.Indices) || len(slices.Compact(slices.Clone(v.Indices))) != len(v.Indices) {
		t.Fatalf("indices %v are not strictly ascending", v.Indices)
	}
	weight := func(term string) float32 {
		id := pipeline.QueryKeywords(term).Indices[0]
		i, _ := slices.BinarySearch(v.Indices, id)
		return v.Values[i]
	}
	// BM25 saturates: three occurrences weigh more than one but less than
	// three times as much, and no weight reaches k1+1.
	one, two, three := weight("store"), weight("vector"), weight("qdrant")
	if !(0 < one && one < two && two < three && three < 3*one && three < 2.2) {
		t.Fatalf("weights of tf 1, 2, 3: %v %v %v", one, two, three)
	}
	// A term in a long text weighs less than in a short one.
	long := pipeline.Keywords("qdrant " + strings.Repeat("filler words here ", 100))
	id := pipeline.QueryKeywords("qdrant").Indices[0]
	i, _ := slices.BinarySearch(long.Indices, id)
	if long.Values[i] >= one {
		t.Fatalf("tf 1 in a long text weighs %v, in a short one %v", long.Values[i], one)
	}
}

// keywordText is about 900 characters of technical prose with identifiers,
// the size of a typical document the worker embeds.
var keywordText = strings.Repeat("The consumer's maxAckPending bounds unacknowledged messages; "+
	"see /etc/nats/nats.conf and nats.Conn for max_ack_pending. ", 8)[:900]

func BenchmarkKeywords(b *testing.B) {
	for _, tt := range []struct{ name, text string }{
		{"prose", inventoryText},
		{"identifiers", keywordText},
	} {
		b.Run(tt.name, func(b *testing.B) {
			b.SetBytes(int64(len(tt.text)))
			b.ReportAllocs()
			done := cputimetest.Per(b, 1, "cpu-ns/op")
			for b.Loop() {
				pipeline.Keywords(tt.text)
			}
			done()
		})
	}
}
