package qdrantstore_test

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

const dims = 4

// newSink connects a sink to node; mutate adjusts the config.
func newSink(t *testing.T, node *qdranttest.Node, mutate func(*qdrantstore.Config)) *qdrantstore.Store {
	t.Helper()
	cfg := qdrantstore.Config{
		Host:                 "127.0.0.1",
		Port:                 node.GRPCPort(),
		Timeout:              5 * time.Second,
		ConnectTimeout:       10 * time.Second,
		RetryInitialInterval: 20 * time.Millisecond,
		RetryMaxInterval:     200 * time.Millisecond,
		Logger:               zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel),
	}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := qdrantstore.New(t.Context(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// ensure creates a fresh collection of dims dimensions.
func ensure(t *testing.T, s *qdrantstore.Store, name string, d pipeline.Distance) {
	t.Helper()
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: name, Dims: dims, Distance: d}, true); err != nil {
		t.Fatalf("EnsureCollection(%s): %v", name, err)
	}
}

func count(t *testing.T, s *qdrantstore.Store, coll string) uint64 {
	t.Helper()
	n, err := s.Client().Count(t.Context(), &qdrant.CountPoints{CollectionName: coll, Exact: qdrant.PtrOf(true)})
	if err != nil {
		t.Fatalf("Count: %v", err)
	}
	return n
}

// TestQdrant runs against one shared Qdrant node.
func TestQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	s := newSink(t, node, nil)

	t.Run("EnsureCollectionCreates", func(t *testing.T) {
		s := newSink(t, node, func(c *qdrantstore.Config) { c.WriteConsistency = 1 })
		c := pipeline.Collection{Name: "created", Dims: 1024, Distance: pipeline.Dot}
		if err := s.EnsureCollection(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		info, err := s.Client().GetCollectionInfo(t.Context(), "created")
		if err != nil {
			t.Fatal(err)
		}
		p := info.GetConfig().GetParams()
		vp := p.GetVectorsConfig().GetParams()
		if vp.GetSize() != 1024 || vp.GetDistance() != qdrant.Distance_Dot {
			t.Errorf("vectors %d %s, want 1024 Dot", vp.GetSize(), vp.GetDistance())
		}
		if p.GetShardNumber() != 1 || p.GetReplicationFactor() != 1 || p.GetWriteConsistencyFactor() != 1 {
			t.Errorf("shards %d replication %d write consistency %d, want 1 1 1",
				p.GetShardNumber(), p.GetReplicationFactor(), p.GetWriteConsistencyFactor())
		}
		h := info.GetConfig().GetHnswConfig()
		if h.GetM() != 0 || h.GetPayloadM() != 16 {
			t.Errorf("hnsw m=%d payload_m=%d, want 0 16", h.GetM(), h.GetPayloadM())
		}
		schema := info.GetPayloadSchema()
		if len(schema) != 3 {
			t.Errorf("payload schema %v, want 3 indexes", schema)
		}
		if ix := schema["user_id"]; ix.GetDataType() != qdrant.PayloadSchemaType_Keyword ||
			!ix.GetParams().GetKeywordIndexParams().GetIsTenant() {
			t.Errorf("user_id index %v, want keyword is_tenant", ix)
		}
		if ix := schema["doc_id"]; ix.GetDataType() != qdrant.PayloadSchemaType_Keyword {
			t.Errorf("doc_id index %v, want keyword", ix)
		}
		if ix := schema["version"]; ix.GetDataType() != qdrant.PayloadSchemaType_Integer ||
			!ix.GetParams().GetIntegerIndexParams().GetLookup() || !ix.GetParams().GetIntegerIndexParams().GetRange() {
			t.Errorf("version index %v, want integer lookup+range", ix)
		}

		// Idempotent, on this sink (cached) and on a fresh one (read back).
		for _, s := range []*qdrantstore.Store{s, newSink(t, node, nil)} {
			if err := s.EnsureCollection(t.Context(), c, true); err != nil {
				t.Errorf("again: %v", err)
			}
			if err := s.EnsureCollection(t.Context(), c, false); err != nil {
				t.Errorf("again without create: %v", err)
			}
		}
	})

	t.Run("EnsureCollectionGlobalHNSW", func(t *testing.T) {
		s := newSink(t, node, func(c *qdrantstore.Config) { c.HNSW = qdrantstore.HNSWGlobal })
		ensure(t, s, "global", pipeline.Cosine)
		info, err := s.Client().GetCollectionInfo(t.Context(), "global")
		if err != nil {
			t.Fatal(err)
		}
		if m := info.GetConfig().GetHnswConfig().GetM(); m == 0 {
			t.Errorf("global hnsw m=0, want Qdrant's default")
		}
	})

	t.Run("EnsureCollectionMismatch", func(t *testing.T) {
		ensure(t, s, "docs", pipeline.Cosine) // 4 dims
		// Once cached, once read back by a fresh qdrantstore.
		for _, s := range []*qdrantstore.Store{s, newSink(t, node, nil)} {
			err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: 1024, Distance: pipeline.Cosine}, true)
			want := `collection "docs" has 4 dimensions in Qdrant, configured 1024`
			if err == nil || !strings.Contains(err.Error(), want) || !pipeline.IsPermanent(err) {
				t.Errorf("dims mismatch: %v, want permanent %q", err, want)
			}
			err = s.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: dims, Distance: pipeline.Euclid}, true)
			want = `collection "docs" has distance cosine in Qdrant, configured euclid`
			if err == nil || !strings.Contains(err.Error(), want) || !pipeline.IsPermanent(err) {
				t.Errorf("distance mismatch: %v, want permanent %q", err, want)
			}
		}
	})

	t.Run("EnsureCollectionUnknown", func(t *testing.T) {
		err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "absent", Dims: dims}, false)
		if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
			t.Fatalf("got %v, want permanent ErrUnknownCollection", err)
		}
		if ok, err := s.Client().CollectionExists(t.Context(), "absent"); err != nil || ok {
			t.Fatalf("absent was created (%v, %v)", ok, err)
		}
	})

	t.Run("EnsureCollectionConcurrent", func(t *testing.T) {
		// Separate sinks, as separate worker replicas would be.
		sinks := make([]*qdrantstore.Store, 6)
		for i := range sinks {
			sinks[i] = newSink(t, node, nil)
		}
		var wg sync.WaitGroup
		errs := make([]error, len(sinks)*2)
		for i := range errs {
			wg.Go(func() {
				errs[i] = sinks[i%len(sinks)].EnsureCollection(t.Context(), pipeline.Collection{Name: "race", Dims: dims}, true)
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Errorf("worker %d: %v", i, err)
			}
		}
	})

	// Payloads, conditional upserts, shrink/grow/delete and tenant
	// separation are in the contract suite (TestContractQdrant).

	t.Run("Compression", func(t *testing.T) {
		s := newSink(t, node, func(c *qdrantstore.Config) { c.Compression = true; c.PoolSize = 1 })
		ensure(t, s, "gzip", pipeline.Cosine)
		storetest.Apply(t, s, "gzip", storetest.Write("u", "d", 1, 3))
		storetest.ExpectDoc(t, s, "gzip", "u", "d", 1, 3)
	})

	t.Run("PermanentErrors", func(t *testing.T) {
		ensure(t, s, "perm", pipeline.Cosine)
		// A sink that has not verified the collection leaves the vector
		// check to Qdrant, which refuses the whole request; the sink then
		// replays its writes one by one. One that has checks locally.
		for i, s := range []*qdrantstore.Store{newSink(t, node, nil), s} {
			bad := storetest.Write("u", fmt.Sprintf("bad%d", i), 1, 2)
			bad.Points[1].Vector = []float32{1, 2, 3} // wrong length
			docs := []string{fmt.Sprintf("a%d", i), fmt.Sprintf("b%d", i)}
			ws := []pipeline.DocWrite{storetest.Write("u", docs[0], 1, 2), bad, storetest.Write("u", docs[1], 1, 1)}
			err := s.Apply(t.Context(), "perm", ws)
			if !pipeline.IsPermanent(err) {
				t.Fatalf("wrong vector length: %v, want permanent", err)
			}
			var be *pipeline.BatchError
			if !errors.As(err, &be) || len(be.Errs) != 3 || be.Errs[0] != nil || be.Errs[1] == nil || be.Errs[2] != nil {
				t.Fatalf("want a BatchError failing only write 1, got %#v", err)
			}
			t.Logf("error: %v", err)
			storetest.ExpectDoc(t, s, "perm", "u", docs[0], 1, 2)
			storetest.ExpectDoc(t, s, "perm", "u", docs[1], 1, 1)
			// Qdrant 1.16 is not atomic within one upsert: it may keep
			// points it stored before the one it refuses (seen: sometimes
			// chunk 0 is stored, sometimes not). The local check (i == 1)
			// refuses the write before anything is sent.
			got := len(storetest.Doc(t, s, "perm", "u", bad.DocID))
			t.Logf("%s: Qdrant kept %d of its points", bad.DocID, got)
			if i == 1 && got != 0 {
				t.Errorf("%s: %d points stored, want 0", bad.DocID, got)
			}
		}

		for name, w := range map[string]pipeline.DocWrite{
			"no doc id":     {UserID: "u", Version: 1},
			"version 0":     {UserID: "u", DocID: "d"},
			"bad utf-8":     storetest.Write("u", "d\xff", 1, 1),
			"foreign point": {UserID: "u", DocID: "x", Version: 1, Points: storetest.Write("u", "y", 1, 1).Points},
			"NaN metadata":  {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0), Vector: storetest.Vec(1, 0), Metadata: map[string]any{"x": math.NaN()}}}},
			"bad metadata":  {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: pipeline.PointID("u", "d", 0), Vector: storetest.Vec(1, 0), Metadata: map[string]any{"x": struct{}{}}}}},
			"bad id":        {UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{ID: "not-a-uuid", Vector: storetest.Vec(1, 0)}}},
		} {
			if err := s.Apply(t.Context(), "perm", []pipeline.DocWrite{w}); !pipeline.IsPermanent(err) {
				t.Errorf("%s: %v, want permanent", name, err)
			}
		}
		err := s.Apply(t.Context(), "nowhere", []pipeline.DocWrite{storetest.Write("u", "d", 1, 1)})
		if !pipeline.IsPermanent(err) {
			t.Errorf("unknown collection: %v, want permanent", err)
		}
		if err := s.Prune(t.Context(), "perm", []pipeline.DocVersion{{UserID: "u", DocID: "d"}}); !pipeline.IsPermanent(err) {
			t.Errorf("prune version 0: %v, want permanent", err)
		}
		if err := s.Apply(t.Context(), "perm", nil); err != nil {
			t.Errorf("empty Apply: %v", err)
		}
	})

	t.Run("Close", func(t *testing.T) {
		s := newSink(t, node, nil)
		ensure(t, s, "closing", pipeline.Cosine)
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		err := s.Apply(t.Context(), "closing", []pipeline.DocWrite{storetest.Write("u", "d", 1, 1)})
		if !errors.Is(err, qdrantstore.ErrClosed) || pipeline.IsPermanent(err) {
			t.Errorf("Apply after Close: %v, want transient ErrClosed", err)
		}
		if err := s.Health(t.Context()); !errors.Is(err, qdrantstore.ErrClosed) {
			t.Errorf("Health after Close: %v", err)
		}
		if err := s.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
	})

	t.Run("Health", func(t *testing.T) {
		if err := s.Health(t.Context()); err != nil {
			t.Fatal(err)
		}
	})
}

// TestIndexingDeferralWorkersJoining: a worker that first sees the backlog
// between the marks keeps the deferral another worker set, and the deferral
// ends when a worker sees the backlog drained.
func TestIndexingDeferralWorkersJoining(t *testing.T) {
	node := qdranttest.Start(t)
	first, joining := newSink(t, node, nil), newSink(t, node, nil)
	c := pipeline.Collection{Name: "deferred", Dims: dims, Distance: pipeline.Cosine}
	for _, s := range []*qdrantstore.Store{first, joining} {
		if err := s.EnsureCollection(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
	}
	threshold := func() uint64 {
		info, err := first.Client().GetCollectionInfo(t.Context(), c.Name)
		if err != nil {
			t.Fatal(err)
		}
		return info.GetConfig().GetOptimizerConfig().GetIndexingThreshold()
	}
	a, b := first.DeferIndexing(1000), joining.DeferIndexing(1000)
	a.Observe(t.Context(), 50000)
	if got := threshold(); got != 0 {
		t.Fatalf("threshold %d after a backlog of 50000, want 0", got)
	}
	b.Observe(t.Context(), 900) // between the marks, first sight
	a.Observe(t.Context(), 800)
	if got := threshold(); got != 0 {
		t.Fatalf("threshold %d after a worker joined mid-drain, want 0", got)
	}
	b.Observe(t.Context(), 50) // drained
	if got := threshold(); got != qdrantstore.DefaultIndexingThreshold {
		t.Fatalf("threshold %d once drained, want %d", got, qdrantstore.DefaultIndexingThreshold)
	}
}
