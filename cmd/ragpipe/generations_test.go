package main

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// TestGenerationsRouteAndServing: a collection without a State is routed
// to itself and served by its own name and configured embedder; one with a
// State is routed to its generations and served by Serving, with embedders
// of profiles no collection names built on first need and shared; a
// profile this process lacks is a misconfiguration naming its variable.
func TestGenerationsRouteAndServing(t *testing.T) {
	ctx := t.Context()
	cfg, err := config.LoadFrom([]string{
		"RAGPIPE_EMBEDDER=hash", "RAGPIPE_COLLECTIONS=docs:64:cosine,notes:32:dot",
		"RAGPIPE_EMBEDDER_SMALL_KIND=hash", // named by no collection
	}, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	embs, err := newEmbedders(cfg, zerolog.Nop(), telemetry.NewMetrics())
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	reg, err := generation.Open(ctx, js, generation.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = reg.Close() })
	g := newGenerations(reg, embs)

	if r := g.Route("docs"); r.Revision != 0 || r.Targets != nil || r.Err != nil {
		t.Errorf("Route without a State: %+v", r)
	}
	if r, err := g.Confirm(ctx, "docs"); err != nil || r.Revision != 0 || r.Targets != nil {
		t.Errorf("Confirm without a State: %+v, %v", r, err)
	}
	for _, fresh := range []bool{false, true} {
		sv, err := g.Serving(ctx, "notes", fresh)
		if err != nil || sv.Collection != "notes" || sv.Embedder.Dimensions() != 32 {
			t.Errorf("Serving without a State (fresh %v): %+v, %v", fresh, sv, err)
		}
	}

	// A State with a Job but no serving generation yet (not adopted).
	waiting, err := reg.Update(ctx, "notes", func(s *generation.State, _ bool) error {
		s.Job = &generation.Job{ID: "j", Action: generation.Build, Phase: generation.Waiting}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if r := g.Route("notes"); r.Revision != waiting.Revision || r.Targets != nil || r.Err != nil {
		t.Errorf("Route of a State without a serving generation: %+v", r)
	}
	if sv, err := g.Serving(ctx, "notes", true); err != nil || sv.Collection != "notes" || sv.Embedder.Dimensions() != 32 {
		t.Errorf("Serving of a State without a serving generation: %+v, %v", sv, err)
	}

	serving := generation.Generation{Name: "docs", Dims: 64, Distance: pipeline.Cosine, ChunkSize: 2000, ChunkOverlap: 200}
	building := generation.Generation{Name: "docs__g1", Number: 1, Embedder: "small", Dims: 16, Distance: pipeline.Dot,
		ChunkSize: 500, ChunkOverlap: 50, Shards: 2}
	s, err := reg.Update(ctx, "docs", func(s *generation.State, _ bool) error {
		s.Serving, s.Building = serving, &building
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	r := g.Route("docs")
	if r.Err != nil || r.Revision != s.Revision || len(r.Targets) != 2 {
		t.Fatalf("Route: %+v", r)
	}
	if b := r.Targets[1]; b.Collection != building.Collection() || b.Embedder.Dimensions() != 16 ||
		b.Chunker != mustChunker(t, g, 500, 50) || b.ReuseFrom != "" {
		t.Errorf("building target %+v", b)
	}
	if a := r.Targets[0]; a.Collection.Name != "docs" || a.Embedder != embs.of("docs") {
		t.Errorf("serving target %+v: want the configured embedder, shared", a)
	}
	if again := g.Route("docs"); &again.Targets[0] != &r.Targets[0] {
		t.Error("Route built the route of an unchanged State again")
	}
	if c, err := g.Confirm(ctx, "docs"); err != nil || c.Revision != s.Revision || len(c.Targets) != 2 {
		t.Errorf("Confirm: %+v, %v", c, err)
	}
	// A checkpoint of a Job changes the State, not the route.
	checkpoint, err := reg.Update(ctx, "docs", func(s *generation.State, _ bool) error {
		s.Job = &generation.Job{ID: "j", Action: generation.Build, Phase: generation.Copying, Copied: 64}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := g.Confirm(ctx, "docs"); err != nil || checkpoint.Revision == s.Revision || c.Revision != s.Revision {
		t.Errorf("Confirm after a checkpoint at revision %d: revision %d, %v; want the route's %d", checkpoint.Revision, c.Revision, err, s.Revision)
	}
	if e, _ := embs.get("small", 16); e != r.Targets[1].Embedder {
		t.Error("the embedder of profile small at 16 dimensions is not shared")
	}

	// After a switch, searches go to the new generation.
	s, err = reg.Update(ctx, "docs", func(s *generation.State, _ bool) error {
		s.Previous, s.Serving, s.Building = &s.Serving, *s.Building, nil
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	sv, err := g.Serving(ctx, "docs", true)
	if err != nil || sv.Collection != "docs__g1" || sv.Embedder.Dimensions() != 16 {
		t.Errorf("Serving after the switch: %+v, %v", sv, err)
	}

	// A profile this process lacks.
	s, err = reg.Update(ctx, "docs", func(s *generation.State, _ bool) error {
		s.Building = &generation.Generation{Name: "docs__g2", Number: 2, Embedder: "large", Dims: 8,
			Distance: pipeline.Cosine, ChunkSize: 100, ChunkOverlap: 0}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for r = g.Route("docs"); r.Revision != s.Revision && time.Now().Before(deadline); r = g.Route("docs") {
		time.Sleep(10 * time.Millisecond)
	}
	if !pipeline.IsMisconfigured(r.Err) || !strings.Contains(r.Err.Error(), "RAGPIPE_EMBEDDER_LARGE_KIND") ||
		!strings.Contains(r.Err.Error(), "docs__g2") || r.Revision != s.Revision {
		t.Errorf("Route with an unknown profile: %+v", r)
	}
}

func mustChunker(t *testing.T, g *generations, size, overlap int) *pipeline.Chunker {
	t.Helper()
	c, err := g.chunker(size, overlap)
	if err != nil {
		t.Fatal(err)
	}
	return c
}
