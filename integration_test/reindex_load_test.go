package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// The reindex tests move `documents` from the hash embedder at 1024
// dimensions to the embedder profile "small": the embedding test server's
// OpenAI API at 256 dimensions.
const (
	reindexModel    = "text-embedding-small"
	reindexIdentity = "openai/" + reindexModel
	oldDims         = 1024
	newDims         = 256
)

// toSmall is the command that reindexes `documents` to the small profile.
var toSmall = []string{"reindex", "--collection", "documents", "--embedder", "small", "--dims", "256", "--distance", "cosine"}

// reindexCommand is `ragpipe reindex --collection documents` with args.
func reindexCommand(args ...string) []string {
	return append([]string{"reindex", "--collection", "documents"}, args...)
}

// startReindexFake starts the embedding test server of the small profile.
func startReindexFake(t *testing.T, cfg embedtest.Config) *embedtest.Server {
	cfg.API, cfg.Dims, cfg.Model = embedtest.OpenAI, newDims, reindexModel
	return embedtest.Start(t, cfg)
}

// reindexEnv is the setting of every process of a reindex test (workers,
// searchers, dev, the CLI): documents served by the hash embedder (the
// harness's RAGPIPE_EMBEDDER=hash), the profile small defined by the
// environment alone, and small chunks so that most documents are
// multi-chunk.
func reindexEnv(fake *embedtest.Server) []string {
	return append([]string{
		"RAGPIPE_COLLECTIONS=documents:1024:cosine",
		"RAGPIPE_EMBEDDER_SMALL_KIND=openai",
		"RAGPIPE_EMBEDDER_SMALL_URL=" + fake.URL + "/v1",
		"RAGPIPE_EMBEDDER_SMALL_MODEL=" + reindexModel,
		"RAGPIPE_EMBEDDER_SMALL_TIMEOUT=10s",
	}, chunking...)
}

// workload is the documents of a reindex test, doc-0 to doc-<n-1> spread
// over the tenants by number (as hitsOf expects), with the last version
// published of each in a model, and a publisher of upserts, metadata
// updates and deletes.
type workload struct {
	t       *testing.T
	r       *rand.Rand
	m       *model
	texts   []string
	version []uint64
	// valid, when set, is a condition every published text meets.
	valid func(string) bool
	// burst is the events published every 100ms while a reindex runs.
	burst int
}

func newWorkload(t *testing.T, n int, seed uint64) *workload {
	return &workload{t: t, r: rand.New(rand.NewPCG(seed, 15)), m: newModel(t, 300, 30, oldDims),
		texts: make([]string, n), version: make([]uint64, n), burst: loadBurst}
}

// text returns a new text for document i.
func (w *workload) text(i int) string {
	for {
		txt := fmt.Sprintf("doc-%d %s", i, text(w.r, 100+w.r.IntN(900)))
		if w.valid == nil || w.valid(txt) {
			return txt
		}
	}
}

// event returns the next version of document i: op "upsert" with a new
// text, "meta" with its text and new metadata, or "delete"; the model
// records it.
func (w *workload) event(i int, op string) event {
	w.version[i]++
	v := w.version[i]
	doc, user := fmt.Sprint("doc-", i), users[i%len(users)]
	body := map[string]any{"doc_id": doc, "version": v}
	meta := map[string]any{"rev": fmt.Sprint("r", v)}
	switch op {
	case "delete":
		body["op"] = "delete"
		w.texts[i] = ""
		w.m.add("documents", user, doc, "delete", "", nil, v)
		return event{user: user, collection: "documents", body: body}
	case "upsert":
		w.texts[i] = w.text(i)
	case "meta":
		if w.texts[i] == "" {
			w.texts[i] = w.text(i)
		}
	}
	body["text"], body["metadata"] = w.texts[i], meta
	w.m.add("documents", user, doc, "upsert", w.texts[i], meta, v)
	return event{user: user, collection: "documents", body: body}
}

// initial publishes the first version of every document and waits until
// they are ingested.
func (w *workload) initial(s *system) {
	events := make([]event, len(w.texts))
	for i := range events {
		events[i] = w.event(i, "upsert")
	}
	s.publish(events)
	s.waitDrained(3 * time.Minute)
}

// next returns the event of a random document: a new text (6 in 10), new
// metadata (2 in 10) or a delete (2 in 10; only documents whose number is a
// multiple of 3 are deleted, so that every tenant always has documents).
func (w *workload) next() event {
	i := w.r.IntN(len(w.texts))
	switch k := w.r.IntN(10); {
	case k < 6:
		return w.event(i, "upsert")
	case k < 8:
		return w.event(i, "meta")
	case i%3 == 0:
		return w.event(i, "delete")
	default:
		return w.event(i, "upsert")
	}
}

// publishing publishes bursts of burst events every 100ms to js until the
// returned function is called; it returns how many were published and
// fails the test if a publish failed. Meanwhile the workload belongs to
// the publisher.
func (w *workload) publishing(js jetstream.JetStream, burst int) (stop func() int) {
	done, result := make(chan struct{}), make(chan error, 1)
	n := 0
	go func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				result <- nil
				return
			case <-tick.C:
			}
			for range burst {
				e := w.next()
				data, _ := json.Marshal(e.body)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				_, err := js.Publish(ctx, "rag.ingest."+e.user+".documents", data)
				cancel()
				if err != nil {
					result <- fmt.Errorf("publish %v: %w", e.body["doc_id"], err)
					return
				}
				n++
			}
		}
	}()
	return func() int {
		w.t.Helper()
		close(done)
		if err := <-result; err != nil {
			w.t.Fatal(err)
		}
		return n
	}
}

// want returns the points the model requires of a generation chunked by
// chunker (the workload's own when nil), with vectors of dims, embedded by
// identity ("" for the hash embedder, whose points carry no text hash).
func (w *workload) want(chunker *pipeline.Chunker, dims int, identity string) map[string]map[string]any {
	m := &model{chunker: w.m.chunker, dims: dims, newest: w.m.newest}
	if chunker != nil {
		m.chunker = chunker
	}
	want := m.want("documents")
	if identity != "" {
		want = withTextHash(want, identity)
	}
	return want
}

// searchRecord is one search of the steady load.
type searchRecord struct {
	at      time.Time
	failure string // "" when answered with at least one hit, all of its tenant
}

// searching sends searches for the tenants in turn from loops goroutines,
// each waiting 5ms between searches, until the returned function is called,
// which returns every search made. Every tenant has documents all along, so
// an error reply, no reply within 5s, a hit of another tenant or no hit at
// all is a failure.
func searching(nc *nats.Conn, loops int) (stop func() []searchRecord) {
	done := make(chan struct{})
	var (
		mu      sync.Mutex
		records []searchRecord
		wg      sync.WaitGroup
	)
	for l := range loops {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(l), 9))
			for i := l; ; i++ {
				select {
				case <-done:
					return
				default:
				}
				user := users[i%len(users)]
				query := fmt.Sprintf(`{"query":%q,"top_k":5}`, vocabulary[r.IntN(len(vocabulary))]+" "+vocabulary[r.IntN(len(vocabulary))])
				rec := searchRecord{at: time.Now()}
				msg, err := nc.Request("rag.search."+user+".documents", []byte(query), 5*time.Second)
				rec.failure = searchFailure(msg, err, user)
				mu.Lock()
				records = append(records, rec)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
			}
		})
	}
	return func() []searchRecord {
		close(done)
		wg.Wait()
		slices.SortFunc(records, func(a, b searchRecord) int { return a.at.Compare(b.at) })
		return records
	}
}

// searchFailure says what is wrong with a search reply of user's, "" when
// nothing is.
func searchFailure(msg *nats.Msg, err error, user string) string {
	if err != nil {
		return err.Error()
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		return code + " " + msg.Header.Get("Nats-Service-Error")
	}
	var reply struct {
		Hits []json.RawMessage `json:"hits"`
	}
	switch {
	case json.Unmarshal(msg.Data, &reply) != nil:
		return fmt.Sprintf("reply %.100q", msg.Data)
	case len(reply.Hits) == 0:
		return "no hit"
	case !hitsOf(msg.Data, user):
		return fmt.Sprintf("a hit of another tenant: %.200s", msg.Data)
	}
	return ""
}

// countSearches returns how many of records began in [from, to) and how
// many of those failed, logging the first failures.
func countSearches(t *testing.T, records []searchRecord, from, to time.Time) (total, failed int) {
	t.Helper()
	for _, r := range records {
		if r.at.Before(from) || !r.at.Before(to) {
			continue
		}
		total++
		if r.failure != "" {
			if failed < 5 {
				t.Logf("search at %s failed: %s", r.at.Format("15:04:05.000"), r.failure)
			}
			failed++
		}
	}
	return total, failed
}

// timedState is a State as stored, with the time the bucket stored it.
type timedState struct {
	at time.Time
	generation.State
}

// stateLog keeps every State of a collection, as the bucket's watch sees
// them.
type stateLog struct {
	t          *testing.T
	kv         jetstream.KeyValue
	collection string
	stop       func() // ends the watch
	mu         sync.Mutex
	states     []timedState
}

// watchStates records every State of collection until the test ends. The
// bucket is created by the first ragpipe process that opens the Registry.
func watchStates(t *testing.T, js jetstream.JetStream, collection string) *stateLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var kv jetstream.KeyValue
	checkfor.Until(t, 30*time.Second, "bucket "+generation.Bucket, func() (err error) {
		kv, err = js.KeyValue(ctx, generation.Bucket)
		return err
	})
	w, err := kv.Watch(ctx, collection)
	if err != nil {
		t.Fatal(err)
	}
	l := &stateLog{t: t, kv: kv, collection: collection}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for e := range w.Updates() {
			if e == nil || e.Operation() != jetstream.KeyValuePut {
				continue
			}
			var s generation.State
			if err := json.Unmarshal(e.Value(), &s); err != nil {
				t.Errorf("state of %s: %v", collection, err)
				continue
			}
			s.Revision = e.Revision()
			l.mu.Lock()
			l.states = append(l.states, timedState{at: e.Created(), State: s})
			l.mu.Unlock()
		}
	}()
	l.stop = sync.OnceFunc(func() { _ = w.Stop(); cancel(); <-done })
	t.Cleanup(l.stop)
	return l
}

// current reads the State from the bucket, failing the test without one.
func (l *stateLog) current() generation.State {
	l.t.Helper()
	e, err := l.kv.Get(context.Background(), l.collection)
	if err != nil {
		l.t.Fatalf("State of %s: %v", l.collection, err)
	}
	var s generation.State
	if err := json.Unmarshal(e.Value(), &s); err != nil {
		l.t.Fatal(err)
	}
	s.Revision = e.Revision()
	return s
}

// done reads the State from the bucket once a command has ended and fails
// the test unless its job is done.
func (l *stateLog) done() generation.State {
	l.t.Helper()
	s := l.current()
	if s.Job == nil || s.Job.Phase != generation.Done {
		l.t.Fatalf("the command ended, but the job is not done: %s", describeState(s))
	}
	return s
}

// all returns the States seen so far, oldest first.
func (l *stateLog) all() []timedState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.states)
}

// wait waits until the newest State meets cond and returns it.
func (l *stateLog) wait(timeout time.Duration, what string, cond func(s generation.State) error) timedState {
	l.t.Helper()
	var last timedState
	checkfor.Until(l.t, timeout, what, func() error {
		states := l.all()
		if len(states) == 0 {
			return errors.New("no State yet")
		}
		last = states[len(states)-1]
		if err := cond(last.State); err != nil {
			return fmt.Errorf("%w; State %s", err, describeState(last.State))
		}
		return nil
	})
	return last
}

// errNotYet is a condition not met yet.
var errNotYet = errors.New("not yet")

// describeState is a State in one line.
func describeState(s generation.State) string {
	name := func(g *generation.Generation) string {
		if g == nil {
			return "-"
		}
		return fmt.Sprintf("%s(%s/%d)", g.Name, g.Embedder, g.Dims)
	}
	out := fmt.Sprintf("rev %d serving %s building %s previous %s", s.Revision, name(&s.Serving), name(s.Building), name(s.Previous))
	if j := s.Job; j != nil {
		out += fmt.Sprintf(" job %s %s %s owner %q copied %d/%d points %d", j.ID, j.Action, j.Phase, j.Owner, j.Copied, j.Total, j.Points)
		if j.Error != "" {
			out += " error: " + j.Error
		}
	}
	return out
}

// reindexFigures is what a stateLog shows of a build: when the copy began
// and ended, the documents it copied, and when the new generation began
// serving.
type reindexFigures struct {
	copyStart, copyEnd, switched time.Time
	copied                       int64
	switchTook                   time.Duration
}

// figures reads the build whose job is id from the log.
func (l *stateLog) figures(id string) reindexFigures {
	var f reindexFigures
	for _, s := range l.all() {
		j := s.Job
		if j == nil || j.ID != id {
			continue
		}
		if j.Phase == generation.Copying && f.copyStart.IsZero() {
			f.copyStart = s.at
		}
		if j.Phase != generation.Copying && !f.copyStart.IsZero() && f.copyEnd.IsZero() {
			f.copyEnd = s.at
		}
		if j.Phase == generation.Copying || f.copied == 0 {
			f.copied = j.Copied
		}
		if (j.Phase == generation.Switching || j.Phase == generation.Done) && f.switched.IsZero() {
			f.switched = s.at // the update that made the new generation serve
		}
		if j.Report != nil && j.Report.SwitchTook > 0 {
			f.switchTook = j.Report.SwitchTook
		}
	}
	return f
}

// logFigures logs the measured figures of a build and of the searches made
// meanwhile: documents copied per second, the switch, and the searches
// during the reindex (from the job's start to the switch) and during the
// switch (the second either side of the State's update that made the new
// generation serve).
func logFigures(t *testing.T, what string, f reindexFigures, records []searchRecord, requested time.Time) {
	t.Helper()
	copyTook := f.copyEnd.Sub(f.copyStart)
	rate := 0.0
	if copyTook > 0 {
		rate = float64(f.copied) / copyTook.Seconds()
	}
	during, duringFailed := countSearches(t, records, requested, f.switched)
	sw, swFailed := countSearches(t, records, f.switched.Add(-time.Second), f.switched.Add(time.Second))
	t.Logf("%s: %d documents copied in %s (%.0f documents/s re-embedded); switch took %s; "+
		"searches during the reindex: %d (%d failed), within 1s of the switch: %d (%d failed)",
		what, f.copied, copyTook.Round(time.Millisecond), rate, f.switchTook, during, duringFailed, sw, swFailed)
}

// reindexUnderLoad runs `ragpipe reindex args...` to its end, a build,
// while w's publisher and searches of every tenant run, from before the
// command to 2s after the switch. It logs the figures measured, fails the
// test if a search failed and returns the State once done.
func reindexUnderLoad(t *testing.T, s *system, states *stateLog, w *workload, what string, args ...string) generation.State {
	t.Helper()
	stopSearches := searching(s.js.Conn(), 2)
	stopPublishing := w.publishing(s.js, w.burst)
	requested := time.Now()
	out := runToEnd(t, s, "reindex", args)
	if js := jsonLine(out); js != "" {
		t.Logf("%s: ragpipe reindex --json printed: %s", what, js)
	}
	st := states.done()
	time.Sleep(2 * time.Second) // events and searches after the switch
	published := stopPublishing()
	records := stopSearches()
	logFigures(t, what, states.figures(jobOf(t, st).ID), records, requested)
	t.Logf("%s: %d events published during the reindex", what, published)
	assertSearches(t, what, records)
	return st
}

// assertSearches fails the test unless records holds searches, none failed.
func assertSearches(t *testing.T, what string, records []searchRecord) {
	t.Helper()
	if len(records) == 0 {
		t.Fatalf("%s: no search made", what)
	}
	total, failed := countSearches(t, records, records[0].at, records[len(records)-1].at.Add(time.Nanosecond))
	t.Logf("%s: %d searches, %d failed", what, total, failed)
	if failed > 0 {
		t.Errorf("%s: %d of %d searches failed, want none", what, failed, total)
	}
}

// jobOf returns the newest State's job, failing the test without one.
// currentState reads collection's State from the bucket's stream leader:
// every update made before the call is seen.
func currentState(t *testing.T, js jetstream.JetStream, collection string) generation.State {
	t.Helper()
	reg, err := generation.Open(t.Context(), js, generation.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Close()
	st, ok, err := reg.Current(t.Context(), collection)
	if err != nil || !ok {
		t.Fatalf("State of %s: found %v, %v", collection, ok, err)
	}
	return st
}

func jobOf(t *testing.T, s generation.State) *generation.Job {
	t.Helper()
	if s.Job == nil {
		t.Fatalf("no job in State %s", describeState(s))
	}
	return s.Job
}

// mustServe fails the test unless the State serves name, with previous as
// Previous ("" for none) and nothing building.
func mustServe(t *testing.T, s generation.State, name, previous string) {
	t.Helper()
	prev := ""
	if s.Previous != nil {
		prev = s.Previous.Name
	}
	if s.Serving.Name != name || prev != previous || s.Building != nil {
		t.Fatalf("State %s; want serving %s, previous %q, nothing building", describeState(s), name, previous)
	}
}

// jsonLine is the last line of out that holds a JSON object: what
// `ragpipe reindex --json` prints.
func jsonLine(out string) string {
	lines := strings.Split(strings.TrimSpace(out), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "{") {
			return lines[i]
		}
	}
	return ""
}
