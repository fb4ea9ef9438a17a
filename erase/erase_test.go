package erase_test

import (
	"context"
	"fmt"
	"maps"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/erase"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// store is what the tests need of a vector store.
type store interface {
	ingest.Sink
	erase.Store
	Count(ctx context.Context, collection string) (map[string]int, error)
	Status(ctx context.Context, collection, userID string, docIDs []string) (map[string]pipeline.Doc, error)
}

func TestForgetQdrant(t *testing.T) { testForget(t, qdrantStore(t)) }

func TestForgetEmbedded(t *testing.T) { testForget(t, embeddedStore(t)) }

// qdrantStore starts Qdrant and returns a store on it.
func qdrantStore(t *testing.T) *qdrantstore.Store {
	node := qdranttest.Start(t)
	q, err := qdrantstore.New(t.Context(), qdrantstore.Config{
		Host: "127.0.0.1", Port: node.GRPCPort(), Timeout: 5 * time.Second, ConnectTimeout: 10 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

// embeddedStore returns an embedded store in a temporary directory.
func embeddedStore(t *testing.T) *localstore.Store {
	l, err := localstore.Open(t.Context(), localstore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// testForget fills s with two tenants' documents in two collections, with
// dead letters, parked and pending events, forgets one tenant and checks
// that exactly its data is gone, that a second run finds nothing, and that
// the tenant then starts afresh from version 1.
func testForget(t *testing.T, s store) {
	w := newWorld(t, s)
	stop := w.run()
	for _, e := range []struct {
		user, coll, doc string
	}{{"alice", "docs", "a1"}, {"alice", "docs", "a2"}, {"alice", "docs", "a3"}, {"alice", "notes", "n1"},
		{"alice", "notes", "n2"}, {"bob", "docs", "a1"}, {"bob", "notes", "n1"}} {
		w.publish("rag.ingest."+e.user+"."+e.coll, fmt.Sprintf(`{"doc_id":%q,"text":"%s of %s","version":5}`, e.doc, e.doc, e.user))
	}
	w.publish("rag.ingest.alice.docs", `{"op":"delete","doc_id":"gone","version":3}`) // an entry, no point
	for _, subject := range []string{"rag.ingest.alice.docs", "rag.ingest.bob.docs", "rag.ingest.alice.Bad", "rag.ingest.bob.Bad"} {
		w.publish(subject, `not json`) // dead letters: two on the tenants' subjects, two of malformed ones
	}
	w.waitPoints("docs", map[string]int{"alice": 3, "bob": 1})
	w.waitPoints("notes", map[string]int{"alice": 2, "bob": 1})
	checkfor.Until(t, 30*time.Second, "four dead letters", func() error {
		if n := w.messages(worker.DLQStream, "rag.dlq.>"); n != 4 {
			return fmt.Errorf("%d dead letters", n)
		}
		return nil
	})
	stop()
	w.publish("rag.ingest.alice.docs", `{"doc_id":"p1","text":"pending","version":9}`)
	w.publish("rag.ingest.alice.notes", `{"doc_id":"p2","text":"pending","version":9}`)
	w.publish("rag.ingest.bob.docs", `{"doc_id":"p3","text":"pending","version":9}`)
	w.publish("rag.parked.alice.docs", `{"doc_id":"k1","text":"parked","version":9}`)
	w.publish("rag.parked.alice.notes", `{"doc_id":"k2","text":"parked","version":9}`)
	w.publish("rag.parked.bob.docs", `{"doc_id":"k3","text":"parked","version":9}`)

	var lines []string
	cfg := erase.Config{JetStream: w.js, Store: s, Versions: w.register, Progress: func(l string) { lines = append(lines, l) }}
	r, err := erase.Forget(t.Context(), cfg, "alice")
	want := erase.Report{UserID: "alice", Key: erase.KeySkipped, Pending: 2, Parked: 2,
		Points: map[string]int{"docs": 3, "notes": 2}, Versions: 6, DeadLetters: 2}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Fatalf("Forget = %+v, %v; want %+v", r, err, want)
	}
	t.Logf("progress:\n%s", strings.Join(lines, "\n"))
	if len(lines) != 9 {
		t.Errorf("progress lines: %q", lines)
	}

	w.waitPoints("docs", map[string]int{"bob": 1})
	w.waitPoints("notes", map[string]int{"bob": 1})
	for _, c := range []struct {
		stream, filter string
		want           uint64
	}{
		{worker.IngestStream, "rag.ingest.alice.>", 0}, {worker.IngestStream, "rag.ingest.bob.>", 1},
		{worker.ParkedStream, "rag.parked.alice.>", 0}, {worker.ParkedStream, "rag.parked.bob.>", 1},
		{worker.DLQStream, "rag.dlq.alice.>", 0}, {worker.DLQStream, "rag.dlq.bob.>", 1}, {worker.DLQStream, "rag.dlq._invalid.>", 1},
		{lww.RegisterStream, "rag.version.*.alice.*", 0}, {lww.RegisterStream, "rag.version.*.bob.*", 2},
	} {
		if got := w.messages(c.stream, c.filter); got != c.want {
			t.Errorf("%s in %s: %d messages, want %d", c.filter, c.stream, got, c.want)
		}
	}

	r, err = erase.Forget(t.Context(), cfg, "alice")
	want = erase.Report{UserID: "alice", Key: erase.KeySkipped, Points: map[string]int{"docs": 0, "notes": 0}}
	if err != nil || !reflect.DeepEqual(r, want) {
		t.Fatalf("Forget again = %+v, %v; want %+v", r, err, want)
	}
	if _, err := erase.Forget(t.Context(), cfg, "al.*"); err == nil {
		t.Error("Forget of an invalid user id: no error")
	}

	// Alice starts afresh: version 1 of a document she had at version 5.
	w.run()
	w.publish("rag.ingest.alice.docs", `{"doc_id":"a1","text":"a1 again","version":1}`)
	w.waitPoints("docs", map[string]int{"alice": 1, "bob": 2}) // and bob's pending p3
	docs, err := s.Status(t.Context(), "docs", "alice", []string{"a1"})
	if err != nil || docs["a1"].Version != 1 {
		t.Fatalf("alice's a1 after the forget: %+v, %v; want version 1", docs, err)
	}
}

// world is ragpipe's ingestion over a real NATS server and the store.
type world struct {
	t        *testing.T
	js       jetstream.JetStream
	store    store
	register *lww.Register
	stage    *ingest.Stage
}

func newWorld(t *testing.T, s store) *world {
	t.Helper()
	js, err := jetstream.New(natstest.Connect(t, natstest.Start(t)))
	if err != nil {
		t.Fatal(err)
	}
	register, err := lww.NewRegister(t.Context(), js, "rag", 1)
	if err != nil {
		t.Fatal(err)
	}
	emb, err := embedder.NewHash(16)
	if err != nil {
		t.Fatal(err)
	}
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	stage, err := ingest.NewStage(ingest.StageConfig{
		Sink: s, Versions: register, Embedder: emb, Chunker: chunker,
		Collections: []pipeline.Collection{{Name: "docs", Dims: 16}, {Name: "notes", Dims: 16}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	return &world{t: t, js: js, store: s, register: register, stage: stage}
}

// run starts a worker; stop stops it and waits (also when the test ends).
func (w *world) run() (stop func()) {
	w.t.Helper()
	wk, err := worker.New(w.t.Context(), worker.Config{
		JetStream: w.js, Processor: w.stage, Metrics: telemetry.NewMetrics(), FlushInterval: time.Millisecond,
		Logger: zerolog.New(zerolog.NewTestWriter(w.t)).Level(zerolog.WarnLevel),
	})
	if err != nil {
		w.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := wk.Run(ctx); err != nil {
			w.t.Errorf("Run: %v", err)
		}
	})
	stop = sync.OnceFunc(func() { cancel(); wg.Wait() })
	w.t.Cleanup(stop)
	return stop
}

// publish stores one message in whichever stream takes subject.
func (w *world) publish(subject, body string) {
	w.t.Helper()
	if _, err := w.js.PublishMsg(w.t.Context(), &nats.Msg{Subject: subject, Data: []byte(body)}); err != nil {
		w.t.Fatalf("publish %s: %v", subject, err)
	}
}

// publishAsync publishes without waiting for the acknowledgement; settled
// waits for them all.
func (w *world) publishAsync(subject, body string) {
	w.t.Helper()
	if _, err := w.js.PublishMsgAsync(&nats.Msg{Subject: subject, Data: []byte(body)}); err != nil {
		w.t.Fatalf("publish %s: %v", subject, err)
	}
}

// settled waits until every asynchronous publish is acknowledged.
func (w *world) settled() {
	w.t.Helper()
	select {
	case <-w.js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		w.t.Fatal("asynchronous publishes not acknowledged within 30s")
	}
}

// messages counts the messages of stream on subjects matching filter.
func (w *world) messages(stream, filter string) uint64 {
	w.t.Helper()
	s, err := w.js.Stream(w.t.Context(), stream)
	if err != nil {
		w.t.Fatal(err)
	}
	info, err := s.Info(w.t.Context(), jetstream.WithSubjectFilter(filter))
	if err != nil {
		w.t.Fatal(err)
	}
	var n uint64
	for _, c := range info.State.Subjects {
		n += c
	}
	return n
}

// waitPoints waits until coll holds exactly want points per tenant.
func (w *world) waitPoints(coll string, want map[string]int) {
	w.t.Helper()
	checkfor.Until(w.t, 30*time.Second, "points of "+coll, func() error {
		got, err := w.store.Count(w.t.Context(), coll)
		if err != nil {
			return err
		}
		maps.DeleteFunc(got, func(_ string, n int) bool { return n == 0 })
		if !maps.Equal(got, want) {
			return fmt.Errorf("%v, want %v", got, want)
		}
		return nil
	})
}
