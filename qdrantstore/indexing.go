package qdrantstore

import (
	"context"
	"sync"

	"github.com/qdrant/go-client/qdrant"
)

// DefaultIndexingThreshold is Qdrant's default indexing_threshold (KB of
// vectors in a segment before it gets an HNSW index), which an IndexingDeferral
// restores.
const DefaultIndexingThreshold = 10000

// IndexingDeferral switches the collections a Qdrant sink writes to
// deferred indexing while a large backlog drains, and back when it has
// drained.
//
// Building HNSW graphs costs Qdrant far more than storing the points, and
// while a backlog drains it rebuilds them as segments grow and merge. With
// indexing deferred (indexing_threshold 0) the points are stored in plain
// segments, which searches scan with the tenant's payload index, and the
// graphs are built once the threshold is restored (figures in
// docs/PERFORMANCE.md). The cost: while indexing is deferred, searches
// of a large tenant scan its recent points instead of walking a graph.
//
// Enabling it gives ragpipe the collections' indexing_threshold: restoring
// sets Qdrant's default. It is safe for concurrent use; several workers
// observing the same backlog make the same, idempotent changes.
type IndexingDeferral struct {
	q            *Store
	above, below uint64

	mu       sync.Mutex
	deferred map[string]bool // collection -> indexing deferred, as last set or read
	observed int             // observations since deferred was last forgotten
}

// reassertEvery is how many observations the deferral trusts what it last
// set or read; then it reads the collections' state again, in case another
// worker or an operator changed it meanwhile.
const reassertEvery = 12

// current reports whether Qdrant has collection's indexing deferred.
func (d *IndexingDeferral) current(ctx context.Context, collection string) (bool, error) {
	var threshold uint64
	err := d.q.call(ctx, func(ctx context.Context) error {
		info, err := d.q.client.GetCollectionInfo(ctx, collection)
		threshold = info.GetConfig().GetOptimizerConfig().GetIndexingThreshold()
		return err
	})
	return threshold == 0, err
}

// DeferIndexing returns the deferral that defers indexing while more than
// above events wait and restores it once at most above/10 wait.
func (q *Store) DeferIndexing(above uint64) *IndexingDeferral {
	return &IndexingDeferral{q: q, above: above, below: above / 10, deferred: make(map[string]bool)}
}

// Observe takes the number of events waiting and sets the indexing of every
// collection the sink has written or ensured accordingly: deferred above the
// high mark, restored at or below the low mark (also a collection a worker
// that died left deferred). Between the marks nothing changes; a collection
// seen for the first time there keeps the state Qdrant reports, so a worker
// joining a drain does not undo another's deferral. Failures are logged and
// retried at the next observation.
func (d *IndexingDeferral) Observe(ctx context.Context, pending uint64) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.observed++; d.observed > reassertEvery {
		d.observed = 0
		for name := range d.deferred {
			if deferred, err := d.current(ctx, name); err == nil {
				d.deferred[name] = deferred
			}
		}
	}
	d.q.known.Range(func(key, _ any) bool {
		name := key.(string)
		was, seen := d.deferred[name]
		var want bool
		switch {
		case pending > d.above:
			want = true
		case pending <= d.below:
			want = false
		case seen:
			return true
		default:
			if deferred, err := d.current(ctx, name); err == nil {
				d.deferred[name] = deferred
			}
			return true
		}
		if seen && want == was {
			return true
		}
		threshold := uint64(DefaultIndexingThreshold)
		if want {
			threshold = 0
		}
		err := d.q.call(ctx, func(ctx context.Context) error {
			return d.q.client.UpdateCollection(ctx, &qdrant.UpdateCollection{
				CollectionName:   name,
				OptimizersConfig: &qdrant.OptimizersConfigDiff{IndexingThreshold: qdrant.PtrOf(threshold)},
			})
		})
		if err != nil {
			d.q.log.Warn().Err(err).Str("collection", name).Bool("defer", want).Msg("cannot change the collection's indexing; trying again later")
			return true
		}
		d.deferred[name] = want
		switch {
		case want:
			d.q.log.Info().Str("collection", name).Uint64("pending", pending).
				Msg("backlog: HNSW indexing of the collection deferred until it drains (RAGPIPE_DEFER_INDEXING)")
		case seen:
			d.q.log.Info().Str("collection", name).Uint64("pending", pending).
				Msg("backlog drained: HNSW indexing of the collection resumed")
		}
		return true
	})
}
