package localstore

import (
	"fmt"
	"math"

	"github.com/google/uuid"

	"github.com/ragpipe/ragpipe/pipeline"
)

// blockPoints is how many vectors one block of a tenant holds: large enough
// to scan contiguously, small enough that growing a tenant never copies more
// than one block.
const blockPoints = 1024

// payload is what the embedded store keeps of a point besides its vector.
type payload struct {
	id      uuid.UUID
	user    string
	doc     string
	chunk   int
	count   int
	text    string
	meta    map[string]any // plain values, as pipeline.PlainMetadata returns them; never nil
	version uint64
	hash    string                 // pipeline.Point.TextHash; empty when none
	kw      *pipeline.SparseVector // keyword vector; nil when none
}

// pointIn is a validated point on its way into the store.
type pointIn struct {
	payload
	vec []float32 // normalised for cosine collections
}

// writeIn is a validated pipeline.DocWrite.
type writeIn struct {
	user, doc string
	version   uint64
	points    []pointIn
}

// pruneIn is a validated pipeline.DocVersion.
type pruneIn struct {
	user, doc string
	version   uint64
}

// entry is a stored point: its payload and where its vector lies.
type entry struct {
	payload
	t    *tenant
	slot int
	// kwPos holds, for each term of kw, the position of the point's posting
	// in its tenant's list of that term; nil while kw is not indexed.
	kwPos []int32
}

// tenant holds one user's points, vectors contiguous in blocks.
type tenant struct {
	id     string
	dims   int
	blocks [][]float32 // blocks[i] holds slots i*blockPoints...; only the last is partly filled
	pts    []*entry    // by slot
	docs   map[string][]*entry
	post   map[uint32]*postings // the keyword index: postings by term
}

// vec is the vector in slot.
func (t *tenant) vec(slot int) []float32 {
	b := t.blocks[slot/blockPoints]
	off := (slot % blockPoints) * t.dims
	return b[off : off+t.dims : off+t.dims]
}

// add appends e with vector v.
func (t *tenant) add(e *entry, v []float32) {
	e.t, e.slot = t, len(t.pts)
	if e.slot%blockPoints == 0 {
		t.blocks = append(t.blocks, nil)
	}
	last := &t.blocks[len(t.blocks)-1]
	if len(*last)+t.dims > cap(*last) {
		// Grow by doubling, but never beyond one block.
		grown := make([]float32, len(*last), min(max(2*cap(*last), 4*t.dims), blockPoints*t.dims))
		copy(grown, *last)
		*last = grown
	}
	*last = append(*last, v...)
	t.pts = append(t.pts, e)
	t.docs[e.doc] = append(t.docs[e.doc], e)
}

// remove drops e and its vector, moving the last one into its slot.
func (t *tenant) remove(e *entry) {
	last := len(t.pts) - 1
	if e.slot != last {
		moved := t.pts[last]
		copy(t.vec(e.slot), t.vec(last))
		t.pts[e.slot], moved.slot = moved, e.slot
		t.reslotKeywords(moved)
	}
	t.pts[last] = nil
	t.pts = t.pts[:last]
	lb := &t.blocks[len(t.blocks)-1]
	*lb = (*lb)[:len(*lb)-t.dims]
	if len(*lb) == 0 {
		*lb = nil
		t.blocks = t.blocks[:len(t.blocks)-1]
	}
	t.unindex(e)
	e.t = nil
}

// unindex removes e from its document's list.
func (t *tenant) unindex(e *entry) {
	list := t.docs[e.doc]
	for i, x := range list {
		if x == e {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(t.docs, e.doc)
	} else {
		t.docs[e.doc] = list
	}
}

// state is a collection's content in memory.
type state struct {
	dims    int
	points  map[uuid.UUID]*entry
	tenants map[string]*tenant
	kw      kwStats // keyword statistics, kept only when keywords is set
	// keywords says whether the collection stores keyword vectors.
	keywords bool
}

func newState(dims int, keywords bool) *state {
	return &state{
		dims: dims, points: make(map[uuid.UUID]*entry), tenants: make(map[string]*tenant),
		kw: kwStats{df: make(map[uint32]int32)}, keywords: keywords,
	}
}

// put stores in. With cond, an existing point whose version is above limit
// is left alone (Qdrant's update_filter version <= limit); a missing point is
// always inserted.
func (s *state) put(in *pointIn, cond bool, limit uint64) {
	if e := s.points[in.id]; e != nil {
		if cond && e.version > limit {
			return
		}
		if e.user == in.user {
			t := e.t
			if e.doc != in.doc {
				t.unindex(e)
				t.docs[in.doc] = append(t.docs[in.doc], e)
			}
			s.unindexKeywords(e)
			e.payload = in.payload
			s.indexKeywords(e)
			copy(t.vec(e.slot), in.vec)
			return
		}
		s.remove(e) // the id moves to another tenant
	}
	t := s.tenants[in.user]
	if t == nil {
		t = &tenant{id: in.user, dims: s.dims, docs: make(map[string][]*entry), post: make(map[uint32]*postings)}
		s.tenants[in.user] = t
	}
	e := &entry{payload: in.payload}
	t.add(e, in.vec)
	s.indexKeywords(e)
	s.points[in.id] = e
}

// remove deletes a stored point.
func (s *state) remove(e *entry) {
	t := e.t
	s.unindexKeywords(e)
	t.remove(e)
	delete(s.points, e.id)
	if len(t.pts) == 0 {
		delete(s.tenants, t.id)
	}
}

// deleteOlder deletes the document's points whose version is below version.
func (s *state) deleteOlder(user, doc string, version uint64) {
	t := s.tenants[user]
	if t == nil {
		return
	}
	var old []*entry
	for _, e := range t.docs[doc] {
		if e.version < version {
			old = append(old, e)
		}
	}
	for _, e := range old {
		s.remove(e)
	}
}

// applyWrite is Apply's effect of one write.
func (s *state) applyWrite(w *writeIn) {
	for i := range w.points {
		s.put(&w.points[i], true, w.version)
	}
	s.deleteOlder(w.user, w.doc, w.version)
}

// prepareWrite validates w and its points with every store's checks and
// converts it.
func (c *coll) prepareWrite(w *pipeline.DocWrite) (writeIn, error) {
	if err := pipeline.CheckDoc(w.UserID, w.DocID, w.Version); err != nil {
		return writeIn{}, err
	}
	in := writeIn{user: w.UserID, doc: w.DocID, version: w.Version, points: make([]pointIn, len(w.Points))}
	for i := range w.Points {
		p, err := c.preparePoint(w, &w.Points[i])
		if err != nil {
			return writeIn{}, err
		}
		in.points[i] = p
	}
	return in, nil
}

// preparePoint validates p, a point of w, with every store's checks
// (pipeline.CheckPoint) and converts its metadata the way stores keep it.
func (c *coll) preparePoint(w *pipeline.DocWrite, p *pipeline.Point) (pointIn, error) {
	if err := pipeline.CheckDoc(w.UserID, w.DocID, w.Version); err != nil {
		return pointIn{}, err
	}
	if len(p.Vector) != c.dims {
		return pointIn{}, fmt.Errorf("point %s of %s/%s: vector of %d dimensions, collection has %d",
			p.ID, w.UserID, w.DocID, len(p.Vector), c.dims)
	}
	if err := pipeline.CheckPoint(w, p); err != nil {
		return pointIn{}, err
	}
	id, err := uuid.Parse(p.ID)
	if err != nil { // CheckPoint validated it
		return pointIn{}, err
	}
	meta, err := pipeline.PlainMetadata(p.Metadata)
	if err != nil {
		return pointIn{}, fmt.Errorf("point %s: metadata: %w", p.ID, err)
	}
	kw, err := c.keywordsOf(p.Keywords, p.Text)
	if err != nil {
		return pointIn{}, fmt.Errorf("point %s: keywords: %w", p.ID, err)
	}
	vec := make([]float32, c.dims)
	copy(vec, p.Vector)
	if c.dist == pipeline.Cosine {
		normalize(vec)
	}
	return pointIn{
		payload: payload{
			id: id, user: w.UserID, doc: w.DocID, chunk: p.ChunkIndex, count: p.ChunkCount,
			text: p.Text, meta: meta, version: w.Version, hash: p.TextHash, kw: kw,
		},
		vec: vec,
	}, nil
}

// normalize scales v to unit length as Qdrant does for cosine collections;
// a vector shorter than float32's epsilon is left as it is.
func normalize(v []float32) {
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	n := math.Sqrt(sum)
	if n < 1.1920929e-7 {
		return
	}
	for i := range v {
		v[i] = float32(float64(v[i]) / n)
	}
}

// copyMap deep-copies a payload object, so callers cannot change the store.
func copyMap(m map[string]any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = copyValue(v)
	}
	return out
}

func copyValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return copyMap(v)
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = copyValue(x)
		}
		return out
	default:
		return v
	}
}
