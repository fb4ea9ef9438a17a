package localstore

import (
	"math"
	"slices"
	"sync"

	"github.com/ragpipe/ragpipe/pipeline"
)

// posting is one point's weight for a term, in its tenant's posting list of
// that term: slot is the point's slot in the tenant. It holds no pointer, so
// that the garbage collector never scans the postings.
type posting struct {
	slot int32
	w    float32
}

// postings is a tenant's posting list of one term, held by pointer so that
// adding to it costs one map lookup.
type postings struct{ list []posting }

// kwStats are a collection's keyword statistics, over all its tenants, as
// Qdrant's idf modifier counts them: n points with a keyword vector, df[t]
// of them containing term t.
type kwStats struct {
	n  int
	df map[uint32]int32
}

// idf is the inverse document frequency of term, Qdrant's (BM25's):
// ln(1 + (N - n + 0.5) / (n + 0.5)).
func (k *kwStats) idf(term uint32) float32 {
	n, df := float64(k.n), float64(k.df[term])
	return float32(math.Log(1 + (n-df+0.5)/(df+0.5)))
}

// keywordsOf returns the keyword vector a point of c keeps: nil in a
// collection without keyword vectors; kw, checked and copied, when given;
// else one computed from text with pipeline.Keywords, so that every point
// of a keyword collection that has text can be found by its words.
func (c *coll) keywordsOf(kw *pipeline.SparseVector, text string) (*pipeline.SparseVector, error) {
	if !c.keywords {
		return nil, nil
	}
	if kw == nil || len(kw.Indices) == 0 && len(kw.Values) == 0 {
		if text == "" {
			return nil, nil
		}
		kw = pipeline.Keywords(text)
		if kw == nil || len(kw.Indices) == 0 {
			return nil, nil
		}
	}
	if err := kw.Check(); err != nil {
		return nil, err
	}
	return cloneSparse(kw), nil
}

// cloneSparse deep-copies v; nil stays nil.
func cloneSparse(v *pipeline.SparseVector) *pipeline.SparseVector {
	if v == nil {
		return nil
	}
	return &pipeline.SparseVector{Indices: slices.Clone(v.Indices), Values: slices.Clone(v.Values)}
}

// indexKeywords adds e's keyword vector to its tenant's postings and to the
// collection's statistics.
func (s *state) indexKeywords(e *entry) {
	kw := e.kw
	if kw == nil || !s.keywords {
		return
	}
	t := e.t
	e.kwPos = make([]int32, len(kw.Indices))
	s.kw.n++
	for j, term := range kw.Indices {
		p := t.post[term]
		if p == nil {
			p = new(postings)
			t.post[term] = p
		}
		e.kwPos[j] = int32(len(p.list))
		p.list = append(p.list, posting{slot: int32(e.slot), w: kw.Values[j]})
		s.kw.df[term]++
	}
}

// unindexKeywords removes e's postings, moving the last posting of each
// list into the hole, and takes e out of the statistics. e must still be in
// its slot.
func (s *state) unindexKeywords(e *entry) {
	if e.kwPos == nil {
		return
	}
	t := e.t
	s.kw.n--
	for j, term := range e.kw.Indices {
		p := t.post[term]
		i, last := e.kwPos[j], len(p.list)-1
		if int(i) != last {
			moved := p.list[last]
			p.list[i] = moved
			other := t.pts[moved.slot]
			k, _ := slices.BinarySearch(other.kw.Indices, term)
			other.kwPos[k] = i
		}
		if last == 0 {
			delete(t.post, term)
		} else {
			p.list = p.list[:last]
		}
		if s.kw.df[term]--; s.kw.df[term] == 0 {
			delete(s.kw.df, term)
		}
	}
	e.kwPos = nil
}

// reslotKeywords points e's postings at its slot, after e moved.
func (t *tenant) reslotKeywords(e *entry) {
	if e.kwPos == nil {
		return
	}
	for j, term := range e.kw.Indices {
		t.post[term].list[e.kwPos[j]].slot = int32(e.slot)
	}
}

// kwScratch accumulates the keyword scores of one search, by slot.
type kwScratch struct {
	acc     []float32
	seen    []bool
	touched []int32
}

var kwScratchPool = sync.Pool{New: func() any { return new(kwScratch) }}

// keywordSearch returns the best k of t's points sharing a term with q that
// satisfy conds and score at least threshold (when not nil), best first. A
// point's score is the sum over the query's terms of the query weight, the
// term's idf and the point's weight, as Qdrant scores a sparse vector with
// the idf modifier.
func (s *state) keywordSearch(t *tenant, q *pipeline.SparseVector, conds []cond, k int, threshold *float32) []cand {
	if q == nil || len(q.Indices) == 0 || len(t.pts) == 0 {
		return nil
	}
	sc := kwScratchPool.Get().(*kwScratch)
	defer kwScratchPool.Put(sc)
	n := len(t.pts)
	if cap(sc.acc) < n {
		sc.acc, sc.seen = make([]float32, n), make([]bool, n)
	}
	acc, seen, touched := sc.acc[:n], sc.seen[:n], sc.touched[:0]
	for i, term := range q.Indices {
		list := t.post[term]
		if list == nil {
			continue
		}
		w := q.Values[i] * s.kw.idf(term)
		for _, p := range list.list {
			if !seen[p.slot] {
				seen[p.slot] = true
				touched = append(touched, p.slot)
			}
			acc[p.slot] += w * p.w
		}
	}
	best := newBounded(k, candBetter)
	for _, slot := range touched {
		score := acc[slot]
		acc[slot], seen[slot] = 0, false
		if threshold != nil && score < *threshold || len(best.h) == best.k && score < best.h[0].key {
			continue
		}
		if e := t.pts[slot]; matchAll(conds, e.meta) {
			best.push(cand{key: score, score: score, e: e})
		}
	}
	sc.touched = touched[:0]
	return best.sorted()
}

// fuse merges the dense and keyword rankings by reciprocal rank: a point
// scores the sum over the lists holding it of weight/(pipeline.RRFK + rank),
// rank counted from 1, the keyword list weighing pipeline.KeywordWeight. It
// returns the best k scoring at least threshold (when not nil), best first,
// equal scores ordered by point id.
func fuse(k int, threshold *float32, dense, keyword []cand) []cand {
	scores := make(map[*entry]float32)
	var order []*entry
	add := func(list []cand, weight float32) {
		for rank, c := range list {
			if _, ok := scores[c.e]; !ok {
				order = append(order, c.e)
			}
			scores[c.e] += weight / float32(pipeline.RRFK+rank+1)
		}
	}
	add(dense, 1)
	add(keyword, pipeline.KeywordWeight)
	out := make([]cand, 0, len(order))
	for _, e := range order {
		if sc := scores[e]; threshold == nil || sc >= *threshold {
			out = append(out, cand{key: sc, score: sc, e: e})
		}
	}
	slices.SortFunc(out, func(a, b cand) int {
		switch {
		case a.e == b.e:
			return 0
		case candBetter(a, b):
			return -1
		}
		return 1
	})
	return out[:min(k, len(out))]
}
