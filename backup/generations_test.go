package backup_test

import (
	"context"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"testing"

	"github.com/ragpipe/ragpipe/backup"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// store is what the generation tests need of both stores.
type store interface {
	backup.Source
	backup.Target
	Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error
}

func openQdrant(t *testing.T) *qdrantstore.Store {
	t.Helper()
	q, err := qdrantstore.New(t.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: qdranttest.Start(t).GRPCPort()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// roundTrip backs up src and restores it into dst, checking the counts, and
// returns the manifest.
func roundTrip(t *testing.T, src backup.Source, dst backup.Target) *backup.Manifest {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "backup")
	m, err := backup.Backup(t.Context(), backup.Config{Source: src, Dir: dir, PageSize: 40})
	if err != nil {
		t.Fatal(err)
	}
	reports, err := backup.Restore(t.Context(), backup.RestoreConfig{Dir: dir, Target: dst, StateFile: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	want, _ := src.Count(t.Context(), "docs")
	if len(reports) != 1 || !maps.Equal(reports[0].Target, want) || len(want) != 2 {
		t.Fatalf("restore reports %+v, source counts %v", reports, want)
	}
	return m
}

// assertServes fails unless alias docs of s points at want.
func assertServes(t *testing.T, s backup.Target, want string) {
	t.Helper()
	if got, err := s.AliasTarget(t.Context(), "docs"); err != nil || got != want {
		t.Fatalf("docs is the alias of %q (%v), want %q", got, err, want)
	}
}

// TestGenerations: a collection served by docs__g2 is backed up from that
// generation, which the manifest names, and restored as docs__g2 behind the
// alias docs: from the embedded store to Qdrant and back. A manifest
// without the generation (an older backup) restores as ragpipe creates
// collections, docs__g1.
func TestGenerations(t *testing.T) {
	ctx := t.Context()
	src, mid, dst := open(t, t.TempDir()), openQdrant(t), open(t, t.TempDir())
	c := pipeline.Collection{Name: "docs__g2", Dims: 4, Distance: pipeline.Dot}
	if err := src.CreateGeneration(ctx, c); err != nil {
		t.Fatal(err)
	}
	if err := src.SwitchAlias(ctx, "docs", "docs__g2"); err != nil {
		t.Fatal(err)
	}
	var ws []pipeline.DocWrite
	for i := range 100 {
		ws = append(ws, doc([]string{"alice", "bob"}[i%2], i, 1))
	}
	if err := src.Apply(ctx, "docs", ws); err != nil {
		t.Fatal(err)
	}
	for _, step := range []struct{ from, to store }{{src, mid}, {mid, dst}} {
		m := roundTrip(t, step.from, step.to)
		if g := m.Collections[0].Generation; g != "docs__g2" {
			t.Fatalf("manifest names generation %q, want docs__g2", g)
		}
		assertServes(t, step.to, "docs__g2")
	}

	// An older manifest, without the generation.
	dir := filepath.Join(t.TempDir(), "backup")
	if _, err := backup.Backup(ctx, backup.Config{Source: src, Dir: dir}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "manifest.json")
	var raw map[string]any
	data, _ := os.ReadFile(path)
	if err := json.Unmarshal(data, &raw); err != nil {
		t.Fatal(err)
	}
	delete(raw["collections"].([]any)[0].(map[string]any), "generation")
	data, _ = json.Marshal(raw)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	old := open(t, t.TempDir())
	if _, err := backup.Restore(ctx, backup.RestoreConfig{Dir: dir, Target: old, StateFile: filepath.Join(t.TempDir(), "s")}); err != nil {
		t.Fatal(err)
	}
	assertServes(t, old, "docs__g1")
}

// TestServingFromState: with Config.Serving, an adopted plain collection
// whose State names docs__g1 (other dimensions) while the name docs is
// still the plain previous collection is backed up from docs__g1, with its
// settings.
func TestServingFromState(t *testing.T) {
	ctx := t.Context()
	src := openQdrant(t)
	for _, c := range []pipeline.Collection{{Name: "docs", Dims: 5}, {Name: "docs__g1", Dims: 4, Distance: pipeline.Dot}} {
		if err := src.CreateGeneration(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if err := src.Apply(ctx, "docs__g1", []pipeline.DocWrite{doc("alice", 1, 1), doc("bob", 2, 1)}); err != nil {
		t.Fatal(err)
	}
	m, err := backup.Backup(ctx, backup.Config{Source: src, Dir: t.TempDir(),
		Serving: func(context.Context, string) (string, error) { return "docs__g1", nil }})
	if err != nil {
		t.Fatal(err)
	}
	if c := m.Collections[0]; c.Generation != "docs__g1" || c.Dims != 4 || c.Distance != pipeline.Dot || c.Points() != 5 {
		t.Fatalf("manifest collection %+v", c)
	}
}
