package storetest

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// testSearchTenantIsolation checks that a search never returns another
// tenant's points, whatever the metadata filter says.
func testSearchTenantIsolation(t *testing.T, s Store) {
	Ensure(t, s, "isolation", pipeline.Dot)
	Apply(t, s, "isolation",
		VecWrite("alice", "a1", 1, nil, 1, 0, 0, 0),
		VecWrite("alice", "a2", 1, nil, 0.5, 0.5, 0, 0),
		VecWrite("bob", "b1", 1, map[string]any{"user_id": "alice"}, 10, 0, 0, 0),
		VecWrite("bob", "a1", 1, nil, 5, 0, 0, 0), // same doc id, other tenant
	)
	q := pipeline.Query{UserID: "alice", Vector: []float32{1, 0, 0, 0}, TopK: 10}
	hits := Search(t, s, "isolation", q)
	if got := hitIDs(hits); !slices.Equal(got, []string{"a1", "a2"}) || hits[0].Score != 1 {
		t.Errorf("alice's hits %v (%+v), want a1 (score 1), a2", got, hits)
	}
	hits = Search(t, s, "isolation", pipeline.Query{UserID: "bob", Vector: []float32{1, 0, 0, 0}, TopK: 10})
	if got := hitIDs(hits); !slices.Equal(got, []string{"b1", "a1"}) || hits[1].Score != 5 {
		t.Errorf("bob's hits %+v, want b1, a1 (score 5)", hits)
	}
	if hits := Search(t, s, "isolation", pipeline.Query{UserID: "carol", Vector: []float32{1, 0, 0, 0}, TopK: 10}); len(hits) != 0 {
		t.Errorf("carol's hits %+v, want none", hits)
	}
	// A metadata filter cannot widen the tenant; a store may also refuse it.
	q.Filter = map[string][]any{"user_id": {"alice"}}
	if hits, err := s.Search(t.Context(), "isolation", q); err == nil {
		for _, h := range hits {
			if h.DocID != "a1" && h.DocID != "a2" {
				t.Errorf("filter on user_id returned %+v", h)
			}
		}
	}
}

// testSearchFilters checks how metadata filters match strings, bools,
// integers, floats and arrays.
func testSearchFilters(t *testing.T, s Store) {
	Ensure(t, s, "filters", pipeline.Dot)
	Apply(t, s, "filters",
		VecWrite("u", "d1", 1, map[string]any{"env": "prod", "cpus": int64(4), "spot": false, "tags": []any{"web", "tier1"}, "load": 0.5}, 4, 0, 0, 0),
		VecWrite("u", "d2", 1, map[string]any{"env": "dev", "cpus": 4.0, "spot": true, "tags": []string{"db"}, "load": int64(1)}, 3, 0, 0, 0),
		VecWrite("u", "d3", 1, map[string]any{"env": "prod", "cpus": int64(8), "tags": "web", "ids": []int64{7, 9}}, 2, 0, 0, 0),
		VecWrite("u", "d4", 1, nil, 1, 0, 0, 0),
		VecWrite("other", "x", 1, map[string]any{"env": "prod"}, 9, 0, 0, 0),
	)
	for _, tc := range []struct {
		filter map[string][]any
		want   []string
	}{
		{nil, []string{"d1", "d2", "d3", "d4"}},
		{map[string][]any{"env": {"prod"}}, []string{"d1", "d3"}},
		{map[string][]any{"env": {"prod", "dev"}}, []string{"d1", "d2", "d3"}},
		{map[string][]any{"env": {"staging"}}, nil},
		{map[string][]any{"missing": {"x"}}, nil},
		{map[string][]any{"tags": {"web"}}, []string{"d1", "d3"}},         // an array element or a scalar
		{map[string][]any{"tags": {"db", "tier1"}}, []string{"d1", "d2"}}, // any of the values
		{map[string][]any{"cpus": {int64(4)}}, []string{"d1"}},            // an integer never matches a float
		{map[string][]any{"cpus": {4.0}}, []string{"d1", "d2"}},           // a float matches numerically
		{map[string][]any{"cpus": {"4"}}, nil},                            // a string never matches a number
		{map[string][]any{"spot": {false}}, []string{"d1"}},
		{map[string][]any{"spot": {true}}, []string{"d2"}},
		{map[string][]any{"spot": {int64(0)}}, nil}, // nor an integer a bool
		{map[string][]any{"load": {0.5}}, []string{"d1"}},
		{map[string][]any{"load": {int64(1)}}, []string{"d2"}},
		{map[string][]any{"load": {1.0}}, []string{"d2"}},
		{map[string][]any{"ids": {int64(9)}}, []string{"d3"}},
		{map[string][]any{"env": {"prod"}, "cpus": {int64(8)}}, []string{"d3"}}, // every key
		{map[string][]any{"env": {"prod"}, "spot": {true}}, nil},
	} {
		hits := Search(t, s, "filters", pipeline.Query{UserID: "u", Vector: []float32{1, 0, 0, 0}, TopK: 10, Filter: tc.filter})
		if got := hitIDs(hits); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
			t.Errorf("filter %v: hits %v, want %v", tc.filter, got, tc.want)
		}
	}
}

// testSearchThresholdEquality checks that a hit scoring exactly the threshold
// is kept, for the distances too (a distance equal to it is within it).
func testSearchThresholdEquality(t *testing.T, s Store) {
	for _, tc := range []struct {
		d     pipeline.Distance
		query []float32
		want  []string
	}{
		{pipeline.Dot, []float32{1, 0, 0, 0}, []string{"far", "exact"}},        // scores 5, 3 (and 1)
		{pipeline.Euclid, []float32{0, 0, 0, 0}, []string{"near", "exact"}},    // distances 1, 3 (and 5)
		{pipeline.Manhattan, []float32{0, 0, 0, 0}, []string{"near", "exact"}}, // the same
	} {
		name := "eq-" + string(tc.d)
		Ensure(t, s, name, tc.d)
		Apply(t, s, name, VecWrite("u", "near", 1, nil, 1, 0, 0, 0), VecWrite("u", "exact", 1, nil, 3, 0, 0, 0),
			VecWrite("u", "far", 1, nil, 5, 0, 0, 0))
		hits := Search(t, s, name, pipeline.Query{UserID: "u", Vector: tc.query, TopK: 10, ScoreThreshold: ptr(float32(3))})
		if got := hitIDs(hits); !slices.Equal(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.d, got, tc.want)
		}
	}
}

// testSearchThresholdTopKOrder checks cosine scores, their order, top_k and
// the score threshold.
func testSearchThresholdTopKOrder(t *testing.T, s Store) {
	Ensure(t, s, "ranking", pipeline.Cosine)
	var ws []pipeline.DocWrite
	angles := []float64{50, 10, 80, 30, 170, 0} // degrees from the query
	for i, deg := range angles {
		rad := deg * math.Pi / 180
		norm := float64(i + 1) // cosine ignores the length
		ws = append(ws, VecWrite("u", fmt.Sprintf("deg%03.0f", deg), 1, nil,
			float32(norm*math.Cos(rad)), float32(norm*math.Sin(rad)), 0, 0))
	}
	Apply(t, s, "ranking", ws...)
	q := pipeline.Query{UserID: "u", Vector: []float32{3, 0, 0, 0}, TopK: 10}
	hits := Search(t, s, "ranking", q)
	want := []string{"deg000", "deg010", "deg030", "deg050", "deg080", "deg170"}
	if got := hitIDs(hits); !slices.Equal(got, want) {
		t.Fatalf("order %v, want %v", got, want)
	}
	for _, h := range hits {
		var deg float64
		fmt.Sscanf(h.DocID, "deg%f", &deg)
		if want := math.Cos(deg * math.Pi / 180); math.Abs(float64(h.Score)-want) > 1e-5 {
			t.Errorf("%s: score %v, want %v", h.DocID, h.Score, want)
		}
	}
	q.TopK = 3
	if got := hitIDs(Search(t, s, "ranking", q)); !slices.Equal(got, want[:3]) {
		t.Errorf("top 3: %v, want %v", got, want[:3])
	}
	q.TopK, q.ScoreThreshold = 10, ptr(float32(0.6))
	if got := hitIDs(Search(t, s, "ranking", q)); !slices.Equal(got, want[:4]) {
		t.Errorf("threshold 0.6: %v, want %v", got, want[:4])
	}
	q.ScoreThreshold = ptr(float32(1.5))
	if got := Search(t, s, "ranking", q); len(got) != 0 {
		t.Errorf("threshold 1.5: %+v, want none", got)
	}
}

// testSearchDistances checks the order and scores of every distance, and
// that cosine collections store vectors normalised.
func testSearchDistances(t *testing.T, s Store) {
	points := [][]float32{{1, 0, 0, 0}, {0, 3, 1, 0}, {2, 2, 1, 1}, {-1, 0, 0, 0}}
	query := []float32{2, 1, 0, 0}
	for _, tc := range []struct {
		d         pipeline.Distance
		order     []string
		scores    []float64 // in order
		threshold float32
		kept      int
	}{
		{pipeline.Cosine, []string{"p0", "p2", "p1", "p3"}, []float64{2 / math.Sqrt(5), 6 / math.Sqrt(50), 3 / math.Sqrt(50), -2 / math.Sqrt(5)}, 0.5, 2},
		// A hit scoring exactly the threshold is kept (p1 for dot:
		// CONTRACT §4 drops only hits scoring below it). For the
		// distances the contract does not say; thresholds fall between
		// scores.
		{pipeline.Dot, []string{"p2", "p1", "p0", "p3"}, []float64{6, 3, 2, -2}, 3, 2},
		{pipeline.Euclid, []string{"p0", "p2", "p1", "p3"}, []float64{math.Sqrt2, math.Sqrt(3), 3, math.Sqrt(10)}, 3.1, 3},
		{pipeline.Manhattan, []string{"p0", "p2", "p3", "p1"}, []float64{2, 3, 4, 5}, 3.5, 2},
	} {
		name := "dist-" + string(tc.d)
		Ensure(t, s, name, tc.d)
		for i, p := range points {
			Apply(t, s, name, VecWrite("u", fmt.Sprintf("p%d", i), 1, nil, p...))
		}
		q := pipeline.Query{UserID: "u", Vector: query, TopK: 10}
		hits := Search(t, s, name, q)
		if got := hitIDs(hits); !slices.Equal(got, tc.order) {
			t.Errorf("%s: order %v, want %v", tc.d, got, tc.order)
			continue
		}
		for i, h := range hits {
			if math.Abs(float64(h.Score)-tc.scores[i]) > 1e-4 {
				t.Errorf("%s: %s scores %v, want %v", tc.d, h.DocID, h.Score, tc.scores[i])
			}
		}
		q.ScoreThreshold = &tc.threshold
		if got := hitIDs(Search(t, s, name, q)); !slices.Equal(got, tc.order[:tc.kept]) {
			t.Errorf("%s: threshold %v kept %v, want %v", tc.d, tc.threshold, got, tc.order[:tc.kept])
		}
	}
	// Cosine collections store vectors normalised, as Qdrant does.
	got := Doc(t, s, "dist-cosine", "u", "p1")
	want := []float32{0, float32(3 / math.Sqrt(10)), float32(1 / math.Sqrt(10)), 0}
	for i := range want {
		if len(got) != 1 || math.Abs(float64(got[0].Vector[i]-want[i])) > 1e-6 {
			t.Fatalf("stored cosine vector %+v, want %v", got, want)
		}
	}
}

// testSearchErrors checks that invalid queries are permanent errors: bad
// top_k, tenant, vector, filter, mode or keyword vector.
func testSearchErrors(t *testing.T, s Store) {
	Ensure(t, s, "searcherr", pipeline.Cosine)
	q0 := Vec(1, 0)
	for _, q := range []pipeline.Query{
		{UserID: "alice", Vector: q0, TopK: 0},
		{UserID: "alice", Vector: q0, TopK: pipeline.MaxTopK + 1},
		{UserID: "", Vector: q0, TopK: 1},
		{UserID: "alice", TopK: 1},
		{UserID: "alice", Vector: []float32{1, 2}, TopK: 1},
		{UserID: "alice", Vector: q0, TopK: 1, Filter: map[string][]any{"user_id": {"bob"}}},
		{UserID: "alice", Vector: q0, TopK: 1, Filter: map[string][]any{"env": {}}},
		{UserID: "alice", Vector: q0, TopK: 1, Filter: map[string][]any{"env": {[]string{"x"}}}},
		{UserID: "alice", Vector: q0, TopK: 1, Mode: "fuzzy"},
		{UserID: "alice", TopK: 1, Mode: pipeline.ModeHybrid, Keywords: pipeline.QueryKeywords("x")}, // no vector
		{UserID: "alice", TopK: 1, Mode: pipeline.ModeKeyword, Keywords: &pipeline.SparseVector{Indices: []uint32{1, 2}, Values: []float32{1}}},
	} {
		_, err := s.Search(t.Context(), "searcherr", q)
		if err == nil || !pipeline.IsPermanent(err) || errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("invalid query %+v: %v, want a permanent error", q, err)
		}
	}
}
