package localstore_test

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// CreateWithoutKeywords lets the contract suite create a collection without
// keyword vectors in the reopened store.
func (r *reopeningStore) CreateWithoutKeywords(ctx context.Context, c pipeline.Collection) error {
	defer r.reopen(c.Name)
	return r.s.CreateWithoutKeywords(ctx, c)
}

// TestEmbeddedLegacyData opens a data directory written before keyword
// vectors (testdata/v1: a snapshot and a log): its collection gets keyword
// vectors computed from the stored texts, is rewritten with them by a
// compaction, and answers keyword searches before and after.
func TestEmbeddedLegacyData(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/v1")); err != nil {
		t.Fatal(err)
	}
	check := func(when string, s interface {
		Search(context.Context, string, pipeline.Query) ([]pipeline.Hit, error)
	}) {
		t.Helper()
		for _, tc := range []struct{ user, text, want string }{
			{"alice", "ErrQuotaExceeded", "outage"}, // from the log
			{"alice", "budget", "budget"},           // from the snapshot
			{"alice", "kustomize", "deploy"},        // the log's newer version
			{"alice", "helm", ""},                   // the older one, gone
			{"bob", "budget", ""},                   // deleted in the log
		} {
			hits, err := s.Search(t.Context(), "legacy", pipeline.Query{UserID: tc.user, Mode: pipeline.ModeKeyword,
				Keywords: pipeline.QueryKeywords(tc.text), TopK: 10})
			if err != nil {
				t.Fatalf("%s: %v", when, err)
			}
			var got []string
			for _, h := range hits {
				got = append(got, h.DocID)
			}
			if want := strings.Fields(tc.want); !slices.Equal(got, want) {
				t.Errorf("%s: %s searching %q: %v, want %v", when, tc.user, tc.text, got, want)
			}
		}
	}
	s := openEmbedded(t, dir, nil)
	colls, err := s.Collections(t.Context())
	if err != nil || len(colls) != 1 || !colls[0].Keywords {
		t.Fatalf("Collections: %+v, %v; want legacy, with keywords", colls, err)
	}
	check("loaded", s)
	// The compactor rewrites the legacy records at once.
	checkfor.Until(t, 10*time.Second, "the legacy collection compacted", func() error {
		if files := embeddedFiles(t, dir, "legacy"); !slices.Contains(files, "snap-0000000000000002") {
			return fmt.Errorf("files %v", files)
		}
		return nil
	})
	s.Close()
	s = openEmbedded(t, dir, nil)
	check("reopened", s)
	s.Close()
	if files := embeddedFiles(t, dir, "legacy"); !slices.Contains(files, "snap-0000000000000002") {
		t.Errorf("files %v: compacted again, though nothing was legacy any more", files)
	}
}

// TestEmbeddedKeywordIndex writes, overwrites, moves and deletes points of
// several tenants at random, then checks every keyword search against scores
// computed from the stored points' keyword vectors, before and after a
// reopening.
func TestEmbeddedKeywordIndex(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "kwindex", pipeline.Dot)
	rng := rand.New(rand.NewPCG(3, 4))
	users := []string{"u0", "u1", "u2"}
	text := func() string {
		words := make([]string, 1+rng.IntN(12))
		for i := range words {
			words[i] = fmt.Sprintf("w%d", int(math.Sqrt(float64(rng.IntN(900))))) // w0 rare ... w29 common
		}
		return strings.Join(words, " ")
	}
	for round := range 40 {
		var ws []pipeline.DocWrite
		for range 20 {
			user, doc := users[rng.IntN(len(users))], fmt.Sprintf("d%d", rng.IntN(60))
			w := pipeline.DocWrite{UserID: user, DocID: doc, Version: uint64(round + 1)}
			n := rng.IntN(4) // 0: a delete
			for i := range n {
				txt := text()
				w.Points = append(w.Points, pipeline.Point{ID: pipeline.PointID(user, doc, i), Vector: storetest.Vec(1, i),
					ChunkIndex: i, ChunkCount: n, Text: txt, Keywords: pipeline.Keywords(txt)})
			}
			if rng.IntN(10) == 0 && n > 0 { // the id moves to another tenant
				w.Points[0].ID = pipeline.PointID(users[(slices.Index(users, user)+1)%len(users)], doc, 0)
			}
			ws = append(ws, w)
		}
		storetest.Apply(t, s, "kwindex", ws...)
	}
	checkKeywordIndex(t, s, users)
	s.Close()
	s = openEmbedded(t, dir, nil)
	checkKeywordIndex(t, s, users)
}

// checkKeywordIndex compares keyword searches of every tenant with scores
// computed from every stored point.
func checkKeywordIndex(t *testing.T, s storetest.Store, users []string) {
	t.Helper()
	points := storetest.Points(t, s, "kwindex")
	var all []*pipeline.SparseVector
	for _, p := range points {
		if p.Keywords != nil {
			all = append(all, p.Keywords)
		}
	}
	for _, user := range users {
		for _, query := range []string{"w0", "w29", "w3 w17", "w5 w9 w28", "absent"} {
			q := pipeline.QueryKeywords(query)
			type scored struct {
				id    string
				score float64
			}
			var want []scored
			for _, p := range points {
				if p.UserID != user || p.Keywords == nil {
					continue
				}
				if sc, ok := storetest.KeywordScore(q, p.Keywords, all); ok {
					want = append(want, scored{fmt.Sprintf("%s#%d", p.DocID, p.ChunkIndex), sc})
				}
			}
			sort.SliceStable(want, func(i, j int) bool { return want[i].score > want[j].score })
			hits, err := s.Search(t.Context(), "kwindex", pipeline.Query{UserID: user, Mode: pipeline.ModeKeyword, Keywords: q, TopK: 100})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != min(len(want), 100) {
				t.Fatalf("%s %q: %d hits, want %d", user, query, len(hits), len(want))
			}
			for i, h := range hits {
				if math.Abs(float64(h.Score)-want[i].score) > 1e-4*want[i].score {
					t.Fatalf("%s %q: hit %d (%s#%d) scores %v, want %v (%s)", user, query, i, h.DocID, h.ChunkIndex, h.Score, want[i].score, want[i].id)
				}
			}
		}
	}
}

// TestEmbeddedCollectionsReportKeywords checks that Collections tells
// collections with keyword vectors from those without.
func TestEmbeddedCollectionsReportKeywords(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "with", pipeline.Cosine)
	if err := s.CreateWithoutKeywords(t.Context(), pipeline.Collection{Name: "without", Dims: storetest.Dims}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // and after reopening
		colls, err := s.Collections(t.Context())
		if err != nil || len(colls) != 2 || !colls[0].Keywords || colls[1].Keywords {
			t.Errorf("Collections: %+v, %v; want with (keywords), without", colls, err)
		}
		s.Close()
		s = openEmbedded(t, dir, nil)
	}
}
