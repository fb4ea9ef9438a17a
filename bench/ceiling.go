package bench

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// The ceiling's grid: the batch sizes and parallelism around which raw
// upserts of 1024-dimension points peak on small machines (256-1024 points,
// 2-4 requests in flight), plus 1 in flight as the baseline.
var (
	ceilingBatches  = []int{256, 512, 1024}
	ceilingParallel = []int{1, 2, 4}
)

// ceiling upserts the documents' points with every batch size and
// parallelism of the grid, each trial into a fresh collection named after
// name, and keeps the fastest trial whose exact count matched.
func (r *runner) ceiling(ctx context.Context, name string) (*Ceiling, error) {
	res := &Ceiling{Points: len(r.documents())}
	best := -1 // index in res.Trials
	for _, batch := range ceilingBatches {
		for _, par := range ceilingParallel {
			t, err := r.trial(ctx, fmt.Sprintf("%s_%d", name, len(res.Trials)), batch, par)
			if err != nil {
				return res, fmt.Errorf("batch %d, %d parallel: %w", batch, par, err)
			}
			r.progressf("%s: batch %d, %d parallel: %.0f points/s, exact count %d", name, batch, par, t.PointsPerS, t.Stored)
			res.Trials = append(res.Trials, t)
			if t.CountOK && (best < 0 || t.PointsPerS > res.Trials[best].PointsPerS) {
				best = len(res.Trials) - 1
			}
		}
	}
	if best < 0 {
		return res, errors.New("no trial stored exactly the points it upserted")
	}
	res.Best = new(res.Trials[best])
	return res, nil
}

// trial upserts the documents' points in batches of batch, par requests at
// a time, into a fresh collection created as ragpipe creates its own, and
// counts them.
func (r *runner) trial(ctx context.Context, name string, batch, par int) (Trial, error) {
	t := Trial{Batch: batch, Parallel: par}
	collection := r.collection(name)
	defer r.cleanup(ctx, collection)
	if err := r.cfg.Store.EnsureCollection(ctx, pipeline.Collection{Name: collection, Dims: Dims, Distance: pipeline.Cosine}, true); err != nil {
		return t, fmt.Errorf("create collection: %w", err)
	}
	points, err := r.ceilingPoints(ctx, collection)
	if err != nil {
		return t, err
	}
	batches := (len(points) + batch - 1) / batch
	cpu := startCPU(r.cfg.QdrantPID, 0)
	start := time.Now()
	err = parallel(ctx, par, batches, func(ctx context.Context, i int) error {
		_, err := r.qc.Upsert(ctx, &qdrant.UpsertPoints{
			CollectionName: collection,
			Wait:           qdrant.PtrOf(true),
			Points:         points[i*batch : min((i+1)*batch, len(points))],
		})
		if err != nil {
			return fmt.Errorf("upsert: %w", err)
		}
		return nil
	})
	elapsed := time.Since(start)
	t.CPU = cpu.stop()
	if err != nil {
		return t, err
	}
	if q := t.CPU.Qdrant; q != nil {
		t.QdrantUsPerPoint = new(round(*q/float64(len(points))*1e6, 1))
	}
	t.Seconds = round(elapsed.Seconds(), 4)
	t.PointsPerS = round(float64(len(points))/elapsed.Seconds(), 1)
	if t.Stored, err = r.count(ctx, collection); err != nil {
		return t, err
	}
	t.CountOK = t.Stored == uint64(len(points))
	return t, nil
}

// ceilingPoints returns the documents' points as ragpipe stores them in
// collection: with their keyword vectors when it has a sparse vector (the
// one ragpipe creates for keywords), made on first use.
func (r *runner) ceilingPoints(ctx context.Context, collection string) ([]*qdrant.PointStruct, error) {
	info, err := r.qc.GetCollectionInfo(ctx, collection)
	if err != nil {
		return nil, fmt.Errorf("collection %s: %w", collection, err)
	}
	var sparse string
	for name := range info.GetConfig().GetParams().GetSparseVectorsConfig().GetMap() {
		sparse = name
	}
	if r.points == nil || r.pointsSparse != sparse {
		docs := r.documents()
		r.points, r.pointsSparse = make([]*qdrant.PointStruct, len(docs)), sparse
		for i := range docs {
			r.points[i] = docs[i].point(sparse)
		}
	}
	return r.points, nil
}
