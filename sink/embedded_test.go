package sink_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/sink"
)

// contractStore is what the contract suite needs of a vector store: the
// sink, the search index, and Scroll to read every stored point back.
type contractStore interface {
	pipeline.Sink
	pipeline.VectorSource
	search.Index
	Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error)
}

// openEmbedded opens a store in dir, closed when the test ends.
func openEmbedded(t testing.TB, dir string, mutate func(*sink.EmbeddedConfig)) *sink.Embedded {
	t.Helper()
	cfg := sink.EmbeddedConfig{Dir: dir, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := sink.OpenEmbedded(t.Context(), cfg)
	if err != nil {
		t.Fatalf("OpenEmbedded: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEmbeddedContract(t *testing.T) {
	testStoreContract(t, func(t *testing.T) contractStore { return openEmbedded(t, t.TempDir(), nil) })
}

// TestEmbeddedContractReopened runs the contract against a store that is
// closed and reopened after every write, and compacted before every other
// reopening: every semantic must survive the log replay and the snapshot.
func TestEmbeddedContractReopened(t *testing.T) {
	testStoreContract(t, func(t *testing.T) contractStore {
		r := &reopeningStore{t: t, dir: t.TempDir()}
		r.s = openEmbedded(t, r.dir, nil)
		return r
	})
}

// TestContractQdrant runs the contract suite against a real Qdrant node,
// reading points back with the Qdrant client's scroll: the embedded store's
// semantics are checked against the real thing.
func TestContractQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	// Small requests, several at once: the contract's many-document calls
	// then also exercise the packing of writes into parallel requests.
	testStoreContract(t, func(t *testing.T) contractStore {
		return newSink(t, node, func(c *sink.QdrantConfig) {
			c.BatchPoints, c.Parallelism, c.WriteOrdering = 10, 4, sink.OrderingStrong
		})
	})
}

// reopeningStore is an embedded store reopened after each write.
type reopeningStore struct {
	t      *testing.T
	dir    string
	s      *sink.Embedded
	writes int
}

func (r *reopeningStore) reopen(collection string) {
	r.t.Helper()
	r.writes++
	if r.writes%2 == 0 {
		if err := r.s.Compact(r.t.Context(), collection); err != nil && !errors.Is(err, pipeline.ErrUnknownCollection) {
			r.t.Fatalf("Compact: %v", err)
		}
	}
	if err := r.s.Close(); err != nil {
		r.t.Fatalf("Close: %v", err)
	}
	r.s = openEmbedded(r.t, r.dir, nil)
}

func (r *reopeningStore) EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error {
	defer r.reopen(c.Name)
	return r.s.EnsureCollection(ctx, c, create)
}

func (r *reopeningStore) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	defer r.reopen(collection)
	return r.s.Apply(ctx, collection, writes)
}

func (r *reopeningStore) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	defer r.reopen(collection)
	return r.s.Prune(ctx, collection, docs)
}

func (r *reopeningStore) Search(ctx context.Context, collection string, q search.Query) ([]search.Hit, error) {
	return r.s.Search(ctx, collection, q)
}

func (r *reopeningStore) List(ctx context.Context, collection, userID string, limit int, cursor string) ([]search.Doc, string, error) {
	return r.s.List(ctx, collection, userID, limit, cursor)
}

func (r *reopeningStore) StoredVectors(ctx context.Context, collection string, ids, hashes []string) (map[string][]float32, error) {
	return r.s.StoredVectors(ctx, collection, ids, hashes)
}

func (r *reopeningStore) Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error) {
	return r.s.Scroll(ctx, collection, after, limit)
}

// Contract helpers; dims, vec and write come from qdrant_test.go.

func csEnsure(t *testing.T, s contractStore, name string, d pipeline.Distance) {
	t.Helper()
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: name, Dims: dims, Distance: d}, true); err != nil {
		t.Fatalf("EnsureCollection(%s): %v", name, err)
	}
}

func csApply(t *testing.T, s contractStore, coll string, ws ...pipeline.DocWrite) {
	t.Helper()
	if err := s.Apply(t.Context(), coll, ws); err != nil {
		t.Fatalf("Apply: %v", err)
	}
}

func csPrune(t *testing.T, s contractStore, coll string, ds ...pipeline.DocVersion) {
	t.Helper()
	if err := s.Prune(t.Context(), coll, ds); err != nil {
		t.Fatalf("Prune: %v", err)
	}
}

// csPoints reads every point of coll with Scroll, in small pages, checking
// that ids come in order and once each.
func csPoints(t testing.TB, s contractStore, coll string) []pipeline.Point {
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

// csDoc returns a document's points, by chunk index.
func csDoc(t *testing.T, s contractStore, coll, user, doc string) []pipeline.Point {
	t.Helper()
	var out []pipeline.Point
	for _, p := range csPoints(t, s, coll) {
		if p.UserID == user && p.DocID == doc {
			out = append(out, p)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ChunkIndex < out[j].ChunkIndex })
	return out
}

// csExpectDoc checks that exactly the n chunks of version v are stored.
func csExpectDoc(t *testing.T, s contractStore, coll, user, doc string, v uint64, n int) {
	t.Helper()
	got := csDoc(t, s, coll, user, doc)
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

// csPayload is a point's payload as Qdrant stores it (CONTRACT §3, and
// text_hash when the point has one).
func csPayload(p pipeline.Point) map[string]any {
	pl := map[string]any{
		"user_id": p.UserID, "doc_id": p.DocID, "chunk_index": int64(p.ChunkIndex), "chunk_count": int64(p.ChunkCount),
		"text": p.Text, "metadata": p.Metadata, "version": int64(p.Version),
	}
	if p.TextHash != "" {
		pl["text_hash"] = p.TextHash
	}
	return pl
}

// csVecWrite is a one-chunk write with the given vector and metadata.
func csVecWrite(user, doc string, v uint64, md map[string]any, vector ...float32) pipeline.DocWrite {
	return pipeline.DocWrite{UserID: user, DocID: doc, Version: v, Points: []pipeline.Point{{
		ID: pipeline.PointID(user, doc, 0), Vector: vector, UserID: user, DocID: doc,
		ChunkCount: 1, Text: doc, Metadata: md, Version: v,
	}}}
}

func csHitIDs(hits []search.Hit) []string {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.DocID
	}
	return ids
}

func csSearch(t *testing.T, s contractStore, coll string, q search.Query) []search.Hit {
	t.Helper()
	hits, err := s.Search(t.Context(), coll, q)
	if err != nil {
		t.Fatalf("Search(%+v): %v", q, err)
	}
	return hits
}

// testStoreContract runs the semantic tests every vector store must pass,
// the Qdrant sink's and the embedded store's alike. open returns a store for
// one subtest; subtests use distinct collection names, so stores may share
// a server.
func testStoreContract(t *testing.T, open func(t *testing.T) contractStore) {
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
		csEnsure(t, s, "docs", "") // 4 dims, cosine by default
		csEnsure(t, s, "docs", pipeline.Cosine)
		err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: 1024, Distance: pipeline.Cosine}, true)
		if err == nil || !strings.Contains(err.Error(), "has 4 dimensions") || !strings.Contains(err.Error(), "configured 1024") ||
			!pipeline.IsPermanent(err) {
			t.Errorf("dims mismatch: %v, want a permanent error naming 4 and 1024", err)
		}
		err = s.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: dims, Distance: pipeline.Euclid}, true)
		if err == nil || !strings.Contains(err.Error(), "has distance cosine") || !strings.Contains(err.Error(), "configured euclid") ||
			!pipeline.IsPermanent(err) {
			t.Errorf("distance mismatch: %v, want a permanent error naming cosine and euclid", err)
		}
	})

	t.Run("UnknownCollection", func(t *testing.T) {
		s := open(t)
		for range 2 { // the first call must not have created it
			err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "absent", Dims: dims}, false)
			if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
				t.Fatalf("EnsureCollection: %v, want permanent ErrUnknownCollection", err)
			}
		}
		if err := s.Apply(t.Context(), "absent", []pipeline.DocWrite{write("u", "d", 1, 1)}); !pipeline.IsPermanent(err) {
			t.Errorf("Apply: %v, want permanent", err)
		}
		if err := s.Prune(t.Context(), "absent", []pipeline.DocVersion{{UserID: "u", DocID: "d", Version: 1}}); !pipeline.IsPermanent(err) {
			t.Errorf("Prune: %v, want permanent", err)
		}
		_, err := s.Search(t.Context(), "absent", search.Query{UserID: "u", Vector: vec(1, 0), TopK: 1})
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
		csEnsure(t, s, "payload", pipeline.Dot)
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
		csApply(t, s, "payload", w)
		got := csDoc(t, s, "payload", "alice", "ec2/i-0abc123")
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
			if pl := csPayload(got[i]); !reflect.DeepEqual(pl, want[i]) {
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
		csApply(t, s, "payload", w)
		got = csDoc(t, s, "payload", "alice", "ec2/i-0abc123")
		want1 := map[string]any{
			"user_id": "alice", "doc_id": "ec2/i-0abc123", "chunk_index": int64(0), "chunk_count": int64(1),
			"text": "m5.xlarge in eu-west-1 ✓", "version": int64(43), "metadata": map[string]any{"only": "this"},
		}
		if len(got) != 1 || !reflect.DeepEqual(csPayload(got[0]), want1) {
			t.Errorf("after v43: %+v", got)
		}
	})

	t.Run("ConditionalUpsert", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "cond", pipeline.Dot)
		csApply(t, s, "cond", write("u", "d", 2, 2))
		// A stale, longer v1 arrives late: it must not touch v2's chunks,
		// but its extra chunk is inserted, which is why the worker prunes.
		csApply(t, s, "cond", write("u", "d", 1, 3))
		got := csDoc(t, s, "cond", "u", "d")
		if len(got) != 3 || got[0].Version != 2 || got[1].Version != 2 || got[2].Version != 1 ||
			got[0].Text != "d v2 chunk 0" || got[1].Text != "d v2 chunk 1" || got[0].ChunkCount != 2 ||
			!reflect.DeepEqual(got[0].Vector, vec(2, 0)) {
			t.Fatalf("after v2, v1: %+v", got)
		}
		csPrune(t, s, "cond", pipeline.DocVersion{UserID: "u", DocID: "d", Version: 2})
		csExpectDoc(t, s, "cond", "u", "d", 2, 2)

		// Redelivery of the newest version changes nothing.
		csApply(t, s, "cond", write("u", "d", 2, 2))
		csExpectDoc(t, s, "cond", "u", "d", 2, 2)
	})

	t.Run("ShrinkGrowDelete", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "lifecycle", pipeline.Cosine)
		csApply(t, s, "lifecycle", write("u", "ghost", 1, 0)) // a delete of nothing stored
		csApply(t, s, "lifecycle", write("u", "d", 1, 3))
		csExpectDoc(t, s, "lifecycle", "u", "d", 1, 3)
		csApply(t, s, "lifecycle", write("u", "d", 2, 1)) // shrink
		csExpectDoc(t, s, "lifecycle", "u", "d", 2, 1)
		csApply(t, s, "lifecycle", write("u", "d", 3, 4)) // grow
		csExpectDoc(t, s, "lifecycle", "u", "d", 3, 4)
		csApply(t, s, "lifecycle", write("u", "d", 4, 0)) // delete
		csExpectDoc(t, s, "lifecycle", "u", "d", 4, 0)
		// A stale upsert after the delete is inserted, then pruned.
		csApply(t, s, "lifecycle", write("u", "d", 3, 4))
		csPrune(t, s, "lifecycle", pipeline.DocVersion{UserID: "u", DocID: "d", Version: 4})
		csExpectDoc(t, s, "lifecycle", "u", "d", 4, 0)
		if n := len(csPoints(t, s, "lifecycle")); n != 0 {
			t.Errorf("%d points left", n)
		}
	})

	t.Run("TenantsAndDocsAreSeparate", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "tenants", pipeline.Cosine)
		csApply(t, s, "tenants", write("alice", "d", 1, 2), write("bob", "d", 5, 3), write("alice", "e", 1, 1))
		csApply(t, s, "tenants", write("alice", "d", 9, 0))
		csPrune(t, s, "tenants", pipeline.DocVersion{UserID: "alice", DocID: "e", Version: 1}) // nothing older
		csExpectDoc(t, s, "tenants", "alice", "d", 9, 0)
		csExpectDoc(t, s, "tenants", "bob", "d", 5, 3)
		csExpectDoc(t, s, "tenants", "alice", "e", 1, 1)
	})

	t.Run("ManyDocsInOneCall", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "many", pipeline.Cosine)
		var first, second []pipeline.DocWrite
		total := 0
		for i := range 150 {
			doc := fmt.Sprintf("doc-%03d", i)
			first = append(first, write("u", doc, 1, 1+i%5))
			// Same call: an older version (fewer chunks) before the newer
			// one of the same document, for a third of the documents.
			if i%3 == 0 {
				second = append(second, write("u", doc, 2, 1+i%4))
			}
			second = append(second, write("u", doc, 3, 1+i%7))
			total += 1 + i%7
		}
		csApply(t, s, "many", first...)
		csApply(t, s, "many", second...)
		all := csPoints(t, s, "many")
		if len(all) != total {
			t.Fatalf("%d points, want %d", len(all), total)
		}
		for i := range 150 {
			csExpectDoc(t, s, "many", "u", fmt.Sprintf("doc-%03d", i), 3, 1+i%7)
		}
	})

	t.Run("MixedVersionsInOneRequest", func(t *testing.T) {
		// Writes packed into one request must each be judged against their
		// own document's stored version.
		s := open(t)
		csEnsure(t, s, "mixed", pipeline.Cosine)
		var base, mixed []pipeline.DocWrite
		for i := range 40 {
			doc := fmt.Sprintf("doc-%02d", i)
			base = append(base, write("u", doc, 3, 2))
			if i%2 == 0 {
				mixed = append(mixed, write("u", doc, 2, 1)) // stale: must not overwrite
			} else {
				mixed = append(mixed, write("u", doc, 4, 1+i%3)) // newer: replaces
			}
			mixed = append(mixed, write("u", "new-"+doc, 7, 2))
		}
		csApply(t, s, "mixed", base...)
		csApply(t, s, "mixed", mixed...)
		for i := range 40 {
			doc := fmt.Sprintf("doc-%02d", i)
			if i%2 == 0 {
				csExpectDoc(t, s, "mixed", "u", doc, 3, 2)
			} else {
				csExpectDoc(t, s, "mixed", "u", doc, 4, 1+i%3)
			}
			csExpectDoc(t, s, "mixed", "u", "new-"+doc, 7, 2)
		}
	})

	t.Run("PermanentErrors", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "perm", pipeline.Cosine)
		bad := write("u", "bad", 1, 2)
		bad.Points[1].Vector = []float32{1, 2, 3} // wrong length
		ws := []pipeline.DocWrite{write("u", "a", 1, 2), bad, write("u", "b", 1, 1)}
		err := s.Apply(t.Context(), "perm", ws)
		var be *pipeline.BatchError
		if !pipeline.IsPermanent(err) || !errors.As(err, &be) || len(be.Errs) != 3 ||
			be.Errs[0] != nil || be.Errs[1] == nil || be.Errs[2] != nil {
			t.Fatalf("want a permanent BatchError failing only write 1, got %#v", err)
		}
		csExpectDoc(t, s, "perm", "u", "a", 1, 2)
		csExpectDoc(t, s, "perm", "u", "b", 1, 1)
		csExpectDoc(t, s, "perm", "u", "bad", 1, 0)

		for name, w := range map[string]pipeline.DocWrite{
			"no doc id":     {UserID: "u", Version: 1},
			"no user id":    {DocID: "d", Version: 1},
			"version 0":     {UserID: "u", DocID: "d"},
			"huge version":  {UserID: "u", DocID: "d", Version: math.MaxInt64 + 1},
			"bad utf-8":     write("u", "d\xff", 1, 1),
			"foreign point": {UserID: "u", DocID: "x", Version: 1, Points: write("u", "y", 1, 1).Points},
			"NaN metadata":  {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0), Vector: vec(1, 0), Metadata: map[string]any{"x": math.NaN()}}}},
			"bad metadata":  {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0), Vector: vec(1, 0), Metadata: map[string]any{"x": struct{}{}}}}},
			"bad id":        {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: "not-a-uuid", Vector: vec(1, 0)}}},
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
		if n := len(csPoints(t, s, "perm")); n != 3 {
			t.Errorf("%d points stored, want 3", n)
		}
	})

	t.Run("SearchTenantIsolation", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "isolation", pipeline.Dot)
		csApply(t, s, "isolation",
			csVecWrite("alice", "a1", 1, nil, 1, 0, 0, 0),
			csVecWrite("alice", "a2", 1, nil, 0.5, 0.5, 0, 0),
			csVecWrite("bob", "b1", 1, map[string]any{"user_id": "alice"}, 10, 0, 0, 0),
			csVecWrite("bob", "a1", 1, nil, 5, 0, 0, 0), // same doc id, other tenant
		)
		q := search.Query{UserID: "alice", Vector: []float32{1, 0, 0, 0}, TopK: 10}
		hits := csSearch(t, s, "isolation", q)
		if got := csHitIDs(hits); !slices.Equal(got, []string{"a1", "a2"}) || hits[0].Score != 1 {
			t.Errorf("alice's hits %v (%+v), want a1 (score 1), a2", got, hits)
		}
		hits = csSearch(t, s, "isolation", search.Query{UserID: "bob", Vector: []float32{1, 0, 0, 0}, TopK: 10})
		if got := csHitIDs(hits); !slices.Equal(got, []string{"b1", "a1"}) || hits[1].Score != 5 {
			t.Errorf("bob's hits %+v, want b1, a1 (score 5)", hits)
		}
		if hits := csSearch(t, s, "isolation", search.Query{UserID: "carol", Vector: []float32{1, 0, 0, 0}, TopK: 10}); len(hits) != 0 {
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
		csEnsure(t, s, "filters", pipeline.Dot)
		csApply(t, s, "filters",
			csVecWrite("u", "d1", 1, map[string]any{"env": "prod", "cpus": int64(4), "spot": false, "tags": []any{"web", "tier1"}, "load": 0.5}, 4, 0, 0, 0),
			csVecWrite("u", "d2", 1, map[string]any{"env": "dev", "cpus": 4.0, "spot": true, "tags": []string{"db"}, "load": int64(1)}, 3, 0, 0, 0),
			csVecWrite("u", "d3", 1, map[string]any{"env": "prod", "cpus": int64(8), "tags": "web", "ids": []int64{7, 9}}, 2, 0, 0, 0),
			csVecWrite("u", "d4", 1, nil, 1, 0, 0, 0),
			csVecWrite("other", "x", 1, map[string]any{"env": "prod"}, 9, 0, 0, 0),
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
			hits := csSearch(t, s, "filters", search.Query{UserID: "u", Vector: []float32{1, 0, 0, 0}, TopK: 10, Filter: tc.filter})
			if got := csHitIDs(hits); !slices.Equal(got, tc.want) && !(len(got) == 0 && len(tc.want) == 0) {
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
			csEnsure(t, s, name, tc.d)
			csApply(t, s, name, csVecWrite("u", "near", 1, nil, 1, 0, 0, 0), csVecWrite("u", "exact", 1, nil, 3, 0, 0, 0),
				csVecWrite("u", "far", 1, nil, 5, 0, 0, 0))
			hits := csSearch(t, s, name, search.Query{UserID: "u", Vector: tc.query, TopK: 10, ScoreThreshold: csPtr(float32(3))})
			if got := csHitIDs(hits); !slices.Equal(got, tc.want) {
				t.Errorf("%s: %v, want %v", tc.d, got, tc.want)
			}
		}
	})

	t.Run("SearchThresholdTopKOrder", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "ranking", pipeline.Cosine)
		var ws []pipeline.DocWrite
		angles := []float64{50, 10, 80, 30, 170, 0} // degrees from the query
		for i, deg := range angles {
			rad := deg * math.Pi / 180
			norm := float64(i + 1) // cosine ignores the length
			ws = append(ws, csVecWrite("u", fmt.Sprintf("deg%03.0f", deg), 1, nil,
				float32(norm*math.Cos(rad)), float32(norm*math.Sin(rad)), 0, 0))
		}
		csApply(t, s, "ranking", ws...)
		q := search.Query{UserID: "u", Vector: []float32{3, 0, 0, 0}, TopK: 10}
		hits := csSearch(t, s, "ranking", q)
		want := []string{"deg000", "deg010", "deg030", "deg050", "deg080", "deg170"}
		if got := csHitIDs(hits); !slices.Equal(got, want) {
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
		if got := csHitIDs(csSearch(t, s, "ranking", q)); !slices.Equal(got, want[:3]) {
			t.Errorf("top 3: %v, want %v", got, want[:3])
		}
		q.TopK, q.ScoreThreshold = 10, csPtr(float32(0.6))
		if got := csHitIDs(csSearch(t, s, "ranking", q)); !slices.Equal(got, want[:4]) {
			t.Errorf("threshold 0.6: %v, want %v", got, want[:4])
		}
		q.ScoreThreshold = csPtr(float32(1.5))
		if got := csSearch(t, s, "ranking", q); len(got) != 0 {
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
			csEnsure(t, s, name, tc.d)
			for i, p := range points {
				csApply(t, s, name, csVecWrite("u", fmt.Sprintf("p%d", i), 1, nil, p...))
			}
			q := search.Query{UserID: "u", Vector: query, TopK: 10}
			hits := csSearch(t, s, name, q)
			if got := csHitIDs(hits); !slices.Equal(got, tc.order) {
				t.Errorf("%s: order %v, want %v", tc.d, got, tc.order)
				continue
			}
			for i, h := range hits {
				if math.Abs(float64(h.Score)-tc.scores[i]) > 1e-4 {
					t.Errorf("%s: %s scores %v, want %v", tc.d, h.DocID, h.Score, tc.scores[i])
				}
			}
			q.ScoreThreshold = &tc.threshold
			if got := csHitIDs(csSearch(t, s, name, q)); !slices.Equal(got, tc.order[:tc.kept]) {
				t.Errorf("%s: threshold %v kept %v, want %v", tc.d, tc.threshold, got, tc.order[:tc.kept])
			}
		}
		// Cosine collections store vectors normalised, as Qdrant does.
		got := csDoc(t, s, "dist-cosine", "u", "p1")
		want := []float32{0, float32(3 / math.Sqrt(10)), float32(1 / math.Sqrt(10)), 0}
		for i := range want {
			if len(got) != 1 || math.Abs(float64(got[0].Vector[i]-want[i])) > 1e-6 {
				t.Fatalf("stored cosine vector %+v, want %v", got, want)
			}
		}
	})

	t.Run("ListPages", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "listing", pipeline.Cosine)
		var ws []pipeline.DocWrite
		for i := range 23 {
			ws = append(ws, write("alice", fmt.Sprintf("doc-%02d", i), uint64(i+1), 1+i%3))
		}
		for i := range 4 {
			ws = append(ws, write("bob", fmt.Sprintf("bob-%d", i), 7, 2))
		}
		csApply(t, s, "listing", ws...)

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
		csApply(t, s, "listing", write("alice", docs[0].DocID, 100, 0), write("alice", "doc-22", 100, 0),
			write("alice", "doc-00a", 1, 1), write("alice", "zzz", 1, 1))
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
			if !errors.Is(err, search.ErrInvalidCursor) || !pipeline.IsPermanent(err) {
				t.Errorf("cursor %q: %v, want permanent ErrInvalidCursor", cursor, err)
			}
		}
		for _, limit := range []int{0, search.MaxLimit + 1} {
			if _, _, err := s.List(t.Context(), "listing", "alice", limit, ""); !pipeline.IsPermanent(err) {
				t.Errorf("limit %d: %v, want a permanent error", limit, err)
			}
		}
	})

	t.Run("SearchErrors", func(t *testing.T) {
		s := open(t)
		csEnsure(t, s, "searcherr", pipeline.Cosine)
		q0 := vec(1, 0)
		for _, q := range []search.Query{
			{UserID: "alice", Vector: q0, TopK: 0},
			{UserID: "alice", Vector: q0, TopK: search.MaxTopK + 1},
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
		csEnsure(t, s, "reuse", pipeline.Dot)
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
		csApply(t, s, "reuse", w, csVecWrite("bob", "doc", 1, nil, 9, 9, 9, 9))
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
		csEnsure(t, s, "scroll", pipeline.Dot)
		want := map[string]pipeline.Point{}
		for _, user := range []string{"alice", "bob", "carol"} {
			var ws []pipeline.DocWrite
			for d := range 9 {
				w := write(user, fmt.Sprintf("d%d", d), uint64(d+1), 1+d%3)
				for _, p := range w.Points {
					want[p.ID] = p
				}
				ws = append(ws, w)
			}
			csApply(t, s, "scroll", ws...)
		}
		all := csPoints(t, s, "scroll")
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

func csPtr[T any](v T) *T { return &v }

// storeDocKey names a document in a storeModel.
type storeDocKey struct{ user, doc string }

// storeModel is the expected state: each document's newest write.
type storeModel map[storeDocKey]pipeline.DocWrite

func (m storeModel) apply(ws ...pipeline.DocWrite) {
	for _, w := range ws {
		m[storeDocKey{w.UserID, w.DocID}] = w
	}
}

func (m storeModel) clone() storeModel {
	out := make(storeModel, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// diff says how the points of coll differ from m ("" when they do not).
// Metadata in m must be in stored form (int64, float64, []any).
func (m storeModel) diff(got []pipeline.Point) string {
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

func TestEmbeddedConfig(t *testing.T) {
	for name, cfg := range map[string]sink.EmbeddedConfig{
		"no dir":           {},
		"negative compact": {Dir: t.TempDir(), CompactBytes: -1},
		"negative search":  {Dir: t.TempDir(), SearchParallelism: -1},
	} {
		if s, err := sink.OpenEmbedded(t.Context(), cfg); err == nil {
			s.Close()
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEmbeddedUnknownCollectionErrors(t *testing.T) {
	s := openEmbedded(t, t.TempDir(), nil)
	isUnknown := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
			t.Errorf("%s: %v, want permanent ErrUnknownCollection", what, err)
		}
	}
	isUnknown("Apply", s.Apply(t.Context(), "absent", []pipeline.DocWrite{write("u", "d", 1, 1)}))
	isUnknown("Prune", s.Prune(t.Context(), "absent", []pipeline.DocVersion{{UserID: "u", DocID: "d", Version: 1}}))
	isUnknown("Upsert", s.Upsert(t.Context(), "absent", write("u", "d", 1, 1).Points))
	_, err := s.Search(t.Context(), "absent", search.Query{UserID: "u", Vector: vec(1, 0), TopK: 1})
	isUnknown("Search", err)
	_, _, err = s.List(t.Context(), "absent", "u", 1, "")
	isUnknown("List", err)
	_, _, err = s.Scroll(t.Context(), "absent", "", 1)
	isUnknown("Scroll", err)
	_, err = s.Count(t.Context(), "absent")
	isUnknown("Count", err)
	isUnknown("Compact", s.Compact(t.Context(), "absent"))
	for name, c := range map[string]pipeline.Collection{
		"bad name":  {Name: "Bad/Name", Dims: 4},
		"no dims":   {Name: "ok", Dims: 0},
		"bad dist":  {Name: "ok", Dims: 4, Distance: "hamming"},
		"too long":  {Name: strings.Repeat("a", 65), Dims: 4},
		"dot first": {Name: ".tmp-x", Dims: 4},
	} {
		if err := s.EnsureCollection(t.Context(), c, true); !pipeline.IsPermanent(err) {
			t.Errorf("%s: %v, want permanent", name, err)
		}
	}
	csEnsure(t, s, "c", pipeline.Dot)
	if _, _, err := s.Scroll(t.Context(), "c", "nope", 1); !pipeline.IsPermanent(err) {
		t.Errorf("Scroll bad cursor: %v, want permanent", err)
	}
}

// TestEmbeddedMigrationAPI covers what ragpipe migrate uses: Collections,
// Scroll, Upsert and Count copy a collection exactly.
func TestEmbeddedMigrationAPI(t *testing.T) {
	src := openEmbedded(t, t.TempDir(), nil)
	dst := openEmbedded(t, t.TempDir(), nil)
	csEnsure(t, src, "b", pipeline.Euclid)
	csEnsure(t, src, "a", pipeline.Dot)
	m := storeModel{}
	for i := range 40 {
		w := write([]string{"alice", "bob", "carol"}[i%3], fmt.Sprintf("d%d", i), uint64(i+1), i%4)
		m.apply(w)
		csApply(t, src, "a", w)
	}
	colls, err := src.Collections(t.Context())
	if err != nil || !reflect.DeepEqual(colls, []pipeline.Collection{
		{Name: "a", Dims: dims, Distance: pipeline.Dot}, {Name: "b", Dims: dims, Distance: pipeline.Euclid},
	}) {
		t.Fatalf("Collections: %+v, %v", colls, err)
	}
	for _, c := range colls {
		if err := dst.EnsureCollection(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		after := ""
		for {
			pts, next, err := src.Scroll(t.Context(), c.Name, after, 9)
			if err != nil {
				t.Fatal(err)
			}
			// Twice: Upsert is idempotent.
			for range 2 {
				if err := dst.Upsert(t.Context(), c.Name, pts); err != nil {
					t.Fatal(err)
				}
			}
			if next == "" {
				break
			}
			after = next
		}
		want, _ := src.Count(t.Context(), c.Name)
		got, err := dst.Count(t.Context(), c.Name)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: counts %v (%v), want %v", c.Name, got, err, want)
		}
	}
	if !reflect.DeepEqual(csPoints(t, src, "a"), csPoints(t, dst, "a")) {
		t.Error("copied points differ")
	}
	// Upsert overwrites unconditionally, and refuses what Apply refuses.
	old := write("alice", "d0", 1, 1)
	if err := dst.Apply(t.Context(), "a", []pipeline.DocWrite{write("alice", "d0", 5, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := dst.Upsert(t.Context(), "a", old.Points); err != nil {
		t.Fatal(err)
	}
	m.apply(old)
	if d := m.diff(csPoints(t, dst, "a")); d != "" {
		t.Errorf("after Upsert of an older point:\n%s", d)
	}
	bad := write("alice", "x", 1, 1).Points
	bad[0].Version = 0 // Upsert takes the version from the point
	var be *pipeline.BatchError
	if err := dst.Upsert(t.Context(), "a", bad); !errors.As(err, &be) || !pipeline.IsPermanent(err) {
		t.Errorf("Upsert without a version: %v, want a permanent BatchError", err)
	}
}

// embeddedLog returns the path of collection's current log.
func embeddedLog(t *testing.T, dir, collection string) string {
	t.Helper()
	files := embeddedFiles(t, dir, collection)
	var logs []string
	for _, f := range files {
		if strings.HasPrefix(f, "log-") {
			logs = append(logs, f)
		}
	}
	if len(logs) != 1 {
		t.Fatalf("log files %v, want one", files)
	}
	return filepath.Join(dir, collection, logs[0])
}

func embeddedFiles(t *testing.T, dir, collection string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, collection))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func sizeOf(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestEmbeddedTornTail damages the log's tail the ways a crash or a disk can
// and checks that recovery keeps every complete record and nothing else,
// and that the log is usable afterwards.
func TestEmbeddedTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	csEnsure(t, s, "torn", pipeline.Dot)
	m := storeModel{}
	var sizes []int64 // log size after each write
	path := embeddedLog(t, dir, "torn")
	for i := range 6 {
		w := write("u", fmt.Sprintf("d%d", i%4), uint64(i+1), 1+i%3)
		csApply(t, s, "torn", w)
		m.apply(w)
		sizes = append(sizes, sizeOf(t, path))
	}
	s.Close()
	before := m.clone() // without the last write
	delete(before, storeDocKey{"u", "d1"})
	before.apply(write("u", "d1", 2, 2))

	damage := func(name string, f func(data []byte) []byte, want storeModel, wantSize int64) {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f(slices.Clone(data)), 0o644); err != nil {
				t.Fatal(err)
			}
			s := openEmbedded(t, dir, nil)
			if d := want.diff(csPoints(t, s, "torn")); d != "" {
				t.Fatalf("after recovery:\n%s", d)
			}
			if got := sizeOf(t, path); got != wantSize {
				t.Errorf("log of %d bytes after recovery, want %d", got, wantSize)
			}
			s.Close()
			// Restore the intact log for the next case.
			if err := os.WriteFile(path, data[:sizes[5]], 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
	last := sizes[5]
	damage("Garbage", func(b []byte) []byte { return append(b, []byte("garbage that is no record at all")...) }, m, last)
	damage("Zeros", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, m, last)
	damage("TruncatedBody", func(b []byte) []byte { return b[:last-3] }, before, sizes[4])
	damage("TruncatedHeader", func(b []byte) []byte { return b[:sizes[4]+5] }, before, sizes[4])
	damage("FlippedBit", func(b []byte) []byte { b[last-10] ^= 0x10; return b }, before, sizes[4])
	damage("HugeLength", func(b []byte) []byte {
		return append(b, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5)
	}, m, last)

	// A recovered log takes new records after its last good one.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("torn tail"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s = openEmbedded(t, dir, nil)
	w := write("u", "new", 9, 2)
	csApply(t, s, "torn", w)
	m.apply(w)
	s.Close()
	s = openEmbedded(t, dir, nil)
	if d := m.diff(csPoints(t, s, "torn")); d != "" {
		t.Fatalf("after a write on a recovered log:\n%s", d)
	}
}

func TestEmbeddedCorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	csEnsure(t, s, "snap", pipeline.Dot)
	csApply(t, s, "snap", write("u", "d", 1, 3))
	if err := s.Compact(t.Context(), "snap"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var snap string
	for _, f := range embeddedFiles(t, dir, "snap") {
		if strings.HasPrefix(f, "snap-") {
			snap = filepath.Join(dir, "snap", f)
		}
	}
	if err := os.Truncate(snap, sizeOf(t, snap)-1); err != nil {
		t.Fatal(err)
	}
	if s, err := sink.OpenEmbedded(t.Context(), sink.EmbeddedConfig{Dir: dir}); err == nil || !strings.Contains(err.Error(), "snapshot") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("OpenEmbedded with a truncated snapshot: %v, want an error", err)
	}
}

// TestEmbeddedCompaction checks that the files stay bounded however much is
// written, that compaction leaves one snapshot and one log, and that the
// state survives it.
func TestEmbeddedCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, func(c *sink.EmbeddedConfig) { c.CompactBytes = 16 << 10 })
	csEnsure(t, s, "compact", pipeline.Dot)
	m := storeModel{}
	written := int64(0)
	for i := range 1500 {
		w := write(fmt.Sprintf("u%d", i%3), fmt.Sprintf("d%d", i%10), uint64(i+1), 1+i%4)
		csApply(t, s, "compact", w)
		m.apply(w)
		written += 150 * int64(len(w.Points)) // at least, per point
	}
	dirSize := func() (int64, error) {
		var total int64
		files := embeddedFiles(t, dir, "compact")
		snaps, logs := 0, 0
		for _, f := range files {
			st, err := os.Stat(filepath.Join(dir, "compact", f))
			if err != nil {
				return 0, err
			}
			total += st.Size()
			switch {
			case strings.HasSuffix(f, ".tmp"):
				return 0, fmt.Errorf("temporary file %s left", f)
			case strings.HasPrefix(f, "snap-"):
				snaps++
			case strings.HasPrefix(f, "log-"):
				logs++
			}
		}
		if snaps != 1 || logs != 1 || slices.Contains(files, "snap-0000000000000000") {
			return 0, fmt.Errorf("files %v, want one snapshot of a later generation and one log", files)
		}
		return total, nil
	}
	checkfor.Until(t, 10*time.Second, "condition", func() error { _, err := dirSize(); return err })
	size, _ := dirSize()
	if size > 64<<10 || size*5 > written {
		t.Errorf("%d bytes on disk after writing at least %d", size, written)
	}
	if d := m.diff(csPoints(t, s, "compact")); d != "" {
		t.Fatalf("after compactions:\n%s", d)
	}
	s.Close()
	s = openEmbedded(t, dir, nil)
	if d := m.diff(csPoints(t, s, "compact")); d != "" {
		t.Fatalf("after reopening:\n%s", d)
	}
}

func TestEmbeddedClose(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	csEnsure(t, s, "closing", pipeline.Cosine)
	if err := s.Health(t.Context()); err != nil {
		t.Fatal(err)
	}
	if other, err := sink.OpenEmbedded(t.Context(), sink.EmbeddedConfig{Dir: dir}); err == nil {
		other.Close()
		t.Fatal("a second store opened the same directory")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.Apply(t.Context(), "closing", []pipeline.DocWrite{write("u", "d", 1, 1)})
	if !errors.Is(err, sink.ErrEmbeddedClosed) || pipeline.IsPermanent(err) {
		t.Errorf("Apply after Close: %v, want transient ErrEmbeddedClosed", err)
	}
	if _, err := s.Search(t.Context(), "closing", search.Query{UserID: "u", Vector: vec(1, 0), TopK: 1}); !errors.Is(err, sink.ErrEmbeddedClosed) {
		t.Errorf("Search after Close: %v", err)
	}
	if err := s.Health(t.Context()); !errors.Is(err, sink.ErrEmbeddedClosed) {
		t.Errorf("Health after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s = openEmbedded(t, dir, nil) // the lock is released
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "closing", Dims: dims}, false); err != nil {
		t.Errorf("collection lost: %v", err)
	}
}

// TestEmbeddedConcurrent runs writers, searches, lists and compactions at
// once (for the race detector) and checks the exact final state.
func TestEmbeddedConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, func(c *sink.EmbeddedConfig) { c.CompactBytes = 32 << 10 })
	csEnsure(t, s, "busy", pipeline.Dot)
	const writers, rounds = 4, 60
	var wg sync.WaitGroup
	models := make([]storeModel, writers)
	for w := range writers {
		models[w] = storeModel{}
		wg.Go(func() {
			user := fmt.Sprintf("w%d", w)
			for i := range rounds {
				ws := []pipeline.DocWrite{write(user, fmt.Sprintf("d%d", i%7), uint64(i+1), i%5), write(user, "fixed", uint64(i+1), 2)}
				if err := s.Apply(t.Context(), "busy", ws); err != nil {
					t.Error(err)
					return
				}
				models[w].apply(ws...)
				if i%10 == 0 {
					if err := s.Prune(t.Context(), "busy", []pipeline.DocVersion{{UserID: user, DocID: "fixed", Version: uint64(i + 1)}}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 3 {
		readers.Go(func() {
			user := fmt.Sprintf("w%d", r)
			for {
				select {
				case <-stop:
					return
				default:
				}
				hits, err := s.Search(t.Context(), "busy", search.Query{UserID: user, Vector: vec(3, 1), TopK: 5})
				if err != nil {
					t.Error(err)
					return
				}
				for _, h := range hits {
					if !strings.HasPrefix(h.Text, h.DocID+" v") {
						t.Errorf("hit %+v", h)
					}
				}
				if _, _, err := s.List(t.Context(), "busy", user, 3, ""); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	all := storeModel{}
	for _, m := range models {
		for k, v := range m {
			all[k] = v
		}
	}
	if d := all.diff(csPoints(t, s, "busy")); d != "" {
		t.Fatalf("final state:\n%s", d)
	}
}

// TestEmbeddedLargeTenant checks the parallel scan over many blocks, after
// deletes have moved vectors between slots, against a brute-force ranking.
func TestEmbeddedLargeTenant(t *testing.T) {
	const d, n = 48, 6000
	s := openEmbedded(t, t.TempDir(), func(c *sink.EmbeddedConfig) { c.SearchParallelism = 3 })
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "large", Dims: d, Distance: pipeline.Dot}, true); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vectors := map[string][]float32{}
	var ws []pipeline.DocWrite
	for i := range n {
		v := make([]float32, d)
		for j := range v {
			v[j] = rng.Float32()*2 - 1
		}
		doc := fmt.Sprintf("doc-%04d", i)
		vectors[doc] = v
		ws = append(ws, csVecWrite("big", doc, 1, map[string]any{"mod": int64(i % 10)}, v...))
		if i%100 == 0 {
			ws = append(ws, csVecWrite("small", doc, 1, nil, v...))
		}
	}
	csApply(t, s, "large", ws...)
	var dels []pipeline.DocWrite
	for i := 0; i < n; i += 4 { // a quarter, spread over every block
		doc := fmt.Sprintf("doc-%04d", i)
		dels = append(dels, write("big", doc, 2, 0))
		delete(vectors, doc)
	}
	csApply(t, s, "large", dels...)

	for range 5 {
		q := make([]float32, d)
		for j := range q {
			q[j] = rng.Float32()*2 - 1
		}
		for _, filter := range []map[string][]any{nil, {"mod": {int64(3), int64(5)}}} {
			type scored struct {
				doc   string
				score float64
			}
			var want []scored
			for doc, v := range vectors {
				var i int
				fmt.Sscanf(doc, "doc-%d", &i)
				if filter != nil && i%10 != 3 && i%10 != 5 {
					continue
				}
				var sc float64
				for j := range v {
					sc += float64(v[j]) * float64(q[j])
				}
				want = append(want, scored{doc, sc})
			}
			sort.Slice(want, func(i, j int) bool { return want[i].score > want[j].score })
			hits, err := s.Search(t.Context(), "large", search.Query{UserID: "big", Vector: q, TopK: 25, Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != 25 {
				t.Fatalf("%d hits", len(hits))
			}
			for i, h := range hits {
				if h.DocID != want[i].doc || math.Abs(float64(h.Score)-want[i].score) > 1e-4 {
					t.Fatalf("filter %v: hit %d is %s (%v), want %s (%v)", filter, i, h.DocID, h.Score, want[i].doc, want[i].score)
				}
			}
		}
	}
	if c, err := s.Count(t.Context(), "large"); err != nil || c["big"] != n-n/4 || c["small"] != n/100 {
		t.Errorf("counts %v, %v", c, err)
	}
}

// Environment of TestEmbeddedCrashChild.
const (
	crashDirEnv   = "RAGPIPE_TEST_EMBEDDED_CRASH_DIR"
	crashStartEnv = "RAGPIPE_TEST_EMBEDDED_CRASH_START"
	crashBatch    = 3 // writes per Apply
	crashDims     = 8
)

// crashWrite is the seq-th write of the crash test: versions grow with seq,
// so each write is its document's newest; every fifth is a delete.
func crashWrite(seq int) pipeline.DocWrite {
	user := []string{"alice", "bob"}[seq%2]
	doc := fmt.Sprintf("doc-%02d", (seq/2)%15)
	w := pipeline.DocWrite{UserID: user, DocID: doc, Version: uint64(seq + 1)}
	n := seq % 5
	for i := range n {
		v := make([]float32, crashDims)
		for j := range v {
			v[j] = float32(seq*31+i*7+j) / 97
		}
		w.Points = append(w.Points, pipeline.Point{
			ID: pipeline.PointID(user, doc, i), Vector: v, UserID: user, DocID: doc, ChunkIndex: i, ChunkCount: n,
			Text:     fmt.Sprintf("%s v%d chunk %d %s", doc, seq+1, i, strings.Repeat("lorem ipsum ", 40)),
			Metadata: map[string]any{"seq": int64(seq), "tags": []any{"t", int64(i)}},
			Version:  uint64(seq + 1),
		})
	}
	return w
}

func crashBatchWrites(b int) []pipeline.DocWrite {
	ws := make([]pipeline.DocWrite, crashBatch)
	for i := range ws {
		ws[i] = crashWrite(b*crashBatch + i)
	}
	return ws
}

// TestEmbeddedCrashChild is the process TestEmbeddedCrash kills: it applies
// batches from RAGPIPE_TEST_EMBEDDED_CRASH_START on, forever, compacting
// often, and prints "ack <batch>" once each Apply has returned.
func TestEmbeddedCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestEmbeddedCrash")
	}
	start, err := strconv.Atoi(os.Getenv(crashStartEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := sink.OpenEmbedded(ctx, sink.EmbeddedConfig{Dir: dir, CompactBytes: 24 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx, pipeline.Collection{Name: "crash", Dims: crashDims, Distance: pipeline.Dot}, true); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	for b := start; ; b++ {
		if err := s.Apply(ctx, "crash", crashBatchWrites(b)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ack %d\n", b) // os.Stdout is unbuffered
	}
}

// runCrashChild runs TestEmbeddedCrashChild from batch start, SIGKILLs it
// once it has acknowledged kill batches, and returns the last batch it
// acknowledged.
func runCrashChild(t *testing.T, dir string, start, kill int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmbeddedCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStartEnv+"="+strconv.Itoa(start))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // never wait forever for a stuck child
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
		}
	}()
	last, acks := -1, 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var b int
		if _, err := fmt.Sscanf(sc.Text(), "ack %d", &b); err != nil {
			continue
		}
		if b != start+acks {
			t.Errorf("ack %d, want %d", b, start+acks)
		}
		last = b
		if acks++; acks == kill {
			// At a random instant of the next writes; their acks may
			// still reach the pipe.
			time.AfterFunc(time.Duration(rand.IntN(3000))*time.Microsecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL || acks < kill {
		t.Fatalf("child: %v after %d acks, want killed after %d; stderr:\n%s", err, acks, kill, stderr.String())
	}
	return last
}

// TestEmbeddedCrash kills a writing process at arbitrary instants, several
// times on the same directory, and checks after each that every
// acknowledged write is stored, that the one in flight is stored entirely or
// not at all, and that nothing else is.
func TestEmbeddedCrash(t *testing.T) {
	dir := t.TempDir()
	m := storeModel{}
	next := 0
	for round := range 8 {
		kill := 10 + rand.IntN(80)
		last := runCrashChild(t, dir, next, kill)
		for b := next; b <= last; b++ {
			m.apply(crashBatchWrites(b)...)
		}
		inFlight := m.clone()
		inFlight.apply(crashBatchWrites(last + 1)...)

		s := openEmbedded(t, dir, nil)
		got := csPoints(t, s, "crash")
		d1, d2 := m.diff(got), inFlight.diff(got)
		switch {
		case d1 == "":
			t.Logf("round %d: killed after batch %d; the batch in flight was lost", round, last)
		case d2 == "":
			t.Logf("round %d: killed after batch %d; the batch in flight was stored", round, last)
			m = inFlight
		default:
			t.Fatalf("round %d: killed after batch %d; the state is neither\n%s\nnor, with the batch in flight,\n%s", round, last, d1, d2)
		}
		// Searches and lists agree with the points.
		for _, user := range []string{"alice", "bob"} {
			docs := 0
			for k, w := range m {
				if k.user == user && len(w.Points) > 0 {
					docs++
					hits := csSearch(t, s, "crash", search.Query{UserID: user, Vector: w.Points[0].Vector, TopK: 100,
						Filter: map[string][]any{"seq": {int64(w.Version - 1)}}})
					if len(hits) != len(w.Points) || hits[0].DocID != w.DocID {
						t.Errorf("search for %s/%s: %+v", user, w.DocID, hits)
					}
				}
			}
			listed, _, err := s.List(t.Context(), "crash", user, 1000, "")
			if err != nil || len(listed) != docs {
				t.Errorf("%s: listed %d docs (%v), want %d", user, len(listed), err, docs)
			}
		}
		s.Close()
		next = last + 2 // the next round's versions are newer still
	}
	if files := embeddedFiles(t, dir, "crash"); slices.Contains(files, "snap-0000000000000000") {
		t.Errorf("files %v: the children never compacted", files)
	}
}
