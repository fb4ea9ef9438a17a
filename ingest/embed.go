package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ragpipe/ragpipe/pipeline"
)

// pending is a chunk still without a vector, and the index of its write.
type pending struct {
	point *pipeline.Point
	write int
}

// writes chunks the events at idx with d's chunker and gives every chunk
// its keyword vector (see points) and a vector: the event's own, a stored one (see
// reuse) or one from a single call of d's embedder; with StageConfig.Keys,
// it then seals the texts. first[i] says whether events[i] is its
// document's first version (pipeline.DocWrite.First). It returns one write per event and, per event, the error of an
// event that cannot be written (a chunk the embedder refused, permanently;
// its tenant's key not to be had) or nil; or an error for them all.
func (s *Stage) writes(ctx context.Context, d *dest, tk tenantKeySet, events []pipeline.Event, idx []int, first []bool) ([]pipeline.DocWrite, []error, error) {
	keys, keyErrs := tk.keys, tk.errs
	writes := make([]pipeline.DocWrite, len(idx))
	refused := make([]error, len(idx))
	var todo []pending // chunks to embed
	for j, i := range idx {
		e := events[i]
		w := pipeline.DocWrite{UserID: e.UserID, DocID: e.DocID, Version: e.Version, First: first[i]}
		if err := keyErrs[e.UserID]; err != nil && e.Op == pipeline.OpUpsert {
			writes[j], refused[j] = w, err
			continue
		}
		if e.Op == pipeline.OpUpsert {
			todo = d.points(&w, e, keys[e.UserID], j, todo)
		}
		writes[j] = w
	}
	var err error
	if d.identity != "" {
		var known []pipeline.DocWrite // documents that may have stored chunks
		for j, w := range writes {
			if !first[idx[j]] {
				known = append(known, w)
			}
		}
		if todo, err = s.reuse(ctx, d, known, todo); err != nil {
			return nil, nil, err
		}
	}
	refusedChunks, err := s.embedPending(ctx, d, todo, d.identity != "")
	if err != nil {
		return nil, nil, err
	}
	for k, err := range refusedChunks {
		if p := todo[k].point; err != nil && refused[todo[k].write] == nil {
			refused[todo[k].write] = fmt.Errorf("embed chunk_index %d of %d chunks: %w", p.ChunkIndex, p.ChunkCount, err)
		}
	}
	if keys != nil {
		for j := range writes {
			if key := keys[writes[j].UserID]; key != nil && refused[j] == nil {
				seal(key, d.name, &writes[j])
			}
		}
	}
	return writes, refused, nil
}

// points chunks upsert e into w's points, each with its keyword vector (in
// a store collection with them) and,
// unless e brings its vector, its text hash (with an identity); those are
// appended to todo, as chunks of write j. With key (nil: none), the hash and
// keyword vector are the tenant's keyed ones; the text stays clear, to be
// embedded. An event that brings a vector is one point; in a store
// collection of other dimensions (a generation of another embedder) that
// point's text is embedded instead.
func (d *dest) points(w *pipeline.DocWrite, e pipeline.Event, key TenantKey, j int, todo []pending) []pending {
	vector := e.Vector
	if len(vector) != d.coll.Dims {
		vector = nil
	}
	chunks := []string{e.Text}
	if e.Vector == nil {
		chunks = d.chunker.Split(e.Text)
	}
	w.Points = make([]pipeline.Point, len(chunks))
	for k, text := range chunks {
		p := &w.Points[k]
		*p = pipeline.Point{
			ID: pipeline.PointID(e.UserID, e.DocID, k), Vector: vector,
			UserID: e.UserID, DocID: e.DocID, ChunkIndex: k, ChunkCount: len(chunks),
			Text: text, Metadata: e.Metadata, Version: e.Version,
		}
		switch {
		case !d.keywords:
		case key == nil:
			p.Keywords = pipeline.Keywords(text)
		default:
			p.Keywords = pipeline.KeywordsWith(text, key.TermID)
		}
		if vector != nil {
			continue
		}
		switch {
		case d.identity == "":
		case key == nil:
			p.TextHash = pipeline.TextHash(d.identity, text)
		default:
			p.TextHash = key.TextHash(d.identity, text)
		}
		todo = append(todo, pending{p, j})
	}
	return todo
}

// reuse gives each pending chunk whose text hash matches a stored chunk of
// one of the documents of known (in d's reuse collection) that chunk's
// vector, and returns the chunks
// still without one. A document's stored chunks are looked up by point id,
// at the indexes below twice its new chunk count, so that unchanged chunks
// are found even when an edit before them shifted them. known leaves out
// documents new to the version register, which normally have nothing
// stored. A lookup the store refuses for good costs
// embedder calls, not the events; a transient failure fails them.
func (s *Stage) reuse(ctx context.Context, d *dest, writes []pipeline.DocWrite, chunks []pending) ([]pending, error) {
	if s.cfg.Reuse == nil || len(chunks) == 0 {
		return chunks, nil
	}
	var ids []string
	for _, w := range writes {
		if len(w.Points) > 0 && w.Points[0].Vector == nil {
			for k := range 2 * len(w.Points) {
				if k < len(w.Points) {
					ids = append(ids, w.Points[k].ID)
					continue
				}
				ids = append(ids, pipeline.PointID(w.UserID, w.DocID, k))
			}
		}
	}
	if len(ids) == 0 {
		return chunks, nil
	}
	var hashes []string
	seen := make(map[string]bool, len(chunks))
	for _, p := range chunks {
		if h := p.point.TextHash; !seen[h] {
			seen[h] = true
			hashes = append(hashes, h)
		}
	}
	stored, err := s.cfg.Reuse.StoredVectors(ctx, d.reuse, ids, hashes)
	if err != nil {
		if !pipeline.IsPermanent(err) {
			return nil, fmt.Errorf("look up stored vectors: %w", err)
		}
		s.cfg.Logger.Warn().Err(err).Str("collection", d.reuse).Msg("cannot look up stored vectors; embedding every chunk")
		return chunks, nil
	}
	rest := chunks[:0:0]
	for _, p := range chunks {
		if v := stored[p.point.TextHash]; len(v) == d.coll.Dims {
			p.point.Vector = v
			continue
		}
		rest = append(rest, p)
	}
	if m := s.cfg.Metrics; m != nil && d.primary {
		m.ObserveReuse(d.name, len(chunks)-len(rest))
	}
	return rest, nil
}

// embedPending gives the chunks vectors from one call of d's embedder; with
// distinct, equal texts are sent once. It returns, per chunk, the permanent
// error of a text the embedder refused (nil for the others; nil altogether
// when it refused none), or an error for every chunk.
func (s *Stage) embedPending(ctx context.Context, d *dest, chunks []pending, distinct bool) ([]error, error) {
	if len(chunks) == 0 {
		return nil, nil
	}
	texts := make([]string, 0, len(chunks))
	slot := make([]int, len(chunks)) // chunks[k] takes vector slot[k]
	var first map[string]int         // with distinct, the slot of each text
	if distinct {
		first = make(map[string]int, len(chunks))
	}
	for k, p := range chunks {
		if n, ok := first[p.point.Text]; ok {
			slot[k] = n
			continue
		}
		if first != nil {
			first[p.point.Text] = len(texts)
		}
		slot[k] = len(texts)
		texts = append(texts, p.point.Text)
	}
	start := time.Now()
	vectors, err := d.embedder.Embed(ctx, texts)
	refused := textErrors(err, vectors, len(texts))
	if refused != nil {
		err = nil // the service works; only some texts are refused
	}
	if err == nil {
		err = s.check(d.coll, vectors, len(texts), refused)
	}
	if m := s.cfg.Metrics; m != nil {
		embedded := len(texts)
		for _, err := range refused {
			if err != nil {
				embedded--
			}
		}
		m.ObserveEmbed(d.name, embedded, time.Since(start), err)
	}
	if err == nil || pipeline.IsMisconfigured(err) {
		s.embedderHealth(d, err)
	}
	if err != nil {
		return nil, fmt.Errorf("embed %d chunks: %w", len(texts), err)
	}
	var out []error
	for k, p := range chunks {
		if refused != nil && refused[slot[k]] != nil {
			if out == nil {
				out = make([]error, len(chunks))
			}
			out[k] = refused[slot[k]]
			continue
		}
		p.point.Vector = vectors[slot[k]]
	}
	return out, nil
}

// textErrors returns the per-text errors of an embedder that refused some
// of n texts and embedded the others (see Embedder), nil otherwise.
func textErrors(err error, vectors [][]float32, n int) []error {
	be, ok := errors.AsType[*pipeline.BatchError](err)
	if !ok || len(be.Errs) != n || len(vectors) != n {
		return nil
	}
	return be.Errs
}

// dimensionsError reports vectors whose length is not the collection's.
type dimensionsError struct {
	collection string
	want, got  int
}

func (e *dimensionsError) Error() string {
	return fmt.Sprintf("embedder returned %d-dimensional vectors, collection %q has %d dimensions", e.got, e.collection, e.want)
}

// check verifies that an embedder answered n texts with n vectors of c's
// dimensions, but for the texts it refused (refused[i] != nil; refused may
// be nil). Anything else is the embedder's fault, never the events': the
// error is a misconfiguration.
func (s *Stage) check(c pipeline.Collection, vectors [][]float32, n int, refused []error) error {
	if len(vectors) != n {
		return pipeline.Misconfigured(fmt.Errorf("embedder returned %d vectors for %d texts", len(vectors), n))
	}
	for i, v := range vectors {
		if refused != nil && refused[i] != nil {
			continue
		}
		if len(v) != c.Dims {
			return pipeline.Misconfigured(&dimensionsError{collection: c.Name, want: c.Dims, got: len(v)})
		}
	}
	return nil
}
