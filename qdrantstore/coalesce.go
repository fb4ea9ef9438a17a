package qdrantstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
)

// Searches of one collection are coalesced under load: while
// Config.QueriesInFlight requests of its searches are in flight, further
// searches wait, and when one of those requests returns, the waiting ones
// (at most maxBatch) go together as one QueryBatch. Qdrant spends less on
// each query of a batch than on a request of its own, and so does the
// gRPC client; a search that finds fewer requests in flight is sent at once,
// alone, as without coalescing. A batch that fails sends each of its
// searches alone, so that one search's error (an invalid vector, say) is
// its own.

// maxBatch is the most searches sent as one QueryBatch.
const maxBatch = 16

// errAlone tells a waiting search that its batch failed: it sends its
// query alone.
var errAlone = errors.New("qdrantstore: batch failed, query alone")

// coalescer holds the requests in flight and the searches waiting of one
// collection.
type coalescer struct {
	mu       sync.Mutex
	inFlight int
	waiting  []*waiter
}

// waiter is a search waiting for the next batch of its collection.
type waiter struct {
	ctx   context.Context // the search's, for its deadline
	req   *qdrant.QueryPoints
	reply *queryReply
	err   error
	done  chan struct{} // closed once reply or err is set
}

// coalescer returns the coalescer of collection.
func (q *Store) coalescer(collection string) *coalescer {
	if c, ok := q.coalescers.Load(collection); ok {
		return c.(*coalescer)
	}
	c, _ := q.coalescers.LoadOrStore(collection, &coalescer{})
	return c.(*coalescer)
}

// queryCoalesced sends req, a search of collection, alone when fewer than
// Config.QueriesInFlight of the collection's requests are in flight, or else
// in the batch that leaves when one of them returns.
func (q *Store) queryCoalesced(ctx context.Context, collection string, req *qdrant.QueryPoints) (*queryReply, error) {
	if q.cfg.QueriesInFlight < 0 {
		return q.query(ctx, req)
	}
	c := q.coalescer(collection)
	c.mu.Lock()
	if c.inFlight < q.cfg.QueriesInFlight {
		c.inFlight++
		c.mu.Unlock()
		reply, err := q.query(ctx, req)
		q.next(c, collection)
		return reply, err
	}
	w := &waiter{ctx: ctx, req: req, done: make(chan struct{})}
	c.waiting = append(c.waiting, w)
	c.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done(): // the batch, if it leaves, answers the others
		return nil, ctx.Err()
	}
	if errors.Is(w.err, errAlone) {
		return q.query(ctx, req)
	}
	return w.reply, w.err
}

// next is called when one of c's requests has returned: it sends the
// searches waiting, if any, as a batch, which keeps the request's place in
// flight; otherwise the place is free.
func (q *Store) next(c *coalescer, collection string) {
	c.mu.Lock()
	n := min(len(c.waiting), maxBatch)
	if n == 0 {
		c.inFlight--
		c.mu.Unlock()
		return
	}
	batch := slices.Clone(c.waiting[:n])
	c.waiting = slices.Delete(c.waiting, 0, n)
	c.mu.Unlock()
	go q.sendBatch(c, collection, batch)
}

// sendBatch sends the queries of batch whose searches still wait as one
// QueryBatch and hands each its reply, then calls next.
func (q *Store) sendBatch(c *coalescer, collection string, batch []*waiter) {
	defer q.next(c, collection)
	live := batch[:0]
	for _, w := range batch {
		if w.ctx.Err() == nil {
			live = append(live, w)
		}
	}
	switch len(live) {
	case 0:
		return
	case 1:
		w := live[0]
		w.reply, w.err = q.query(w.ctx, w.req)
		close(w.done)
		return
	}
	// The batch lives as long as its last search may wait; it is not
	// cancelled with the first search to give up.
	deadline, ctx := time.Time{}, context.WithoutCancel(live[0].ctx)
	for _, w := range live {
		if d, ok := w.ctx.Deadline(); ok && d.After(deadline) {
			deadline = d
		}
	}
	if !deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	replies, err := q.queryBatch(ctx, collection, live)
	for i, w := range live {
		if err != nil {
			w.err = errAlone
		} else {
			w.reply = &replies[i]
		}
		close(w.done)
	}
}

// queryBatch sends the queries of batch, all of collection, as one
// QueryBatch and returns their replies in order.
func (q *Store) queryBatch(ctx context.Context, collection string, batch []*waiter) (batchReply, error) {
	req := &qdrant.QueryBatchPoints{CollectionName: collection, ReadConsistency: q.reading,
		QueryPoints: make([]*qdrant.QueryPoints, len(batch))}
	for i, w := range batch {
		req.QueryPoints[i] = w.req
	}
	var reply batchReply
	err := q.client.GetConnection().Invoke(ctx, qdrant.Points_QueryBatch_FullMethodName, req, &reply,
		grpc.StaticMethod(), decodeQueryReply)
	if err == nil && len(reply) != len(batch) {
		err = fmt.Errorf("%d results for %d queries", len(reply), len(batch))
	}
	if err != nil {
		return nil, fmt.Errorf("QueryBatch() failed: %s: %w", collection, err)
	}
	return reply, nil
}
