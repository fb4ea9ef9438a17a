package qdrantstore_test

import (
	"errors"
	"testing"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// sparseIn reports whether Qdrant's collection (or alias) name declares the
// keyword vector.
func sparseIn(t *testing.T, s *qdrantstore.Store, name string) bool {
	t.Helper()
	info, err := s.Client().GetCollectionInfo(t.Context(), name)
	if err != nil {
		t.Fatalf("GetCollectionInfo(%s): %v", name, err)
	}
	return info.GetConfig().GetParams().GetSparseVectorsConfig().GetMap()["keywords"] != nil
}

// TestKeywordsSettingQdrant checks Config.NoKeywords: the collections and
// generations a store so configured creates have the dense vector alone,
// are written and searched by vector, and refuse keyword searches; an
// existing collection keeps what it has whatever the setting; and a store
// with the default setting creates the next generation of a collection
// without keyword vectors with them (the reindex that turns them on), as
// one with NoKeywords creates that of a keyword collection without (the
// reindex that turns them off).
func TestKeywordsSettingQdrant(t *testing.T) {
	node := qdranttest.Start(t)
	dense := newSink(t, node, func(c *qdrantstore.Config) { c.NoKeywords = true })
	full := newSink(t, node, nil)
	ctx := t.Context()

	ensure(t, dense, "plain", pipeline.Cosine)
	ensure(t, full, "kw", pipeline.Cosine)
	createGeneration(t, dense, "kw__g2")
	createGeneration(t, full, "plain__g2")
	for _, s := range []*qdrantstore.Store{dense, full} {
		for _, name := range []string{"plain", "kw"} {
			if err := s.EnsureCollection(ctx, pipeline.Collection{Name: name, Dims: dims}, true); err != nil {
				t.Fatalf("EnsureCollection(%s) of the existing collection: %v", name, err)
			}
		}
	}
	for name, want := range map[string]bool{"plain": false, "plain__g1": false, "kw__g2": false, "kw": true, "plain__g2": true} {
		if got := sparseIn(t, full, name); got != want {
			t.Errorf("%s: keyword vector declared %t, want %t", name, got, want)
		}
		if c, err := dense.Describe(ctx, name); err != nil || c.Keywords != want {
			t.Errorf("Describe(%s) = %+v (%v), want Keywords %t", name, c, err, want)
		}
	}

	// Each store writes the points' keyword vectors where the collection
	// has them, whatever its own setting.
	text := "quarterly ErrQuotaExceeded review"
	kwq := pipeline.Query{UserID: "alice", Mode: pipeline.ModeKeyword, Keywords: pipeline.QueryKeywords(text), TopK: 3}
	for _, s := range []*qdrantstore.Store{dense, full} {
		for _, name := range []string{"plain", "kw"} {
			storetest.Apply(t, s, name, storetest.KwWrite("alice", "d", 1, nil, text, 1, 0, 0, 0))
			if hits := storetest.Search(t, s, name, pipeline.Query{UserID: "alice", Vector: query0, Mode: pipeline.ModeDense, TopK: 3}); len(hits) != 1 {
				t.Errorf("dense search of %s: %v, want d", name, hitIDs(hits))
			}
		}
		if hits := storetest.Search(t, s, "kw", kwq); len(hits) != 1 || hits[0].DocID != "d" {
			t.Errorf("keyword search of kw: %v, want d", hitIDs(hits))
		}
		if _, err := s.Search(ctx, "plain", kwq); !errors.Is(err, pipeline.ErrNoKeywords) {
			t.Errorf("keyword search of plain: %v, want ErrNoKeywords", err)
		}
	}
}
