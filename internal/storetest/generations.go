package storetest

import (
	"context"
	"errors"
	"maps"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Generations is what a store does for the generations of ragpipe
// collections (package generation): the listings, which name ragpipe
// collections, and reindex.Store's operations on collections and aliases.
// Both stores implement it; the suite fails for a store that does not.
type Generations interface {
	Collections(ctx context.Context) ([]pipeline.Collection, error)
	CollectionNames(ctx context.Context) ([]string, error)
	CreateGeneration(ctx context.Context, c pipeline.Collection) error
	DropCollection(ctx context.Context, name string) error
	AliasTarget(ctx context.Context, name string) (string, error)
	SwitchAlias(ctx context.Context, alias, collection string) error
}

// gens returns s as Generations, or fails the test.
func gens(t *testing.T, s Store) Generations {
	t.Helper()
	g, ok := s.(Generations)
	if !ok {
		t.Fatalf("%T does not implement storetest.Generations", s)
	}
	return g
}

// createGeneration creates collection name with Dims dimensions and
// distance d under exactly that name, or fails the test.
func createGeneration(t *testing.T, g Generations, name string, d pipeline.Distance) {
	t.Helper()
	if err := g.CreateGeneration(t.Context(), pipeline.Collection{Name: name, Dims: Dims, Distance: d}); err != nil {
		t.Fatalf("CreateGeneration(%s): %v", name, err)
	}
}

// expectTarget checks that alias points at want ("" for no alias).
func expectTarget(t *testing.T, g Generations, alias, want string) {
	t.Helper()
	if got, err := g.AliasTarget(t.Context(), alias); got != want || err != nil {
		t.Fatalf("AliasTarget(%s) = %q, %v; want %q", alias, got, err, want)
	}
}

// switchAlias points alias at coll, or fails the test.
func switchAlias(t *testing.T, g Generations, alias, coll string) {
	t.Helper()
	if err := g.SwitchAlias(t.Context(), alias, coll); err != nil {
		t.Fatalf("SwitchAlias(%s, %s): %v", alias, coll, err)
	}
}

// expectListed checks that both listings name every one of listed and
// none of hidden (other subtests' collections may be listed too).
func expectListed(t *testing.T, g Generations, listed, hidden []string) {
	t.Helper()
	names, err := g.CollectionNames(t.Context())
	if err != nil {
		t.Fatalf("CollectionNames: %v", err)
	}
	colls, err := g.Collections(t.Context())
	if err != nil {
		t.Fatalf("Collections: %v", err)
	}
	described := make([]string, len(colls))
	for i, c := range colls {
		described[i] = c.Name
	}
	for what, got := range map[string][]string{"CollectionNames": names, "Collections": described} {
		for _, n := range listed {
			if !slices.Contains(got, n) {
				t.Errorf("%s = %v: %s missing", what, got, n)
			}
		}
		for _, n := range hidden {
			if slices.Contains(got, n) {
				t.Errorf("%s = %v: %s listed, want it hidden", what, got, n)
			}
		}
	}
}

// testGenerationNaming checks what EnsureCollection creates: collection x
// is the alias x of the store collection x__g1, which every operation
// resolves, and the listings name x alone. Ensuring x again creates nothing
// more.
func testGenerationNaming(t *testing.T, s Store) {
	g := gens(t, s)
	Ensure(t, s, "gname", pipeline.Dot)
	expectTarget(t, g, "gname", "gname__g1")
	expectTarget(t, g, "gname__g1", "")
	expectTarget(t, g, "gname_none", "")
	Ensure(t, s, "gname", pipeline.Dot)
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "gname", Dims: Dims, Distance: pipeline.Dot}, false); err != nil {
		t.Fatalf("EnsureCollection(create=false) of the alias: %v", err)
	}
	err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "gname", Dims: Dims + 1, Distance: pipeline.Dot}, true)
	if !pipeline.IsPermanent(err) {
		t.Fatalf("EnsureCollection of the alias with other dimensions: %v, want a permanent error", err)
	}
	expectTarget(t, g, "gname", "gname__g1")

	Apply(t, s, "gname", Write("alice", "a", 3, 2))
	ExpectDoc(t, s, "gname__g1", "alice", "a", 3, 2)
	ExpectDoc(t, s, "gname", "alice", "a", 3, 2)
	for _, name := range []string{"gname", "gname__g1"} {
		if ok, err := s.CollectionExists(t.Context(), name); !ok || err != nil {
			t.Errorf("CollectionExists(%s) = %t, %v; want true", name, ok, err)
		}
	}
	expectListed(t, g, []string{"gname"}, []string{"gname__g1"})
	colls, err := g.Collections(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range colls {
		if c.Name == "gname" && (c.Dims != Dims || c.Distance != pipeline.Dot || !c.Keywords) {
			t.Errorf("Collections: %+v, want %d dimensions, dot, keywords", c, Dims)
		}
	}
}

// testSwitchAlias checks CreateGeneration and SwitchAlias: a generation is
// created under exactly its name (again: no error; other dimensions: a
// permanent one), is hidden from the listings while its ragpipe collection
// exists, and once the alias points at it every read and write by the
// alias reaches it; switching back reaches the first one again. A switch
// to a missing collection fails and changes nothing.
func testSwitchAlias(t *testing.T, s Store) {
	g := gens(t, s)
	Ensure(t, s, "gswitch", pipeline.Cosine)
	createGeneration(t, g, "gswitch__g2", pipeline.Cosine)
	createGeneration(t, g, "gswitch__g2", pipeline.Cosine)
	err := g.CreateGeneration(t.Context(), pipeline.Collection{Name: "gswitch__g2", Dims: Dims + 1, Distance: pipeline.Cosine})
	if !pipeline.IsPermanent(err) {
		t.Fatalf("CreateGeneration of an existing collection with other dimensions: %v, want a permanent error", err)
	}
	expectTarget(t, g, "gswitch__g2", "")
	expectListed(t, g, []string{"gswitch"}, []string{"gswitch__g1", "gswitch__g2"})

	Apply(t, s, "gswitch", Write("alice", "a", 1, 2), Write("alice", "b", 1, 1))
	Apply(t, s, "gswitch__g2", Write("alice", "a", 2, 3))
	expectVisible := func(want map[string]uint64) {
		t.Helper()
		docs, _, err := s.List(t.Context(), "gswitch", "alice", 10, "")
		if err != nil {
			t.Fatalf("List: %v", err)
		}
		got := map[string]uint64{}
		for _, d := range docs {
			got[d.DocID] = d.Version
		}
		st, err := s.Status(t.Context(), "gswitch", "alice", []string{"a", "b"})
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		hits := Search(t, s, "gswitch", pipeline.Query{UserID: "alice", Vector: Vec(1, 0), TopK: 10})
		for _, h := range hits {
			if want[h.DocID] != h.Version {
				t.Errorf("search hit %s at version %d, want %v", h.DocID, h.Version, want)
			}
		}
		if !maps.Equal(got, want) || len(st) != len(want) || len(hits) == 0 {
			t.Fatalf("through the alias: listed %v, status %v, %d hits; want %v", got, st, len(hits), want)
		}
	}
	expectVisible(map[string]uint64{"a": 1, "b": 1})

	switchAlias(t, g, "gswitch", "gswitch__g2")
	expectTarget(t, g, "gswitch", "gswitch__g2")
	expectVisible(map[string]uint64{"a": 2})
	ExpectDoc(t, s, "gswitch", "alice", "a", 2, 3)
	if v, err := s.MaxVersion(t.Context(), "gswitch"); v != 2 || err != nil {
		t.Errorf("MaxVersion through the alias = %d, %v; want 2", v, err)
	}
	if pts, err := s.DocumentPoints(t.Context(), "gswitch", "alice", []string{"a", "b"}); err != nil || len(pts) != 3 || pts[0].Version != 2 {
		t.Errorf("DocumentPoints through the alias: %d points, %v; want a's 3 of version 2", len(pts), err)
	}
	Apply(t, s, "gswitch", Write("alice", "c", 5, 1))
	ExpectDoc(t, s, "gswitch__g2", "alice", "c", 5, 1)
	ExpectDoc(t, s, "gswitch__g1", "alice", "c", 0, 0)
	expectListed(t, g, []string{"gswitch"}, []string{"gswitch__g1", "gswitch__g2"})
	switchAlias(t, g, "gswitch", "gswitch__g2") // already there: nothing to do

	switchAlias(t, g, "gswitch", "gswitch__g1")
	expectTarget(t, g, "gswitch", "gswitch__g1")
	expectVisible(map[string]uint64{"a": 1, "b": 1})

	// A new alias is created by its first switch.
	switchAlias(t, g, "gswitch_other", "gswitch__g2")
	expectTarget(t, g, "gswitch_other", "gswitch__g2")
	ExpectDoc(t, s, "gswitch_other", "alice", "c", 5, 1)
	if err := g.SwitchAlias(t.Context(), "gswitch", "gswitch_none"); err == nil {
		t.Error("SwitchAlias to a missing collection: no error")
	}
	expectTarget(t, g, "gswitch", "gswitch__g1")
}

// testNameTaken checks a plain collection, as stores created them before
// generations (CreateGeneration under the ragpipe name itself): it is
// ensured as it is, read and written by its name, listed under it while its generations are
// hidden, and SwitchAlias of its name fails with pipeline.ErrNameTaken,
// changing nothing. A generation whose ragpipe collection does not exist
// is listed under its own name.
func testNameTaken(t *testing.T, s Store) {
	g := gens(t, s)
	createGeneration(t, g, "gplain", pipeline.Cosine)
	Ensure(t, s, "gplain", pipeline.Cosine) // used as it is
	createGeneration(t, g, "gplain__g1", pipeline.Cosine)
	Apply(t, s, "gplain", Write("alice", "a", 1, 2))
	expectTarget(t, g, "gplain", "")
	err := g.SwitchAlias(t.Context(), "gplain", "gplain__g1")
	if !errors.Is(err, pipeline.ErrNameTaken) {
		t.Fatalf("SwitchAlias of a plain collection's name: %v, want ErrNameTaken", err)
	}
	expectTarget(t, g, "gplain", "")
	ExpectDoc(t, s, "gplain", "alice", "a", 1, 2)
	ExpectDoc(t, s, "gplain__g1", "alice", "a", 0, 0)
	expectListed(t, g, []string{"gplain"}, []string{"gplain__g1"})

	createGeneration(t, g, "gorphan__g3", pipeline.Cosine)
	expectListed(t, g, []string{"gorphan__g3"}, []string{"gorphan"})
}

// testDropCollection checks DropCollection: the collection and its points
// are gone (reads are ErrUnknownCollection, a new collection of the name
// starts empty), dropping it again or a collection that never existed is
// no error, and the other generations are untouched.
func testDropCollection(t *testing.T, s Store) {
	g := gens(t, s)
	Ensure(t, s, "gdrop", pipeline.Cosine)
	createGeneration(t, g, "gdrop__g2", pipeline.Cosine)
	Apply(t, s, "gdrop", Write("alice", "a", 1, 1))
	Apply(t, s, "gdrop__g2", Write("alice", "a", 1, 1))
	for range 2 {
		if err := g.DropCollection(t.Context(), "gdrop__g2"); err != nil {
			t.Fatalf("DropCollection: %v", err)
		}
	}
	if err := g.DropCollection(t.Context(), "gdrop_never"); err != nil {
		t.Fatalf("DropCollection of a missing collection: %v", err)
	}
	if ok, err := s.CollectionExists(t.Context(), "gdrop__g2"); ok || err != nil {
		t.Errorf("CollectionExists after the drop = %t, %v", ok, err)
	}
	if _, _, err := s.List(t.Context(), "gdrop__g2", "alice", 10, ""); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Errorf("List of a dropped collection: %v, want ErrUnknownCollection", err)
	}
	if err := s.Apply(t.Context(), "gdrop__g2", []pipeline.DocWrite{Write("alice", "b", 1, 1)}); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Errorf("Apply to a dropped collection: %v, want ErrUnknownCollection", err)
	}
	ExpectDoc(t, s, "gdrop", "alice", "a", 1, 1)
	expectTarget(t, g, "gdrop", "gdrop__g1")

	createGeneration(t, g, "gdrop__g2", pipeline.Cosine)
	if pts := Points(t, s, "gdrop__g2"); len(pts) != 0 {
		t.Errorf("a collection created again under a dropped name holds %d points", len(pts))
	}
}

// testEraseTenantGenerations checks that EraseTenant of a ragpipe
// collection erases the tenant in every generation of it (the alias'
// target, the others x__gN, and a plain collection x), so that ragpipe
// forget reaches the generations a reindex builds or keeps. It counts the
// points of the collection named (through its alias), the one searches
// read.
func testEraseTenantGenerations(t *testing.T, s Store) {
	g := gens(t, s)
	Ensure(t, s, "gerase", pipeline.Cosine)
	createGeneration(t, g, "gerase__g2", pipeline.Cosine)
	createGeneration(t, g, "gerase_x__g1", pipeline.Cosine) // another collection's
	createGeneration(t, g, "geraseplain", pipeline.Cosine)
	createGeneration(t, g, "geraseplain__g1", pipeline.Cosine)
	ws := []pipeline.DocWrite{Write("alice", "a", 3, 2), Write("alice", "b", 4, 1), Write("bob", "a", 5, 2)}
	for _, c := range []string{"gerase", "gerase__g2", "gerase_x__g1", "geraseplain", "geraseplain__g1"} {
		Apply(t, s, c, ws...)
	}
	Apply(t, s, "gerase__g2", Write("alice", "c", 6, 1))

	for _, c := range []string{"gerase", "geraseplain"} {
		n, err := s.EraseTenant(t.Context(), c, "alice")
		if err != nil || n != 3 {
			t.Fatalf("EraseTenant(%s, alice) = %d, %v; want the 3 points of the collection", c, n, err)
		}
	}
	for _, c := range []string{"gerase__g1", "gerase__g2", "geraseplain", "geraseplain__g1"} {
		pts := Points(t, s, c)
		if len(pts) != 2 || pts[0].UserID != "bob" || pts[1].UserID != "bob" {
			t.Errorf("%s after erasing alice: %d points, want bob's 2", c, len(pts))
		}
	}
	if pts := Points(t, s, "gerase_x__g1"); len(pts) != 5 {
		t.Errorf("gerase_x__g1, another collection's generation: %d points left, want all 5", len(pts))
	}
	if n, err := s.EraseTenant(t.Context(), "gerase", "alice"); n != 0 || err != nil {
		t.Errorf("EraseTenant again = %d, %v; want 0", n, err)
	}
}
