package bench

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// workerChildMain is `ragpipe worker` without a store: the worker package
// on NATS_URL, with a processor that only counts the events, logging its
// ready line as ragpipe's worker does. Its last line says how many events
// the workers' consumer held when it started and how many it processed.
func workerChildMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	pending, processed, err := runCountingWorker(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("test worker: %d pending at start, processed %d events\n", pending, processed)
	return 0
}

func runCountingWorker(ctx context.Context) (pending uint64, processed int64, err error) {
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err != nil {
		return 0, 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, 0, err
	}
	var n countingProcessor
	w, err := worker.New(ctx, worker.Config{JetStream: js, Processor: &n, Metrics: telemetry.NewMetrics(),
		Logger: zerolog.New(os.Stdout).Level(zerolog.InfoLevel)})
	if err != nil {
		return 0, 0, err
	}
	c, err := js.Consumer(ctx, worker.IngestStream, worker.ConsumerName)
	if err != nil {
		return 0, 0, err
	}
	pending = c.CachedInfo().NumPending
	if err := w.Run(ctx); err != nil {
		return 0, 0, err
	}
	return pending, n.Load(), nil
}

// countingProcessor counts the events and reports each durable.
type countingProcessor struct{ atomic.Int64 }

func (p *countingProcessor) Process(_ context.Context, events []pipeline.Event) []error {
	p.Add(int64(len(events)))
	return make([]error, len(events))
}

// TestDrainFilled checks the drain of a filled stream: the events are all
// waiting on the workers' consumer, which did not exist before, when the
// worker starts; it processes every one, once; the drain is timed and its
// CPU measured.
func TestDrainFilled(t *testing.T) {
	r := floorRunner(t)
	ctx := t.Context()
	const n = 300
	docs := makeDocs(n)
	bodies := make([][]byte, n)
	for i := range docs {
		var err error
		if bodies[i], err = docs[i].body(bodyVectorB64); err != nil {
			t.Fatal(err)
		}
	}
	d := drain{name: "vector_b64_backlog", body: bodyVectorB64, embedder: embedderHash, docs: n, oneChunk: true}
	res := &Ingest{Docs: n, StreamFilledFirst: true}
	w, elapsed, err := r.drainFilled(ctx, d, res, docs, bodies, "bench_test01_vector_b64_backlog")
	if err != nil {
		t.Fatal(err)
	}
	if err := w.stop(); err != nil {
		t.Fatal(err)
	}
	if got, want := w.log.last(), fmt.Sprintf("test worker: %d pending at start, processed %d events", n, n); got != want {
		t.Errorf("the worker's last line is %q, want %q", got, want)
	}
	if elapsed <= 0 || res.PublishSeconds <= 0 || res.CPU == nil || res.CPU.Worker == nil || res.QdrantCoresAfter != nil {
		t.Errorf("drained in %s, published in %gs, CPU %+v, Qdrant cores %v; want times, the worker's CPU and no Qdrant",
			elapsed, res.PublishSeconds, res.CPU, res.QdrantCoresAfter)
	}
	info, err := r.consumerInfo(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if outstanding(info) != 0 || info.AckFloor.Stream < n {
		t.Errorf("after the drain: %d outstanding, ack floor %d", outstanding(info), info.AckFloor.Stream)
	}

	// An event of somebody else's waiting on the consumer is not the
	// drain's: no worker starts.
	if _, err := r.js.Publish(ctx, r.subject("alice", "other"), bodies[0]); err != nil {
		t.Fatal(err)
	}
	w, _, err = r.drainFilled(ctx, d, &Ingest{Docs: n}, docs, bodies, "bench_test01_vector_b64_backlog2")
	if w != nil {
		w.stop()
		t.Error("a worker started on a stream holding another event")
	}
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("holds %d events", n+1)) {
		t.Errorf("a stream holding another event: %v", err)
	}
}
