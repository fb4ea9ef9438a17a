package qdrantstore

import (
	"context"
	"fmt"
	"sync/atomic"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// request is an encoded UpdateBatchPoints request (encodeRequest) in a
// reused buffer. The buffer goes back to the free list (requests) once its
// sender has released it and gRPC has freed every reference it took, so
// that a buffer still queued for the wire is never reused. It is sent by
// updateBatch.
type request struct {
	buf  []byte
	refs atomic.Int32
}

// maxPooledRequest bounds the buffers kept for reuse: a request of one
// very large document is left to the garbage collector.
const maxPooledRequest = 8 << 20

// maxFreeRequests bounds the buffers the free list keeps: enough for
// Parallelism requests (default 4) of each of a worker's batches in flight
// (default 4). What it keeps stays allocated for the process's life: at
// most maxFreeRequests × maxPooledRequest bytes, ~1.6 MB a buffer for
// 256-point requests of 1,024 dimensions.
const maxFreeRequests = 16

// requests is a free list of released requests. Unlike a sync.Pool,
// which every garbage collection empties (a worker's small heap is
// collected several times per batch), it keeps them; it never holds more
// than were in use at once.
var requests = make(chan *request, maxFreeRequests)

// newRequest returns an empty request, the oldest released one if any,
// held by its caller until release.
func newRequest() *request {
	var r *request
	select {
	case r = <-requests:
	default:
		r = new(request)
	}
	r.buf = r.buf[:0]
	r.refs.Store(1)
	return r
}

// release drops a reference to r, and keeps r for reuse when it was the
// last, unless r is above the size cap or the free list is full.
func (r *request) release() {
	if r.refs.Add(-1) == 0 && cap(r.buf) <= maxPooledRequest {
		select {
		case requests <- r:
		default:
		}
	}
}

// Put releases the reference gRPC took on r's buffer (see requestCodec):
// with Get, it makes r the mem.BufferPool of its own buffer.
func (r *request) Put(*[]byte) { r.release() }

// Get is never called for r's buffer; it allocates.
func (r *request) Get(n int) *[]byte {
	b := make([]byte, n)
	return &b
}

// requestCodec is the gRPC codec of updateBatch: it sends a *request's
// bytes as they are and decodes replies with gRPC's proto codec. Its empty
// name keeps the content-type of the proto codec ("application/grpc").
type requestCodec struct{}

var (
	protoCodec     = encoding.GetCodecV2(grpcproto.Name)
	sendRawRequest = grpc.ForceCodecV2(requestCodec{})
)

func (requestCodec) Marshal(v any) (mem.BufferSlice, error) {
	r, ok := v.(*request)
	if !ok {
		return nil, fmt.Errorf("qdrantstore: request codec cannot marshal %T", v)
	}
	// gRPC frees the buffer once sent, or keeps it for a replay. A buffer
	// below gRPC's pooling threshold comes back as a plain slice and is
	// never freed: r keeps this reference and is never reused.
	r.refs.Add(1)
	return mem.BufferSlice{mem.NewBuffer(&r.buf, r)}, nil
}

func (requestCodec) Unmarshal(data mem.BufferSlice, v any) error {
	return protoCodec.Unmarshal(data, v)
}

func (requestCodec) Name() string { return "" }

// updateBatch sends r, an UpdateBatchPoints request of collection, as the
// go-client's UpdateBatch does (invoke).
func (q *Store) updateBatch(ctx context.Context, collection string, r *request) error {
	var reply qdrant.UpdateBatchResponse
	return q.invoke(ctx, qdrant.Points_UpdateBatch_FullMethodName, "UpdateBatch", collection, r, &reply)
}

// scroll sends r, an encoded ScrollPoints request of collection, like the
// go-client's Scroll, and returns the points of the reply.
func (q *Store) scroll(ctx context.Context, collection string, r *request) ([]*qdrant.RetrievedPoint, error) {
	var reply qdrant.ScrollResponse
	if err := q.invoke(ctx, qdrant.Points_Scroll_FullMethodName, "Scroll", collection, r, &reply); err != nil {
		return nil, err
	}
	return reply.GetResult(), nil
}

// invoke sends r, an encoded request of collection, to method on one of
// the client's connections: through its interceptors (API key, rate-limit
// errors) and with its default call options (compression), as the
// go-client's call named name does, whose error it wraps the same way.
func (q *Store) invoke(ctx context.Context, method, name, collection string, r *request, reply any) error {
	if err := q.client.GetConnection().Invoke(ctx, method, r, reply, sendRawRequest); err != nil {
		return fmt.Errorf("%s() failed: %s: %w", name, collection, err)
	}
	return nil
}
