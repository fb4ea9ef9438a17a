package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
)

// TestMain makes the test binary the NATS floor's consumer when natsFloor
// starts it as it starts ragpipe: `<binary> bench FloorChildArg ...`, and a
// worker that stores nothing when startChild starts `<binary> worker`
// (backlog_test.go).
func TestMain(m *testing.M) {
	switch {
	case len(os.Args) > 2 && os.Args[1] == "bench" && os.Args[2] == FloorChildArg:
		os.Exit(floorChildMain(os.Args[3:]))
	case len(os.Args) == 2 && os.Args[1] == "worker":
		os.Exit(workerChildMain())
	}
	os.Exit(m.Run())
}

func floorChildMain(args []string) int {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	nc, err := nats.Connect(os.Getenv("NATS_URL"))
	if err == nil {
		defer nc.Close()
		err = RunFloorChild(ctx, nc, args, os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// floorRunner is a runner on an embedded NATS server whose children are
// this test binary.
func floorRunner(t *testing.T) *runner {
	t.Helper()
	s := natstest.Start(t)
	nc := natstest.Connect(t, s)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return &runner{
		cfg: Config{Executable: exe, Env: os.Environ(), NATSURL: s.ClientURL(), Conn: nc, Prefix: "rag", Progress: io.Discard},
		id:  "test01", js: js, live: map[string]struct{}{},
	}
}

// workerPlan is the floor plan of a worker with the default settings.
var workerPlan = floorPlan{
	ingest: jetstream.StreamConfig{Storage: jetstream.FileStorage, Retention: jetstream.WorkQueuePolicy, Replicas: 1,
		Duplicates: 2 * time.Minute},
	consumer: jetstream.ConsumerConfig{AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second,
		MaxAckPending: 1280, MaxDeliver: -1},
	pullMaxBytes: 32 << 20 / 5,
}

func TestNATSFloor(t *testing.T) {
	r := floorRunner(t)
	docs := makeDocs(300)
	bodies := make([][]byte, len(docs))
	for i := range docs {
		var err error
		if bodies[i], err = docs[i].body(bodyVectorB64); err != nil {
			t.Fatal(err)
		}
	}
	us, err := r.natsFloor(t.Context(), workerPlan, docs, "bench_test01_vector_b64", bodies)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NATS floor: %.1f µs per event", us)
	if us <= 0 || us > 100_000 {
		t.Errorf("NATS floor %.1f µs per event, want a positive CPU time below 0.1 s", us)
	}
	if _, err := r.js.Stream(t.Context(), "RAG_BENCH_FLOOR_test01"); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("the floor's stream is left: %v", err)
	}
}

// TestFloorFailureIsANote checks that a floor that cannot be measured (no
// RAG_INGEST to copy) leaves the drain's result a success with the reason.
func TestFloorFailureIsANote(t *testing.T) {
	r := floorRunner(t)
	in := &Ingest{Docs: 1, Body: bodyText}
	w := &child{log: newLineLog("worker consuming")}
	r.floor(t.Context(), drain{name: "text"}, in, w, makeDocs(1), "c", [][]byte{[]byte("{}")})
	if in.NATSFloorUsPerDoc != nil || !strings.Contains(in.NATSFloorError, "RAG_INGEST") || in.Error != "" {
		t.Errorf("floor = %v, error %q, drain error %q; want no figure, RAG_INGEST named, no drain error",
			in.NATSFloorUsPerDoc, in.NATSFloorError, in.Error)
	}
}

func TestFloorPlanPullSize(t *testing.T) {
	r := floorRunner(t)
	ctx := t.Context()
	if _, err := r.js.CreateStream(ctx, jetstream.StreamConfig{Name: "RAG_INGEST", Subjects: []string{"rag.ingest.>"},
		Retention: jetstream.WorkQueuePolicy}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.js.CreateOrUpdateConsumer(ctx, "RAG_INGEST", jetstream.ConsumerConfig{Durable: "ragpipe-worker",
		AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 1280}); err != nil {
		t.Fatal(err)
	}
	w := &child{log: newLineLog("worker consuming")}
	fmt.Fprintln(w.log, `{"level":"info","concurrency":4,"max_held_bytes":33554432,"pull_max_bytes":6710886,"message":"worker consuming"}`)
	plan, err := r.floorPlan(ctx, w)
	if err != nil {
		t.Fatal(err)
	}
	if plan.pullMaxBytes != 6710886 || plan.consumer.MaxAckPending != 1280 || plan.ingest.Retention != jetstream.WorkQueuePolicy {
		t.Errorf("plan: pull %d, MaxAckPending %d, retention %v", plan.pullMaxBytes, plan.consumer.MaxAckPending, plan.ingest.Retention)
	}

	w = &child{log: newLineLog("worker consuming")}
	fmt.Fprintln(w.log, `worker consuming`) // a console line, not JSON
	if _, err := r.floorPlan(ctx, w); err == nil || !strings.Contains(err.Error(), "pull_max_bytes") {
		t.Errorf("a ready line without the settings: %v", err)
	}
}

func TestRunFloorChild(t *testing.T) {
	r := floorRunner(t)
	ctx := t.Context()
	stream, err := r.js.CreateStream(ctx, jetstream.StreamConfig{Name: "F", Subjects: []string{"f.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy, MaxAckPending: 64})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 500 {
		if _, err := r.js.Publish(ctx, fmt.Sprintf("f.%d", i%5), []byte("event")); err != nil {
			t.Fatal(err)
		}
	}
	out := newLineLog(floorReady) // the consume error handler may write from another goroutine
	if err := RunFloorChild(ctx, r.cfg.Conn, []string{"F", "c", "500", "65536"}, out); err != nil {
		t.Fatal(err)
	}
	if _, err := parseFloorReady(out.readyLine()); err != nil {
		t.Error(err)
	}
	if err := settled(ctx, consumer, floorSettle); err != nil {
		t.Error(err)
	}
	if info, err := stream.Info(ctx); err != nil || info.State.Msgs != 0 {
		t.Errorf("after the floor the work queue holds %v messages (%v), want 0", info.State.Msgs, err)
	}

	for _, args := range [][]string{{"F", "c", "500"}, {"F", "c", "0", "65536"}, {"F", "c", "10", "x"}} {
		if err := RunFloorChild(ctx, r.cfg.Conn, args, io.Discard); err == nil {
			t.Errorf("RunFloorChild(%q) succeeded", args)
		}
	}
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	if err := RunFloorChild(short, r.cfg.Conn, []string{"F", "c", "1", "65536"}, io.Discard); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("with nothing to consume: %v, want the context's error", err)
	}
}

func TestParseFloorReady(t *testing.T) {
	if d, err := parseFloorReady(floorReady + "; " + floorCPUKey + "12345"); err != nil || d != 12345*time.Microsecond {
		t.Errorf("parseFloorReady = %v, %v", d, err)
	}
	for _, line := range []string{"", floorReady, floorReady + "; " + floorCPUKey + "-1", floorReady + "; " + floorCPUKey + "x"} {
		if _, err := parseFloorReady(line); err == nil {
			t.Errorf("parseFloorReady(%q) succeeded", line)
		}
	}
}

// TestSettled checks that settled waits while events are outstanding and
// returns once they are acknowledged.
func TestSettled(t *testing.T) {
	r := floorRunner(t)
	ctx := t.Context()
	stream, err := r.js.CreateStream(ctx, jetstream.StreamConfig{Name: "F", Subjects: []string{"f.>"}, Retention: jetstream.WorkQueuePolicy})
	if err != nil {
		t.Fatal(err)
	}
	consumer, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "c", AckPolicy: jetstream.AckExplicitPolicy})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := r.js.Publish(ctx, "f.x", []byte("event")); err != nil {
			t.Fatal(err)
		}
	}
	batch, err := consumer.Fetch(5)
	if err != nil {
		t.Fatal(err)
	}
	var msgs []jetstream.Msg
	for m := range batch.Messages() {
		msgs = append(msgs, m)
	}
	if len(msgs) != 5 {
		t.Fatalf("fetched %d messages, want 5", len(msgs))
	}
	// The wait runs out either between two polls (the give-up message) or
	// during one (Info's error, wrapping the wait's).
	err = settled(ctx, consumer, 3*drainPoll)
	gaveUp := err != nil && err.Error() == fmt.Sprintf("5 events still not acknowledged after %s", 3*drainPoll)
	polling := errors.Is(err, context.DeadlineExceeded) && err != context.DeadlineExceeded
	if !gaveUp && !polling {
		t.Fatalf("settled with 5 events outstanding: %v", err)
	}
	// An interrupted wait says so, not that the events stayed outstanding.
	interrupted, cancel := context.WithCancel(ctx)
	cancel()
	if err := settled(interrupted, consumer, time.Minute); !errors.Is(err, context.Canceled) {
		t.Fatalf("settled after ctx ended: %v, want context.Canceled", err)
	}
	for _, m := range msgs {
		if err := m.Ack(); err != nil {
			t.Fatal(err)
		}
	}
	if err := settled(ctx, consumer, floorSettle); err != nil {
		t.Fatal(err)
	}
}
