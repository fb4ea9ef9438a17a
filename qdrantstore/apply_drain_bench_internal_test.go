package qdrantstore

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// BenchmarkApplyDrain measures this process's CPU time per point (Qdrant is
// another process) of Apply of 256 first versions of new documents
// (benchWrites, new document ids each time), as a worker's drain applies
// them: its read of what is stored, then one request. Two garbage
// collections run between calls, outside the time counted, as in a worker
// whose small heap is collected several times per batch.
//
//	flock /tmp/ragpipe-test.lock go test -run XXX -bench ApplyDrain -benchtime 40x -count 5 ./qdrantstore
func BenchmarkApplyDrain(b *testing.B) {
	ctx := b.Context()
	s, c := benchCollection(b, qdranttest.Start(b), "drain")
	writes := benchWrites(256)
	var cpu time.Duration
	round := 0
	b.ReportAllocs()
	for b.Loop() {
		round++
		for i := range writes {
			w := &writes[i]
			w.DocID = fmt.Sprintf("doc-%d-%06d", round, i)
			w.First = true
			w.Points[0].ID = pipeline.PointID(w.UserID, w.DocID, 0)
		}
		start := cputimetest.Now(b)
		if err := s.Apply(ctx, c.Name, writes); err != nil {
			b.Fatal(err)
		}
		end := cputimetest.Now(b)
		cpu += end - start
		runtime.GC()
		runtime.GC()
	}
	b.ReportMetric(float64(cpu)/float64(b.N*len(writes)), "cpu-ns/point")
}
