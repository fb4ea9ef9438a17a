package localstore_test

import (
	"errors"
	"testing"

	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestEmbeddedKeywordsSetting checks Config.NoKeywords: the collections and
// generations a store so configured creates keep no keyword vectors, and
// still none once reopened with the default setting; an existing
// collection keeps what it has whatever the setting; and each setting
// gives the next generation of a collection of the other kind its own (the
// reindex that turns keyword vectors on or off).
func TestEmbeddedKeywordsSetting(t *testing.T) {
	dir := t.TempDir()
	ctx := t.Context()
	noKeywords := func(c *localstore.Config) { c.NoKeywords = true }
	create := func(s *localstore.Store, name string) {
		t.Helper()
		if err := s.CreateGeneration(ctx, pipeline.Collection{Name: name, Dims: storetest.Dims}); err != nil {
			t.Fatalf("CreateGeneration(%s): %v", name, err)
		}
	}

	s := openEmbedded(t, dir, noKeywords)
	storetest.Ensure(t, s, "plain", pipeline.Cosine)
	create(s, "plain__g2")
	s.Close()
	s = openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "plain", pipeline.Cosine) // exists: kept as it is
	storetest.Ensure(t, s, "kw", pipeline.Cosine)
	create(s, "plain__g3")
	s.Close()
	s = openEmbedded(t, dir, noKeywords)
	storetest.Ensure(t, s, "kw", pipeline.Cosine)
	create(s, "kw__g2")

	want := map[string]bool{"plain": false, "plain__g2": false, "plain__g3": true, "kw": true, "kw__g2": false}
	for name, keywords := range want {
		if c, err := s.Describe(ctx, name); err != nil || c.Keywords != keywords {
			t.Errorf("Describe(%s) = %+v (%v), want Keywords %t", name, c, err, keywords)
		}
	}
	text := "quarterly ErrQuotaExceeded review"
	q := pipeline.Query{UserID: "alice", Mode: pipeline.ModeKeyword, Keywords: pipeline.QueryKeywords(text), TopK: 3}
	for name, keywords := range want {
		storetest.Apply(t, s, name, storetest.KwWrite("alice", "d", 1, nil, text, 1, 0, 0, 0))
		hits, err := s.Search(ctx, name, q)
		if keywords && (err != nil || len(hits) != 1) {
			t.Errorf("keyword search of %s: %d hits (%v), want d", name, len(hits), err)
		}
		if !keywords && !errors.Is(err, pipeline.ErrNoKeywords) {
			t.Errorf("keyword search of %s: %v, want ErrNoKeywords", name, err)
		}
	}
}
