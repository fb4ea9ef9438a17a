package localstore

import (
	"context"
	"fmt"
	"math"
	"slices"
	"sync"

	"gonum.org/v1/gonum/blas/blas32"

	"github.com/ragpipe/ragpipe/pipeline"
)

// parallelScanElems is the tenant size, in vector elements, from which a
// search is split over several goroutines (below it, starting them costs
// more than it saves).
const parallelScanElems = 1 << 18

// Search returns the best hits of q among q.UserID's points of collection,
// best first, ranked as q.Mode says: by the dense vector, by the keyword
// vector, or both fused by reciprocal rank (hybrid, each side taking
// pipeline.PrefetchLimit(q.TopK) candidates); ModeAuto is hybrid in a
// collection with keyword vectors for a query with keywords, else dense, so
// that a query by vector alone keeps its dense scores (see the package
// documentation for scores, thresholds and filters, which apply in every
// mode). It never returns another tenant's points. A query
// pipeline.Query.Validate refuses, a vector of other dimensions than the
// collection's, or a keyword or hybrid search of a collection without
// keyword vectors (pipeline.ErrNoKeywords) is a permanent error; an unknown
// collection wraps pipeline.ErrUnknownCollection. It holds the collection
// for reading: searches run concurrently with each other and wait only for
// the in-memory part of a write.
func (s *Store) Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error) {
	if err := q.Validate(); err != nil {
		return nil, pipeline.Permanent(fmt.Errorf("embedded search in %q: %w", collection, err))
	}
	hits := []pipeline.Hit{}
	err := s.read(ctx, collection, func(c *coll) error {
		cands, err := c.search(&q, s.cfg.SearchParallelism)
		if err != nil {
			return fmt.Errorf("embedded search in %q: %w", collection, err)
		}
		for _, h := range cands {
			hits = append(hits, pipeline.Hit{
				DocID:      h.e.doc,
				ChunkIndex: h.e.chunk,
				Score:      h.score,
				Text:       h.e.text,
				Metadata:   copyMap(h.e.meta),
				Version:    h.e.version,
			})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return hits, nil
}

// search ranks q.UserID's points for q; the caller holds c.mu for reading.
func (c *coll) search(q *pipeline.Query, workers int) ([]cand, error) {
	mode := q.ModeFor(c.keywords)
	if mode != pipeline.ModeDense && !c.keywords {
		return nil, pipeline.ErrNoKeywords
	}
	if mode != pipeline.ModeKeyword && len(q.Vector) != c.dims {
		return nil, pipeline.Permanent(fmt.Errorf("query vector of %d dimensions, collection has %d", len(q.Vector), c.dims))
	}
	t := c.st.tenants[q.UserID]
	if t == nil {
		return nil, nil
	}
	conds := conditions(q.Filter)
	switch mode {
	case pipeline.ModeDense:
		return c.scan(q.Vector, conds, q.TopK, q.ScoreThreshold).run(t, workers), nil
	case pipeline.ModeKeyword:
		return c.st.keywordSearch(t, q.Keywords, conds, q.TopK, q.ScoreThreshold), nil
	}
	limit := pipeline.PrefetchLimit(q.TopK)
	dense := c.scan(q.Vector, conds, limit, nil).run(t, workers)
	return fuse(q.TopK, q.ScoreThreshold, dense, c.st.keywordSearch(t, q.Keywords, conds, limit, nil)), nil
}

// scan prepares a dense search for the best k points satisfying conds.
func (c *coll) scan(vector []float32, conds []cond, k int, threshold *float32) *scan {
	sc := &scan{dist: c.dist, q: slices.Clone(vector), conds: conds, topK: k, threshold: threshold}
	if c.dist == pipeline.Cosine {
		normalize(sc.q)
	}
	return sc
}

// scan is one search over one tenant.
type scan struct {
	dist      pipeline.Distance
	q         []float32
	conds     []cond
	topK      int
	threshold *float32
}

// cand is a scored point. key orders candidates, higher first: the score
// for cosine and dot, the negated distance for euclid and manhattan.
type cand struct {
	key, score float32
	e          *entry
}

func candBetter(a, b cand) bool {
	if a.key != b.key {
		return a.key > b.key
	}
	return idLess(a.e.id, b.e.id)
}

// run scans t's blocks, split over up to workers goroutines, and returns the
// best candidates, best first.
func (s *scan) run(t *tenant, workers int) []cand {
	nb := len(t.blocks)
	if len(t.pts)*t.dims < parallelScanElems {
		workers = 1
	}
	workers = max(min(workers, nb), 1)
	parts := make([]*bounded[cand], workers)
	var wg sync.WaitGroup
	for w := range workers {
		lo, hi := w*nb/workers, (w+1)*nb/workers
		if w == workers-1 {
			parts[w] = s.blocks(t, lo, hi) // on this goroutine
			continue
		}
		wg.Go(func() { parts[w] = s.blocks(t, lo, hi) })
	}
	wg.Wait()
	best := parts[0]
	for _, p := range parts[1:] {
		for _, c := range p.h {
			best.push(c)
		}
	}
	return best.sorted()
}

// blocks scans t's blocks lo to hi.
func (s *scan) blocks(t *tenant, lo, hi int) *bounded[cand] {
	best := newBounded(s.topK, candBetter)
	score := kernels[s.dist]
	lowerBetter := s.dist == pipeline.Euclid || s.dist == pipeline.Manhattan
	dims := t.dims
	for b := lo; b < hi; b++ {
		block := t.blocks[b]
		base := b * blockPoints
		for i := 0; i*dims < len(block); i++ {
			e := t.pts[base+i]
			if !matchAll(s.conds, e.meta) {
				continue
			}
			sc := score(s.q, block[i*dims:(i+1)*dims])
			key := sc
			if lowerBetter {
				key = -sc
			}
			if s.threshold != nil && (!lowerBetter && sc < *s.threshold || lowerBetter && sc > *s.threshold) {
				continue
			}
			if len(best.h) == best.k && key < best.h[0].key {
				continue // cheaper than push for the usual loser
			}
			best.push(cand{key: key, score: sc, e: e})
		}
	}
	return best
}

// kernels score a query against a stored vector, as Qdrant does: the dot
// product for cosine (both vectors normalised) and dot, the distance for
// euclid and manhattan.
var kernels = map[pipeline.Distance]func(q, v []float32) float32{
	pipeline.Cosine:    dotProduct,
	pipeline.Dot:       dotProduct,
	pipeline.Euclid:    euclidDistance,
	pipeline.Manhattan: manhattanDistance,
}

func dotProduct(q, v []float32) float32 {
	return blas32.Dot(blas32.Vector{N: len(q), Inc: 1, Data: q}, blas32.Vector{N: len(v), Inc: 1, Data: v})
}

// euclidDistance and manhattanDistance are plain Go, unrolled over four
// accumulators: gonum's float32 BLAS has no distance kernels.
func euclidDistance(q, v []float32) float32 {
	v = v[:len(q)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(q); i += 4 {
		d0, d1, d2, d3 := q[i]-v[i], q[i+1]-v[i+1], q[i+2]-v[i+2], q[i+3]-v[i+3]
		s0 += d0 * d0
		s1 += d1 * d1
		s2 += d2 * d2
		s3 += d3 * d3
	}
	for ; i < len(q); i++ {
		d := q[i] - v[i]
		s0 += d * d
	}
	return float32(math.Sqrt(float64(s0 + s1 + s2 + s3)))
}

func manhattanDistance(q, v []float32) float32 {
	v = v[:len(q)]
	abs := func(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(q); i += 4 {
		s0 += abs(q[i] - v[i])
		s1 += abs(q[i+1] - v[i+1])
		s2 += abs(q[i+2] - v[i+2])
		s3 += abs(q[i+3] - v[i+3])
	}
	for ; i < len(q); i++ {
		s0 += abs(q[i] - v[i])
	}
	return s0 + s1 + s2 + s3
}

// cond is one metadata condition: the value of key must match one of vals
// (string, bool, int64 or float64, as pipeline.Query.Validate allows).
type cond struct {
	key  string
	vals []any
}

// conditions turns a validated search filter into conditions on metadata.
func conditions(f map[string][]any) []cond {
	conds := make([]cond, 0, len(f))
	for key, vals := range f {
		conds = append(conds, cond{key: key, vals: vals})
	}
	return conds
}

// matchAll reports whether meta satisfies every condition. Metadata is
// flat: an array matches when one of its elements does, as in Qdrant.
func matchAll(conds []cond, meta map[string]any) bool {
	for i := range conds {
		v, ok := meta[conds[i].key]
		if !ok {
			return false
		}
		if list, isList := v.([]any); isList {
			if !slices.ContainsFunc(list, func(x any) bool { return matchValue(x, conds[i].vals) }) {
				return false
			}
		} else if !matchValue(v, conds[i].vals) {
			return false
		}
	}
	return true
}

// matchValue compares a stored value with filter values as Qdrant's match
// (strings, bools, integers) and range (floats) conditions do.
func matchValue(stored any, vals []any) bool {
	for _, want := range vals {
		switch w := want.(type) {
		case string:
			if s, ok := stored.(string); ok && s == w {
				return true
			}
		case bool:
			if b, ok := stored.(bool); ok && b == w {
				return true
			}
		case int64:
			if i, ok := stored.(int64); ok && i == w {
				return true
			}
		case float64:
			switch s := stored.(type) {
			case int64:
				if float64(s) == w {
					return true
				}
			case float64:
				if s == w {
					return true
				}
			}
		}
	}
	return false
}
