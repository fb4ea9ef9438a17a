package qdrantstore_test

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/reindex"
)

var _ reindex.Store = (*qdrantstore.Store)(nil)

// aliasTarget fails the test unless AliasTarget answers.
func aliasTarget(t *testing.T, s *qdrantstore.Store, name string) string {
	t.Helper()
	target, err := s.AliasTarget(t.Context(), name)
	if err != nil {
		t.Fatalf("AliasTarget(%s): %v", name, err)
	}
	return target
}

// qdrantCollections lists Qdrant's own collection names, sorted.
func qdrantCollections(t *testing.T, s *qdrantstore.Store) []string {
	t.Helper()
	names, err := s.Client().ListCollections(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}

// createGeneration creates a generation of dims dimensions.
func createGeneration(t *testing.T, s *qdrantstore.Store, name string) {
	t.Helper()
	if err := s.CreateGeneration(t.Context(), pipeline.Collection{Name: name, Dims: dims}); err != nil {
		t.Fatalf("CreateGeneration(%s): %v", name, err)
	}
}

// oneDoc writes document doc of user, one chunk at angle deg, in coll.
func oneDoc(t *testing.T, s *qdrantstore.Store, coll, user, doc string, deg float64) {
	t.Helper()
	storetest.Apply(t, s, coll, pipeline.DocWrite{UserID: user, DocID: doc, Version: 1, Points: []pipeline.Point{{
		ID: pipeline.PointID(user, doc, 0), Vector: angled(deg), ChunkCount: 1, Text: coll + " " + doc,
	}}})
}

// switchAlias switches alias to collection and returns how long it took.
func switchAlias(t *testing.T, s *qdrantstore.Store, alias, collection string) time.Duration {
	t.Helper()
	start := time.Now()
	if err := s.SwitchAlias(t.Context(), alias, collection); err != nil {
		t.Fatalf("SwitchAlias(%s, %s): %v", alias, collection, err)
	}
	return time.Since(start)
}

// searchWhileSwitching searches alias by vector from reader in four loops while
// writer switches alias between collections (each holding user's "doc"),
// and fails on any failed or empty search; it logs the median and the
// slowest switch.
func searchWhileSwitching(t *testing.T, writer, reader *qdrantstore.Store, alias, user string, collections []string, switches int) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	var (
		wg       sync.WaitGroup
		searches atomic.Int64
		failures atomic.Int64
	)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				hits, err := reader.Search(ctx, alias, pipeline.Query{UserID: user, Vector: query0, Mode: pipeline.ModeDense, TopK: 5})
				if ctx.Err() != nil {
					return
				}
				if err != nil || len(hits) == 0 {
					failures.Add(1)
					t.Errorf("search by alias %s: %d hits, %v", alias, len(hits), err)
				}
				searches.Add(1)
			}
		})
	}
	var took []time.Duration
	for i := range switches {
		took = append(took, switchAlias(t, writer, alias, collections[i%len(collections)]))
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	wg.Wait()
	if failures.Load() > 0 {
		t.Fatalf("%d of %d searches failed while the alias switched", failures.Load(), searches.Load())
	}
	sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
	t.Logf("%d switches of %s during %d searches: median %v, slowest %v",
		switches, alias, searches.Load(), took[len(took)/2], took[len(took)-1])
}

// TestGenerationsQdrant checks the store side of generations against one
// Qdrant node: collections created as an alias of their first generation,
// reads and writes by the alias, switching it under searches, dropping
// generations, the listings and the erasure of a tenant.
func TestGenerationsQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)
	ctx := t.Context()

	t.Run("EnsureCollectionCreatesAliasOfFirstGeneration", func(t *testing.T) {
		ensure(t, s, "docs", pipeline.Cosine)
		if got := aliasTarget(t, s, "docs"); got != "docs__g1" {
			t.Fatalf("alias docs -> %q, want docs__g1", got)
		}
		if got := qdrantCollections(t, s); !slices.Contains(got, "docs__g1") || slices.Contains(got, "docs") {
			t.Errorf("qdrant collections %v, want docs__g1 and no docs", got)
		}
		info, err := s.Client().GetCollectionInfo(ctx, "docs__g1")
		if err != nil {
			t.Fatal(err)
		}
		if n := len(info.GetPayloadSchema()); n != 3 || info.GetConfig().GetParams().GetSparseVectorsConfig() == nil {
			t.Errorf("docs__g1: %d payload indexes, sparse %v; want 3 and keyword vectors",
				n, info.GetConfig().GetParams().GetSparseVectorsConfig())
		}
		// A fresh process finds the alias and uses it.
		other := newSink(t, node, nil)
		for _, create := range []bool{true, false} {
			if err := other.EnsureCollection(ctx, pipeline.Collection{Name: "docs", Dims: dims}, create); err != nil {
				t.Errorf("EnsureCollection(create=%t) of the alias: %v", create, err)
			}
		}
		err = other.EnsureCollection(ctx, pipeline.Collection{Name: "docs", Dims: dims + 1}, false)
		if err == nil || !pipeline.IsPermanent(err) {
			t.Errorf("other dimensions through the alias: %v, want a permanent error", err)
		}
	})

	t.Run("ConcurrentCreators", func(t *testing.T) {
		var wg sync.WaitGroup
		for range 4 {
			p := newSink(t, node, nil)
			wg.Go(func() {
				if err := p.EnsureCollection(ctx, pipeline.Collection{Name: "raced", Dims: dims}, true); err != nil {
					t.Errorf("EnsureCollection: %v", err)
				}
			})
		}
		wg.Wait()
		if got := aliasTarget(t, s, "raced"); got != "raced__g1" {
			t.Errorf("alias raced -> %q, want raced__g1", got)
		}
	})

	t.Run("NamedLikeAGeneration", func(t *testing.T) {
		// A ragpipe collection may be named like a generation: it gets
		// its own generation and alias like any other.
		ensure(t, s, "solo__g3", pipeline.Cosine)
		if got := aliasTarget(t, s, "solo__g3"); got != "solo__g3__g1" {
			t.Errorf("alias solo__g3 -> %q, want solo__g3__g1", got)
		}
	})

	t.Run("ReadsAndWritesByAlias", func(t *testing.T) {
		storeSearchDocs(t, s, "docs", "alice")
		if n := count(t, s, "docs__g1"); n != 9 {
			t.Fatalf("docs__g1 holds %d points, want 9", n)
		}
		hits, err := s.Search(ctx, "docs", pipeline.Query{UserID: "alice", Vector: query0, TopK: 3})
		if err != nil || len(hits) != 3 || hits[0].DocID != "d0" {
			t.Errorf("search by alias: %v (%v), want d0 first of 3", hitIDs(hits), err)
		}
		docs, _, err := s.List(ctx, "docs", "alice", 100, "")
		if err != nil || len(docs) != 7 {
			t.Errorf("list by alias: %d docs (%v), want 7", len(docs), err)
		}
		counts, err := s.Count(ctx, "docs")
		if err != nil || counts["alice"] != 9 {
			t.Errorf("count by alias: %v (%v), want alice 9", counts, err)
		}
		pts, err := s.DocumentPoints(ctx, "docs", "alice", []string{"multi"})
		if err != nil || len(pts) != 3 {
			t.Errorf("document points by alias: %d (%v), want 3", len(pts), err)
		}
		st, err := s.Status(ctx, "docs", "alice", []string{"multi"})
		if err != nil || st["multi"].Version != 3 {
			t.Errorf("status by alias: %v (%v)", st, err)
		}
		c, err := s.Describe(ctx, "docs")
		if err != nil || c.Name != "docs" || c.Dims != dims || !c.Keywords || c.Shards != 1 {
			t.Errorf("describe by alias: %+v (%v)", c, err)
		}
		if v, err := s.MaxVersion(ctx, "docs"); err != nil || v != 3 {
			t.Errorf("max version by alias: %d (%v), want 3", v, err)
		}
		if ok, err := s.CollectionExists(ctx, "docs"); err != nil || !ok {
			t.Errorf("alias exists: %t (%v)", ok, err)
		}
		if err := s.Prune(ctx, "docs", []pipeline.DocVersion{{UserID: "alice", DocID: "d5", Version: 2}}); err != nil {
			t.Fatal(err)
		}
		if n := count(t, s, "docs__g1"); n != 8 {
			t.Errorf("after a prune by alias docs__g1 holds %d points, want 8", n)
		}
	})

	t.Run("CreateGeneration", func(t *testing.T) {
		c := pipeline.Collection{Name: "docs__g2", Dims: dims, Shards: 2}
		for range 2 { // idempotent
			if err := s.CreateGeneration(ctx, c); err != nil {
				t.Fatal(err)
			}
		}
		if got := aliasTarget(t, s, "docs"); got != "docs__g1" {
			t.Errorf("alias docs -> %q after CreateGeneration, want docs__g1", got)
		}
		info, err := s.Client().GetCollectionInfo(ctx, "docs__g2")
		if err != nil {
			t.Fatal(err)
		}
		if p := info.GetConfig().GetParams(); p.GetShardNumber() != 2 || len(info.GetPayloadSchema()) != 3 || p.GetSparseVectorsConfig() == nil {
			t.Errorf("docs__g2: %d shards, schema %v, sparse %v; want 2 shards, 3 indexes, keyword vectors",
				p.GetShardNumber(), info.GetPayloadSchema(), p.GetSparseVectorsConfig())
		}
		for _, bad := range []pipeline.Collection{
			{Name: "docs__g2", Dims: dims + 1}, // other dimensions
			{Name: "docs", Dims: dims},         // an alias
			{Name: "docs__g9", Dims: 0},        // invalid
		} {
			if err := s.CreateGeneration(ctx, bad); err == nil || !pipeline.IsPermanent(err) {
				t.Errorf("CreateGeneration(%+v): %v, want a permanent error", bad, err)
			}
		}
	})

	t.Run("SwitchAliasUnderSearches", func(t *testing.T) {
		storeSearchDocs(t, s, "docs__g2", "alice")
		searchWhileSwitching(t, s, newSink(t, node, nil), "docs", "alice", []string{"docs__g2", "docs__g1"}, 40)
		switchAlias(t, s, "docs", "docs__g2")
		if got := aliasTarget(t, s, "docs"); got != "docs__g2" {
			t.Fatalf("alias docs -> %q, want docs__g2", got)
		}
		oneDoc(t, s, "docs", "alice", "new", 5)
		if n := count(t, s, "docs__g2"); n != 10 {
			t.Errorf("docs__g2 holds %d points after a write by the alias, want 10", n)
		}
	})

	t.Run("SwitchAliasForgetsShape", func(t *testing.T) {
		ensure(t, s, "shape", pipeline.Cosine) // remembered with dims dimensions
		if err := s.CreateGeneration(ctx, pipeline.Collection{Name: "shape__g2", Dims: 2 * dims}); err != nil {
			t.Fatal(err)
		}
		switchAlias(t, s, "shape", "shape__g2")
		if err := s.EnsureCollection(ctx, pipeline.Collection{Name: "shape", Dims: 2 * dims}, false); err != nil {
			t.Errorf("EnsureCollection with the new generation's dimensions: %v", err)
		}
	})

	t.Run("SwitchAliasRefused", func(t *testing.T) {
		if err := s.CreateWithoutKeywords(ctx, pipeline.Collection{Name: "legacy", Dims: dims}); err != nil {
			t.Fatal(err)
		}
		err := s.SwitchAlias(ctx, "legacy", "docs__g1")
		if !errors.Is(err, pipeline.ErrNameTaken) || !pipeline.IsPermanent(err) {
			t.Errorf("alias named like a collection: %v, want a permanent ErrNameTaken", err)
		}
		err = s.SwitchAlias(ctx, "docs", "missing__g1")
		if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
			t.Errorf("alias to a missing collection: %v, want a permanent ErrUnknownCollection", err)
		}
		if got := aliasTarget(t, s, "docs"); got != "docs__g2" {
			t.Errorf("alias docs -> %q after refused switches, want docs__g2", got)
		}
	})

	t.Run("Listings", func(t *testing.T) {
		createGeneration(t, s, "docs__g3")   // building
		createGeneration(t, s, "legacy__g1") // building of an adopted plain collection
		createGeneration(t, s, "orphan__g2") // of no existing name: listed as itself
		createGeneration(t, s, "foreign")
		if err := s.SwitchAlias(ctx, "prod", "foreign"); err != nil {
			t.Fatal(err)
		}
		names, err := s.CollectionNames(ctx)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"docs", "legacy", "orphan__g2", "prod", "raced", "shape", "solo__g3"}
		if !slices.Equal(names, want) {
			t.Errorf("CollectionNames %v, want %v", names, want)
		}
		colls, err := s.Collections(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range colls {
			got = append(got, c.Name)
			if c.Name == "shape" && c.Dims != 2*dims {
				t.Errorf("collection shape has %d dimensions, want its target's %d", c.Dims, 2*dims)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("Collections %v, want %v", got, want)
		}
	})

	t.Run("EraseTenantReachesEveryGeneration", func(t *testing.T) {
		oneDoc(t, s, "docs__g1", "erin", "a", 0) // previous
		oneDoc(t, s, "docs", "erin", "a", 0)     // serving, docs__g2
		oneDoc(t, s, "docs__g3", "erin", "a", 0) // building
		oneDoc(t, s, "docs__g3", "erin", "b", 10)
		oneDoc(t, s, "docs__g3", "frank", "a", 0)
		oneDoc(t, s, "legacy", "erin", "a", 0)
		oneDoc(t, s, "legacy__g1", "erin", "a", 0)
		// The count is of the collection searches read: the alias' target.
		n, err := s.EraseTenant(ctx, "docs", "erin")
		if err != nil || n != 1 {
			t.Errorf("EraseTenant(docs): %d (%v), want 1", n, err)
		}
		for _, c := range []string{"docs__g1", "docs__g2", "docs__g3"} {
			if counts, err := s.Count(ctx, c); err != nil || counts["erin"] != 0 {
				t.Errorf("%s: %v (%v), want no point of erin", c, counts, err)
			}
		}
		if counts, _ := s.Count(ctx, "docs__g3"); counts["frank"] != 1 {
			t.Errorf("docs__g3: %v, want frank's point kept", counts)
		}
		if n, err := s.EraseTenant(ctx, "legacy", "erin"); err != nil || n != 1 {
			t.Errorf("EraseTenant(legacy): %d (%v), want 1", n, err)
		}
		if counts, _ := s.Count(ctx, "legacy__g1"); counts["erin"] != 0 {
			t.Errorf("legacy__g1: %v, want no point of erin", counts)
		}
		if _, err := s.EraseTenant(ctx, "nothing", "erin"); !errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("EraseTenant(nothing): %v, want ErrUnknownCollection", err)
		}
	})

	t.Run("DropCollection", func(t *testing.T) {
		if err := s.DropCollection(ctx, "docs__g1"); err != nil {
			t.Fatal(err)
		}
		if err := s.DropCollection(ctx, "docs__g1"); err != nil {
			t.Errorf("dropping a missing collection: %v", err)
		}
		if err := s.DropCollection(ctx, "docs"); err == nil || !pipeline.IsPermanent(err) {
			t.Errorf("dropping an alias: %v, want a permanent error", err)
		}
		if got := qdrantCollections(t, s); slices.Contains(got, "docs__g1") || !slices.Contains(got, "docs__g2") {
			t.Errorf("qdrant collections %v after the drop", got)
		}
		// Dropping the alias' target drops the alias, and this process
		// forgets having verified it.
		if err := s.DropCollection(ctx, "shape__g2"); err != nil {
			t.Fatal(err)
		}
		if got := aliasTarget(t, s, "shape"); got != "" {
			t.Errorf("alias shape -> %q after its target was dropped, want none", got)
		}
		err := s.EnsureCollection(ctx, pipeline.Collection{Name: "shape", Dims: 2 * dims}, false)
		if !errors.Is(err, pipeline.ErrUnknownCollection) {
			t.Errorf("EnsureCollection of the dropped alias: %v, want ErrUnknownCollection", err)
		}
	})

	t.Run("AdoptedCollection", func(t *testing.T) {
		// ragpipe reindex --drop-previous of an adopted plain collection:
		// the plain collection goes, then the alias takes its name.
		if err := s.DropCollection(ctx, "legacy"); err != nil {
			t.Fatal(err)
		}
		switchAlias(t, s, "legacy", "legacy__g1")
		if err := s.EnsureCollection(ctx, pipeline.Collection{Name: "legacy", Dims: dims}, true); err != nil {
			t.Fatal(err)
		}
		if got := aliasTarget(t, s, "legacy"); got != "legacy__g1" {
			t.Errorf("alias legacy -> %q, want legacy__g1", got)
		}
	})

	t.Run("CreatorFindsAliasSwitched", func(t *testing.T) {
		// The name is missing until the alias exists; a creator that comes
		// after a reindex's switch uses the alias as it finds it.
		createGeneration(t, s, "late__g2")
		switchAlias(t, s, "late", "late__g2")
		ensure(t, s, "late", pipeline.Cosine)
		if got := aliasTarget(t, s, "late"); got != "late__g2" {
			t.Errorf("alias late -> %q, want late__g2", got)
		}
		if got := qdrantCollections(t, s); slices.Contains(got, "late__g1") {
			t.Errorf("qdrant collections %v: a first generation was created for an existing alias", got)
		}
	})
}

// TestGenerationsClusterQdrant switches an alias on a three-node cluster
// while another node's client searches by it: the switch reaches every node
// without a failed search.
func TestGenerationsClusterQdrant(t *testing.T) {
	nodes := qdranttest.StartCluster(t, 3)
	layout := func(c *qdrantstore.Config) {
		c.Shards, c.ReplicationFactor = 2, 2
		c.ReadConsistency, c.WriteOrdering = "majority", qdrantstore.OrderingStrong
	}
	s := newSink(t, nodes[0], layout)
	reader := newSink(t, nodes[2], layout)
	ctx := t.Context()

	ensure(t, s, "docs", pipeline.Cosine)
	if got := aliasTarget(t, s, "docs"); got != "docs__g1" {
		t.Fatalf("alias docs -> %q, want docs__g1", got)
	}
	storeSearchDocs(t, s, "docs", "alice")
	if err := s.CreateGeneration(ctx, pipeline.Collection{Name: "docs__g2", Dims: dims, ReplicationFactor: 3}); err != nil {
		t.Fatal(err)
	}
	info, err := s.Client().GetCollectionInfo(ctx, "docs__g2")
	if err != nil {
		t.Fatal(err)
	}
	if p := info.GetConfig().GetParams(); p.GetShardNumber() != 2 || p.GetReplicationFactor() != 3 {
		t.Errorf("docs__g2: %d shards, replication %d; want 2 and 3", p.GetShardNumber(), p.GetReplicationFactor())
	}
	storeSearchDocs(t, s, "docs__g2", "alice")

	searchWhileSwitching(t, s, reader, "docs", "alice", []string{"docs__g2", "docs__g1"}, 20)
	switchAlias(t, s, "docs", "docs__g2")
	// Every node follows the alias.
	for i, n := range nodes {
		c, err := qdrant.NewClient(&qdrant.Config{Host: "127.0.0.1", Port: n.GRPCPort(), SkipCompatibilityCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for {
			aliases, err := c.ListAliases(ctx)
			if err == nil && len(aliases) == 1 && aliases[0].GetCollectionName() == "docs__g2" {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("node %d: aliases %v (%v), want docs -> docs__g2", i, aliases, err)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		c.Close()
	}
	names, err := reader.CollectionNames(ctx)
	if err != nil || !slices.Equal(names, []string{"docs"}) {
		t.Errorf("CollectionNames %v (%v), want [docs]", names, err)
	}
	oneDoc(t, s, "docs__g1", "erin", "a", 0)
	oneDoc(t, s, "docs", "erin", "a", 0)
	if n, err := reader.EraseTenant(ctx, "docs", "erin"); err != nil || n != 1 {
		t.Errorf("EraseTenant: %d (%v), want 1", n, err)
	}
	if counts, err := reader.Count(ctx, "docs__g1"); err != nil || counts["erin"] != 0 {
		t.Errorf("docs__g1: %v (%v), want no point of erin", counts, err)
	}
	if err := s.DropCollection(ctx, "docs__g1"); err != nil {
		t.Fatal(err)
	}
}
