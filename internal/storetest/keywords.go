package storetest

import (
	"context"
	"errors"
	"math"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// WithoutKeywords is implemented by a store that can create a collection as
// stores created them before keyword vectors: dense vectors only. The suite
// needs it to check how such collections answer each search mode, and fails
// for a store that does not implement it (in its tests, if nowhere else).
type WithoutKeywords interface {
	// CreateWithoutKeywords creates collection c with no keyword vectors.
	CreateWithoutKeywords(ctx context.Context, c pipeline.Collection) error
}

// KwWrite is a one-chunk write with the given text, its keyword vector
// (pipeline.Keywords), metadata and vector.
func KwWrite(user, doc string, v uint64, md map[string]any, text string, vector ...float32) pipeline.DocWrite {
	w := VecWrite(user, doc, v, md, vector...)
	w.Points[0].Text = text
	w.Points[0].Keywords = pipeline.Keywords(text)
	return w
}

// kwDoc is a document of the keyword corpus.
type kwDoc struct {
	user, doc, text, team string
	vec                   []float32
}

// kwCorpus is what the keyword tests search. For the query vector (1,0,0,0)
// the dense ranking of alice's chunks is near, mid, far, ident, with
// distinct scores; only ident contains the identifier ErrQuotaExceeded, and
// so does bob's chunk, with the same words more often and a better vector.
var kwCorpus = []kwDoc{
	{"alice", "ident", "calls fail with ErrQuotaExceeded when the project runs out of quota", "core", []float32{-0.5, 0, 1, 0}},
	{"alice", "near", "monthly cloud cost review with the finance team", "finance", []float32{1, 0, 0, 0}},
	{"alice", "mid", "deployment checklist for the payments service", "pay", []float32{0.6, 0.4, 0, 0}},
	{"alice", "far", "the payments service handles refunds", "pay", []float32{0.1, 1, 0, 0}},
	{"bob", "ident", "ErrQuotaExceeded again: ErrQuotaExceeded means the quota is spent", "core", []float32{2, 0, 0, 0}},
}

// Queries of the keyword tests.
var (
	kwQueryText = "ErrQuotaExceeded"
	kwQueryVec  = []float32{1, 0, 0, 0}
)

// ensureKwCorpus creates coll (Dot) holding kwCorpus.
func ensureKwCorpus(t *testing.T, s Store, coll string) {
	t.Helper()
	Ensure(t, s, coll, pipeline.Dot)
	var ws []pipeline.DocWrite
	for _, d := range kwCorpus {
		ws = append(ws, KwWrite(d.user, d.doc, 1, map[string]any{"team": d.team}, d.text, d.vec...))
	}
	Apply(t, s, coll, ws...)
}

// KeywordScore is the keyword score of doc for query among the keyword
// vectors of a whole collection, all, computed plainly as Qdrant's idf
// modifier has it: the sum over the query's terms of its weight, the term's
// idf, ln(1 + (N - n + 0.5)/(n + 0.5)) with N the points with a keyword
// vector and n those containing the term, and doc's weight. ok is false when
// doc shares no term with query.
func KeywordScore(query, doc *pipeline.SparseVector, all []*pipeline.SparseVector) (score float64, ok bool) {
	for i, term := range query.Indices {
		j, found := slices.BinarySearch(doc.Indices, term)
		if !found {
			continue
		}
		n := 0
		for _, v := range all {
			if _, has := slices.BinarySearch(v.Indices, term); has {
				n++
			}
		}
		idf := math.Log(1 + (float64(len(all))-float64(n)+0.5)/(float64(n)+0.5))
		score += float64(query.Values[i]) * idf * float64(doc.Values[j])
		ok = true
	}
	return score, ok
}

// kwQuery builds a search of kwCorpus by alice.
func kwQuery(mode pipeline.SearchMode) pipeline.Query {
	return pipeline.Query{UserID: "alice", Mode: mode, Vector: kwQueryVec, Keywords: pipeline.QueryKeywords(kwQueryText), TopK: 10}
}

// testKeywordSearch checks keyword scores (collection-wide idf, as Qdrant's
// idf modifier computes it), that an exact identifier the dense vector ranks
// last is found first, and that overwritten and deleted chunks are no longer
// found by their words.
func testKeywordSearch(t *testing.T, s Store) {
	ensureKwCorpus(t, s, "kwsearch")
	if got := hitIDs(Search(t, s, "kwsearch", kwQuery(pipeline.ModeDense))); !slices.Equal(got, []string{"near", "mid", "far", "ident"}) {
		t.Fatalf("dense: %v, want near, mid, far, ident", got)
	}
	q := kwQuery(pipeline.ModeKeyword)
	q.Vector = nil // keyword search needs none
	hits := Search(t, s, "kwsearch", q)
	if got := hitIDs(hits); !slices.Equal(got, []string{"ident"}) {
		t.Fatalf("keyword: %v, want ident alone", got)
	}
	var all []*pipeline.SparseVector
	for _, d := range kwCorpus {
		all = append(all, pipeline.Keywords(d.text))
	}
	want, _ := KeywordScore(q.Keywords, all[0], all)
	if want <= 0 || math.Abs(float64(hits[0].Score)-want) > 1e-4*want {
		t.Errorf("keyword score %v, want %v", hits[0].Score, want)
	}
	if hits[0].Text != kwCorpus[0].text || hits[0].Metadata["team"] != "core" {
		t.Errorf("keyword hit %+v", hits[0])
	}

	// A word of the old version is gone, one of the new is found.
	Apply(t, s, "kwsearch", KwWrite("alice", "far", 2, nil, "the billing service handles chargebacks", 0.1, 1, 0, 0))
	for text, want := range map[string][]string{"refunds": nil, "chargebacks": {"far"}, "payments": {"mid"}} {
		q.Keywords = pipeline.QueryKeywords(text)
		if got := hitIDs(Search(t, s, "kwsearch", q)); !slices.Equal(got, want) {
			t.Errorf("keyword %q after an update: %v, want %v", text, got, want)
		}
	}
	Apply(t, s, "kwsearch", Write("alice", "ident", 2, 0))
	q.Keywords = pipeline.QueryKeywords(kwQueryText)
	if got := Search(t, s, "kwsearch", q); len(got) != 0 {
		t.Errorf("keyword search after the delete: %+v, want none", got)
	}
}

// testHybridSearch checks that hybrid search fuses the dense and keyword
// rankings by reciprocal rank (1/(pipeline.RRFK + rank) from the dense list,
// pipeline.KeywordWeight/(RRFK + rank) from the keyword list),
// including chunks found by one side only, and how ModeAuto chooses.
func testHybridSearch(t *testing.T, s Store) {
	ensureKwCorpus(t, s, "hybrid")
	rrf := func(rank int) float64 { return 1 / float64(pipeline.RRFK+rank) }
	// ident is 4th by vector and 1st by keyword; the others are found by
	// their vectors alone.
	want := []struct {
		doc   string
		score float64
	}{{"ident", rrf(4) + pipeline.KeywordWeight*rrf(1)}, {"near", rrf(1)}, {"mid", rrf(2)}, {"far", rrf(3)}}
	for _, mode := range []pipeline.SearchMode{pipeline.ModeHybrid, pipeline.ModeAuto} {
		hits := Search(t, s, "hybrid", kwQuery(mode))
		if len(hits) != len(want) {
			t.Fatalf("%q: hits %v, want %d", mode, hitIDs(hits), len(want))
		}
		for i, h := range hits {
			if h.DocID != want[i].doc || math.Abs(float64(h.Score)-want[i].score) > 1e-6 {
				t.Errorf("%q: hit %d is %s (%v), want %s (%v)", mode, i, h.DocID, h.Score, want[i].doc, want[i].score)
			}
		}
	}
	q := kwQuery(pipeline.ModeHybrid)
	q.TopK = 2
	if got := hitIDs(Search(t, s, "hybrid", q)); !slices.Equal(got, []string{"ident", "near"}) {
		t.Errorf("hybrid top 2: %v, want ident, near", got)
	}
	// Without keywords, ModeAuto is dense: a query by vector keeps its scores.
	q = kwQuery(pipeline.ModeAuto)
	q.Keywords = nil
	if hits := Search(t, s, "hybrid", q); len(hits) != 4 || hits[0].DocID != "near" || hits[0].Score != 1 {
		t.Errorf("auto without keywords: %+v, want dense hits, near scoring 1", hits)
	}
	// Hybrid with a query without terms is the dense ranking, fused alone.
	q.Mode = pipeline.ModeHybrid
	if hits := Search(t, s, "hybrid", q); len(hits) != 4 || hits[0].DocID != "near" || math.Abs(float64(hits[0].Score)-rrf(1)) > 1e-6 {
		t.Errorf("hybrid without keywords: %+v, want near scoring 1/%d", hits, pipeline.RRFK+1)
	}
}

// searchModes are the modes every search test runs in.
var searchModes = []pipeline.SearchMode{pipeline.ModeAuto, pipeline.ModeHybrid, pipeline.ModeDense, pipeline.ModeKeyword}

// testModesTenantIsolation checks that in no mode does a search return
// another tenant's chunks, though they hold the same words, score better and
// may be named by a filter.
func testModesTenantIsolation(t *testing.T, s Store) {
	ensureKwCorpus(t, s, "kwisolation")
	for _, mode := range searchModes {
		for _, filter := range []map[string][]any{nil, {"team": {"core"}}} {
			q := kwQuery(mode)
			q.Filter = filter
			for _, h := range Search(t, s, "kwisolation", q) {
				if h.Text == kwCorpus[4].text {
					t.Errorf("%q, filter %v: alice's search returned bob's chunk %+v", mode, filter, h)
				}
			}
			q.UserID = "bob"
			hits := Search(t, s, "kwisolation", q)
			if len(hits) != 1 || hits[0].Text != kwCorpus[4].text {
				t.Errorf("%q, filter %v: bob's hits %+v, want his one chunk", mode, filter, hits)
			}
			q.UserID = "carol"
			if hits := Search(t, s, "kwisolation", q); len(hits) != 0 {
				t.Errorf("%q: carol's hits %+v, want none", mode, hits)
			}
		}
	}
}

// testModesFilterThreshold checks that the metadata filter and the score
// threshold apply in every mode: the threshold to the scores the hits
// carry (fused ones in hybrid), keeping a hit that scores it.
func testModesFilterThreshold(t *testing.T, s Store) {
	ensureKwCorpus(t, s, "kwfilter")
	for _, mode := range searchModes {
		all := hitIDs(Search(t, s, "kwfilter", kwQuery(mode)))
		for _, team := range []string{"core", "pay", "finance"} {
			q := kwQuery(mode)
			q.Filter = map[string][]any{"team": {team}}
			var want []string
			for _, doc := range all {
				if i := slices.IndexFunc(kwCorpus, func(d kwDoc) bool { return d.user == "alice" && d.doc == doc }); kwCorpus[i].team == team {
					want = append(want, doc)
				}
			}
			got := hitIDs(Search(t, s, "kwfilter", q))
			if mode == pipeline.ModeHybrid || mode == pipeline.ModeAuto {
				// Fusion ranks the filtered lists: the same documents, in
				// the order of their fused scores.
				slices.Sort(got)
				slices.Sort(want)
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q, team %s: %v, want %v", mode, team, got, want)
			}
		}
		hits := Search(t, s, "kwfilter", kwQuery(mode))
		if len(hits) < 2 && mode != pipeline.ModeKeyword {
			t.Fatalf("%q: %d hits", mode, len(hits))
		}
		for i, h := range hits {
			q := kwQuery(mode)
			q.ScoreThreshold = ptr(h.Score - 1e-6*float32(math.Abs(float64(h.Score))))
			if got := hitIDs(Search(t, s, "kwfilter", q)); !slices.Equal(got, hitIDs(hits[:i+1])) {
				t.Errorf("%q, threshold just below hit %d's score %v: %v, want %v", mode, i, h.Score, got, hitIDs(hits[:i+1]))
			}
		}
		q := kwQuery(mode)
		q.ScoreThreshold = ptr(hits[0].Score + 1e-3)
		if got := Search(t, s, "kwfilter", q); len(got) != 0 {
			t.Errorf("%q, threshold above the best score: %v, want none", mode, hitIDs(got))
		}
	}
}

// testNoKeywords checks a collection created without keyword vectors: dense
// and auto searches answer by vector, keyword and hybrid searches fail
// permanently with pipeline.ErrNoKeywords.
func testNoKeywords(t *testing.T, s Store) {
	wk, ok := s.(WithoutKeywords)
	if !ok {
		t.Fatalf("%T does not implement storetest.WithoutKeywords", s)
	}
	c := pipeline.Collection{Name: "nokeywords", Dims: Dims, Distance: pipeline.Dot}
	if err := wk.CreateWithoutKeywords(t.Context(), c); err != nil {
		t.Fatalf("CreateWithoutKeywords: %v", err)
	}
	if err := s.EnsureCollection(t.Context(), c, false); err != nil {
		t.Fatalf("EnsureCollection of the existing collection: %v", err)
	}
	var ws []pipeline.DocWrite
	for _, d := range kwCorpus {
		ws = append(ws, KwWrite(d.user, d.doc, 1, map[string]any{"team": d.team}, d.text, d.vec...))
	}
	Apply(t, s, "nokeywords", ws...)
	dense := hitIDs(Search(t, s, "nokeywords", kwQuery(pipeline.ModeDense)))
	if !slices.Equal(dense, []string{"near", "mid", "far", "ident"}) {
		t.Errorf("dense: %v", dense)
	}
	if got := hitIDs(Search(t, s, "nokeywords", kwQuery(pipeline.ModeAuto))); !slices.Equal(got, dense) {
		t.Errorf("auto: %v, want the dense hits %v", got, dense)
	}
	for _, mode := range []pipeline.SearchMode{pipeline.ModeKeyword, pipeline.ModeHybrid} {
		_, err := s.Search(t.Context(), "nokeywords", kwQuery(mode))
		if !errors.Is(err, pipeline.ErrNoKeywords) || !pipeline.IsPermanent(err) {
			t.Errorf("%q: %v, want permanent ErrNoKeywords", mode, err)
		}
	}
}
