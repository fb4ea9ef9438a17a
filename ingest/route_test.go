package ingest_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// router is a Router whose route the test sets. Its change, when set, is
// applied by Confirm before it answers, as a reindex changing the
// collection's generations between a worker's Route and its Confirm.
type router struct {
	mu       sync.Mutex
	route    ingest.Route
	change   func(r *ingest.Route)
	fail     error // Confirm's error
	confirms int
}

func (r *router) Route(string) ingest.Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.route
}

func (r *router) Confirm(context.Context, string) (ingest.Route, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.confirms++
	if r.change != nil {
		r.change(&r.route)
	}
	return r.route, r.fail
}

func (r *router) set(f func(r *router)) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f(r)
}

// named is the hash embedder with an identity of its own.
type named struct {
	*embedder.Hash
	id string
}

func (n named) Identity() string { return n.id }

// pointsStore is a store whose points the test reads back.
type pointsStore interface {
	store
	ingest.VectorSource
	DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error)
}

// generation creates the store collection name of dims dimensions in s and
// returns its Target: the hash embedder of dims, chunks of size characters.
func generation(t *testing.T, s store, name string, dims, size int) ingest.Target {
	t.Helper()
	emb, err := embedder.NewHash(dims)
	if err != nil {
		t.Fatal(err)
	}
	chunker, err := pipeline.NewChunker(size, size/10)
	if err != nil {
		t.Fatal(err)
	}
	c := pipeline.Collection{Name: name, Dims: dims, Distance: pipeline.Cosine, Keywords: true}
	if err := s.EnsureCollection(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	return ingest.Target{Collection: c, Embedder: named{emb, fmt.Sprint("hash/", dims)}, Chunker: chunker}
}

// routedStage builds a Stage writing to s through r, with the collection
// "docs" of 16 dimensions configured (the hash embedder, chunks of 300).
func routedStage(t *testing.T, s pointsStore, r ingest.Router) *ingest.Stage {
	t.Helper()
	emb, err := embedder.NewHash(16)
	if err != nil {
		t.Fatal(err)
	}
	chunker, _ := pipeline.NewChunker(300, 30)
	stage, err := ingest.NewStage(ingest.StageConfig{Sink: s, Versions: register(t), Embedder: named{emb, "hash/16"}, Chunker: chunker,
		Reuse: s, Router: r, Collections: []pipeline.Collection{{Name: "docs", Dims: 16, Distance: pipeline.Cosine}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return stage
}

// upsert is version v of document doc of alice in "docs".
func upsert(doc string, v uint64, text string) pipeline.Event {
	return pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: doc, Text: text, Version: v}
}

// mustProcess fails the test on any event's error.
func mustProcess(t *testing.T, events []pipeline.Event, errs []error) {
	t.Helper()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("%s v%d: %v", events[i].DocID, events[i].Version, err)
		}
	}
}

// checkStored verifies that collection of target holds exactly the
// newest version of each document of want (a delete: nothing), all its
// chunks as the target chunks it, with vectors of its dimensions.
func checkStored(t *testing.T, s pointsStore, target ingest.Target, want map[[2]string]pipeline.Event) {
	t.Helper()
	name := target.Collection.Name
	for k, e := range want {
		points, err := s.DocumentPoints(t.Context(), name, k[0], []string{k[1]})
		if err != nil {
			t.Fatal(err)
		}
		if e.Op == pipeline.OpDelete {
			if len(points) > 0 {
				t.Errorf("%s: %s/%s deleted at v%d holds %d points", name, k[0], k[1], e.Version, len(points))
			}
			continue
		}
		chunks := target.Chunker.Split(e.Text)
		if len(points) != len(chunks) {
			t.Errorf("%s: %s/%s v%d has %d points, want %d", name, k[0], k[1], e.Version, len(points), len(chunks))
			continue
		}
		for _, p := range points {
			if p.Version != e.Version || p.ChunkCount != len(chunks) || p.Text != chunks[p.ChunkIndex] || len(p.Vector) != target.Collection.Dims {
				t.Errorf("%s: %s/%s chunk %d: version %d of %d chunks, %d dims; want v%d of %d, %d dims",
					name, k[0], k[1], p.ChunkIndex, p.Version, p.ChunkCount, len(p.Vector), e.Version, len(chunks), target.Collection.Dims)
			}
		}
	}
}

// TestRoutedLastVersionWins: with a route of two generations of other
// dimensions, embedders and chunk sizes, shuffled versions and deletes of
// documents, in batches processed concurrently, leave in each generation
// exactly each document's newest version, chunked and embedded as that
// generation does.
func TestRoutedLastVersionWins(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) { routedLastVersionWins(t, st.open(t).(pointsStore)) })
	}
}

func routedLastVersionWins(t *testing.T, s pointsStore) {
	a, b := generation(t, s, "docs-a", 16, 300), generation(t, s, "docs-b", 32, 120)
	r := &router{route: ingest.Route{Revision: 1, Targets: []ingest.Target{a, b}}}
	stage := routedStage(t, s, r)
	rng := rand.New(rand.NewPCG(15, 1))
	newest := make(map[[2]string]pipeline.Event)
	var events []pipeline.Event
	for d := range 30 {
		user := fmt.Sprint("u", d%3)
		for v := uint64(1); v <= 5; v++ {
			e := pipeline.Event{Op: pipeline.OpUpsert, UserID: user, Collection: "docs", DocID: fmt.Sprint("d", d),
				Text: words(100*d+int(v), 50+rng.IntN(900)), Version: v}
			if rng.IntN(4) == 0 {
				e.Op, e.Text = pipeline.OpDelete, ""
			}
			events = append(events, e)
			if k := [2]string{user, e.DocID}; e.Version > newest[k].Version {
				newest[k] = e
			}
		}
	}
	rng.Shuffle(len(events), func(i, j int) { events[i], events[j] = events[j], events[i] })
	batches := make(chan []pipeline.Event)
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for batch := range batches {
				for i, err := range stage.Process(t.Context(), batch) {
					if err != nil {
						t.Errorf("%s v%d: %v", batch[i].DocID, batch[i].Version, err)
					}
				}
			}
		})
	}
	for len(events) > 0 {
		n := min(len(events), 1+rng.IntN(12))
		batches <- events[:n]
		events = events[n:]
	}
	close(batches)
	wg.Wait()
	checkStored(t, s, a, newest)
	checkStored(t, s, b, newest)
	if r.confirms == 0 {
		t.Error("the route was never confirmed")
	}
}

// TestRouteChangedBeforeConfirm: a route that changes between the Stage's
// Route and its Confirm gets the events written to the targets the new
// route adds, from the collection alone to its generations too; a change
// that adds no target costs no more confirmation; a route that keeps
// adding targets, or that cannot be confirmed, fails the events for a
// retry, never for good.
func TestRouteChangedBeforeConfirm(t *testing.T) {
	s := stores[1].open(t).(pointsStore)
	a, b := generation(t, s, "docs-a", 16, 300), generation(t, s, "docs-b", 32, 120)
	own := ingest.Target{Collection: pipeline.Collection{Name: "docs", Dims: 16, Distance: pipeline.Cosine, Keywords: true},
		Embedder: a.Embedder, Chunker: a.Chunker}
	var more []ingest.Target
	for _, name := range []string{"docs-c", "docs-d", "docs-e", "docs-f"} {
		more = append(more, generation(t, s, name, 16, 300))
	}
	r := &router{}
	stage := routedStage(t, s, r)
	once := func(to ingest.Route) func(*ingest.Route) {
		var done bool
		return func(route *ingest.Route) {
			if !done {
				*route, done = to, true
			}
		}
	}
	for _, tc := range []struct {
		name          string
		from, to      ingest.Route
		targets       []ingest.Target // written
		untouched     string          // not written
		wantConfirms  int
		keepsChanging bool
		fail          error
	}{
		{name: "added", from: ingest.Route{Revision: 1, Targets: []ingest.Target{a}}, to: ingest.Route{Revision: 2, Targets: []ingest.Target{a, b}},
			targets: []ingest.Target{a, b}, wantConfirms: 2},
		{name: "first generation", to: ingest.Route{Revision: 3, Targets: []ingest.Target{own, b}},
			targets: []ingest.Target{own, b}, untouched: "docs-a", wantConfirms: 2},
		{name: "switched", from: ingest.Route{Revision: 4, Targets: []ingest.Target{a, b}}, to: ingest.Route{Revision: 5, Targets: []ingest.Target{b, a}},
			targets: []ingest.Target{a, b}, untouched: "docs", wantConfirms: 1},
		{name: "revision only", from: ingest.Route{Revision: 8, Targets: []ingest.Target{a}}, to: ingest.Route{Revision: 9, Targets: []ingest.Target{a}},
			targets: []ingest.Target{a}, untouched: "docs-b", wantConfirms: 1},
		{name: "keeps changing", from: ingest.Route{Revision: 6, Targets: []ingest.Target{a}}, keepsChanging: true, wantConfirms: 4},
		{name: "confirm fails", from: ingest.Route{Revision: 7, Targets: []ingest.Target{a}}, fail: errors.New("no NATS"), wantConfirms: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r.set(func(r *router) {
				r.route, r.change, r.fail, r.confirms = tc.from, once(tc.to), tc.fail, 0
				if tc.keepsChanging {
					n := 0
					r.change = func(route *ingest.Route) { // a new generation each time
						route.Revision++
						route.Targets = []ingest.Target{a, more[n%len(more)]}
						n++
					}
				}
			})
			doc := strings.ReplaceAll(tc.name, " ", "-")
			e := upsert(doc, 1, words(len(doc), 500))
			errs := stage.Process(t.Context(), []pipeline.Event{e})
			if r.confirms != tc.wantConfirms {
				t.Errorf("%d confirmations, want %d", r.confirms, tc.wantConfirms)
			}
			if tc.keepsChanging || tc.fail != nil {
				if errs[0] == nil || pipeline.IsPermanent(errs[0]) {
					t.Fatalf("err %v, want a transient error", errs[0])
				}
				return
			}
			mustProcess(t, []pipeline.Event{e}, errs)
			want := map[[2]string]pipeline.Event{{"alice", doc}: e}
			for _, target := range tc.targets {
				checkStored(t, s, target, want)
			}
			if tc.untouched != "" {
				if ids := docIDs(t, s, tc.untouched, "alice"); slices.Contains(ids, doc) {
					t.Errorf("%s written to %s, which no route named", doc, tc.untouched)
				}
			}
		})
	}
}

// TestProcessTo: ProcessTo writes the given targets only, without the
// Router: a version older than the register's writes nothing, the
// register's own is written (a copy of a stored document), and a
// document's first version is written.
func TestProcessTo(t *testing.T) {
	s := stores[1].open(t).(pointsStore)
	a, b := generation(t, s, "docs-a", 16, 300), generation(t, s, "docs-b", 32, 120)
	r := &router{route: ingest.Route{Revision: 1, Targets: []ingest.Target{a}}}
	stage := routedStage(t, s, r)
	v2 := upsert("d", 2, words(1, 700))
	mustProcess(t, []pipeline.Event{v2}, stage.Process(t.Context(), []pipeline.Event{v2}))
	r.set(func(r *router) { r.confirms = 0 })

	stale := []pipeline.Event{upsert("d", 1, words(2, 400))}
	mustProcess(t, stale, stage.ProcessTo(t.Context(), stale, []ingest.Target{b}))
	if ids := docIDs(t, s, "docs-b", "alice"); len(ids) > 0 {
		t.Fatalf("a stale version wrote %v", ids)
	}
	copies := []pipeline.Event{v2, upsert("new", 1, words(3, 300))}
	mustProcess(t, copies, stage.ProcessTo(t.Context(), copies, []ingest.Target{b}))
	want := map[[2]string]pipeline.Event{{"alice", "d"}: v2, {"alice", "new"}: copies[1]}
	checkStored(t, s, b, want)
	if ids := docIDs(t, s, "docs-a", "alice"); !slices.Equal(ids, []string{"d"}) {
		t.Errorf("docs-a holds %v, want d alone: ProcessTo writes its targets only", ids)
	}
	if r.confirms != 0 {
		t.Errorf("ProcessTo confirmed the route %d times", r.confirms)
	}
}

// TestRouteErr: a route that cannot be had (an embedder profile this
// process lacks) fails the events for a retry, never for good, even when
// the Router says permanent; Ready names it until the route works again.
func TestRouteErr(t *testing.T) {
	s := stores[1].open(t).(pointsStore)
	a := generation(t, s, "docs-a", 16, 300)
	r := &router{}
	stage := routedStage(t, s, r)
	e := []pipeline.Event{upsert("d", 1, "text")}
	for _, err := range []error{errors.New(`embedder profile "big" is not configured`), pipeline.Permanent(errors.New(`embedder profile "big" is not configured`))} {
		r.set(func(r *router) { r.route = ingest.Route{Revision: 1, Err: err} })
		errs := stage.Process(t.Context(), e)
		if errs[0] == nil || pipeline.IsPermanent(errs[0]) || !pipeline.IsMisconfigured(errs[0]) {
			t.Fatalf("err %v, want a misconfiguration, not permanent", errs[0])
		}
		if err := stage.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), `generations of collection "docs": embedder profile "big"`) {
			t.Fatalf("Ready: %v, want the route's error", err)
		}
	}
	if r.confirms != 0 {
		t.Errorf("%d confirmations of a route that failed", r.confirms)
	}
	r.set(func(r *router) { r.route = ingest.Route{Revision: 2, Targets: []ingest.Target{a}} })
	mustProcess(t, e, stage.Process(t.Context(), e))
	if err := stage.Ready(t.Context()); err != nil {
		t.Errorf("Ready once the route works: %v", err)
	}
}

// TestRefusedByNewGeneration: a text the embedder of a generation being
// built refuses for good does not fail an event the serving generation
// stores; the same refusal in ProcessTo's only target is the event's,
// permanently.
func TestRefusedByNewGeneration(t *testing.T) {
	s := stores[1].open(t).(pointsStore)
	a := generation(t, s, "docs-a", 16, 300)
	b := generation(t, s, "docs-b", 16, 300)
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16, MaxInputChars: 250})
	emb, err := embedder.NewOpenAI(embedder.Config{URL: fake.URL, Model: "m", Dimensions: 16, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	b.Embedder = emb
	stage := routedStage(t, s, &router{route: ingest.Route{Revision: 1, Targets: []ingest.Target{a, b}}})
	events := []pipeline.Event{upsert("long", 1, words(1, 290)), upsert("short", 1, words(2, 200))}
	mustProcess(t, events, stage.Process(t.Context(), events))
	if ids := docIDs(t, s, "docs-a", "alice"); !slices.Equal(ids, []string{"long", "short"}) {
		t.Errorf("serving generation holds %v, want long and short", ids)
	}
	if ids := docIDs(t, s, "docs-b", "alice"); !slices.Equal(ids, []string{"short"}) {
		t.Errorf("new generation holds %v, want short alone", ids)
	}
	errs := stage.ProcessTo(t.Context(), events[:1], []ingest.Target{b})
	if !pipeline.IsPermanent(errs[0]) {
		t.Errorf("ProcessTo: err %v, want permanent", errs[0])
	}
}

// gated is a store whose Apply of version version to collection waits,
// once entered (held), until hold is closed.
type gated struct {
	pointsStore
	collection string
	version    uint64
	held, hold chan struct{}
}

func (g *gated) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	if collection == g.collection && writes[0].Version == g.version {
		close(g.held)
		<-g.hold
	}
	return g.pointsStore.Apply(ctx, collection, writes)
}

// TestRoutedOvertaken: a version whose write to a generation lands after
// a newer version was written and settled (it was overtaken between its
// claim and its write) is pruned from every generation, not only the
// serving one.
func TestRoutedOvertaken(t *testing.T) {
	s := &gated{pointsStore: stores[1].open(t).(pointsStore), collection: "docs-b", version: 1,
		held: make(chan struct{}), hold: make(chan struct{})}
	a, b := generation(t, s, "docs-a", 16, 300), generation(t, s, "docs-b", 32, 120)
	stage := routedStage(t, s, &router{route: ingest.Route{Revision: 1, Targets: []ingest.Target{a, b}}})
	v1, v2 := upsert("d", 1, words(1, 1500)), upsert("d", 2, words(2, 200))
	done := make(chan []error)
	go func() { done <- stage.Process(t.Context(), []pipeline.Event{v1}) }()
	<-s.held
	mustProcess(t, []pipeline.Event{v2}, stage.Process(t.Context(), []pipeline.Event{v2}))
	close(s.hold)
	mustProcess(t, []pipeline.Event{v1}, <-done)
	want := map[[2]string]pipeline.Event{{"alice", "d"}: v2}
	checkStored(t, s, a, want)
	checkStored(t, s, b, want)
}

// TestMisconfiguredGeneration: a generation whose embedder refuses the
// deployment's key fails the events for a retry, never for good, and Ready
// names it until a route without that generation (the reindex aborted)
// is used.
func TestMisconfiguredGeneration(t *testing.T) {
	s := stores[1].open(t).(pointsStore)
	a, b := generation(t, s, "docs-a", 16, 300), generation(t, s, "docs-b", 16, 300)
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16, Key: "sk-right"})
	emb, err := embedder.NewOpenAI(embedder.Config{URL: fake.URL, Model: "m", APIKey: "sk-wrong", Dimensions: 16, BatchSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	b.Embedder = emb
	r := &router{route: ingest.Route{Revision: 1, Targets: []ingest.Target{a, b}}}
	stage := routedStage(t, s, r)
	e := []pipeline.Event{upsert("d", 1, "text")}
	if errs := stage.Process(t.Context(), e); !pipeline.IsMisconfigured(errs[0]) || pipeline.IsPermanent(errs[0]) {
		t.Fatalf("err %v, want a misconfiguration", errs[0])
	}
	if err := stage.Ready(t.Context()); err == nil || !strings.Contains(err.Error(), `embedder of collection "docs-b"`) {
		t.Fatalf("Ready: %v, want docs-b's embedder", err)
	}
	r.set(func(r *router) { r.route = ingest.Route{Revision: 2, Targets: []ingest.Target{a}} })
	mustProcess(t, e, stage.Process(t.Context(), e))
	if err := stage.Ready(t.Context()); err != nil {
		t.Errorf("Ready without docs-b: %v", err)
	}
}

// BenchmarkProcessRouted is BenchmarkProcess's plain case written, as
// during a reindex, to two generations: the serving one, whose embedder
// is the Stage's, and a new one of another embedder (the hash embedder of
// 32 dimensions); the Router's Confirm costs nothing here.
func BenchmarkProcessRouted(b *testing.B) {
	prose := strings.Repeat("The consumer's maxAckPending bounds unacknowledged messages; "+
		"see /etc/nats/nats.conf and nats.Conn for max_ack_pending. Qdrant stores vectors. ", 50)[:5000]
	l, err := localstore.Open(b.Context(), localstore.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { l.Close() })
	chunker, _ := pipeline.NewChunker(2000, 200)
	var targets []ingest.Target
	for _, dims := range []int{64, 32} {
		emb, _ := embedder.NewHash(dims)
		c := pipeline.Collection{Name: fmt.Sprint("docs-", dims), Dims: dims, Distance: pipeline.Cosine, Keywords: true}
		if err := l.EnsureCollection(b.Context(), c, true); err != nil {
			b.Fatal(err)
		}
		targets = append(targets, ingest.Target{Collection: c, Embedder: named{emb, fmt.Sprint("hash/", dims)}, Chunker: chunker})
	}
	stage, err := ingest.NewStage(ingest.StageConfig{Sink: l, Versions: register(b), Embedder: targets[0].Embedder, Chunker: chunker, Reuse: l,
		Router: &router{route: ingest.Route{Revision: 1, Targets: targets}}})
	if err != nil {
		b.Fatal(err)
	}
	benchDocs(b, stage, prose)
}
