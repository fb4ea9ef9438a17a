// Package storetest is the contract suite every vector store passes: the
// Qdrant store against a real Qdrant node and the embedded store of
// ragpipe dev, so that both keep the same semantics.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Store is what the contract suite needs of a vector store: the
// sink, the Search index, and Scroll to read every stored point back.
type Store interface {
	ingest.Sink
	ingest.VectorSource
	Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error)
	List(ctx context.Context, collection, userID string, limit int, cursor string) (docs []pipeline.Doc, next string, err error)
	Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error)
}

// Dims is the dimensions of the collections the suite creates.
const Dims = 4

func Ensure(t *testing.T, s Store, name string, d pipeline.Distance) {
	t.Helper()
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: name, Dims: Dims, Distance: d}, true); err != nil {
		t.Fatalf("EnsureCollection(%s): %v", name, err)
	}
}

func Apply(t *testing.T, s Store, coll string, ws ...pipeline.DocWrite) {
	t.Helper()
	if err := s.Apply(t.Context(), coll, ws); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func prune(t *testing.T, s Store, coll string, ds ...pipeline.DocVersion) {
	t.Helper()
	if err := s.Prune(t.Context(), coll, ds); err != nil {
		t.Fatalf("Prune: %v", err)
	}
}

// Points reads every point of coll with Scroll, in small pages, checking
// that ids come in order and once each.
func Points(t testing.TB, s Store, coll string) []pipeline.Point {
	t.Helper()
	var all []pipeline.Point
	after := ""
	for page := 0; ; page++ {
		pts, next, err := s.Scroll(t.Context(), coll, after, 7)
		if err != nil {
			t.Fatalf("Scroll(%q): %v", after, err)
		}
		for _, p := range pts {
			if len(all) > 0 && all[len(all)-1].ID >= p.ID {
				t.Fatalf("Scroll: id %s after %s", p.ID, all[len(all)-1].ID)
			}
			all = append(all, p)
		}
		if next == "" {
			return all
		}
		if len(pts) == 0 || page > 100000 {
			t.Fatalf("Scroll: next %q after an empty page", next)
		}
		after = next
	}
}

// Doc returns a document's points, by chunk index.
func Doc(t *testing.T, s Store, coll, user, doc string) []pipeline.Point {
	t.Helper()
	var out []pipeline.Point
	for _, p := range Points(t, s, coll) {
		if p.UserID == user && p.DocID == doc {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChunkIndex < out[j].ChunkIndex })
	return out
}

// ExpectDoc checks that exactly the n chunks of version v are stored.
func ExpectDoc(t *testing.T, s Store, coll, user, doc string, v uint64, n int) {
	t.Helper()
	got := Doc(t, s, coll, user, doc)
	var desc []string
	for _, p := range got {
		desc = append(desc, fmt.Sprintf("%d:v%d/%d", p.ChunkIndex, p.Version, p.ChunkCount))
	}
	ok := len(got) == n
	for i, p := range got {
		if !ok {
			break
		}
		ok = p.ChunkIndex == i && p.Version == v && p.ChunkCount == n &&
			p.Text == fmt.Sprintf("%s v%d chunk %d", doc, v, i) && p.ID == pipeline.PointID(user, doc, i)
	}
	if !ok {
		t.Fatalf("%s/%s: stored %v, want %d chunks of v%d", user, doc, desc, n, v)
	}
}

// payload is a point's payload as Qdrant stores it (CONTRACT §3, and
// text_hash when the point has one).
func payload(p pipeline.Point) map[string]any {
	pl := map[string]any{
		"user_id": p.UserID, "doc_id": p.DocID, "chunk_index": int64(p.ChunkIndex), "chunk_count": int64(p.ChunkCount),
		"text": p.Text, "metadata": p.Metadata, "version": int64(p.Version),
	}
	if p.TextHash != "" {
		pl["text_hash"] = p.TextHash
	}
	return pl
}

// VecWrite is a one-chunk write with the given vector and metadata.
func VecWrite(user, doc string, v uint64, md map[string]any, vector ...float32) pipeline.DocWrite {
	return pipeline.DocWrite{UserID: user, DocID: doc, Version: v, Points: []pipeline.Point{{
		ID: pipeline.PointID(user, doc, 0), Vector: vector, UserID: user, DocID: doc,
		ChunkCount: 1, Text: doc, Metadata: md, Version: v,
	}}}
}

func hitIDs(hits []pipeline.Hit) []string {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.DocID
	}
	return ids
}

func Search(t *testing.T, s Store, coll string, q pipeline.Query) []pipeline.Hit {
	t.Helper()
	hits, err := s.Search(t.Context(), coll, q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return hits
}

// Run runs the semantic tests every vector store must pass,
// the Qdrant sink's and the embedded store's alike. open returns a store for
// one subtest; subtests use distinct collection names, so stores may share
// a server.
func Run(t *testing.T, open func(t *testing.T) Store) {
	t.Run("EnsureCollection", func(t *testing.T) {
		s := open(t)
		c := pipeline.Collection{Name: "created", Dims: 1024, Distance: pipeline.Dot}
		if err := s.EnsureCollection(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		for _, create := range []bool{true, false} {
			if err := s.EnsureCollection(t.Context(), c, create); err != nil {
				t.Errorf("again (create %t): %v", create, err)
			}
		}
		Ensure(t, s, "docs", "") // 4 Dims, cosine by default
		Ensure(t, s, "docs", pipeline.Cosine)
		err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: 1024, Distance: pipeline.Cosine}, true)
		if err == nil || !strings.Contains(err.Error(), "has 4 dimensions") || !strings.Contains(err.Error(), "configured 1024") ||
			!pipeline.IsPermanent(err) {
			t.Errorf("Dims mismatch: %v, want a permanent error naming 4 and 1024", err)
		}
		err = s.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: Dims, Distance: pipeline.Euclid}, true)
		if err == nil || !strings.Contains(err.Error(), "has distance cosine") || !strings.Contains(err.Error(), "configured euclid") ||
			!pipeline.IsPermanent(err) {
			t.Errorf("distance mismatch: %v, want a permanent error naming cosine and euclid", err)
		}
	})

	t.Run("UnknownCollection", func(t *testing.T) {
		s := open(t)
		for range 2 { // the first call must not have created it
			err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "absent", Dims: Dims}, false)
			if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
				t.Fatalf("EnsureCollection: %v, want permanent ErrUnknownCollection", err)
			}
		}
		if err := s.Apply(t.Context(), "absent", []pipeline.DocWrite{Write("u", "d", 1, 1)}); !pipeline.IsPermanent(err) {
			t.Errorf("Apply: %v, want permanent", err)
		}
		if err := s.Prune(t.Context(), "absent", []pipeline.DocVersion{{UserID: "u", DocID: "d", Version: 1}}); !pipeline.IsPermanent(err) {
			t.Errorf("Prune: %v, want permanent", err)
		}
		_, err := s.Search(t.Context(), "absent", pipeline.Query{UserID: "u", Vector: Vec(1, 0), TopK: 1})
		if !errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("Search: %v, want ErrUnknownCollection", err)
		}
		_, _, err = s.List(t.Context(), "absent", "u", 10, "")
		if !errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("List: %v, want ErrUnknownCollection", err)
		}
	})

	t.Run("ApplyExactPayload", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "payload", pipeline.Dot)
		w := pipeline.DocWrite{UserID: "alice", DocID: "ec2/i-0abc123", Version: 42, Points: []pipeline.Point{
			{
				ID: pipeline.PointID("alice", "ec2/i-0abc123", 0), Vector: []float32{0.25, -1.5, 3, 0.125},
				UserID: "alice", DocID: "ec2/i-0abc123", ChunkIndex: 0, ChunkCount: 2, Text: "m5.xlarge in eu-west-1 ✓", Version: 42,
				TextHash: "hash-0",
				Metadata: map[string]any{
					"env": "prod", "cpus": int64(4), "load": 0.75, "spot": false, "none": nil, "n": 3,
					"tags": []any{"web", "tier1"}, "mixed": []any{int64(1), 2.5, true}, "ports": []string{"80", "443"},
				},
			},
			{ // the write supplies tenant, document and version; no metadata means {}
				ID: pipeline.PointID("alice", "ec2/i-0abc123", 1), Vector: []float32{1, 2, 3, 4},
				ChunkIndex: 1, ChunkCount: 2, Text: "owner=platform",
			},
		}}
		Apply(t, s, "payload", w)
		got := Doc(t, s, "payload", "alice", "ec2/i-0abc123")
		if len(got) != 2 {
			t.Fatalf("stored %d points, want 2", len(got))
		}
		want := []map[string]any{
			{
				"user_id": "alice", "doc_id": "ec2/i-0abc123", "chunk_index": int64(0), "chunk_count": int64(2),
				"text": "m5.xlarge in eu-west-1 ✓", "version": int64(42), "text_hash": "hash-0",
				"metadata": map[string]any{
					"env": "prod", "cpus": int64(4), "load": 0.75, "spot": false, "none": nil, "n": int64(3),
					"tags": []any{"web", "tier1"}, "mixed": []any{int64(1), 2.5, true}, "ports": []any{"80", "443"},
				},
			},
			{
				"user_id": "alice", "doc_id": "ec2/i-0abc123", "chunk_index": int64(1), "chunk_count": int64(2),
				"text": "owner=platform", "version": int64(42), "metadata": map[string]any{},
			},
		}
		for i := range got {
			if pl := payload(got[i]); !reflect.DeepEqual(pl, want[i]) {
				t.Errorf("point %d payload\n got %#v\nwant %#v", i, pl, want[i])
			}
			if got[i].ID != w.Points[i].ID || !reflect.DeepEqual(got[i].Vector, w.Points[i].Vector) {
				t.Errorf("point %d: id %s vector %v, want %s %v", i, got[i].ID, got[i].Vector, w.Points[i].ID, w.Points[i].Vector)
			}
		}

		// A newer version replaces the whole payload: no stale keys.
		w.Version = 43
		w.Points = w.Points[:1]
		w.Points[0].Version, w.Points[0].ChunkCount = 43, 1
		w.Points[0].Metadata, w.Points[0].TextHash = map[string]any{"only": "this"}, ""
		Apply(t, s, "payload", w)
		got = Doc(t, s, "payload", "alice", "ec2/i-0abc123")
		want1 := map[string]any{
			"user_id": "alice", "doc_id": "ec2/i-0abc123", "chunk_index": int64(0), "chunk_count": int64(1),
			"text": "m5.xlarge in eu-west-1 ✓", "version": int64(43), "metadata": map[string]any{"only": "this"},
		}
		if len(got) != 1 || !reflect.DeepEqual(payload(got[0]), want1) {
			t.Errorf("after v43: %+v", got)
		}
	})

	t.Run("ConditionalUpsert", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "cond", pipeline.Dot)
		Apply(t, s, "cond", Write("u", "d", 2, 2))
		// A stale, longer v1 arrives late: it must not touch v2's chunks,
		// but its extra chunk is inserted, which is why the worker prunes.
		Apply(t, s, "cond", Write("u", "d", 1, 3))
		got := Doc(t, s, "cond", "u", "d")
		if len(got) != 3 || got[0].Version != 2 || got[1].Version != 2 || got[2].Version != 1 ||
			got[0].Text != "d v2 chunk 0" || got[1].Text != "d v2 chunk 1" || got[0].ChunkCount != 2 ||
			!reflect.DeepEqual(got[0].Vector, Vec(2, 0)) {
			t.Fatalf("after v2, v1: %+v", got)
		}
		prune(t, s, "cond", pipeline.DocVersion{UserID: "u", DocID: "d", Version: 2})
		ExpectDoc(t, s, "cond", "u", "d", 2, 2)

		// Redelivery of the newest version changes nothing.
		Apply(t, s, "cond", Write("u", "d", 2, 2))
		ExpectDoc(t, s, "cond", "u", "d", 2, 2)
	})

	t.Run("ShrinkGrowDelete", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "lifecycle", pipeline.Cosine)
		Apply(t, s, "lifecycle", Write("u", "ghost", 1, 0)) // a delete of nothing stored
		Apply(t, s, "lifecycle", Write("u", "d", 1, 3))
		ExpectDoc(t, s, "lifecycle", "u", "d", 1, 3)
		Apply(t, s, "lifecycle", Write("u", "d", 2, 1)) // shrink
		ExpectDoc(t, s, "lifecycle", "u", "d", 2, 1)
		Apply(t, s, "lifecycle", Write("u", "d", 3, 4)) // grow
		ExpectDoc(t, s, "lifecycle", "u", "d", 3, 4)
		Apply(t, s, "lifecycle", Write("u", "d", 4, 0)) // delete
		ExpectDoc(t, s, "lifecycle", "u", "d", 4, 0)
		// A stale upsert after the delete is inserted, then pruned.
		Apply(t, s, "lifecycle", Write("u", "d", 3, 4))
		prune(t, s, "lifecycle", pipeline.DocVersion{UserID: "u", DocID: "d", Version: 4})
		ExpectDoc(t, s, "lifecycle", "u", "d", 4, 0)
		if n := len(Points(t, s, "lifecycle")); n != 0 {
			t.Errorf("%d points left", n)
		}
	})

	t.Run("TenantsAndDocsAreSeparate", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "tenants", pipeline.Cosine)
		Apply(t, s, "tenants", Write("alice", "d", 1, 2), Write("bob", "d", 5, 3), Write("alice", "e", 1, 1))
		Apply(t, s, "tenants", Write("alice", "d", 9, 0))
		prune(t, s, "tenants", pipeline.DocVersion{UserID: "alice", DocID: "e", Version: 1}) // nothing older
		ExpectDoc(t, s, "tenants", "alice", "d", 9, 0)
		ExpectDoc(t, s, "tenants", "bob", "d", 5, 3)
		ExpectDoc(t, s, "tenants", "alice", "e", 1, 1)
	})

	t.Run("ManyDocsInOneCall", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "many", pipeline.Cosine)
		var first, second []pipeline.DocWrite
		total := 0
		for i := range 150 {
			doc := fmt.Sprintf("doc-%03d", i)
			first = append(first, Write("u", doc, 1, 1+i%5))
			// Same call: an older version (fewer chunks) before the newer
			// one of the same document, for a third of the documents.
			if i%3 == 0 {
				second = append(second, Write("u", doc, 2, 1+i%4))
			}
			second = append(second, Write("u", doc, 3, 1+i%7))
			total += 1 + i%7
		}
		Apply(t, s, "many", first...)
		Apply(t, s, "many", second...)
		all := Points(t, s, "many")
		if len(all) != total {
			t.Fatalf("%d points, want %d", len(all), total)
		}
		for i := range 150 {
			ExpectDoc(t, s, "many", "u", fmt.Sprintf("doc-%03d", i), 3, 1+i%7)
		}
	})

	t.Run("MixedVersionsInOneRequest", func(t *testing.T) {
		// Writes packed into one request must each be judged against their
		// own document's stored version.
		s := open(t)
		Ensure(t, s, "mixed", pipeline.Cosine)
		var base, mixed []pipeline.DocWrite
		for i := range 40 {
			doc := fmt.Sprintf("doc-%02d", i)
			base = append(base, Write("u", doc, 3, 2))
			if i%2 == 0 {
				mixed = append(mixed, Write("u", doc, 2, 1)) // stale: must not overwrite
			} else {
				mixed = append(mixed, Write("u", doc, 4, 1+i%3)) // newer: replaces
			}
			mixed = append(mixed, Write("u", "new-"+doc, 7, 2))
		}
		Apply(t, s, "mixed", base...)
		Apply(t, s, "mixed", mixed...)
		for i := range 40 {
			doc := fmt.Sprintf("doc-%02d", i)
			if i%2 == 0 {
				ExpectDoc(t, s, "mixed", "u", doc, 3, 2)
			} else {
				ExpectDoc(t, s, "mixed", "u", doc, 4, 1+i%3)
			}
			ExpectDoc(t, s, "mixed", "u", "new-"+doc, 7, 2)
		}
	})

	t.Run("PermanentErrors", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "perm", pipeline.Cosine)
		bad := Write("u", "bad", 1, 2)
		bad.Points[1].Vector = []float32{1, 2, 3} // wrong length
		ws := []pipeline.DocWrite{Write("u", "a", 1, 2), bad, Write("u", "b", 1, 1)}
		err := s.Apply(t.Context(), "perm", ws)
		var be *pipeline.BatchError
		if !pipeline.IsPermanent(err) || !errors.As(err, &be) || len(be.Errs) != 3 ||
			be.Errs[0] != nil || be.Errs[1] == nil || be.Errs[2] != nil {
			t.Fatalf("want a permanent BatchError failing only write 1, got %#v", err)
		}
		ExpectDoc(t, s, "perm", "u", "a", 1, 2)
		ExpectDoc(t, s, "perm", "u", "b", 1, 1)
		ExpectDoc(t, s, "perm", "u", "bad", 1, 0)

		for name, w := range map[string]pipeline.DocWrite{
			"no doc id":     {UserID: "u", Version: 1},
			"no user id":    {DocID: "d", Version: 1},
			"version 0":     {UserID: "u", DocID: "d"},
			"huge version":  {UserID: "u", DocID: "d", Version: math.MaxInt64 + 1},
			"bad utf-8":     Write("u", "d\xff", 1, 1),
			"foreign point": {UserID: "u", DocID: "x", Version: 1, Points: Write("u", "y", 1, 1).Points},
			"NaN metadata":  {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0), Vector: Vec(1, 0), Metadata: map[string]any{"x": math.NaN()}}}},
			"bad metadata":  {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0), Vector: Vec(1, 0), Metadata: map[string]any{"x": struct{}{}}}}},
			"bad id":        {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: "not-a-uuid", Vector: Vec(1, 0)}}},
			"no vector":     {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0)}}},
		} {
			if err := s.Apply(t.Context(), "perm", []pipeline.DocWrite{w}); !pipeline.IsPermanent(err) {
				t.Errorf("%s: %v, want permanent", name, err)
			}
		}
		if err := s.Prune(t.Context(), "perm", []pipeline.DocVersion{{UserID: "u", DocID: "d"}}); !pipeline.IsPermanent(err) {
			t.Errorf("prune version 0: %v, want permanent", err)
		}
		if err := s.Apply(t.Context(), "perm", nil); err != nil {
			t.Errorf("empty Apply: %v", err)
		}
		if err := s.Prune(t.Context(), "perm", nil); err != nil {
			t.Errorf("empty Prune: %v", err)
		}
		if n := len(Points(t, s, "perm")); n != 3 {
			t.Errorf("%d points stored, want 3", n)
		}
	})

	t.Run("SearchTenantIsolation", func(t *testing.T) {
		s := open(t)
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
	})

	t.Run("SearchFilters", func(t *testing.T) {
		s := open(t)
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
	})

	// A hit scoring exactly the threshold is kept, for the distances too
	// (a distance equal to it is within it).
	t.Run("SearchThresholdEquality", func(t *testing.T) {
		s := open(t)
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
	})

	t.Run("SearchThresholdTopKOrder", func(t *testing.T) {
		s := open(t)
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
	})

	t.Run("SearchDistances", func(t *testing.T) {
		s := open(t)
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
	})

	t.Run("ListPages", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "listing", pipeline.Cosine)
		var ws []pipeline.DocWrite
		for i := range 23 {
			ws = append(ws, Write("alice", fmt.Sprintf("doc-%02d", i), uint64(i+1), 1+i%3))
		}
		for i := range 4 {
			ws = append(ws, Write("bob", fmt.Sprintf("bob-%d", i), 7, 2))
		}
		Apply(t, s, "listing", ws...)

		check := func(user string, limit, want int) {
			t.Helper()
			seen := map[string]bool{}
			cursor := ""
			for pages := 0; ; pages++ {
				docs, next, err := s.List(t.Context(), "listing", user, limit, cursor)
				if err != nil {
					t.Fatalf("List(%s, %d, %q): %v", user, limit, cursor, err)
				}
				if len(docs) > limit || (next != "" && len(docs) == 0) || pages > want {
					t.Fatalf("page %d: %d docs, next %q", pages, len(docs), next)
				}
				for _, d := range docs {
					if seen[d.DocID] {
						t.Fatalf("%s listed twice", d.DocID)
					}
					seen[d.DocID] = true
					var i int
					if user == "alice" {
						fmt.Sscanf(d.DocID, "doc-%d", &i)
						if d.Version != uint64(i+1) || d.ChunkCount != 1+i%3 ||
							!reflect.DeepEqual(d.Metadata, map[string]any{"v": int64(i + 1)}) {
							t.Errorf("%+v, want version %d, %d chunks, metadata v=%d", d, i+1, 1+i%3, i+1)
						}
					} else if !strings.HasPrefix(d.DocID, "bob-") || d.Version != 7 || d.ChunkCount != 2 {
						t.Errorf("bob's %+v", d)
					}
				}
				if next == "" {
					break
				}
				cursor = next
			}
			if len(seen) != want {
				t.Errorf("%s, limit %d: listed %d docs, want %d", user, limit, len(seen), want)
			}
		}
		for _, limit := range []int{1, 5, 23, 100} {
			check("alice", limit, 23)
		}
		check("bob", 3, 4)
		check("carol", 10, 0)

		// Documents that exist throughout a listing appear exactly once,
		// whatever changes meanwhile.
		docs, next, err := s.List(t.Context(), "listing", "alice", 5, "")
		if err != nil || next == "" || len(docs) != 5 {
			t.Fatalf("first page: %v %q %v", docs, next, err)
		}
		Apply(t, s, "listing", Write("alice", docs[0].DocID, 100, 0), Write("alice", "doc-22", 100, 0),
			Write("alice", "doc-00a", 1, 1), Write("alice", "zzz", 1, 1))
		seen := map[string]int{}
		for _, d := range docs {
			seen[d.DocID]++
		}
		for next != "" {
			docs, next, err = s.List(t.Context(), "listing", "alice", 5, next)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range docs {
				seen[d.DocID]++
			}
		}
		for i := range 22 {
			if id := fmt.Sprintf("doc-%02d", i); seen[id] != 1 {
				t.Errorf("%s listed %d times", id, seen[id])
			}
		}
		if seen["doc-22"] > 1 || seen["zzz"] > 1 {
			t.Errorf("listed %v", seen)
		}

		for _, cursor := range []string{"not a cursor!", "dGVzdA", "u"} {
			_, _, err := s.List(t.Context(), "listing", "alice", 5, cursor)
			if !errors.Is(err, pipeline.ErrInvalidCursor) || !pipeline.IsPermanent(err) {
				t.Errorf("cursor %q: %v, want permanent ErrInvalidCursor", cursor, err)
			}
		}
		for _, limit := range []int{0, pipeline.MaxLimit + 1} {
			if _, _, err := s.List(t.Context(), "listing", "alice", limit, ""); !pipeline.IsPermanent(err) {
				t.Errorf("limit %d: %v, want a permanent error", limit, err)
			}
		}
	})

	t.Run("SearchErrors", func(t *testing.T) {
		s := open(t)
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
		} {
			_, err := s.Search(t.Context(), "searcherr", q)
			if err == nil || !pipeline.IsPermanent(err) || errors.Is(err, pipeline.ErrUnknownCollection) {
				t.Errorf("invalid query %+v: %v, want a permanent error", q, err)
			}
		}
	})

	t.Run("StoredVectors", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "reuse", pipeline.Dot)
		const n = 30
		w := pipeline.DocWrite{UserID: "alice", DocID: "doc", Version: 1}
		for k := range n + 1 {
			p := pipeline.Point{ID: pipeline.PointID("alice", "doc", k), Vector: []float32{float32(k), 1, 0, 0}, ChunkIndex: k,
				ChunkCount: n + 1, Text: fmt.Sprint("chunk ", k), TextHash: fmt.Sprint("hash-", k)}
			if k == n {
				p.TextHash = "" // a point stored without a hash is never found
			}
			w.Points = append(w.Points, p)
		}
		Apply(t, s, "reuse", w, VecWrite("bob", "doc", 1, nil, 9, 9, 9, 9))
		var ids, hashes []string
		for k := range n + 5 { // five ids that do not exist
			ids = append(ids, pipeline.PointID("alice", "doc", k))
			if k%2 == 0 {
				hashes = append(hashes, fmt.Sprint("hash-", k))
			}
		}
		got, err := s.StoredVectors(t.Context(), "reuse", ids, append(hashes, "hash-unknown", ""))
		if err != nil || len(got) != n/2 {
			t.Fatalf("%d vectors (%v), want %d", len(got), err, n/2)
		}
		for k := 0; k < n; k += 2 {
			if v := got[fmt.Sprint("hash-", k)]; !reflect.DeepEqual(v, []float32{float32(k), 1, 0, 0}) {
				t.Errorf("vector of hash-%d: %v", k, v)
			}
		}
		got, err = s.StoredVectors(t.Context(), "reuse", ids[:10], hashes) // only the ids asked for
		if err != nil || len(got) != 5 {
			t.Errorf("%d vectors (%v), want the 5 of the first 10 ids", len(got), err)
		}
		got, err = s.StoredVectors(t.Context(), "reuse", nil, hashes)
		if err != nil || len(got) != 0 {
			t.Errorf("no ids: %v, %v", got, err)
		}
		if _, err := s.StoredVectors(t.Context(), "missing", ids, hashes); !pipeline.IsPermanent(err) {
			t.Errorf("unknown collection: %v, want permanent", err)
		}
	})

	t.Run("Scroll", func(t *testing.T) {
		s := open(t)
		Ensure(t, s, "scroll", pipeline.Dot)
		want := map[string]pipeline.Point{}
		for _, user := range []string{"alice", "bob", "carol"} {
			var ws []pipeline.DocWrite
			for d := range 9 {
				w := Write(user, fmt.Sprintf("d%d", d), uint64(d+1), 1+d%3)
				for _, p := range w.Points {
					want[p.ID] = p
				}
				ws = append(ws, w)
			}
			Apply(t, s, "scroll", ws...)
		}
		all := Points(t, s, "scroll")
		if len(all) != len(want) {
			t.Fatalf("scrolled %d points, want %d", len(all), len(want))
		}
		for _, p := range all {
			w := want[p.ID]
			if p.UserID != w.UserID || p.DocID != w.DocID || p.ChunkIndex != w.ChunkIndex || p.ChunkCount != w.ChunkCount ||
				p.Text != w.Text || p.Version != w.Version || !reflect.DeepEqual(p.Vector, w.Vector) ||
				!reflect.DeepEqual(p.Metadata, w.Metadata) {
				t.Errorf("scrolled %+v, want %+v", p, w)
			}
		}
		// Resuming after any point returns exactly the rest.
		mid := all[len(all)/2].ID
		rest, _, err := s.Scroll(t.Context(), "scroll", mid, len(all))
		if err != nil || len(rest) != len(all)-len(all)/2-1 || rest[0].ID != all[len(all)/2+1].ID {
			t.Errorf("resume after %s: %d points (%v), want %d", mid, len(rest), err, len(all)-len(all)/2-1)
		}
	})
}

func ptr[T any](v T) *T { return &v }

// DocKey names a document in a Model.
type DocKey struct{ User, Doc string }

// Model is the expected state: each document's newest write.
type Model map[DocKey]pipeline.DocWrite

func (m Model) Apply(ws ...pipeline.DocWrite) {
	for _, w := range ws {
		m[DocKey{w.UserID, w.DocID}] = w
	}
}

func (m Model) Clone() Model {
	out := make(Model, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// diff says how the points of coll differ from m ("" when they do not).
// Metadata in m must be in stored form (int64, float64, []any).
func (m Model) Diff(got []pipeline.Point) string {
	want := map[string]pipeline.Point{}
	for _, w := range m {
		for _, p := range w.Points {
			p.UserID, p.DocID, p.Version = w.UserID, w.DocID, w.Version
			if p.Metadata == nil {
				p.Metadata = map[string]any{}
			}
			want[p.ID] = p
		}
	}
	var problems []string
	for _, p := range got {
		w, ok := want[p.ID]
		switch {
		case !ok:
			problems = append(problems, fmt.Sprintf("unexpected %s/%s#%d v%d", p.UserID, p.DocID, p.ChunkIndex, p.Version))
		case !reflect.DeepEqual(p, w):
			problems = append(problems, fmt.Sprintf("%s/%s#%d: got v%d %+v, want v%d %+v", p.UserID, p.DocID, p.ChunkIndex, p.Version, p, w.Version, w))
		}
		delete(want, p.ID)
	}
	for _, p := range want {
		problems = append(problems, fmt.Sprintf("missing %s/%s#%d v%d", p.UserID, p.DocID, p.ChunkIndex, p.Version))
	}
	sort.Strings(problems)
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("… %d more", len(problems)-5))
	}
	return strings.Join(problems, "\n")
}

// Vec is a deterministic, non-zero vector of a chunk.
func Vec(version uint64, chunk int) []float32 {
	return []float32{float32(version), float32(chunk + 1), 0.5, -1}
}

// Write builds a document write of version v with n chunks (a delete for n=0).
func Write(user, doc string, v uint64, n int) pipeline.DocWrite {
	w := pipeline.DocWrite{UserID: user, DocID: doc, Version: v}
	for i := range n {
		w.Points = append(w.Points, pipeline.Point{
			ID:         pipeline.PointID(user, doc, i),
			Vector:     Vec(v, i),
			UserID:     user,
			DocID:      doc,
			ChunkIndex: i,
			ChunkCount: n,
			Text:       fmt.Sprintf("%s v%d chunk %d", doc, v, i),
			Metadata:   map[string]any{"v": int64(v)},
			Version:    v,
		})
	}
	return w
}
