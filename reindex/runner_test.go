package reindex_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/reindex"
)

const collection = "docs"

// env is a worker's parts on real servers: embedded NATS (version
// register, Registry) and the embedded store, written through a real Stage
// that follows the generations with router.
type env struct {
	t      *testing.T
	reg    *generation.Registry
	store  *localstore.Store
	stage  *ingest.Stage
	router *router
	keys   *keyring.Keyring // nil without encryption at rest
	// noKeywords is the store's Config.NoKeywords, told the runners.
	noKeywords bool
}

// newEnv starts the servers and the Stage; with encrypted, texts are
// stored sealed by their tenants' keys. opts change the store's Config
// (a temporary Dir by default).
func newEnv(t *testing.T, encrypted bool, opts ...func(*localstore.Config)) *env {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	versions, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := generation.Open(t.Context(), js, generation.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { reg.Close() })
	scfg := localstore.Config{Dir: t.TempDir()}
	for _, o := range opts {
		o(&scfg)
	}
	store, err := localstore.Open(t.Context(), scfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	def, _ := embedderFor("", 0)
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, reg: reg, store: store, router: &router{reg: reg}, noKeywords: scfg.NoKeywords}
	stcfg := ingest.StageConfig{
		Sink: store, Versions: versions, Embedder: def, Chunker: chunker, Reuse: store,
		AutoCreate: func(string) bool { return true }, Router: e.router,
	}
	if encrypted {
		master, err := keyring.ParseMasterKeys([]byte(keyring.NewMasterKey()))
		if err != nil {
			t.Fatal(err)
		}
		if e.keys, err = keyring.Open(t.Context(), js, master, keyring.Config{}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { e.keys.Close() })
		stcfg.Keys = func(ctx context.Context, tenant string) (ingest.TenantKey, error) { return e.keys.Tenant(ctx, tenant) }
	}
	if e.stage, err = ingest.NewStage(stcfg); err != nil {
		t.Fatal(err)
	}
	return e
}

// embedderFor is the worker's embedders: the default profile is a hash
// embedder of 1024 dimensions, profile "small" one of 256.
func embedderFor(profile string, dims int) (ingest.Embedder, error) {
	own := map[string]int{"": 1024, "small": 256, "picky": 256, "fickle": 256}
	n, ok := own[profile]
	switch {
	case !ok:
		return nil, pipeline.Misconfigured(fmt.Errorf("no embedder profile %q", profile))
	case dims != 0 && dims != n:
		return nil, pipeline.Misconfigured(fmt.Errorf("profile %q has %d dimensions, not %d", profile, n, dims))
	}
	h, err := embedder.NewHash(n)
	switch profile {
	case "picky":
		return picky{h}, err
	case "fickle":
		return fickle{h}, err
	}
	return h, err
}

// fickle is a hash embedder whose vectors are random: a search with a
// document's text never finds it but by chance.
type fickle struct{ *embedder.Hash }

func (f fickle) Embed(_ context.Context, texts []string) ([][]float32, error) {
	vectors := make([][]float32, len(texts))
	for i := range vectors {
		vectors[i] = make([]float32, f.Dimensions())
		for k := range vectors[i] {
			vectors[i][k] = rand.Float32() - 0.5
		}
	}
	return vectors, nil
}

// picky is a hash embedder that refuses, for good, texts saying "forbidden".
type picky struct{ *embedder.Hash }

func (p picky) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	vectors, err := p.Hash.Embed(ctx, texts)
	if err != nil {
		return nil, err
	}
	errs := make([]error, len(texts))
	refused := false
	for i, text := range texts {
		if strings.Contains(text, "forbidden") {
			errs[i], refused = pipeline.Permanent(errors.New("forbidden text")), true
		}
	}
	if refused {
		return vectors, &pipeline.BatchError{Op: "embedder", Collection: "picky", Errs: errs}
	}
	return vectors, nil
}

// router routes a collection's events to the generations of its State, as
// the worker's: none for a collection without one (or not yet adopted).
// Its Revision changes with the targets only, not with a Job's progress.
type router struct{ reg *generation.Registry }

func (r *router) Route(name string) ingest.Route {
	s, ok := r.reg.Cached(name)
	return route(s, ok)
}

func (r *router) Confirm(ctx context.Context, name string) (ingest.Route, error) {
	s, ok, err := r.reg.Current(ctx, name)
	return route(s, ok), err
}

func route(s generation.State, ok bool) ingest.Route {
	if !ok || s.Serving.Name == "" {
		return ingest.Route{}
	}
	h := fnv.New64a()
	var rt ingest.Route
	for _, g := range s.Targets() {
		fmt.Fprintf(h, "%+v;", g)
		emb, err := embedderFor(g.Embedder, g.Dims)
		if err != nil {
			return ingest.Route{Revision: 1, Err: err}
		}
		ch, err := pipeline.NewChunker(g.ChunkSize, g.ChunkOverlap)
		if err != nil {
			return ingest.Route{Revision: 1, Err: pipeline.Misconfigured(err)}
		}
		rt.Targets = append(rt.Targets, ingest.Target{Collection: g.Collection(), Embedder: emb, Chunker: ch})
	}
	rt.Revision = h.Sum64()
	return rt
}

// countingStage is the real Stage, counting the documents the copier
// writes.
type countingStage struct {
	*ingest.Stage
	events atomic.Int64
}

func (s *countingStage) ProcessTo(ctx context.Context, events []pipeline.Event, targets []ingest.Target) []error {
	s.events.Add(int64(len(events)))
	return s.Stage.ProcessTo(ctx, events, targets)
}

// runner starts a Runner until the returned stop is called or the test ends.
func (e *env) runner(name string, stage reindex.Stage, batch int) (stop func()) {
	e.t.Helper()
	cfg := reindex.Config{
		Registry: e.reg, Store: e.store, NoKeywords: e.noKeywords, Stage: stage, Embedder: embedderFor,
		Defaults: func(string) generation.Generation {
			return generation.Generation{ChunkSize: 300, ChunkOverlap: 30}
		},
		Owner: name, Poll: 50 * time.Millisecond, Lease: 3 * time.Second, Heartbeat: 200 * time.Millisecond,
		Batch: batch, Checkpoint: time.Nanosecond, Settle: 3 * time.Second,
	}
	if e.keys != nil {
		cfg.Keys = func(ctx context.Context, tenant string) (reindex.TenantKey, error) { return e.keys.Lookup(ctx, tenant) }
	}
	r, err := reindex.NewRunner(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := r.Run(ctx); err != nil {
			e.t.Errorf("runner %s: %v", name, err)
		}
	}()
	stop = sync.OnceFunc(func() { cancel(); <-done })
	e.t.Cleanup(stop)
	return stop
}

// request writes a Job as ragpipe reindex does.
func (e *env) request(job generation.Job) {
	e.t.Helper()
	job.Phase, job.Requested = generation.Waiting, time.Now() // Owner and Heartbeat as given
	if job.ID == "" {
		job.ID = fmt.Sprintf("job-%d", time.Now().UnixNano())
	}
	if _, err := e.reg.Update(e.t.Context(), collection, func(s *generation.State, _ bool) error {
		if s.Job.Active() && job.Action != generation.Abort {
			return errors.New("a job is running")
		}
		s.Collection, s.Job = collection, &job
		return nil
	}); err != nil {
		e.t.Fatal(err)
	}
}

// wait waits for the Job to end and returns the State; a failed Job fails
// the test.
func (e *env) wait(timeout time.Duration) generation.State {
	e.t.Helper()
	var st generation.State
	checkfor.Until(e.t, timeout, "the job to end", func() error {
		s, _, err := e.reg.Current(e.t.Context(), collection)
		if err != nil {
			return err
		}
		if st = s; st.Job.Active() {
			return fmt.Errorf("job %s in phase %s, %d of %d points copied", st.Job.Action, st.Job.Phase, st.Job.Points, st.Job.Total)
		}
		return nil
	})
	if st.Job.Phase != generation.Done {
		e.t.Fatalf("job %s failed: %s; report %+v", st.Job.Action, st.Job.Error, st.Job.Report)
	}
	return st
}

// failed waits for the Job to fail and returns the State.
func (e *env) failed(timeout time.Duration) generation.State {
	e.t.Helper()
	var st generation.State
	checkfor.Until(e.t, timeout, "the job to fail", func() error {
		st, _ = e.reg.Cached(collection)
		if st.Job.Phase != generation.Failed {
			return fmt.Errorf("phase %s", st.Job.Phase)
		}
		return nil
	})
	return st
}

// model is what the documents should be: per tenant, per document, the
// text of its last upsert at its version, or deleted.
type model struct {
	mu   sync.Mutex
	docs map[[2]string]doc
}

type doc struct {
	version uint64
	text    string // "" once deleted
}

func (e *env) process(events []pipeline.Event) error {
	for i, err := range e.stage.Process(e.t.Context(), events) {
		if err != nil {
			return fmt.Errorf("%s/%s: %w", events[i].UserID, events[i].DocID, err)
		}
	}
	return nil
}

var tenants = []string{"alice", "bob", "carol"}

// load writes n documents per tenant.
func (e *env) load(m *model, rng *rand.Rand, n int, version *atomic.Uint64) {
	e.t.Helper()
	var events []pipeline.Event
	for _, t := range tenants {
		for i := range n {
			events = append(events, pipeline.Event{Op: pipeline.OpUpsert, UserID: t, Collection: collection,
				DocID: fmt.Sprintf("d%04d", i), Text: prose(rng), Version: version.Add(1)})
		}
	}
	for b := range slices.Chunk(events, 64) {
		if err := e.process(b); err != nil {
			e.t.Fatal(err)
		}
	}
	for _, ev := range events {
		m.docs[[2]string{ev.UserID, ev.DocID}] = doc{ev.Version, ev.Text}
	}
}

// write keeps updating and deleting documents until ctx ends.
func (e *env) write(ctx context.Context, m *model, rng *rand.Rand, n int, version *atomic.Uint64) int {
	writes := 0
	for ctx.Err() == nil {
		var events []pipeline.Event
		seen := map[[2]string]bool{}
		for range 4 {
			k := [2]string{tenants[rng.IntN(len(tenants))], fmt.Sprintf("d%04d", rng.IntN(n+n/10))}
			if seen[k] {
				continue
			}
			seen[k] = true
			ev := pipeline.Event{Op: pipeline.OpUpsert, UserID: k[0], Collection: collection, DocID: k[1], Text: prose(rng), Version: version.Add(1)}
			if rng.IntN(5) == 0 {
				ev.Op, ev.Text = pipeline.OpDelete, ""
			}
			events = append(events, ev)
		}
		for e.process(events) != nil { // transient: a route that kept changing
			if ctx.Err() != nil {
				break
			}
		}
		m.mu.Lock()
		for _, ev := range events {
			m.docs[[2]string{ev.UserID, ev.DocID}] = doc{ev.Version, ev.Text}
		}
		m.mu.Unlock()
		writes += len(events)
		time.Sleep(5 * time.Millisecond)
	}
	return writes
}

// verify checks that generation g holds exactly the model: every document
// at its last version, chunked with g's chunking, and nothing else.
func (e *env) verify(m *model, g generation.Generation) {
	e.t.Helper()
	ctx := e.t.Context()
	chunker, err := pipeline.NewChunker(g.ChunkSize, g.ChunkOverlap)
	if err != nil {
		e.t.Fatal(err)
	}
	bad := 0
	for _, t := range tenants {
		var ids []string
		for k, d := range m.docs {
			if k[0] == t && d.text != "" {
				ids = append(ids, k[1])
			}
		}
		listed := map[string]bool{}
		for cur := ""; ; {
			docs, next, err := e.store.List(ctx, g.Name, t, pipeline.MaxLimit, cur)
			if err != nil {
				e.t.Fatal(err)
			}
			for _, d := range docs {
				listed[d.DocID] = true
			}
			if cur = next; cur == "" {
				break
			}
		}
		pts, err := e.store.DocumentPoints(ctx, g.Name, t, ids)
		if err != nil {
			e.t.Fatal(err)
		}
		byDoc := map[string][]pipeline.Point{}
		for _, p := range pts {
			byDoc[p.DocID] = append(byDoc[p.DocID], p)
		}
		for _, id := range ids {
			d := m.docs[[2]string{t, id}]
			want := chunker.Split(d.text)
			got := byDoc[id]
			slices.SortFunc(got, func(a, b pipeline.Point) int { return a.ChunkIndex - b.ChunkIndex })
			var texts []string
			for _, p := range got {
				texts = append(texts, e.open(p))
				if p.Version != d.version || len(p.Vector) != g.Dims {
					texts = append(texts, fmt.Sprintf("<version %d, %d dims>", p.Version, len(p.Vector)))
				}
			}
			if !slices.Equal(texts, want) {
				if bad++; bad <= 5 {
					e.t.Errorf("%s: %s/%s at version %d: chunks %q, want %q", g.Name, t, id, d.version, texts, want)
				}
			}
			delete(listed, id)
		}
		for id := range listed {
			if bad++; bad <= 5 {
				e.t.Errorf("%s: %s/%s is listed, but deleted or never written", g.Name, t, id)
			}
		}
	}
	if bad > 0 {
		e.t.Fatalf("%s: %d documents differ from what was written", g.Name, bad)
	}
}

// open returns p's text in clear.
func (e *env) open(p pipeline.Point) string {
	if e.keys == nil {
		return p.Text
	}
	key, err := e.keys.Lookup(e.t.Context(), p.UserID)
	if err != nil {
		e.t.Fatal(err)
	}
	text, err := key.Open(collection, p.DocID, p.ChunkIndex, p.Text)
	if err != nil {
		return fmt.Sprintf("<%v>", err)
	}
	return text
}

// prose returns a few paragraphs of words, a few hundred characters long.
func prose(rng *rand.Rand) string {
	words := strings.Fields("the cluster primary replica region storage latency budget owner platform network instance database tagged running since of to and in is")
	var sb strings.Builder
	for p := range 1 + rng.IntN(3) {
		if p > 0 {
			sb.WriteString("\n\n")
		}
		for s := range 2 + rng.IntN(5) {
			if s > 0 {
				sb.WriteByte(' ')
			}
			for w := range 4 + rng.IntN(14) {
				if w > 0 {
					sb.WriteByte(' ')
				}
				sb.WriteString(words[rng.IntN(len(words))])
			}
			sb.WriteByte('.')
		}
	}
	return sb.String()
}

// TestBuildWhileWriting builds a generation of another embedder,
// dimensions and chunking while documents are updated and deleted, then
// rolls back and drops the previous generation.
func TestBuildWhileWriting(t *testing.T) {
	e := newEnv(t, false)
	rng := rand.New(rand.NewPCG(15, 1))
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	const n = 300
	e.load(m, rng, n, &version)
	e.runner("a", e.stage, 0)

	wctx, stopWriting := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	var writes int
	wg.Go(func() { writes = e.write(wctx, m, rand.New(rand.NewPCG(15, 2)), n, &version) })
	start := time.Now()
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{Embedder: "small", Dims: 256, ChunkSize: 200, ChunkOverlap: 40},
		Given:  []string{generation.SetEmbedder, generation.SetDims, generation.SetChunkSize, generation.SetChunkOverlap}})
	st := e.wait(2 * time.Minute)
	took := time.Since(start)
	time.Sleep(300 * time.Millisecond) // writes to both generations after the switch
	stopWriting()
	wg.Wait()
	t.Logf("built %s from %s: %d documents (%d points) copied in %v (%.0f documents/s) while %d events were written; report %+v",
		st.Serving.Name, st.Previous.Name, st.Job.Copied, st.Job.Points, took.Round(time.Millisecond),
		float64(st.Job.Copied)/took.Seconds(), writes, *st.Job.Report)
	if st.Serving.Dims != 256 || st.Serving.Embedder != "small" || st.Previous.Dims != 1024 || st.Building != nil {
		t.Fatalf("state after the build: %+v", st)
	}
	if r := st.Job.Report; r.Searches == 0 || r.Answered != r.Searches || len(r.Tenants) != len(tenants) {
		t.Errorf("report %+v", r)
	}
	e.verify(m, st.Serving)
	e.verify(m, *st.Previous)
	if target, err := e.store.AliasTarget(t.Context(), collection); err != nil || (target != st.Serving.Name && st.Previous.Name != collection) {
		t.Errorf("alias %s -> %q, %v; want %s", collection, target, err, st.Serving.Name)
	}

	e.request(generation.Job{Action: generation.Rollback})
	back := e.wait(time.Minute)
	if back.Serving != *st.Previous || *back.Previous != st.Serving {
		t.Fatalf("rollback: serving %+v, previous %+v", back.Serving, back.Previous)
	}
	e.verify(m, back.Serving)

	e.request(generation.Job{Action: generation.DropPrevious})
	dropped := e.wait(time.Minute)
	if dropped.Previous != nil {
		t.Fatalf("previous %+v after --drop-previous", dropped.Previous)
	}
	if _, err := e.store.Describe(t.Context(), st.Serving.Name); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Errorf("describe the dropped %s: %v", st.Serving.Name, err)
	}
	if target, err := e.store.AliasTarget(t.Context(), collection); err != nil || target != back.Serving.Name {
		t.Errorf("alias %s -> %q, %v; want %s", collection, target, err, back.Serving.Name)
	}
}

// TestResumeAfterKill stops the runner of a build mid-copy; another one
// resumes from the Job's cursor instead of starting over.
func TestResumeAfterKill(t *testing.T) {
	e := newEnv(t, false)
	rng := rand.New(rand.NewPCG(15, 3))
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	const n = 200
	e.load(m, rng, n, &version)
	first := &countingStage{Stage: e.stage}
	stop := e.runner("first", first, 8)
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{Embedder: "small", Dims: 256}, Given: []string{generation.SetEmbedder, generation.SetDims}})
	checkfor.Until(t, time.Minute, "a third of the copy", func() error {
		s, _ := e.reg.Cached(collection)
		if s.Job.Phase == generation.Failed {
			t.Fatalf("job failed: %s", s.Job.Error)
		}
		if s.Job.Copied < n {
			return fmt.Errorf("%d copied", s.Job.Copied)
		}
		return nil
	})
	stop()
	s, _, err := e.reg.Current(t.Context(), collection)
	if err != nil {
		t.Fatal(err)
	}
	if s.Job.Phase != generation.Copying || s.Job.Owner != "" {
		t.Fatalf("after the first runner stopped: phase %s, owner %q", s.Job.Phase, s.Job.Owner)
	}
	copied := s.Job.Copied
	second := &countingStage{Stage: e.stage}
	e.runner("second", second, 8)
	st := e.wait(2 * time.Minute)
	total := int64(len(tenants) * n)
	t.Logf("first runner wrote %d documents, stopped at %d copied; the second wrote %d, %d copied in all",
		first.events.Load(), copied, second.events.Load(), st.Job.Copied)
	if got := second.events.Load(); got > total-copied+8 {
		t.Errorf("the second runner wrote %d documents; %d were left to copy", got, total-copied)
	}
	if st.Job.Copied != total {
		t.Errorf("%d documents copied, want %d", st.Job.Copied, total)
	}
	e.verify(m, st.Serving)
}

// TestBuildEncrypted builds a generation of texts sealed by their tenants'
// keys: the copy opens them, the new generation seals them again for its
// points, bound to the ragpipe collection.
func TestBuildEncrypted(t *testing.T) {
	e := newEnv(t, true)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	e.load(m, rand.New(rand.NewPCG(15, 4)), 40, &version)
	e.runner("a", e.stage, 0)
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{ChunkSize: 150, ChunkOverlap: 20},
		Given:  []string{generation.SetChunkSize, generation.SetChunkOverlap}})
	st := e.wait(time.Minute)
	if r := st.Job.Report; r.Searches == 0 || r.Answered != r.Searches {
		t.Errorf("report %+v", r)
	}
	e.verify(m, st.Serving)
	e.verify(m, *st.Previous)
}

// TestAbortMidCopy aborts a build while it copies: its runner stops, the
// building generation leaves the State and the store, and the serving one
// is untouched.
func TestAbortMidCopy(t *testing.T) {
	e := newEnv(t, false)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	e.load(m, rand.New(rand.NewPCG(15, 6)), 200, &version)
	e.runner("a", e.stage, 4)
	e.runner("b", e.stage, 4)
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{Embedder: "small", Dims: 256}, Given: []string{generation.SetEmbedder, generation.SetDims}})
	var building string
	checkfor.Until(t, time.Minute, "the copy to begin", func() error {
		s, _ := e.reg.Cached(collection)
		if s.Building == nil || s.Job.Copied == 0 {
			return errors.New("not copying yet")
		}
		building = s.Building.Name
		return nil
	})
	e.request(generation.Job{Action: generation.Abort})
	st := e.wait(time.Minute)
	if st.Building != nil || st.Previous != nil || st.Job.Target == nil || st.Job.Target.Name != building {
		t.Fatalf("after the abort: %+v, job %+v", st, st.Job)
	}
	time.Sleep(500 * time.Millisecond) // the build's runner has stopped by its next heartbeat
	if _, err := e.store.Describe(t.Context(), building); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Errorf("describe the aborted %s: %v", building, err)
	}
	e.verify(m, st.Serving)
}

// TestStaleLease leaves a Job whose runner renews its heartbeat alone, and
// takes over one whose heartbeat is older than the lease.
func TestStaleLease(t *testing.T) {
	e := newEnv(t, false)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	e.load(m, rand.New(rand.NewPCG(15, 7)), 20, &version)
	e.runner("a", e.stage, 0)
	e.request(generation.Job{Action: generation.Build, Owner: "ghost", Heartbeat: time.Now(),
		Target: &generation.Generation{ChunkSize: 100}, Given: []string{generation.SetChunkSize}})
	time.Sleep(time.Second)
	if s, _ := e.reg.Cached(collection); s.Job.Owner != "ghost" || s.Job.Phase != generation.Waiting {
		t.Fatalf("a job held by a live runner was taken: %+v", s.Job)
	}
	st := e.wait(time.Minute) // the heartbeat is older than the lease (3s) meanwhile
	if st.Serving.ChunkSize != 100 {
		t.Fatalf("serving %+v", st.Serving)
	}
	e.verify(m, st.Serving)
}

// TestFailedCheck builds a generation whose embedder refuses some
// documents: the others are copied, the check names those, and nothing is
// switched until --abort drops the building generation.
func TestFailedCheck(t *testing.T) {
	e := newEnv(t, false)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	e.load(m, rand.New(rand.NewPCG(15, 8)), 30, &version)
	var events []pipeline.Event
	for _, id := range []string{"d0003", "d0017"} {
		events = append(events, pipeline.Event{Op: pipeline.OpUpsert, UserID: "bob", Collection: collection, DocID: id,
			Text: "a forbidden text", Version: version.Add(1)})
	}
	if err := e.process(events); err != nil {
		t.Fatal(err)
	}
	e.runner("a", e.stage, 0)
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{Embedder: "picky", Dims: 256}, Given: []string{generation.SetEmbedder, generation.SetDims}})
	st := e.failed(time.Minute)
	r := st.Job.Report
	if r == nil || !slices.Equal(r.Mismatches, []string{"bob/d0003", "bob/d0017"}) ||
		!strings.Contains(st.Job.Error, "nothing switched") || !strings.Contains(st.Job.Error, "forbidden text") {
		t.Fatalf("failed job: %q, report %+v", st.Job.Error, r)
	}
	if st.Building == nil || st.Previous != nil || st.Serving.Dims != 1024 {
		t.Fatalf("state after the failed check: %+v", st)
	}
	e.request(generation.Job{Action: generation.Abort})
	if st := e.wait(time.Minute); st.Building != nil {
		t.Fatalf("building %+v after --abort", st.Building)
	}
}

// strayStage is the real Stage, adding after the copy of dave/still a point
// of it beyond its chunks, as a write that went astray would.
type strayStage struct {
	*ingest.Stage
	store *localstore.Store
}

func (s *strayStage) ProcessTo(ctx context.Context, events []pipeline.Event, targets []ingest.Target) []error {
	errs := s.Stage.ProcessTo(ctx, events, targets)
	for _, ev := range events {
		if ev.UserID != "dave" || ev.DocID != "still" {
			continue
		}
		name := targets[0].Collection.Name
		pts, err := s.store.DocumentPoints(ctx, name, "dave", []string{"still"})
		if err != nil || len(pts) == 0 {
			panic(fmt.Sprintf("points of dave/still in %s: %d, %v", name, len(pts), err))
		}
		p := pts[0]
		p.ChunkIndex = p.ChunkCount
		p.ID = pipeline.PointID("dave", "still", p.ChunkIndex)
		if err := s.store.Upsert(ctx, name, []pipeline.Point{p}); err != nil {
			panic(err)
		}
	}
	return errs
}

// TestStrayPoint builds a generation that holds a point beyond a
// document's chunks: the check names the document and nothing is switched,
// while the writes the test keeps making to other tenants fail nothing.
func TestStrayPoint(t *testing.T) {
	e := newEnv(t, false)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	e.load(m, rand.New(rand.NewPCG(15, 9)), 30, &version)
	if err := e.process([]pipeline.Event{{Op: pipeline.OpUpsert, UserID: "dave", Collection: collection, DocID: "still",
		Text: prose(rand.New(rand.NewPCG(15, 11))), Version: version.Add(1)}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	written := make(chan int)
	go func() { written <- e.write(ctx, m, rand.New(rand.NewPCG(15, 10)), 30, &version) }()
	e.runner("a", &strayStage{Stage: e.stage, store: e.store}, 0)
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{ChunkSize: 120}, Given: []string{generation.SetChunkSize}})
	st := e.failed(time.Minute)
	cancel()
	t.Logf("%d writes during the build", <-written)
	if r := st.Job.Report; r == nil || !slices.Contains(r.Mismatches, "dave/still") ||
		!strings.Contains(st.Job.Error, "tenant dave: the points") || strings.Contains(st.Job.Error, "tenant alice") {
		t.Fatalf("failed job: %q, report %+v", st.Job.Error, r)
	}
	if st.Building == nil || st.Serving.ChunkSize != 300 {
		t.Fatalf("state after the failed check: %+v", st)
	}
}

// TestBuildNoSwitch builds and checks a generation under writes without
// switching (Job.NoSwitch): it stays Ready, not serving, and is written
// meanwhile; a Switch job checks it again and switches to it.
func TestBuildNoSwitch(t *testing.T) {
	e := newEnv(t, false)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	const n = 100
	e.load(m, rand.New(rand.NewPCG(15, 12)), n, &version)
	e.runner("a", e.stage, 0)
	wctx, stopWriting := context.WithCancel(t.Context())
	var wg sync.WaitGroup
	wg.Go(func() { e.write(wctx, m, rand.New(rand.NewPCG(15, 13)), n, &version) })
	defer func() { stopWriting(); wg.Wait() }()

	e.request(generation.Job{Action: generation.Build, NoSwitch: true,
		Target: &generation.Generation{ChunkSize: 150, ChunkOverlap: 20}, Given: []string{generation.SetChunkSize, generation.SetChunkOverlap}})
	var ready generation.State
	checkfor.Until(t, 2*time.Minute, "the build to be ready", func() error {
		s, _, err := e.reg.Current(t.Context(), collection)
		if err != nil {
			return err
		}
		if ready = s; s.Job.Phase != generation.Ready {
			return fmt.Errorf("job in phase %s (%s)", s.Job.Phase, s.Job.Error)
		}
		return nil
	})
	if ready.Building == nil || ready.Building.ChunkSize != 150 || ready.Serving.ChunkSize != 300 || ready.Previous != nil ||
		ready.Job.Active() || ready.Job.Report == nil || ready.Job.Owner != "" {
		t.Fatalf("state of a ready build: %+v, job %+v", ready, ready.Job)
	}
	if target, err := e.store.AliasTarget(t.Context(), collection); err != nil || target != ready.Serving.Name {
		t.Errorf("alias %s -> %q, %v; want the serving %s", collection, target, err, ready.Serving.Name)
	}
	time.Sleep(time.Second) // written while ready: the runner leaves the job alone
	if s, _ := e.reg.Cached(collection); s.Job.ID != ready.Job.ID || s.Job.Phase != generation.Ready {
		t.Fatalf("a ready job changed: %+v", s.Job)
	}

	building := *ready.Building
	e.request(generation.Job{Action: generation.Switch, Target: &building})
	st := e.wait(time.Minute)
	stopWriting()
	wg.Wait()
	if st.Serving != building || st.Previous == nil || *st.Previous != ready.Serving || st.Building != nil ||
		st.Job.Report == nil || st.Job.Report.Answered != st.Job.Report.Searches {
		t.Fatalf("state after the switch: %+v, job %+v", st, st.Job)
	}
	e.verify(m, st.Serving)
	e.verify(m, *st.Previous)
	if target, err := e.store.AliasTarget(t.Context(), collection); err != nil || target != building.Name {
		t.Errorf("alias %s -> %q, %v; want %s", collection, target, err, building.Name)
	}
}

// TestFailedSearch builds a generation whose vectors do not match their
// texts: sample searches of unchanged documents miss them, and the check
// fails.
func TestFailedSearch(t *testing.T) {
	e := newEnv(t, false)
	m := &model{docs: map[[2]string]doc{}}
	var version atomic.Uint64
	e.load(m, rand.New(rand.NewPCG(15, 14)), 60, &version)
	e.runner("a", e.stage, 0)
	e.request(generation.Job{Action: generation.Build,
		Target: &generation.Generation{Embedder: "fickle", Dims: 256}, Given: []string{generation.SetEmbedder, generation.SetDims}})
	st := e.failed(time.Minute)
	if r := st.Job.Report; r == nil || r.Searches != 20 || r.Answered >= r.Searches || len(r.Mismatches) > 0 ||
		!strings.Contains(st.Job.Error, "sample searches did not find their document") {
		t.Fatalf("failed job: %q, report %+v", st.Job.Error, r)
	}
	t.Logf("%s; report: %d of %d sample searches found their document", st.Job.Error, st.Job.Report.Answered, st.Job.Report.Searches)
}

// TestBuildKeywords turns a collection's keyword vectors off, and on, by a
// build of the serving settings alone (a plain ragpipe reindex) whose
// runner's store creates generations as RAGPIPE_KEYWORDS says; a build
// that would change nothing then fails saying so.
func TestBuildKeywords(t *testing.T) {
	for _, keywords := range []bool{false, true} {
		t.Run(fmt.Sprintf("keywords=%t", keywords), func(t *testing.T) {
			dir := t.TempDir()
			before, err := localstore.Open(t.Context(), localstore.Config{Dir: dir, NoKeywords: keywords})
			if err != nil {
				t.Fatal(err)
			}
			if err := before.EnsureCollection(t.Context(), pipeline.Collection{Name: collection, Dims: 1024}, true); err != nil {
				t.Fatal(err)
			}
			before.Close()
			e := newEnv(t, false, func(c *localstore.Config) { c.Dir, c.NoKeywords = dir, !keywords })
			m := &model{docs: map[[2]string]doc{}}
			var version atomic.Uint64
			e.load(m, rand.New(rand.NewPCG(15, 15)), 30, &version)
			e.runner("a", e.stage, 0)

			e.request(generation.Job{Action: generation.Build, Target: &generation.Generation{}})
			st := e.wait(time.Minute)
			e.verify(m, st.Serving)
			for name, want := range map[string]bool{st.Serving.Name: keywords, st.Previous.Name: !keywords} {
				if c, err := e.store.Describe(t.Context(), name); err != nil || c.Keywords != want {
					t.Errorf("Describe(%s) = %+v (%v), want Keywords %t", name, c, err, want)
				}
			}
			text := m.docs[[2]string{"alice", "d0007"}].text
			hits, err := e.store.Search(t.Context(), st.Serving.Name, pipeline.Query{UserID: "alice",
				Mode: pipeline.ModeKeyword, Keywords: pipeline.QueryKeywords(text), TopK: 3})
			if keywords && (err != nil || len(hits) == 0) {
				t.Errorf("keyword search of %s: %d hits (%v)", st.Serving.Name, len(hits), err)
			}
			if !keywords && !errors.Is(err, pipeline.ErrNoKeywords) {
				t.Errorf("keyword search of %s: %v, want ErrNoKeywords", st.Serving.Name, err)
			}

			e.request(generation.Job{Action: generation.DropPrevious})
			e.wait(time.Minute)
			e.request(generation.Job{Action: generation.Build, Target: &generation.Generation{}})
			failed := e.failed(time.Minute)
			if want := fmt.Sprintf("RAGPIPE_KEYWORDS=%t", keywords); !strings.Contains(failed.Job.Error, "nothing to change") ||
				!strings.Contains(failed.Job.Error, want) || failed.Building != nil || failed.Serving != st.Serving {
				t.Errorf("a build changing nothing: %q, state %+v; want it refused naming %s", failed.Job.Error, failed, want)
			}
		})
	}
}
