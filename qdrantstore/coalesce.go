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
	"google.golang.org/grpc/codes"
)

// Searches of one collection are coalesced under load: while
// Config.QueriesInFlight requests of its searches are in flight, further
// searches wait, and when one of those requests returns, the waiting ones
// go together as one QueryBatch. Qdrant spends less on each query of a
// batch than on a request of its own, and so does the gRPC client; a search
// that finds fewer requests in flight is sent at once, alone, as without
// coalescing. A batch that fails for a reason one search may cause (an
// invalid vector, say) sends each of its searches alone, outside the count
// in flight, so that the error is that search's own; a failure of the
// collection or of Qdrant is every search's.

// A batch holds at most maxBatch searches and maxBatchHits hits in all
// (their top_k; a search asking for more goes alone), which keeps its reply
// under gRPC's 4 MiB limit on a message received unless hits are large.
const (
	maxBatch     = 16
	maxBatchHits = 256
)

// errAlone tells a waiting search that its batch failed in a way that may
// be one search's: it sends its query alone.
var errAlone = errors.New("qdrantstore: batch failed, query alone")

// coalescer counts the requests in flight of one collection's searches and
// holds the searches waiting.
type coalescer struct {
	mu       sync.Mutex
	inFlight int
	waiting  []*waiter
}

// waiter is a search waiting for the next batch of its collection.
type waiter struct {
	ctx   context.Context // the attempt's: its deadline bounds the batch; once done, the search has left
	req   *qdrant.QueryPoints
	reply *queryReply
	err   error
	done  chan struct{} // closed once reply or err is set
}

// coalescer returns the coalescer of collection. A search that finds the
// collection missing forgets it (forgetNames), so that names that do not
// exist hold no memory; a search of the name after that makes another.
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
		defer q.next(c, collection)
		return q.query(ctx, req)
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

// next gives the place of a request of c that has returned to the searches
// waiting, sent as one batch, or frees it when none waits.
func (q *Store) next(c *coalescer, collection string) {
	c.mu.Lock()
	var batch []*waiter
	hits, taken := 0, 0
	for _, w := range c.waiting {
		if len(batch) == maxBatch || len(batch) > 0 && hits+int(w.req.GetLimit()) > maxBatchHits {
			break
		}
		taken++
		if w.ctx.Err() == nil { // a search that has left is dropped
			batch = append(batch, w)
			hits += int(w.req.GetLimit())
		}
	}
	clear(c.waiting[:taken])
	c.waiting = c.waiting[taken:]
	if len(batch) == 0 {
		c.inFlight--
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	go q.sendBatch(c, collection, batch)
}

// sendBatch sends the queries of batch whose searches still wait as one
// QueryBatch (a batch of one as a plain Query) and hands each search its
// reply, then calls next. Like every request it holds the store open for
// reading while it runs: a closed or closing store answers ErrClosed.
func (q *Store) sendBatch(c *coalescer, collection string, batch []*waiter) {
	defer q.next(c, collection)
	batch = slices.DeleteFunc(batch, func(w *waiter) bool { return w.ctx.Err() != nil })
	if len(batch) == 0 {
		return
	}
	// TryRLock: Close, waiting for the lock, waits for these searches.
	if !q.mu.TryRLock() {
		answer(batch, ErrClosed)
		return
	}
	defer q.mu.RUnlock()
	if q.closed {
		answer(batch, ErrClosed)
		return
	}
	if len(batch) == 1 {
		w := batch[0]
		w.reply, w.err = q.query(w.ctx, w.req)
		close(w.done)
		return
	}
	// The batch lasts as long as its last search may wait: it is not
	// cancelled with the first to give up. It carries the first search's
	// context values.
	ctx := context.WithoutCancel(batch[0].ctx)
	if deadline, ok := latestDeadline(batch); ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, deadline)
		defer cancel()
	}
	replies, err := q.queryBatch(ctx, collection, batch)
	switch {
	case err == nil:
		for i, w := range batch {
			w.reply = &replies[i]
			close(w.done)
		}
		return
	case everySearchs(err):
	case isCode(err, codes.InvalidArgument) || isCode(err, codes.OutOfRange):
		err = errAlone
	default: // may be one search's, but not a search Qdrant refused: worth a line
		q.log.Warn().Err(q.redact(err)).Str("collection", collection).Int("searches", len(batch)).
			Msg("qdrant batch of searches failed; each is sent alone")
		err = errAlone
	}
	answer(batch, err)
}

// answer hands err to each search of batch.
func answer(batch []*waiter, err error) {
	for _, w := range batch {
		w.err = err
		close(w.done)
	}
}

// latestDeadline is the latest deadline of the searches of batch, or false
// when one has none (every search through call has one).
func latestDeadline(batch []*waiter) (time.Time, bool) {
	var latest time.Time
	for _, w := range batch {
		d, ok := w.ctx.Deadline()
		if !ok {
			return time.Time{}, false
		}
		if d.After(latest) {
			latest = d
		}
	}
	return latest, true
}

// everySearchs reports whether a batch's failure is every search's own:
// the collection is missing, or Qdrant is unavailable, rate-limited or late.
// (A plain ResourceExhausted may be the client's refusal of a reply too
// large, which the searches alone avoid.)
func everySearchs(err error) bool {
	var limited *qdrant.QdrantResourceExhaustedError
	return errors.As(err, &limited) || errors.Is(err, context.DeadlineExceeded) ||
		isCode(err, codes.NotFound) || isCode(err, codes.Unavailable) || isCode(err, codes.DeadlineExceeded)
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
