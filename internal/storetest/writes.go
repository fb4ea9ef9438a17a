package storetest

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// testEnsureCollection checks creation, idempotence and the permanent errors
// for a collection of other dimensions or distance.
func testEnsureCollection(t *testing.T, s Store) {
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
}

// testUnknownCollection checks that a missing collection is never created
// without create and that every call on it fails as unknown.
func testUnknownCollection(t *testing.T, s Store) {
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
}

// testApplyExactPayload checks that a point's payload and vector are stored
// exactly, and that a newer version replaces the whole payload.
func testApplyExactPayload(t *testing.T, s Store) {
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
}

// testConditionalUpsert checks that a write overwrites only points of its
// version or older, and that redelivery changes nothing.
func testConditionalUpsert(t *testing.T, s Store) {
	Ensure(t, s, "cond", pipeline.Dot)
	Apply(t, s, "cond", Write("u", "d", 2, 2))
	// A stale, longer v1 arrives late: it must not touch v2's chunks,
	// but its extra chunk is inserted, which is why ingest prunes after it.
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
}

// testShrinkGrowDelete follows one document through versions with fewer,
// more and no chunks.
func testShrinkGrowDelete(t *testing.T, s Store) {
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
}

// testTenantsAndDocsAreSeparate checks that writes and prunes touch only their
// own tenant's document.
func testTenantsAndDocsAreSeparate(t *testing.T, s Store) {
	Ensure(t, s, "tenants", pipeline.Cosine)
	Apply(t, s, "tenants", Write("alice", "d", 1, 2), Write("bob", "d", 5, 3), Write("alice", "e", 1, 1))
	Apply(t, s, "tenants", Write("alice", "d", 9, 0))
	prune(t, s, "tenants", pipeline.DocVersion{UserID: "alice", DocID: "e", Version: 1}) // nothing older
	ExpectDoc(t, s, "tenants", "alice", "d", 9, 0)
	ExpectDoc(t, s, "tenants", "bob", "d", 5, 3)
	ExpectDoc(t, s, "tenants", "alice", "e", 1, 1)
}

// testManyDocsInOneCall applies many documents per call, some with two
// versions in the same call.
func testManyDocsInOneCall(t *testing.T, s Store) {
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
}

// testMixedVersionsInOneRequest checks that writes packed into one request are
// each judged against their own document's stored version.
func testMixedVersionsInOneRequest(t *testing.T, s Store) {
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
}

// testPermanentErrors checks that invalid writes fail permanently, each on
// its own, while the valid ones of the same call are stored.
func testPermanentErrors(t *testing.T, s Store) {
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
}
