package qdrantstore_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// angled is a unit vector at deg degrees from (1,0,0,0): its cosine score
// against that query is cos(deg).
func angled(deg float64) []float32 {
	r := deg * math.Pi / 180
	return []float32{float32(math.Cos(r)), float32(math.Sin(r)), 0, 0}
}

var query0 = angled(0)

// searchDocs are single-chunk documents at growing angles from query0, so
// that they rank in this order; every tenant stores the same ones.
var searchDocs = []struct {
	id   string
	meta map[string]any
}{
	{"d0", map[string]any{"env": "prod", "n": int64(1), "ratio": 0.5, "ok": true, "tags": []any{"web", "tier1"}, "code": "x1"}},
	{"d1", map[string]any{"env": "staging", "n": int64(2), "ratio": 1.5, "ok": false, "tags": []any{"db"}, "code": int64(7)}},
	{"d2", map[string]any{"env": "prod", "n": int64(3), "tags": []any{"db", "tier1"}}},
	{"d3", map[string]any{"env": "dev", "n": int64(1)}},
	{"d4", nil},
	{"d5", map[string]any{"env": "prod", "ok": true}},
}

// storeSearchDocs stores searchDocs for user in coll, d<i> at 10*i degrees,
// plus a three-chunk document "multi" at 60, 70 and 80 degrees.
func storeSearchDocs(t *testing.T, s *qdrantstore.Store, coll, user string) {
	t.Helper()
	var ws []pipeline.DocWrite
	for i, d := range searchDocs {
		ws = append(ws, pipeline.DocWrite{UserID: user, DocID: d.id, Version: 1, Points: []pipeline.Point{{
			ID: pipeline.PointID(user, d.id, 0), Vector: angled(float64(10 * i)), ChunkCount: 1,
			Text: user + " text of " + d.id, Metadata: d.meta,
		}}})
	}
	multi := pipeline.DocWrite{UserID: user, DocID: "multi", Version: 3}
	for c := range 3 {
		multi.Points = append(multi.Points, pipeline.Point{
			ID: pipeline.PointID(user, "multi", c), Vector: angled(float64(60 + 10*c)), ChunkIndex: c, ChunkCount: 3,
			Text: fmt.Sprintf("%s multi chunk %d", user, c),
		})
	}
	storetest.Apply(t, s, coll, append(ws, multi)...)
}

func hitIDs(hits []pipeline.Hit) []string {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.DocID
		if h.ChunkIndex > 0 {
			ids[i] = fmt.Sprintf("%s#%d", h.DocID, h.ChunkIndex)
		}
	}
	return ids
}

// TestSearchQdrant checks Search and List against a real Qdrant node: the
// tenant condition, every kind of metadata filter, the threshold, top_k,
// ordering, the hit fields, list pagination and the errors.
func TestSearchQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	ensure(t, s, "search", pipeline.Cosine)
	for _, u := range []string{"alice", "bob"} {
		storeSearchDocs(t, s, "search", u)
	}
	threshold := float32(0.9)
	top4, err := s.Search(t.Context(), "search", pipeline.Query{UserID: "alice", Vector: query0, TopK: 4, Mode: pipeline.ModeDense})
	if err != nil || len(top4) != 4 {
		t.Fatalf("search: %v, %v", top4, err)
	}
	exact := top4[3].Score // d3's score, as Qdrant computes it: a threshold equal to it keeps d3
	tests := []struct {
		name      string
		filter    map[string][]any
		topK      int
		threshold *float32
		want      []string
	}{
		{"all of the tenant, best first", nil, 100, nil, []string{"d0", "d1", "d2", "d3", "d4", "d5", "multi", "multi#1", "multi#2"}},
		{"top_k", nil, 2, nil, []string{"d0", "d1"}},
		{"string", map[string][]any{"env": {"prod"}}, 10, nil, []string{"d0", "d2", "d5"}},
		{"any of strings", map[string][]any{"env": {"staging", "dev"}}, 10, nil, []string{"d1", "d3"}},
		{"integer", map[string][]any{"n": {int64(1)}}, 10, nil, []string{"d0", "d3"}},
		{"any of integers", map[string][]any{"n": {int64(2), int64(3)}}, 10, nil, []string{"d1", "d2"}},
		{"float", map[string][]any{"ratio": {1.5}}, 10, nil, []string{"d1"}},
		{"bool", map[string][]any{"ok": {true}}, 10, nil, []string{"d0", "d5"}},
		{"element of an array", map[string][]any{"tags": {"tier1"}}, 10, nil, []string{"d0", "d2"}},
		{"any of mixed types", map[string][]any{"code": {"x1", int64(7)}}, 10, nil, []string{"d0", "d1"}},
		{"all keys must match", map[string][]any{"env": {"prod"}, "ok": {true}}, 10, nil, []string{"d0", "d5"}},
		{"no such key", map[string][]any{"colour": {"red"}}, 10, nil, []string{}},
		{"no such value", map[string][]any{"env": {"qa"}}, 10, nil, []string{}},
		{"score threshold", nil, 10, &threshold, []string{"d0", "d1", "d2"}},
		{"score threshold equal to a score", nil, 10, &exact, []string{"d0", "d1", "d2", "d3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, user := range []string{"alice", "bob"} {
				hits, err := s.Search(t.Context(), "search", pipeline.Query{
					UserID: user, Vector: query0, TopK: tt.topK, Filter: tt.filter, ScoreThreshold: tt.threshold, Mode: pipeline.ModeDense,
				})
				if err != nil {
					t.Fatal(err)
				}
				if got := hitIDs(hits); !slices.Equal(got, tt.want) {
					t.Errorf("%s: hits %v, want %v", user, got, tt.want)
				}
				for _, h := range hits {
					if want := user + " "; len(h.Text) < len(want) || h.Text[:len(want)] != want {
						t.Errorf("%s: hit %s has text %q of another tenant", user, h.DocID, h.Text)
					}
				}
				if !slices.IsSortedFunc(hits, func(a, b pipeline.Hit) int { return -cmpFloat(a.Score, b.Score) }) {
					t.Errorf("%s: hits not ordered by score: %v", user, hits)
				}
			}
		})
	}

	t.Run("hit fields", func(t *testing.T) {
		hits, err := s.Search(t.Context(), "search", pipeline.Query{UserID: "alice", Vector: angled(80), TopK: 1, Mode: pipeline.ModeDense})
		if err != nil {
			t.Fatal(err)
		}
		want := pipeline.Hit{DocID: "multi", ChunkIndex: 2, Text: "alice multi chunk 2", Metadata: map[string]any{}, Version: 3}
		if len(hits) != 1 {
			t.Fatalf("hits %v", hits)
		}
		got := hits[0]
		if math.Abs(float64(got.Score)-1) > 1e-5 {
			t.Errorf("score %v, want 1", got.Score)
		}
		got.Score = 0
		if !reflect.DeepEqual(got, want) {
			t.Errorf("hit %+v, want %+v", got, want)
		}
		hits, err = s.Search(t.Context(), "search", pipeline.Query{UserID: "alice", Vector: query0, TopK: 1, Mode: pipeline.ModeDense})
		if err != nil || len(hits) != 1 || !reflect.DeepEqual(hits[0].Metadata, searchDocs[0].meta) {
			t.Errorf("metadata of d0: %v, %v; want %v", hits, err, searchDocs[0].meta)
		}
	})

	t.Run("tenant without documents", func(t *testing.T) {
		hits, err := s.Search(t.Context(), "search", pipeline.Query{UserID: "carol", Vector: query0, TopK: 10})
		if err != nil || len(hits) != 0 {
			t.Errorf("hits %v, error %v; want none", hits, err)
		}
	})

	t.Run("errors", func(t *testing.T) {
		_, err := s.Search(t.Context(), "missing", pipeline.Query{UserID: "alice", Vector: query0, TopK: 10})
		if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
			t.Errorf("unknown collection: %v, want permanent ErrUnknownCollection", err)
		}
		_, _, err = s.List(t.Context(), "missing", "alice", 10, "")
		if !errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("list of unknown collection: %v, want ErrUnknownCollection", err)
		}
		for _, q := range []pipeline.Query{
			{UserID: "alice", Vector: query0, TopK: 0},
			{UserID: "alice", Vector: query0, TopK: 101},
			{UserID: "", Vector: query0, TopK: 1},
			{UserID: "alice", TopK: 1},
			{UserID: "alice", Vector: query0, TopK: 1, Filter: map[string][]any{"user_id": {"bob"}}},
			{UserID: "alice", Vector: query0, TopK: 1, Filter: map[string][]any{"a.b": {"c"}}},
			{UserID: "alice", Vector: query0, TopK: 1, Filter: map[string][]any{"env": {}}},
			{UserID: "alice", Vector: query0, TopK: 1, Filter: map[string][]any{"env": {[]string{"x"}}}},
			{UserID: "alice", Vector: query0, TopK: 1, Mode: "fuzzy"},
		} {
			_, err := s.Search(t.Context(), "search", q)
			if err == nil || !pipeline.IsPermanent(err) || errors.Is(err, pipeline.ErrUnknownCollection) {
				t.Errorf("invalid query %+v: %v, want a permanent error", q, err)
			}
		}
		_, err = s.Search(t.Context(), "search", pipeline.Query{UserID: "alice", Vector: []float32{1, 2}, TopK: 1})
		if err == nil || !pipeline.IsPermanent(err) {
			t.Errorf("vector of the wrong length: %v, want a permanent error", err)
		}
		for _, cursor := range []string{"garbage!", "dGVzdA", "u"} {
			_, _, err := s.List(t.Context(), "search", "alice", 10, cursor)
			if !errors.Is(err, pipeline.ErrInvalidCursor) || !pipeline.IsPermanent(err) {
				t.Errorf("cursor %q: %v, want permanent ErrInvalidCursor", cursor, err)
			}
		}
	})

	t.Run("list pages", func(t *testing.T) {
		ensure(t, s, "listing", pipeline.Cosine)
		want := map[string]pipeline.Doc{}
		var ws []pipeline.DocWrite
		for i := range 53 {
			for _, user := range []string{"alice", "bob"} {
				w := storetest.Write(user, fmt.Sprintf("doc-%02d", i), uint64(i+1), 1+i%3)
				ws = append(ws, w)
				if user == "alice" {
					want[w.DocID] = pipeline.Doc{DocID: w.DocID, Version: w.Version, ChunkCount: len(w.Points),
						Metadata: map[string]any{"v": int64(w.Version)}}
				}
			}
		}
		storetest.Apply(t, s, "listing", ws...)
		for _, limit := range []int{1, 7, 53, 1000} {
			got := map[string]pipeline.Doc{}
			cursor, pages := "", 0
			for {
				docs, next, err := s.List(t.Context(), "listing", "alice", limit, cursor)
				if err != nil {
					t.Fatalf("limit %d, page %d: %v", limit, pages, err)
				}
				pages++
				if len(docs) > limit || (next != "" && len(docs) != limit) {
					t.Fatalf("limit %d: page %d has %d docs, next %q", limit, pages, len(docs), next)
				}
				for _, d := range docs {
					if _, dup := got[d.DocID]; dup {
						t.Fatalf("limit %d: %s listed twice", limit, d.DocID)
					}
					got[d.DocID] = d
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("limit %d: listed %d docs over %d pages, want exactly the %d of alice:\n%v", limit, len(got), pages, len(want), got)
			}
			if wantPages := (53 + limit - 1) / limit; pages != wantPages {
				t.Errorf("limit %d: %d pages, want %d", limit, pages, wantPages)
			}
		}
		docs, next, err := s.List(t.Context(), "listing", "carol", 10, "")
		if err != nil || len(docs) != 0 || next != "" {
			t.Errorf("tenant without documents: %v %q %v", docs, next, err)
		}
	})

	t.Run("check collection", func(t *testing.T) {
		if err := s.CheckCollection(t.Context(), pipeline.Collection{Name: "search", Dims: dims}); err != nil {
			t.Errorf("matching collection: %v", err)
		}
		err := s.CheckCollection(t.Context(), pipeline.Collection{Name: "search", Dims: 8})
		if err == nil || !pipeline.IsPermanent(err) {
			t.Errorf("other dimensions: %v, want a permanent error", err)
		}
		err = s.CheckCollection(t.Context(), pipeline.Collection{Name: "search", Dims: dims, Distance: pipeline.Dot})
		if err == nil || !pipeline.IsPermanent(err) {
			t.Errorf("other distance: %v, want a permanent error", err)
		}
		err = s.CheckCollection(t.Context(), pipeline.Collection{Name: "missing", Dims: dims})
		if !errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("missing collection: %v, want ErrUnknownCollection", err)
		}
	})
}

func cmpFloat(a, b float32) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// TestSearchQdrantUnavailable: while Qdrant is down, Search and List retry
// until the caller's deadline and then fail with a transient error (the
// service answers 503), and they work again once it is back.
func TestSearchQdrantUnavailable(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	ensure(t, s, "down", pipeline.Cosine)
	storeSearchDocs(t, s, "down", "alice")
	node.Kill(t)

	q := pipeline.Query{UserID: "alice", Vector: query0, TopK: 3}
	for _, op := range []string{"search", "list"} {
		ctx, cancel := context.WithTimeout(t.Context(), 1500*time.Millisecond)
		start := time.Now()
		var err error
		if op == "search" {
			_, err = s.Search(ctx, "down", q)
		} else {
			_, _, err = s.List(ctx, "down", "alice", 10, "")
		}
		cancel()
		took := time.Since(start)
		if err == nil || pipeline.IsPermanent(err) || errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("%s with Qdrant down: %v, want a transient error", op, err)
		}
		if took < time.Second || took > 3*time.Second {
			t.Errorf("%s with Qdrant down returned after %s, want about the 1.5s deadline (retrying until then)", op, took)
		}
	}

	node.Restart(t)
	checkfor.Until(t, 30*time.Second, "condition", func() error {
		hits, err := s.Search(t.Context(), "down", q)
		if err == nil && len(hits) != 3 {
			err = fmt.Errorf("%d hits", len(hits))
		}
		return err
	})
}
