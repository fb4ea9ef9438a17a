package integration_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// BenchmarkIngest drains a backlog of 10,000 one-chunk documents (about 1 KB
// of text, 1024 dimensions) with one `ragpipe worker` process against one
// Qdrant node, and reports docs/s from the worker's start to the last
// acknowledgement. Run it with:
//
//	go test -run XXX -bench Ingest -benchtime 1x ./integration_test
func BenchmarkIngest(b *testing.B) {
	for _, mode := range []string{"text", "vector"} {
		b.Run(mode, func(b *testing.B) {
			for range b.N {
				benchIngest(b, mode, 10000)
			}
		})
	}
}

// benchIngest measures one drain of n documents; only the drain is timed.
func benchIngest(b *testing.B, mode string, n int) {
	b.StopTimer()
	s := newSystem(b, "RAGPIPE_COLLECTIONS=docs:1024:cosine")
	r := rand.New(rand.NewPCG(9, 9))
	events := make([]event, n)
	for i := range events {
		body := map[string]any{"doc_id": fmt.Sprint("doc-", i), "text": text(r, 900)}
		if mode == "vector" {
			v := make([]float32, 1024)
			for j := range v {
				v[j] = r.Float32() - 0.5
			}
			body["vector"] = v
		}
		events[i] = event{user: users[i%len(users)], collection: "docs", body: body}
	}
	s.createStreams()
	s.publish(events)
	start := time.Now()
	b.StartTimer()
	s.startWorker()
	s.waitDrained(5 * time.Minute)
	b.StopTimer()
	b.ReportMetric(float64(n)/time.Since(start).Seconds(), "docs/s")
}
