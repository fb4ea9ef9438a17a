package migrate_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/migrate"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// store is what the tests need of both stores.
type store interface {
	migrate.Source
	migrate.Target
	Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error
}

var collections = []pipeline.Collection{
	{Name: "docs", Dims: 16, Distance: pipeline.Cosine},
	{Name: "chat", Dims: 8, Distance: pipeline.Dot},
}

// fill writes documents of several tenants into every test collection.
func fill(t *testing.T, s store, docs int) {
	t.Helper()
	r := rand.New(rand.NewPCG(1, 2))
	for _, c := range collections {
		if err := s.EnsureCollection(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		var writes []pipeline.DocWrite
		for d := range docs {
			w := pipeline.DocWrite{UserID: fmt.Sprint("user-", d%3), DocID: fmt.Sprint("doc-", d), Version: uint64(1 + d%4)}
			chunks := 1 + r.IntN(3)
			for i := range chunks {
				v := make([]float32, c.Dims)
				var norm float64
				for j := range v {
					v[j] = r.Float32() - 0.5
					norm += float64(v[j] * v[j])
				}
				for j := range v { // unit length: cosine stores it as is
					v[j] /= float32(math.Sqrt(norm))
				}
				text := fmt.Sprintf("chunk %d of %s", i, w.DocID)
				w.Points = append(w.Points, pipeline.Point{
					ID: pipeline.PointID(w.UserID, w.DocID, i), Vector: v, UserID: w.UserID, DocID: w.DocID,
					ChunkIndex: i, ChunkCount: chunks, Text: text, Keywords: pipeline.Keywords(text),
					Metadata: map[string]any{"n": int64(d), "tag": "x"}, Version: w.Version, TextHash: fmt.Sprint("h", d, i),
				})
			}
			writes = append(writes, w)
		}
		if err := s.Apply(t.Context(), c.Name, writes); err != nil {
			t.Fatal(err)
		}
	}
}

// all reads every point of collection, in id order.
func all(t *testing.T, s migrate.Source, collection string) []pipeline.Point {
	t.Helper()
	var out []pipeline.Point
	after := ""
	for {
		pts, next, err := s.Scroll(t.Context(), collection, after, 100)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, pts...)
		if next == "" {
			slices.SortFunc(out, func(a, b pipeline.Point) int { return strings.Compare(a.ID, b.ID) })
			return out
		}
		after = next
	}
}

// assertSame fails unless both stores hold exactly the same points, keyword
// vectors included.
func assertSame(t *testing.T, a, b migrate.Source) {
	t.Helper()
	for _, c := range collections {
		pa, pb := all(t, a, c.Name), all(t, b, c.Name)
		if len(pa) != len(pb) {
			t.Fatalf("%s: %d points vs %d", c.Name, len(pa), len(pb))
		}
		for i := range pa {
			x, y := pa[i], pb[i]
			for j := range x.Vector {
				if math.Abs(float64(x.Vector[j]-y.Vector[j])) > 1e-5 {
					t.Fatalf("%s %s: vectors differ at %d: %v vs %v", c.Name, x.ID, j, x.Vector[j], y.Vector[j])
				}
			}
			if !sameKeywords(x.Keywords, y.Keywords) {
				t.Fatalf("%s %s: keyword vectors differ: %v vs %v", c.Name, x.ID, x.Keywords, y.Keywords)
			}
			x.Vector, y.Vector, x.Keywords, y.Keywords = nil, nil, nil, nil
			if fmt.Sprint(x) != fmt.Sprint(y) {
				t.Fatalf("%s: point differs:\n%+v\n%+v", c.Name, x, y)
			}
		}
	}
}

func openEmbedded(t *testing.T) *localstore.Store {
	t.Helper()
	e, err := localstore.Open(t.Context(), localstore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

func openQdrant(t *testing.T, node *qdranttest.Node, cfg qdrantstore.Config) *qdrantstore.Store {
	t.Helper()
	cfg.Host, cfg.Port = "127.0.0.1", node.GRPCPort()
	q, err := qdrantstore.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func TestEmbeddedToQdrant(t *testing.T) {
	src, dst := openEmbedded(t), openQdrant(t, qdranttest.Start(t), qdrantstore.Config{})
	fill(t, src, 300)
	state := filepath.Join(t.TempDir(), "state.json")
	reports, err := migrate.Run(t.Context(), migrate.Config{Source: src, Target: dst, StateFile: state, PageSize: 64})
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 2 || reports[0].Copied == 0 || len(reports[0].Source) != 3 {
		t.Fatalf("reports %+v", reports)
	}
	assertSame(t, src, dst)
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file left after a complete copy: %v", err)
	}
}

// TestQdrantToClusterInterrupted copies a single Qdrant node into a
// three-node cluster with three shards and replication factor 2, is
// interrupted half way, and resumes from the state file.
func TestQdrantToClusterInterrupted(t *testing.T) {
	src := openQdrant(t, qdranttest.Start(t), qdrantstore.Config{})
	nodes := qdranttest.StartCluster(t, 3)
	dst := openQdrant(t, nodes[0], qdrantstore.Config{Shards: 3, ReplicationFactor: 2})
	fill(t, src, 400)
	state := filepath.Join(t.TempDir(), "state.json")
	ctx, cancel := context.WithCancel(t.Context())
	cfg := migrate.Config{Source: src, Target: dst, StateFile: state, PageSize: 50,
		Progress: func(_ string, copied, total int) {
			if copied >= total/2 {
				cancel()
			}
		}}
	if _, err := migrate.Run(ctx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted run: %v, want context.Canceled", err)
	}
	if _, err := os.Stat(state); err != nil {
		t.Fatalf("no state file after interruption: %v", err)
	}
	cfg.Progress = nil
	reports, err := migrate.Run(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	total := 0
	for _, n := range reports[0].Source {
		total += n
	}
	if !reports[0].Resumed || reports[0].Copied >= total || reports[0].Copied == 0 {
		t.Errorf("first collection: resumed %v, copied %d of %d: want a resumed, partial copy", reports[0].Resumed, reports[0].Copied, total)
	}
	assertSame(t, src, dst)
	info, err := dst.Client().GetCollectionInfo(t.Context(), "docs")
	if err != nil {
		t.Fatal(err)
	}
	if p := info.GetConfig().GetParams(); p.GetShardNumber() != 3 || p.GetReplicationFactor() != 2 {
		t.Errorf("target layout: %d shards, replication %d, want 3 and 2", p.GetShardNumber(), p.GetReplicationFactor())
	}
	// A rerun after completion copies everything again, harmlessly.
	if _, err := migrate.Run(t.Context(), cfg); err != nil {
		t.Fatal(err)
	}
	assertSame(t, src, dst)
}

// TestCountMismatch: a target that already holds other points fails the check.
func TestCountMismatch(t *testing.T) {
	node := qdranttest.Start(t)
	src, dst := openEmbedded(t), openQdrant(t, node, qdrantstore.Config{})
	fill(t, src, 20)
	fill(t, dst, 30)
	_, err := migrate.Run(t.Context(), migrate.Config{Source: src, Target: dst, StateFile: filepath.Join(t.TempDir(), "s")})
	if !errors.Is(err, migrate.ErrCountMismatch) {
		t.Fatalf("got %v, want ErrCountMismatch", err)
	}
}

func sameKeywords(a, b *pipeline.SparseVector) bool {
	if a == nil || b == nil {
		return a == b
	}
	return slices.Equal(a.Indices, b.Indices) && slices.Equal(a.Values, b.Values)
}

// TestKeywords: points of a collection without keyword vectors are copied
// with the keyword vectors of their texts into a collection the copy
// creates, which then answers keyword searches; into a collection created
// without keyword vectors, points are copied without them.
func TestKeywords(t *testing.T) {
	src, dst := openQdrant(t, qdranttest.Start(t), qdrantstore.Config{}), openQdrant(t, qdranttest.Start(t), qdrantstore.Config{})
	for _, c := range collections {
		if err := src.CreateWithoutKeywords(t.Context(), c); err != nil {
			t.Fatal(err)
		}
	}
	fill(t, src, 50)
	for _, p := range all(t, src, "docs") {
		if p.Keywords != nil {
			t.Fatalf("source point %s has a keyword vector", p.ID)
		}
	}
	if _, err := migrate.Run(t.Context(), migrate.Config{Source: src, Target: dst, StateFile: filepath.Join(t.TempDir(), "s")}); err != nil {
		t.Fatal(err)
	}
	for _, c := range collections {
		for _, p := range all(t, dst, c.Name) {
			if want := pipeline.Keywords(p.Text); !sameKeywords(p.Keywords, want) {
				t.Fatalf("%s %s: keywords %v, want %v", c.Name, p.ID, p.Keywords, want)
			}
		}
	}
	hits, err := dst.Search(t.Context(), "docs", pipeline.Query{UserID: "user-1", Keywords: pipeline.QueryKeywords("doc-7"),
		Mode: pipeline.ModeKeyword, TopK: 10})
	if err != nil || len(hits) == 0 || hits[0].DocID != "doc-7" {
		t.Errorf("keyword search of the copy: %v, %v; want doc-7 first", hits, err)
	}

	// Back into the source, whose collections have no keyword vectors.
	back := openEmbedded(t)
	fill(t, back, 50) // the points the source holds, so that the counts match
	if _, err := migrate.Run(t.Context(), migrate.Config{Source: back, Target: src, StateFile: filepath.Join(t.TempDir(), "s")}); err != nil {
		t.Fatal(err)
	}
	for _, p := range all(t, src, "docs") {
		if p.Keywords != nil {
			t.Fatalf("point %s copied with a keyword vector into a collection without them", p.ID)
		}
	}
}

// serveSecond makes docs__g2 the generation serving docs in s, as a
// reindex leaves it.
func serveSecond(t *testing.T, s interface {
	CreateGeneration(ctx context.Context, c pipeline.Collection) error
	SwitchAlias(ctx context.Context, alias, collection string) error
}) {
	t.Helper()
	g := collections[0]
	g.Name = "docs__g2"
	if err := s.CreateGeneration(t.Context(), g); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(t.Context(), "docs", "docs__g2"); err != nil {
		t.Fatal(err)
	}
}

// assertServes fails unless alias docs of s points at want.
func assertServes(t *testing.T, s migrate.Target, want string) {
	t.Helper()
	if got, err := s.AliasTarget(t.Context(), "docs"); err != nil || got != want {
		t.Fatalf("docs is the alias of %q (%v), want %q", got, err, want)
	}
}

// TestGenerations: a collection served by docs__g2 arrives as docs__g2
// behind the alias docs, from the embedded store to Qdrant and back.
func TestGenerations(t *testing.T) {
	src, dst, back := openEmbedded(t), openQdrant(t, qdranttest.Start(t), qdrantstore.Config{}), openEmbedded(t)
	serveSecond(t, src)
	fill(t, src, 60)
	for _, step := range []struct {
		name     string
		from, to store
	}{{"embedded to qdrant", src, dst}, {"qdrant to embedded", dst, back}} {
		reports, err := migrate.Run(t.Context(), migrate.Config{Source: step.from, Target: step.to, StateFile: filepath.Join(t.TempDir(), "s")})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, r := range reports {
			if want := r.Collection.Name + map[string]string{"docs": "__g2", "chat": "__g1"}[r.Collection.Name]; r.From != want || r.To != want {
				t.Errorf("%s: %s copied from %q to %q, want %q", step.name, r.Collection.Name, r.From, r.To, want)
			}
		}
		assertServes(t, step.to, "docs__g2")
		assertSame(t, step.from, step.to)
	}
	assertSame(t, src, back)
}

// TestServingFromState: with Config.Serving, an adopted plain collection
// whose State names docs__g1 (another embedder's dimensions) while the name
// docs is still the plain previous collection is copied from docs__g1.
func TestServingFromState(t *testing.T) {
	src, dst := openQdrant(t, qdranttest.Start(t), qdrantstore.Config{}), openEmbedded(t)
	if err := src.CreateGeneration(t.Context(), collections[0]); err != nil { // plain docs, generation 0
		t.Fatal(err)
	}
	fill(t, src, 30)
	next := pipeline.Collection{Name: "docs__g1", Dims: 3, Distance: pipeline.Dot}
	if err := src.CreateGeneration(t.Context(), next); err != nil {
		t.Fatal(err)
	}
	w := pipeline.DocWrite{UserID: "u", DocID: "d", Version: 1, Points: []pipeline.Point{{
		ID: pipeline.PointID("u", "d", 0), Vector: []float32{1, 2, 3}, UserID: "u", DocID: "d", ChunkCount: 1, Version: 1, Text: "t",
	}}}
	if err := src.Apply(t.Context(), "docs__g1", []pipeline.DocWrite{w}); err != nil {
		t.Fatal(err)
	}
	reports, err := migrate.Run(t.Context(), migrate.Config{Source: src, Target: dst, Collections: []string{"docs"},
		StateFile: filepath.Join(t.TempDir(), "s"),
		Serving:   func(context.Context, string) (string, error) { return "docs__g1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	if r := reports[0]; r.From != "docs__g1" || r.To != "docs__g1" || r.Collection.Dims != 3 || r.Target["u"] != 1 || len(r.Target) != 1 {
		t.Fatalf("report %+v", r)
	}
	assertServes(t, dst, "docs__g1")
}
