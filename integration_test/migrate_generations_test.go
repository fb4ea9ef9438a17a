package integration_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// TestBackupAdoptedGeneration: an adopted plain collection between its
// switch and --drop-previous (docs is still the plain collection of the old
// dimensions, the State serves docs__g1) is backed up by `ragpipe backup`
// from docs__g1, which the State names, and restored as docs__g1 behind the
// alias docs into another Qdrant.
func TestBackupAdoptedGeneration(t *testing.T) {
	s := newSystem(t)
	ctx := t.Context()
	store := s.store()
	serving := generation.Generation{Name: "docs__g1", Number: 1, Dims: 4, Distance: pipeline.Dot, ChunkSize: 100}
	for _, c := range []pipeline.Collection{{Name: "docs", Dims: 6}, serving.Collection()} {
		if err := store.CreateGeneration(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	w := pipeline.DocWrite{UserID: "alice", DocID: "d1", Version: 1, Points: []pipeline.Point{{
		ID: pipeline.PointID("alice", "d1", 0), Vector: []float32{1, 2, 3, 4}, UserID: "alice", DocID: "d1", ChunkCount: 1, Version: 1, Text: "t",
	}}}
	if err := store.Apply(ctx, serving.Name, []pipeline.DocWrite{w}); err != nil {
		t.Fatal(err)
	}
	reg, err := generation.Open(ctx, s.js, generation.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	if _, err := reg.Update(ctx, "docs", func(st *generation.State, _ bool) error {
		st.Serving, st.Previous = serving, &generation.Generation{Name: "docs", Dims: 6, Distance: pipeline.Cosine, ChunkSize: 100}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	dir := filepath.Join(t.TempDir(), "backup")
	runToEnd(t, s, "backup", []string{"backup", "--to", dir})
	var m struct {
		Collections []struct {
			Generation string `json:"generation"`
			Dims       int    `json:"dims"`
		} `json:"collections"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(data, &m) != nil || len(m.Collections) != 1 {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	if c := m.Collections[0]; c.Generation != "docs__g1" || c.Dims != 4 {
		t.Fatalf("manifest: generation %q of %d dimensions, want docs__g1 of 4", c.Generation, c.Dims)
	}

	node := qdranttest.Start(t)
	runToEnd(t, s, "restore", []string{"restore", "--from", dir, "--to", node.URL(), "--state", filepath.Join(t.TempDir(), "state")})
	dst, err := qdrantstore.New(ctx, qdrantstore.Config{Host: "127.0.0.1", Port: node.GRPCPort()})
	if err != nil {
		t.Fatal(err)
	}
	defer dst.Close()
	if g, err := dst.AliasTarget(ctx, "docs"); err != nil || g != "docs__g1" {
		t.Fatalf("restored docs is the alias of %q (%v), want docs__g1", g, err)
	}
	if n, err := dst.Count(ctx, "docs"); err != nil || n["alice"] != 1 {
		t.Fatalf("restored counts %v (%v)", n, err)
	}
}
