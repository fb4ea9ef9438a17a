package qdrantstore_test

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// keywordDims is the dimensions of the hash embeddings of these tests.
const keywordDims = 64

// keywordDocs are single-chunk documents. The runbook names the instance
// i-0abc123def once in a long text; the short notes name instances whose
// ids differ from it by a character or two, so that the hash embedder's
// character trigrams rank them above the runbook for a query of the id,
// while only the runbook holds its terms. The zoo holds terms no other
// document has.
var keywordDocs = []struct{ id, text, env string }{
	{"runbook", "The nightly export runs on instance i-0abc123def in eu-west-1. It reads the orders " +
		"database replica, writes compressed parquet files to the analytics bucket and exits; " +
		"when it fails, the on-call engineer restarts it from the console and checks the logs.", "prod"},
	{"note-1", "i-0abc123dee is stopped", "dev"},
	{"note-2", "i-0abc123deg runs nginx", "dev"},
	{"note-3", "instance i-0abc123df0 retired", "dev"},
	{"zoo", "zebra quagga okapi", "dev"},
}

// storeKeywordDocs writes keywordDocs for user into coll, with hash
// embeddings, keyword vectors and text hashes, and returns the points.
func storeKeywordDocs(t *testing.T, s *qdrantstore.Store, coll, user string) []pipeline.Point {
	t.Helper()
	var ws []pipeline.DocWrite
	var points []pipeline.Point
	for _, d := range keywordDocs {
		text := user + ": " + d.text
		p := pipeline.Point{
			ID: pipeline.PointID(user, d.id, 0), Vector: embed(t, text), UserID: user, DocID: d.id,
			ChunkCount: 1, Text: text, Metadata: map[string]any{"env": d.env}, Version: 1,
			TextHash: "hash-" + user + "-" + d.id, Keywords: pipeline.Keywords(text),
		}
		points = append(points, p)
		ws = append(ws, pipeline.DocWrite{UserID: user, DocID: d.id, Version: 1, Points: []pipeline.Point{p}})
	}
	storetest.Apply(t, s, coll, ws...)
	return points
}

// embed returns the hash embedding of text.
func embed(t *testing.T, text string) []float32 {
	t.Helper()
	h, err := embedder.NewHash(keywordDims)
	if err != nil {
		t.Fatal(err)
	}
	v, err := h.Embed(t.Context(), []string{text})
	if err != nil {
		t.Fatal(err)
	}
	return v[0]
}

// textQuery is the query of text in mode, as the search service builds it.
func textQuery(t *testing.T, user, text string, mode pipeline.SearchMode) pipeline.Query {
	return pipeline.Query{UserID: user, Vector: embed(t, text), Keywords: pipeline.QueryKeywords(text), Mode: mode, TopK: 10}
}

func search(t *testing.T, s *qdrantstore.Store, coll string, q pipeline.Query) []pipeline.Hit {
	t.Helper()
	hits, err := s.Search(t.Context(), coll, q)
	if err != nil {
		t.Fatalf("Search(%s, %q): %v", q.Mode, q.UserID, err)
	}
	return hits
}

// TestKeywordsQdrant checks keyword vectors against a real Qdrant node:
// collections ragpipe creates have them, points keep them, keyword search
// finds an exact identifier the hash embedder misses, hybrid search fuses
// both in one query with the contract's reciprocal rank, the threshold and
// filter apply in every mode, and no mode crosses tenants.
func TestKeywordsQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "kw", Dims: keywordDims}, true); err != nil {
		t.Fatal(err)
	}
	written := storeKeywordDocs(t, s, "kw", "alice")
	storeKeywordDocs(t, s, "kw", "bob")

	t.Run("collection has keyword vectors", func(t *testing.T) {
		colls, err := s.Collections(t.Context())
		if err != nil || len(colls) != 1 || !colls[0].Keywords {
			t.Fatalf("collections %+v (%v), want kw with keyword vectors", colls, err)
		}
	})

	t.Run("keyword vectors read back", func(t *testing.T) {
		points, _, err := s.Scroll(t.Context(), "kw", "", 100)
		if err != nil || len(points) != 2*len(keywordDocs) {
			t.Fatalf("scroll: %d points, %v", len(points), err)
		}
		for _, p := range points {
			want := pipeline.Keywords(p.Text)
			if p.Keywords == nil || !slices.Equal(p.Keywords.Indices, want.Indices) || !slices.Equal(p.Keywords.Values, want.Values) {
				t.Errorf("%s/%s: keywords %v, want %v", p.UserID, p.DocID, p.Keywords, want)
			}
			if len(p.Vector) != keywordDims {
				t.Errorf("%s/%s: dense vector of %d dimensions", p.UserID, p.DocID, len(p.Vector))
			}
		}
		got, err := s.StoredVectors(t.Context(), "kw", []string{written[0].ID}, []string{written[0].TextHash})
		if v := got[written[0].TextHash]; err != nil || !slices.Equal(v, written[0].Vector) {
			t.Errorf("stored vector %v (%v), want %v", v, err, written[0].Vector)
		}
	})

	t.Run("keyword search finds what dense misses", func(t *testing.T) {
		const id = "i-0abc123def"
		dense := search(t, s, "kw", textQuery(t, "alice", id, pipeline.ModeDense))
		if len(dense) == 0 || dense[0].DocID == "runbook" {
			t.Fatalf("dense hits %v: the test needs the hash embedder to rank a near-identical id first", hitIDs(dense))
		}
		keyword := search(t, s, "kw", textQuery(t, "alice", id, pipeline.ModeKeyword))
		if got := hitIDs(keyword); !slices.Equal(got, []string{"runbook"}) {
			t.Errorf("keyword hits %v, want only runbook (dense: %v)", got, hitIDs(dense))
		}
		for _, mode := range []pipeline.SearchMode{pipeline.ModeHybrid, pipeline.ModeAuto} {
			hybrid := search(t, s, "kw", textQuery(t, "alice", id, mode))
			if len(hybrid) == 0 || hybrid[0].DocID != "runbook" {
				t.Errorf("%q hits %v, want runbook first", mode, hitIDs(hybrid))
			}
		}
	})

	t.Run("hybrid scores are reciprocal ranks", func(t *testing.T) {
		// The zoo is first in both lists: 1/(RRFK+1), plus KeywordWeight
		// times that.
		hits := search(t, s, "kw", textQuery(t, "alice", "zebra quagga okapi", pipeline.ModeHybrid))
		want := (1.0 + pipeline.KeywordWeight) / (pipeline.RRFK + 1)
		if len(hits) == 0 || hits[0].DocID != "zoo" || math.Abs(float64(hits[0].Score)-want) > 1e-6 {
			t.Fatalf("hits %v, want zoo first scoring %v", hits, want)
		}
		for i, h := range hits[1:] {
			// Every other document is in the dense list, at rank 2 or
			// below, and in no keyword list (it shares no term but alice).
			if h.Score > float32(1.0/(pipeline.RRFK+2))+1e-6 || i > 0 && h.Score > hits[i].Score {
				t.Errorf("hit %d %s scores %v", i+1, h.DocID, h.Score)
			}
		}
	})

	t.Run("threshold and filter in every mode", func(t *testing.T) {
		for _, mode := range []pipeline.SearchMode{pipeline.ModeKeyword, pipeline.ModeHybrid, pipeline.ModeDense} {
			// Every document of alice's shares the term alice.
			q := textQuery(t, "alice", "alice restarts the export of i-0abc123def", mode)
			all := search(t, s, "kw", q)
			if len(all) != len(keywordDocs) || !slices.ContainsFunc(all, func(h pipeline.Hit) bool { return h.DocID == "runbook" }) {
				t.Fatalf("%s: hits %v, want every document", mode, hitIDs(all))
			}
			// A threshold equal to the second score keeps the hits scoring
			// as much or more.
			q.ScoreThreshold = &all[1].Score
			want := slices.IndexFunc(all, func(h pipeline.Hit) bool { return h.Score < all[1].Score })
			if kept := search(t, s, "kw", q); want < 0 || len(kept) != want {
				t.Errorf("%s: threshold %v kept %d of %v", mode, all[1].Score, len(kept), all)
			}
			q.ScoreThreshold = nil
			q.Filter = map[string][]any{"env": {"dev"}}
			if got := search(t, s, "kw", q); len(got) != len(keywordDocs)-1 ||
				slices.ContainsFunc(got, func(h pipeline.Hit) bool { return h.DocID == "runbook" }) {
				t.Errorf("%s: hits %v with the filter env=dev, want all but the runbook", mode, hitIDs(got))
			}
		}
	})

	t.Run("tenants", func(t *testing.T) {
		for _, mode := range []pipeline.SearchMode{pipeline.ModeAuto, pipeline.ModeHybrid, pipeline.ModeDense, pipeline.ModeKeyword} {
			for _, user := range []string{"alice", "bob"} {
				hits := search(t, s, "kw", textQuery(t, user, "bob: alice: i-0abc123def zebra", mode))
				if len(hits) == 0 {
					t.Errorf("%s %s: no hits", mode, user)
				}
				for _, h := range hits {
					if !strings.HasPrefix(h.Text, user+": ") {
						t.Errorf("%s %s: hit %s of another tenant: %q", mode, user, h.DocID, h.Text)
					}
				}
			}
			if hits := search(t, s, "kw", textQuery(t, "carol", "i-0abc123def zebra", mode)); len(hits) != 0 {
				t.Errorf("%s: carol, who has no documents, got %v", mode, hitIDs(hits))
			}
		}
	})

	t.Run("keyword query without terms", func(t *testing.T) {
		q := textQuery(t, "alice", "the of and", pipeline.ModeKeyword)
		if q.Keywords != nil {
			t.Fatal("the test needs a query without terms")
		}
		if hits := search(t, s, "kw", q); len(hits) != 0 {
			t.Errorf("hits %v, want none", hitIDs(hits))
		}
		q.Mode, q.Vector = pipeline.ModeKeyword, nil
		q.Keywords = pipeline.QueryKeywords("zebra")
		if hits := search(t, s, "kw", q); len(hits) != 1 || hits[0].DocID != "zoo" {
			t.Errorf("keyword query without a vector: %v, want zoo", hitIDs(hits))
		}
	})
}

// TestNoKeywordsQdrant: a collection created before keyword vectors (here
// by hand, with the dense vector alone) takes points that carry keyword
// vectors, answers dense searches, also by default, and refuses keyword and
// hybrid searches with pipeline.ErrNoKeywords.
func TestNoKeywordsQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	err := s.Client().CreateCollection(t.Context(), &qdrant.CreateCollection{
		CollectionName: "plain",
		VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: keywordDims, Distance: qdrant.Distance_Cosine}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "plain", Dims: keywordDims}, false); err != nil {
		t.Fatal(err)
	}
	written := storeKeywordDocs(t, s, "plain", "alice")
	got, err := s.StoredVectors(t.Context(), "plain", []string{written[0].ID}, []string{written[0].TextHash})
	if v := got[written[0].TextHash]; err != nil || !slices.Equal(v, written[0].Vector) {
		t.Errorf("stored vector %v (%v), want %v", v, err, written[0].Vector)
	}

	colls, err := s.Collections(t.Context())
	if err != nil || len(colls) != 1 || colls[0].Keywords {
		t.Fatalf("collections %+v (%v), want plain without keyword vectors", colls, err)
	}
	points, _, err := s.Scroll(t.Context(), "plain", "", 100)
	if err != nil || len(points) != len(keywordDocs) {
		t.Fatalf("scroll: %d points, %v", len(points), err)
	}
	for _, p := range points {
		if p.Keywords != nil || len(p.Vector) != keywordDims {
			t.Errorf("%s: keywords %v, %d dimensions; want none and %d", p.DocID, p.Keywords, len(p.Vector), keywordDims)
		}
	}

	// A fresh store, as the search service has: it reads the collection's
	// shape from Qdrant rather than from EnsureCollection.
	for _, st := range []*qdrantstore.Store{s, newSink(t, node, nil)} {
		dense := search(t, st, "plain", textQuery(t, "alice", "zebra quagga", pipeline.ModeDense))
		auto := search(t, st, "plain", textQuery(t, "alice", "zebra quagga", pipeline.ModeAuto))
		if len(dense) == 0 || fmt.Sprint(dense) != fmt.Sprint(auto) || dense[0].Score > 1.0001 {
			t.Errorf("default search %v, want the dense search's %v", auto, dense)
		}
		for _, mode := range []pipeline.SearchMode{pipeline.ModeKeyword, pipeline.ModeHybrid} {
			_, err := st.Search(t.Context(), "plain", textQuery(t, "alice", "zebra quagga", mode))
			if !errors.Is(err, pipeline.ErrNoKeywords) || !pipeline.IsPermanent(err) {
				t.Errorf("%s search: %v, want ErrNoKeywords", mode, err)
			}
		}
	}
}

// TestKeywordsAfterChurnQdrant shows what qdrant/qdrant#6735 means for
// ragpipe, which overwrites every chunk of a document on each update and
// deletes older versions. Qdrant's IDF counts, in a segment its optimizer
// has indexed, the points and term postings of chunks overwritten or
// deleted since, until the vacuum optimizer rebuilds that segment (once a
// fifth of its points are deleted, in collections of 1000 points or
// more): a term that was common looks common for a while. Only scores
// drift; a keyword search finds exactly the live chunks holding its terms.
func TestKeywordsAfterChurnQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	// Segments indexed at once, as the large segments of a real
	// collection are.
	err := s.Client().CreateCollection(t.Context(), &qdrant.CreateCollection{
		CollectionName:      "churn",
		VectorsConfig:       qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: keywordDims, Distance: qdrant.Distance_Cosine}),
		SparseVectorsConfig: qdrant.NewSparseVectorsConfig(map[string]*qdrant.SparseVectorParams{"keywords": {Modifier: qdrant.Modifier_Idf.Enum()}}),
		OptimizersConfig:    &qdrant.OptimizersConfigDiff{IndexingThreshold: qdrant.PtrOf(uint64(1))},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []string{"churn", "fresh"} {
		if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: c, Dims: keywordDims}, true); err != nil {
			t.Fatal(err)
		}
	}
	write := func(coll, doc string, version uint64, text string) {
		t.Helper()
		storetest.Apply(t, s, coll, pipeline.DocWrite{UserID: "alice", DocID: doc, Version: version, Points: []pipeline.Point{{
			ID: pipeline.PointID("alice", doc, 0), Vector: embed(t, text), ChunkCount: 1, Text: text, Keywords: pipeline.Keywords(text),
		}}})
	}
	// In churn, nine documents held the word zebra, were indexed, then
	// lost it; fresh holds only the final versions.
	write("churn", "target", 1, "zebra crossing")
	write("fresh", "target", 1, "zebra crossing")
	for i := range 9 {
		write("churn", fmt.Sprint("other-", i), 1, fmt.Sprint("zebra filler text ", i))
	}
	checkfor.Until(t, 30*time.Second, "churn indexed", func() error {
		info, err := s.Client().GetCollectionInfo(t.Context(), "churn")
		if err == nil && (info.GetStatus() != qdrant.CollectionStatus_Green || info.GetIndexedVectorsCount() < 10) {
			err = fmt.Errorf("status %s, %d vectors indexed", info.GetStatus(), info.GetIndexedVectorsCount())
		}
		return err
	})
	for i := range 9 {
		write("churn", fmt.Sprint("other-", i), 2, fmt.Sprint("filler text ", i))
		write("fresh", fmt.Sprint("other-", i), 2, fmt.Sprint("filler text ", i))
	}
	q := pipeline.Query{UserID: "alice", Keywords: pipeline.QueryKeywords("zebra"), Mode: pipeline.ModeKeyword, TopK: 10}
	churned, fresh := search(t, s, "churn", q), search(t, s, "fresh", q)
	for _, hits := range [][]pipeline.Hit{churned, fresh} {
		if len(hits) != 1 || hits[0].DocID != "target" || hits[0].Score <= 0 {
			t.Fatalf("hits %v: want the target alone, scoring above 0", hits)
		}
	}
	t.Logf("keyword score of the same chunk for the same query over the same live points: %v after the churn, %v without it",
		churned[0].Score, fresh[0].Score)
}
