package qdrantstore

import (
	"context"
	"net"
	"os"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// BenchmarkConnSend prints, per set of gRPC dial options, the CPU time of
// this process (Qdrant is another) per UpdateBatch request of 256 points
// (benchWrites, with the delete of older points, as Apply sends it), and
// the write and read calls on the connection per request; the median of
// the rounds, the sets alternated; then the CPU time of Apply's read
// before a request of these points (nothingStored). With RAGPIPE_CONN_SEND=missing the
// requests name a collection that does not exist: Qdrant reads each one
// whole and refuses it, without the work of storing its points, so that
// the rounds are quicker and the process idles less between requests.
// Once whatever b.N:
//
//	flock /tmp/ragpipe-test.lock go test -run XXX -bench ConnSend -benchtime 1x ./qdrantstore
func BenchmarkConnSend(b *testing.B) {
	ctx := b.Context()
	node := qdranttest.Start(b)
	s, c := benchCollection(b, node, "send")
	writes := benchWrites(256)
	units := costUnits(b, s, writes, c)
	target := c.Name
	if os.Getenv("RAGPIPE_CONN_SEND") == "missing" {
		target = "missing"
	}
	body, _ := encodeRequest(nil, target, s.ordering, units, true)
	b.Logf("request of %d bytes", len(body))

	sets := []struct {
		name string
		opts []grpc.DialOption
	}{
		{"grpc default", nil},
		{"write buffer 256K", []grpc.DialOption{grpc.WithWriteBufferSize(256 << 10)}},
		{"write buffer 512K (New)", []grpc.DialOption{grpc.WithWriteBufferSize(writeBufferSize)}},
		{"write buffer 1M", []grpc.DialOption{grpc.WithWriteBufferSize(1 << 20)}},
		{"write buffer 0", []grpc.DialOption{grpc.WithWriteBufferSize(0)}},
		{"read buffer 256K", []grpc.DialOption{grpc.WithReadBufferSize(256 << 10)}},
		{"windows 1M", []grpc.DialOption{grpc.WithInitialWindowSize(1 << 20), grpc.WithInitialConnWindowSize(1 << 20)}},
		{"shared write buffer", []grpc.DialOption{grpc.WithSharedWriteBuffer(true)}},
	}
	type conn struct {
		store, counted *Store // the second counts its connection's calls
		writes, reads  atomic.Int64
		cpu, sys       []float64
	}
	client := func(opts []grpc.DialOption) *Store {
		cl, err := qdrant.NewClient(&qdrant.Config{Host: "127.0.0.1", Port: node.GRPCPort(), PoolSize: 1,
			GrpcOptions: opts, SkipCompatibilityCheck: true})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = cl.Close() })
		return &Store{client: cl}
	}
	conns := make([]*conn, len(sets))
	for i, set := range sets {
		cn := &conn{store: client(set.opts)}
		dial := func(ctx context.Context, addr string) (net.Conn, error) {
			nc, err := (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			return &countingConn{Conn: nc, writes: &cn.writes, reads: &cn.reads}, err
		}
		cn.counted = client(append(slices.Clip(set.opts), grpc.WithContextDialer(dial)))
		conns[i] = cn
	}
	send := func(q *Store) {
		r := newRequest()
		r.buf = append(r.buf, body...)
		if err := q.updateBatch(ctx, target, r); err != nil && (target == c.Name || !isCode(err, codes.NotFound)) {
			b.Fatal(err)
		}
		r.release()
	}
	const counted = 10
	for _, cn := range conns {
		for range 3 {
			send(cn.store)
			send(cn.counted)
		}
		cn.writes.Store(0)
		cn.reads.Store(0)
		for range counted {
			send(cn.counted)
		}
	}
	rounds, perRound := 15, 12
	if target != c.Name {
		rounds, perRound = 25, 40
	}
	for range rounds {
		for _, cn := range conns {
			start, startSys := cputimetest.NowSystem(b)
			for range perRound {
				send(cn.store)
			}
			end, endSys := cputimetest.NowSystem(b)
			cn.cpu = append(cn.cpu, float64(end-start)/float64(perRound)/float64(time.Microsecond))
			cn.sys = append(cn.sys, float64(endSys-startSys)/float64(perRound)/float64(time.Microsecond))
		}
	}
	// Apply's read before a request (nothingStored), on the store's
	// connections, for comparison.
	var reads []float64
	for range rounds {
		start := cputimetest.Now(b)
		for range perRound {
			s.nothingStored(ctx, c.Name, units)
		}
		end := cputimetest.Now(b)
		reads = append(reads, float64(end-start)/float64(perRound)/float64(time.Microsecond))
	}
	slices.Sort(reads)
	b.Logf("%-24s %6.0f µs CPU per read (min %.0f, max %.0f)", "nothingStored", reads[len(reads)/2], reads[0], reads[len(reads)-1])
	for i, cn := range conns {
		slices.Sort(cn.cpu)
		slices.Sort(cn.sys)
		b.Logf("%-24s %6.0f µs CPU per request (min %.0f, max %.0f; system %.0f), %5.1f writes, %5.1f reads", sets[i].name,
			cn.cpu[len(cn.cpu)/2], cn.cpu[0], cn.cpu[len(cn.cpu)-1], cn.sys[len(cn.sys)/2],
			float64(cn.writes.Load())/counted, float64(cn.reads.Load())/counted)
	}
}

// benchCollection returns a store on node and its new collection name,
// shaped as the bench's (1,024 dimensions, keyword vectors, cosine).
func benchCollection(b *testing.B, node *qdranttest.Node, name string) (*Store, pipeline.Collection) {
	b.Helper()
	s, err := New(b.Context(), Config{Host: "127.0.0.1", Port: node.GRPCPort()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Close() })
	c := pipeline.Collection{Name: name, Dims: 1024, Keywords: true, Distance: pipeline.Cosine}
	if err := s.EnsureCollection(b.Context(), c, true); err != nil {
		b.Fatal(err)
	}
	return s, c
}

// countingConn counts the Write and Read calls on a connection.
type countingConn struct {
	net.Conn
	writes, reads *atomic.Int64
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

func (c *countingConn) Read(p []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(p)
}
