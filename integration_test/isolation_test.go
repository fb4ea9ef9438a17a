package integration_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// What a flaky embedding service does with a request.
const (
	serve       = iota // answers as the fake of internal/embedtest
	unavailable        // 503 with OpenAI's error body
	hang               // holds it until the client gives up
)

// flaky is an OpenAI-compatible embedding service behind a switch: the fake
// of internal/embedtest, or a service that is down or hangs.
type flaky struct {
	URL  string // the base URL, without /v1
	mode atomic.Int32
	held atomic.Int32 // requests being held
}

func startFlaky(t testing.TB, dims int) *flaky {
	t.Helper()
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: dims})
	target, err := url.Parse(fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	proxy := httputil.NewSingleHostReverseProxy(target)
	f := &flaky{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch f.mode.Load() {
		case unavailable:
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_, _ = w.Write([]byte(`{"error":{"message":"The server is overloaded or not ready yet.","type":"server_error","param":null,"code":null}}`))
		case hang:
			_, _ = io.Copy(io.Discard, r.Body) // the server notices the client leaving only then
			f.held.Add(1)
			defer f.held.Add(-1)
			<-r.Context().Done()
		default:
			proxy.ServeHTTP(w, r)
		}
	}))
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	f.URL = srv.URL
	return f
}

// parked is the number of events in RAG_PARKED (0 before it exists): events
// of failing collections, waiting to be retried apart from the shared
// consumer. An ingestion is done only when none is left.
func (s *system) parked() (uint64, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stream, err := s.js.Stream(ctx, worker.ParkedStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	info, err := stream.Info(ctx)
	if err != nil {
		return 0, err
	}
	return info.State.Msgs, nil
}

// waitIngested waits until every published event is settled: the shared
// consumer drained and nothing parked.
func (s *system) waitIngested(timeout time.Duration) {
	s.t.Helper()
	checkfor.Until(s.t, timeout, "every event ingested", func() error {
		info, err := s.consumerInfo()
		if err != nil {
			return err
		}
		n, err := s.parked()
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 || n > 0 {
			return fmt.Errorf("%d pending, %d awaiting ack, %d parked", info.NumPending, info.NumAckPending, n)
		}
		return nil
	})
}

// count is the exact number of points of collection.
func (s *system) count(collection string) (uint64, error) {
	return s.qc.Count(context.Background(), &qdrant.CountPoints{CollectionName: collection, Exact: qdrant.PtrOf(true)})
}

// TestFailingCollectionDoesNotBlockOthers: 3,000 events of one tenant's
// collection whose embedding service answers 503 fill the shared consumer's
// delivery budget (1,280) twice over; then 500 events of another tenant's
// collection arrive. They are stored while the service is still down, none
// of the failing events is dead-lettered, and once the service is back every
// event is stored exactly, with the version of its original publish. The
// worker is built in the test, with the real stage, the OpenAI client, Qdrant
// and NATS, so that its retry delay can be short.
func TestFailingCollectionDoesNotBlockOthers(t *testing.T) {
	l := newLocal(t, qdrantstore.Config{})
	s := attach(t, l.js.Conn().ConnectedUrl(), l.qdrant)
	const dims, model = 16, "text-embedding-3-small"
	down := startFlaky(t, dims)
	down.mode.Store(unavailable)
	remote, err := embedder.NewOpenAI(embedder.Config{URL: down.URL + "/v1", Model: model, Dimensions: dims,
		MaxRetryTime: 2 * time.Second, Name: "broken"})
	if err != nil {
		t.Fatal(err)
	}
	chunker, err := pipeline.NewChunker(2000, 200)
	if err != nil {
		t.Fatal(err)
	}
	stage, err := ingest.NewStage(ingest.StageConfig{
		Sink: l.store, Versions: l.register, Embedder: l.embedder, Embedders: map[string]ingest.Embedder{"broken": remote},
		Chunker: chunker, Reuse: l.store, Collections: []pipeline.Collection{
			{Name: "docs", Dims: dims, Distance: pipeline.Cosine}, {Name: "broken", Dims: dims, Distance: pipeline.Cosine, Embedder: "broken"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := stage.Setup(t.Context()); err != nil {
		t.Fatal(err)
	}
	w, err := worker.New(t.Context(), worker.Config{JetStream: l.js, Processor: stage, Metrics: telemetry.NewMetrics(),
		MaxRetryDelay: time.Second, SuspectAfter: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})

	r := rand.New(rand.NewPCG(3, 1))
	m := newModel(t, 2000, 200, dims)
	var failing, healthy []event
	for i := range 3000 {
		failing = append(failing, event{user: "alice", collection: "broken", body: map[string]any{"doc_id": fmt.Sprint("b-", i), "text": text(r, 200)}})
	}
	for i := range 500 {
		healthy = append(healthy, event{user: users[1+i%4], collection: "docs", body: map[string]any{"doc_id": fmt.Sprint("d-", i), "text": text(r, 200)}})
	}
	record := func(events []event, seqs []uint64) {
		for i, e := range events {
			m.add(e.collection, e.user, e.body["doc_id"].(string), "upsert", e.body["text"].(string), nil, seqs[i])
		}
	}
	record(failing, s.publish(failing))
	start := time.Now()
	record(healthy, s.publish(healthy))
	checkfor.Until(t, 30*time.Second, "the healthy collection stored while the other fails", func() error {
		n, err := s.count("docs")
		if err != nil {
			return err
		}
		if n < 500 {
			return fmt.Errorf("%d of 500 stored", n)
		}
		return nil
	})
	t.Logf("500 healthy events stored %v after 3,000 failing ones", time.Since(start).Round(time.Millisecond))
	if n, err := s.count("broken"); err != nil || n != 0 {
		t.Fatalf("%d points in the failing collection (err %v): the service was not down", n, err)
	}
	if dl := s.deadLetters(); len(dl) > 0 {
		t.Fatalf("%d events dead-lettered while the service was down: %s", len(dl), dl[0].header.Get(worker.HeaderError))
	}

	down.mode.Store(serve)
	s.waitIngested(2 * time.Minute)
	s.assertStored("docs", m.want("docs"))
	s.assertStored("broken", withTextHash(m.want("broken"), "openai/"+model))
	if dl := s.deadLetters(); len(dl) > 0 {
		t.Fatalf("%d events dead-lettered: %s", len(dl), dl[0].header.Get(worker.HeaderError))
	}
}

// TestShutdownWhileEmbedderHangs: `ragpipe worker` gets SIGTERM while every
// embedding request hangs. It exits 0 within RAGPIPE_SHUTDOWN_TIMEOUT and 2
// seconds, and nothing is lost: a worker started afterwards, with the
// service answering again, stores every event exactly.
func TestShutdownWhileEmbedderHangs(t *testing.T) {
	const dims, model, timeout = 16, "text-embedding-3-small", 3 * time.Second
	svc := startFlaky(t, dims)
	s := newSystem(t, "RAGPIPE_EMBEDDER=openai", "RAGPIPE_EMBEDDER_URL="+svc.URL+"/v1", "RAGPIPE_EMBEDDER_MODEL="+model,
		"RAGPIPE_EMBEDDER_TIMEOUT=2m", "RAGPIPE_COLLECTIONS=docs:16:cosine", fmt.Sprint("RAGPIPE_SHUTDOWN_TIMEOUT=", timeout))
	w := s.startWorker() // its start probes the service, which answers
	svc.mode.Store(hang)
	r := rand.New(rand.NewPCG(5, 5))
	m := newModel(t, 2000, 200, dims)
	var events []event
	for i := range 300 {
		events = append(events, event{user: users[i%len(users)], collection: "docs", body: map[string]any{"doc_id": fmt.Sprint("d-", i), "text": text(r, 300)}})
	}
	for i, seq := range s.publish(events) {
		e := events[i]
		m.add("docs", e.user, e.body["doc_id"].(string), "upsert", e.body["text"].(string), nil, seq)
	}
	checkfor.Until(t, 30*time.Second, "embedding requests hanging", func() error {
		if svc.held.Load() == 0 {
			return errors.New("none yet")
		}
		return nil
	})
	start := time.Now()
	if code := w.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("worker exited %d after SIGTERM, want 0", code)
	}
	took := time.Since(start)
	if took > timeout+2*time.Second {
		t.Fatalf("worker exited %v after SIGTERM, want within %v", took.Round(time.Millisecond), timeout+2*time.Second)
	}
	t.Logf("worker exited 0 %v after SIGTERM", took.Round(time.Millisecond))
	svc.mode.Store(serve)
	s.startWorker()
	s.waitIngested(time.Minute)
	s.assertStored("docs", withTextHash(m.want("docs"), "openai/"+model))
	if dl := s.deadLetters(); len(dl) > 0 {
		t.Fatalf("%d events dead-lettered: %s", len(dl), dl[0].header.Get(worker.HeaderError))
	}
}
