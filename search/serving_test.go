package search_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/telemetry"
)

// generations is a collection's State as the searcher sees it: cached
// (Serving with fresh false) and current (fresh true), set by the test.
type generations struct {
	cached, current atomic.Pointer[search.Serving]
	err             atomic.Pointer[error]
	fresh           atomic.Int64 // calls with fresh true
}

func (g *generations) serve(sv search.Serving) {
	g.cached.Store(&sv)
	g.current.Store(&sv)
}

func (g *generations) serving(_ context.Context, collection string, fresh bool) (search.Serving, error) {
	if collection != "docs" {
		return search.Serving{}, fmt.Errorf("no collection %q here", collection)
	}
	if err := g.err.Load(); err != nil {
		return search.Serving{}, *err
	}
	if fresh {
		g.fresh.Add(1)
		return *g.current.Load(), nil
	}
	return *g.cached.Load(), nil
}

// servingFixture is the search service over the embedded store holding two
// generations of the collection "docs": docs__g1 (32 dimensions, alice's
// documents at version 1) and docs__g2 (48 dimensions, version 2), served
// as gens says.
type servingFixture struct {
	store        *localstore.Store
	client       *search.Client
	metrics      *telemetry.Metrics
	gens         *generations
	g1, g2       search.Serving
	vec32, vec48 []float32
}

func newServingFixture(t *testing.T) *servingFixture {
	t.Helper()
	nc, store, log := startLocal(t)
	f := &servingFixture{store: store, gens: &generations{}, metrics: telemetry.NewMetrics()}
	for i, d := range []int{32, 48} {
		emb, err := embedder.NewHash(d)
		if err != nil {
			t.Fatal(err)
		}
		name := pipeline.Collection{Name: []string{"docs__g1", "docs__g2"}[i], Dims: d}
		if err := store.CreateGeneration(t.Context(), name); err != nil {
			t.Fatal(err)
		}
		var ws []pipeline.DocWrite
		for _, m := range modeDocs {
			if m.user != "alice" {
				continue
			}
			vs, err := emb.Embed(t.Context(), []string{m.text})
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, pipeline.DocWrite{UserID: m.user, DocID: m.doc, Version: uint64(i + 1), Points: []pipeline.Point{{
				ID: pipeline.PointID(m.user, m.doc, 0), Vector: vs[0], ChunkCount: 1, Text: m.text,
				Keywords: pipeline.Keywords(m.text),
			}}})
		}
		if err := store.Apply(t.Context(), name.Name, ws); err != nil {
			t.Fatal(err)
		}
		sv := search.Serving{Collection: name.Name, Embedder: emb}
		v := make([]float32, d)
		v[0] = 1
		if i == 0 {
			f.g1, f.vec32 = sv, v
		} else {
			f.g2, f.vec48 = sv, v
		}
	}
	f.gens.serve(f.g1)
	svc, err := search.Start(t.Context(), search.Config{
		Conn: nc, Index: store, Serving: f.gens.serving, Metrics: f.metrics, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	f.client = &search.Client{Conn: nc}
	return f
}

// answeredBy checks that search, list and status of alice in "docs" are
// answered from the generation whose documents are at version want.
func (f *servingFixture) answeredBy(t *testing.T, what string, want uint64) {
	t.Helper()
	for _, mode := range []string{"", "dense", "keyword"} {
		reply, err := f.client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "ErrQuotaExceeded quota", Mode: mode})
		if err != nil {
			t.Fatalf("%s: search, mode %q: %v", what, mode, err)
		}
		if len(reply.Hits) == 0 || reply.Hits[0].DocID != "quota" || reply.Hits[0].Version != want {
			t.Errorf("%s: search, mode %q: hits %+v, want quota at version %d first", what, mode, reply.Hits, want)
		}
	}
	list, err := f.client.List(t.Context(), "alice", "docs", search.ListRequest{})
	if err != nil {
		t.Fatalf("%s: list: %v", what, err)
	}
	if len(list.Docs) != 3 || list.Docs[0].Version != want {
		t.Errorf("%s: list: %+v, want 3 documents at version %d", what, list.Docs, want)
	}
	status, err := f.client.Status(t.Context(), "alice", "docs", search.StatusRequest{DocIDs: []string{"quota", "none"}})
	if err != nil {
		t.Fatalf("%s: status: %v", what, err)
	}
	if s := status.Docs; len(s) != 2 || !s[0].Stored || s[0].Version != want || s[1].Stored {
		t.Errorf("%s: status: %+v, want quota stored at version %d, none absent", what, s, want)
	}
}

// code is the status code of err, a reply's error (200 for nil).
func code(t *testing.T, err error) (int, string) {
	t.Helper()
	if err == nil {
		return 200, ""
	}
	e, ok := errors.AsType[*search.Error](err)
	if !ok {
		t.Fatalf("not an error reply: %v", err)
	}
	return e.Code, e.Message
}

// TestSearchServiceFollowsServing: requests go to the generation Serving
// names at the time, with its embedder: a switch to a generation of other
// dimensions moves searches, lists and status requests to it, and a search
// by vector is checked against the new dimensions. Replies name the
// ragpipe collection only.
func TestSearchServiceFollowsServing(t *testing.T) {
	f := newServingFixture(t)
	f.answeredBy(t, "serving docs__g1", 1)
	byVector := func(v []float32) (int, string) {
		_, err := f.client.Search(t.Context(), "alice", "docs", search.SearchRequest{Vector: v})
		return code(t, err)
	}
	if c, msg := byVector(f.vec32); c != 200 {
		t.Errorf("vector of 32 dimensions on docs__g1: %d %s", c, msg)
	}
	if c, msg := byVector(f.vec48); c != 400 || !strings.Contains(msg, `collection "docs" has 32`) {
		t.Errorf("vector of 48 dimensions on docs__g1: %d %s, want 400 naming docs and 32", c, msg)
	}

	f.gens.serve(f.g2)
	f.answeredBy(t, "serving docs__g2", 2)
	if c, msg := byVector(f.vec48); c != 200 {
		t.Errorf("vector of 48 dimensions on docs__g2: %d %s", c, msg)
	}
	c, msg := byVector(f.vec32)
	if c != 400 || !strings.Contains(msg, `collection "docs" has 48`) || strings.Contains(msg, "__g") {
		t.Errorf("vector of 32 dimensions on docs__g2: %d %s, want 400 naming docs (not a generation) and 48", c, msg)
	}
	if n := f.gens.fresh.Load(); n != 0 {
		t.Errorf("%d reads of the State's source of truth, want none: every generation exists", n)
	}
	values := labelValues(t, f.metrics, "ragpipe_search_requests_total")
	if len(values) != 1 || !values["docs"] {
		t.Errorf("ragpipe_search_requests_total has collection label values %v, want docs only", values)
	}
}

// TestSearchServiceDroppedGeneration: a generation dropped while the
// cached State still names it (and while the service remembers it exists)
// is answered from the generation serving now, read fresh; a generation
// missing from the fresh State too is a 404 naming the ragpipe collection;
// an error of Serving is a 500 with its reason when it is a
// misconfiguration, else a 503.
func TestSearchServiceDroppedGeneration(t *testing.T) {
	f := newServingFixture(t)
	f.answeredBy(t, "serving docs__g1", 1)

	// The reindex switched to docs__g2 and dropped docs__g1; this searcher
	// has not seen the switch.
	f.gens.current.Store(&f.g2)
	if err := f.store.DropCollection(t.Context(), f.g1.Collection); err != nil {
		t.Fatal(err)
	}
	f.answeredBy(t, "docs__g1 dropped, cache stale", 2)
	if n := f.gens.fresh.Load(); n != 5 { // 3 searches, 1 list, 1 status
		t.Errorf("%d reads of the State's source of truth for 5 requests, want 5", n)
	}
	f.gens.cached.Store(&f.g2)
	f.answeredBy(t, "cache caught up", 2)
	if n := f.gens.fresh.Load(); n != 5 {
		t.Errorf("%d reads of the State's source of truth, want still 5", n)
	}

	// Dropped for good: the fresh State names it too.
	f.gens.serve(f.g1)
	for _, mode := range []string{"dense", "keyword"} {
		_, err := f.client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "quota", Mode: mode})
		if c, msg := code(t, err); c != 404 || msg != `collection "docs" does not exist` {
			t.Errorf("mode %s, generation missing from the fresh State too: %d %s, want 404 naming docs", mode, c, msg)
		}
	}
	_, err := f.client.List(t.Context(), "alice", "docs", search.ListRequest{})
	if c, msg := code(t, err); c != 404 || msg != `collection "docs" does not exist` {
		t.Errorf("list, generation missing: %d %s, want 404 naming docs", c, msg)
	}

	misconfigured := pipeline.Misconfigured(errors.New(`generation docs__g2 needs embedder profile "large", not configured here`))
	unavailable := errors.New("nats: no responders available for request")
	for _, tc := range []struct {
		err  error
		code int
		want string
	}{
		{misconfigured, 500, `collection "docs" cannot be served: generation docs__g2 needs embedder profile "large"`},
		{unavailable, 503, `collection "docs": its state is unavailable`},
	} {
		f.gens.err.Store(&tc.err)
		for _, req := range []func() error{
			func() error {
				_, err := f.client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "quota"})
				return err
			},
			func() error { _, err := f.client.List(t.Context(), "alice", "docs", search.ListRequest{}); return err },
			func() error {
				_, err := f.client.Status(t.Context(), "alice", "docs", search.StatusRequest{DocIDs: []string{"quota"}})
				return err
			},
		} {
			if c, msg := code(t, req()); c != tc.code || !strings.Contains(msg, tc.want) {
				t.Errorf("Serving fails with %v: %d %s, want %d with %q", tc.err, c, msg, tc.code, tc.want)
			}
		}
	}
}
