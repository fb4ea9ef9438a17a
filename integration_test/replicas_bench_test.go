package integration_test

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
)

// BenchmarkWorkerReplicas drains the same backlog of 10,000 one-chunk
// documents (1024 dimensions) with 1, 2 and 4 worker processes against a
// three-node Qdrant cluster (3 shards, replication 2) and reports docs/s:
//
//	go test -run XXX -bench WorkerReplicas -benchtime 1x ./integration_test
//
// On a machine with few cores, the workers and the three Qdrant nodes share
// them, so the curve shows contention as much as scaling.
func BenchmarkWorkerReplicas(b *testing.B) {
	for _, workers := range []int{1, 2, 4} {
		b.Run(fmt.Sprint("workers=", workers), func(b *testing.B) {
			for range b.N {
				b.StopTimer()
				ns := natstest.Start(b)
				nodes := qdranttest.StartCluster(b, 3)
				s := attach(b, ns.ClientURL(), nodes[0],
					append(clusterEnv, "RAGPIPE_COLLECTIONS=docs:1024:cosine", "RAGPIPE_STREAM_REPLICAS=1")...) // one NATS server
				r := rand.New(rand.NewPCG(1, 1))
				events := make([]event, 10000)
				for i := range events {
					events[i] = event{user: users[i%len(users)], collection: "docs",
						body: map[string]any{"doc_id": fmt.Sprint("doc-", i), "text": text(r, 900)}}
				}
				s.createStreams()
				s.publish(events)
				start := time.Now()
				b.StartTimer()
				for range workers {
					s.startWorker()
				}
				s.waitDrained(10 * time.Minute)
				b.StopTimer()
				b.ReportMetric(float64(len(events))/time.Since(start).Seconds(), "docs/s")
			}
		})
	}
}
