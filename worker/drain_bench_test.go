package worker_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"runtime/metrics"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
	"github.com/ragpipe/ragpipe/worker"
)

// BenchmarkDrain is a worker draining 2,000 events per iteration, new
// versions of the same 2,000 documents, in one process with its NATS
// server, version register and embedded store: events with a precomputed
// vector of 1,024 dimensions (vector_b64), and events of prose embedded by
// the hash embedder (text). It reports the
// time and the process's CPU per document, the share of it the garbage
// collector took, and the process's peak RSS.
func BenchmarkDrain(b *testing.B) {
	for _, kind := range []string{"vector_b64", "text"} {
		b.Run(kind, func(b *testing.B) { benchDrain(b, kind) })
	}
}

func benchDrain(b *testing.B, kind string) {
	const dims, perIteration = 1024, 2000
	ctx := b.Context()
	js, err := jetstream.New(natstest.Connect(b, natstest.Start(b)))
	if err != nil {
		b.Fatal(err)
	}
	versions, err := lww.NewRegister(ctx, js, "rag", 1)
	if err != nil {
		b.Fatal(err)
	}
	store, err := localstore.Open(ctx, localstore.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { store.Close() })
	emb, err := embedder.NewHash(dims)
	if err != nil {
		b.Fatal(err)
	}
	chunker, _ := pipeline.NewChunker(2000, 200)
	stage, err := ingest.NewStage(ingest.StageConfig{Sink: store, Versions: versions, Embedder: emb, Chunker: chunker,
		Collections: []pipeline.Collection{{Name: "docs", Dims: dims, Distance: pipeline.Cosine, Keywords: true}}})
	if err != nil {
		b.Fatal(err)
	}
	if err := stage.Setup(ctx); err != nil {
		b.Fatal(err)
	}
	m := telemetry.NewMetrics()
	w, err := worker.New(ctx, worker.Config{JetStream: js, Processor: stage, Metrics: m, Logger: zerolog.Nop()})
	if err != nil {
		b.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(runCtx) }()
	b.Cleanup(func() { cancel(); <-done })

	vector := make([]byte, 4*dims)
	for i := range dims {
		binary.LittleEndian.PutUint32(vector[4*i:], math.Float32bits(float32(i%7)-3))
	}
	b64 := base64.StdEncoding.EncodeToString(vector)
	prose := strings.Repeat("The consumer's maxAckPending bounds unacknowledged messages; "+
		"see /etc/nats/nats.conf and nats.Conn for max_ack_pending. Qdrant stores vectors. ", 20)[:1500]
	acked := func() int { return int(testutil.ToFloat64(m.Events.WithLabelValues("docs", telemetry.Acked))) }
	n, cpu, gc := 0, time.Duration(0), time.Duration(0)
	b.ReportAllocs()
	for b.Loop() {
		b.StopTimer()
		var body bytes.Buffer
		for range perIteration {
			n++
			body.Reset()
			if kind == "text" {
				fmt.Fprintf(&body, `{"doc_id":"d%d","text":"%d %s"}`, n%perIteration, n, prose)
			} else {
				fmt.Fprintf(&body, `{"doc_id":"d%d","text":"doc %d","vector_b64":"%s"}`, n%perIteration, n, b64)
			}
			if _, err := js.PublishAsync(fmt.Sprintf("rag.ingest.t%d.docs", n%8), bytes.Clone(body.Bytes())); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(time.Minute):
			b.Fatal("publishes not acknowledged within a minute")
		}
		start, startGC := cputimetest.Now(b), gcTime()
		b.StartTimer()
		for acked() < n {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cpu, gc = cpu+cputimetest.Now(b)-start, gc+gcTime()-startGC
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/doc")
	b.ReportMetric(float64(cpu.Microseconds())/float64(n), "cpu-µs/doc")
	b.ReportMetric(100*gc.Seconds()/cpu.Seconds(), "GC-%")
	b.ReportMetric(peakRSS(b), "peak-RSS-MiB")
}

// gcTime is the CPU time the runtime estimates its garbage collector has
// used, assists included.
func gcTime() time.Duration {
	s := []metrics.Sample{{Name: "/cpu/classes/gc/total:cpu-seconds"}}
	metrics.Read(s)
	return time.Duration(s[0].Value.Float64() * float64(time.Second))
}

// peakRSS is the process's peak resident set size (VmHWM), in MiB.
func peakRSS(b *testing.B) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kb / 1024
		}
	}
	return 0
}
