package qdrantstore

import (
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/mem"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestRequestReuse checks that a request is kept for reuse once its
// sender and gRPC released it, however many garbage collections ran
// since, never while gRPC holds it, and not when it is above the size cap;
// and that the free list is bounded.
func TestRequestReuse(t *testing.T) {
	drain := func() (free []*request) { // whatever earlier tests released
		for {
			select {
			case r := <-requests:
				free = append(free, r)
			default:
				return free
			}
		}
	}
	drain()

	r := newRequest()
	r.buf = append(r.buf, make([]byte, 1<<20)...)
	wire, err := requestCodec{}.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	r.release()
	if other := newRequest(); other == r {
		t.Fatal("request reused while gRPC holds its buffer")
	}
	wire.Free()
	runtime.GC()
	runtime.GC()
	if kept := slices.Contains(drain(), r); !kept || cap(r.buf) < 1<<20 {
		t.Fatalf("released request not kept after two collections (kept %v, cap %d)", kept, cap(r.buf))
	}

	big := newRequest()
	big.buf = make([]byte, 0, maxPooledRequest+1)
	big.release()
	if slices.Contains(drain(), big) {
		t.Fatal("request above the size cap kept")
	}

	for range maxFreeRequests + 3 {
		r := new(request)
		r.refs.Store(1)
		r.release()
	}
	if n := len(drain()); n != maxFreeRequests {
		t.Fatalf("free list of %d requests, want %d", n, maxFreeRequests)
	}
}

// BenchmarkRequestReuse measures, per point, encoding UpdateBatch requests
// of 256 points (benchWrites, with the delete of older points) the way a
// worker's drain does: four requests in flight, each buffer handed to the
// codec as gRPC gets it and released by gRPC, then by its sender; with gc=N,
// N garbage collections run between a request's release and the next
// request, as in a worker whose small heap is collected several times per
// batch. B/op is what the requests allocate anew; cpu-ns/point counts the
// requests' CPU time alone, not the collections'.
//
//	go test -run XXX -bench RequestReuse -benchmem -count 5 ./qdrantstore
func BenchmarkRequestReuse(b *testing.B) {
	q := &Store{ordering: &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Medium}}
	c := pipeline.Collection{Name: "bench", Dims: 1024, Keywords: true}
	writes := benchWrites(256)
	units := costUnits(b, q, writes, c)
	for _, gcs := range []int{0, 2} {
		b.Run(fmt.Sprintf("gc=%d", gcs), func(b *testing.B) {
			type sent struct {
				r    *request
				wire mem.BufferSlice
			}
			var inFlight []sent
			done := func(s sent) {
				s.wire.Free() // gRPC has written the request
				s.r.release() // its sender has the reply
			}
			b.ReportAllocs()
			var cpu time.Duration
			for b.Loop() {
				start := cputimetest.Now(b)
				r := newRequest()
				var ok bool
				if r.buf, ok = encodeRequest(r.buf, c.Name, q.ordering, units, true); !ok {
					b.Fatal("no request")
				}
				wire, err := requestCodec{}.Marshal(r)
				if err != nil {
					b.Fatal(err)
				}
				inFlight = append(inFlight, sent{r, wire})
				if len(inFlight) == 4 {
					done(inFlight[0])
					inFlight = append(inFlight[:0], inFlight[1:]...)
				}
				end := cputimetest.Now(b)
				cpu += end - start
				for range gcs {
					runtime.GC()
				}
			}
			for _, s := range inFlight {
				done(s)
			}
			b.ReportMetric(float64(cpu)/float64(b.N*len(writes)), "cpu-ns/point")
		})
	}
}
