package reindex

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
	"unicode/utf8"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// copier copies the documents of the serving generation into the building
// one and checks the result.
type copier struct {
	*run
	serving, building generation.Generation
	target            ingest.Target
	// rebuild is the serving generation's chunking, which the stored
	// chunks are rebuilt with.
	rebuild *pipeline.Chunker
	// sameEmbedder: the building generation's vectors are the serving
	// one's (same profile, dimensions and model), so they are reused.
	sameEmbedder, identified bool
	// refused holds why the building generation refused documents for
	// good (an embedder's refusal of a text), by tenant/doc_id: they are
	// left out, for the check to report.
	refused map[string]error
}

// refuse records that the building generation refused document for good.
func (c *copier) refuse(document string, err error) {
	if _, ok := c.refused[document]; !ok {
		c.log.Warn().Err(err).Str("document", document).Msg("the building generation refuses this document: left out, the check reports it")
		c.refused[document] = err
	}
}

// copier returns the copier of st's building generation.
func (j *run) copier(ctx context.Context, st generation.State) (*copier, error) {
	if st.Building == nil {
		return nil, pipeline.Permanent(errors.New("the building generation left the State"))
	}
	c := &copier{run: j, serving: st.Serving, building: *st.Building, refused: make(map[string]error)}
	var emb ingest.Embedder
	err := j.retry(ctx, "build the embedder", func(ctx context.Context) error {
		var err error
		if emb, err = j.cfg.Embedder(c.building.Embedder, c.building.Dims); err != nil {
			return err
		}
		if emb.Dimensions() != c.building.Dims {
			return pipeline.Permanent(fmt.Errorf("embedder %q returns %d dimensions, the building generation has %d", c.building.Embedder, emb.Dimensions(), c.building.Dims))
		}
		desc, err := j.cfg.Store.Describe(ctx, c.building.Name)
		desc.Name = c.building.Name
		c.target.Collection = desc
		return err
	})
	if err != nil {
		return nil, err
	}
	c.target.Embedder = emb
	if c.target.Chunker, err = pipeline.NewChunker(c.building.ChunkSize, c.building.ChunkOverlap); err != nil {
		return nil, pipeline.Permanent(err)
	}
	if c.rebuild, err = pipeline.NewChunker(c.serving.ChunkSize, c.serving.ChunkOverlap); err != nil {
		return nil, pipeline.Permanent(err)
	}
	c.sameEmbedder = c.building.Embedder == c.serving.Embedder && c.building.Dims == c.serving.Dims
	id, ok := emb.(ingest.Identified)
	if c.sameEmbedder && ok {
		// The profile may name another model than when Serving was built
		// only if this process's configuration changed: compare models.
		if old, err := j.cfg.Embedder(c.serving.Embedder, c.serving.Dims); err == nil {
			oldID, ok := old.(ingest.Identified)
			c.identified = ok && oldID.Identity() == id.Identity()
			c.sameEmbedder = c.identified
		}
	}
	if c.identified {
		c.target.ReuseFrom = c.serving.Name
	}
	return c, nil
}

// cursor is where a copy resumes: the tenant and its listing's cursor.
type cursor struct {
	Tenant string `json:"tenant"`
	List   string `json:"list,omitempty"`
	Done   bool   `json:"done,omitempty"` // the tenant is copied
}

// copyAll copies, tenant by tenant in order, page by page, every document
// of the serving generation, from the Job's Cursor on; each page is a
// checkpoint. It leaves the Job in phase Checking.
func (c *copier) copyAll(ctx context.Context, st generation.State) (generation.State, error) {
	var cur cursor
	if st.Job.Cursor != "" {
		if err := json.Unmarshal([]byte(st.Job.Cursor), &cur); err != nil {
			return st, pipeline.Permanent(fmt.Errorf("the job's cursor %q: %w", st.Job.Cursor, err))
		}
		c.log.Info().Str("tenant", cur.Tenant).Int64("copied", st.Job.Copied).Msg("copy resumed")
	}
	tenants, err := c.tenants(ctx, c.serving.Name)
	if err != nil {
		return st, err
	}
	start, copied := time.Now(), st.Job.Copied
	p := progress{saved: start}
	for _, t := range tenants {
		if t < cur.Tenant || t == cur.Tenant && cur.Done {
			continue
		}
		list := ""
		if t == cur.Tenant {
			list = cur.List
		}
		for {
			var docs []pipeline.Doc
			var next string
			if err := c.retry(ctx, "list "+c.serving.Name, func(ctx context.Context) (err error) {
				docs, next, err = c.cfg.Store.List(ctx, c.serving.Name, t, c.cfg.Batch, list)
				return err
			}); err != nil {
				return st, err
			}
			n, points, err := c.copyDocs(ctx, t, docIDs(docs))
			if err != nil {
				return st, err
			}
			p.add(cursor{Tenant: t, List: next, Done: next == ""}, n, points)
			if time.Since(p.saved) >= c.cfg.Checkpoint {
				if st, err = c.checkpoint(ctx, p.save); err != nil {
					return st, err
				}
				p.reset()
			}
			if list = next; next == "" {
				break
			}
		}
		c.log.Debug().Str("tenant", t).Msg("tenant copied")
	}
	if st, err = c.phase(ctx, generation.Checking, p.save); err != nil {
		return st, err
	}
	took := time.Since(start)
	c.log.Info().Str("serving", c.serving.Name).Str("building", c.building.Name).Int64("documents", st.Job.Copied).
		Int64("points", st.Job.Points).Dur("took", took).
		Float64("documents_per_second", float64(st.Job.Copied-copied)/max(took.Seconds(), 1e-9)).Msg("copy done; checking")
	return st, nil
}

// progress is the copy's progress since its last checkpoint.
type progress struct {
	cursor       []byte // nil when unchanged
	docs, points int64
	saved        time.Time
}

func (p *progress) add(c cursor, docs, points int) {
	p.cursor, _ = json.Marshal(c)
	p.docs += int64(docs)
	p.points += int64(points)
}

// save records the progress in the Job: a checkpoint's function, which
// Update may apply more than once.
func (p *progress) save(s *generation.State) error {
	if p.cursor != nil {
		s.Job.Cursor = string(p.cursor)
	}
	s.Job.Copied += p.docs
	s.Job.Points += p.points
	return nil
}

// reset starts the progress afresh once saved.
func (p *progress) reset() {
	p.cursor, p.docs, p.points, p.saved = nil, 0, 0, time.Now()
}

// tenants returns the tenants with points in collection, sorted.
func (c *copier) tenants(ctx context.Context, collection string) ([]string, error) {
	var counts map[string]int
	err := c.retry(ctx, "count "+collection, func(ctx context.Context) (err error) {
		counts, err = c.cfg.Store.Count(ctx, collection)
		return err
	})
	return slices.Sorted(maps.Keys(counts)), err
}

func docIDs(docs []pipeline.Doc) []string {
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.DocID
	}
	return ids
}

// copyDocs writes the newest whole version of each of tenant's documents
// ids of the serving generation to the building one, and returns how many
// documents and points of the serving generation it copied. A document
// gone meanwhile is skipped; one whose newest version stays incomplete (a
// write in flight) is left to the workers' writes and the check, as is
// one the building generation refuses for good.
func (c *copier) copyDocs(ctx context.Context, tenant string, ids []string) (docs, points int, _ error) {
	if len(ids) == 0 {
		return 0, 0, nil
	}
	whole, err := c.read(ctx, c.serving.Name, tenant, ids)
	if err != nil {
		return 0, 0, err
	}
	var key TenantKey
	if c.cfg.Keys != nil {
		if err := c.retry(ctx, "read the key of tenant "+tenant, func(ctx context.Context) (err error) {
			key, err = c.cfg.Keys(ctx, tenant)
			return err
		}); err != nil {
			return 0, 0, err
		}
	}
	events := make([]pipeline.Event, 0, len(whole))
	for _, id := range ids {
		pts := whole[id]
		if pts == nil {
			continue
		}
		e, err := c.event(tenant, pts, key)
		if err != nil {
			return 0, 0, err
		}
		events = append(events, e)
		points += len(pts)
	}
	err = c.retry(ctx, "write to "+c.building.Name, func(ctx context.Context) error {
		var transient error
		for i, err := range c.cfg.Stage.ProcessTo(ctx, events, []ingest.Target{c.target}) {
			switch {
			case err == nil:
			case pipeline.IsPermanent(err):
				c.refuse(tenant+"/"+events[i].DocID, err)
			default:
				transient = cmp.Or(transient, err)
			}
		}
		return transient
	})
	return len(events), points, err
}

// read returns the newest whole version of each of tenant's documents ids
// in collection, in chunk order; a document with points but no whole
// version is read again a few times, then left out, as are documents
// without points.
func (c *copier) read(ctx context.Context, collection, tenant string, ids []string) (map[string][]pipeline.Point, error) {
	whole := make(map[string][]pipeline.Point, len(ids))
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		var pts []pipeline.Point
		if err := c.retry(ctx, "read the points of "+collection, func(ctx context.Context) (err error) {
			pts, err = c.cfg.Store.DocumentPoints(ctx, collection, tenant, ids)
			return err
		}); err != nil {
			return nil, err
		}
		byDoc := make(map[string][]pipeline.Point, len(ids))
		for _, p := range pts {
			byDoc[p.DocID] = append(byDoc[p.DocID], p)
		}
		var again []string
		for _, id := range ids {
			if v := pipeline.WholeVersion(byDoc[id]); v != nil {
				whole[id] = v
			} else if len(byDoc[id]) > 0 {
				again = append(again, id)
			}
		}
		if ids = again; len(ids) == 0 || attempt == 4 {
			return whole, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// event is the upsert that writes the document of pts (one whole version,
// in chunk order) to the building generation: its text rebuilt from the
// chunks, opened with key when it is not nil. A single chunk whose vector
// came with its event (no text hash) keeps it when the vectors are the
// serving generation's.
func (c *copier) event(tenant string, pts []pipeline.Point, key TenantKey) (pipeline.Event, error) {
	texts := make([]string, len(pts))
	for i, p := range pts {
		texts[i] = p.Text
		if key == nil {
			continue
		}
		text, err := key.Open(c.collection, p.DocID, p.ChunkIndex, p.Text)
		if err != nil {
			return pipeline.Event{}, pipeline.Permanent(fmt.Errorf("chunk %d of document %s of tenant %s does not open with the tenant's key: %w", p.ChunkIndex, p.DocID, tenant, err))
		}
		texts[i] = text
	}
	p := pts[0]
	e := pipeline.Event{Op: pipeline.OpUpsert, UserID: tenant, Collection: c.collection, DocID: p.DocID, Metadata: p.Metadata, Version: p.Version}
	if len(pts) == 1 && p.TextHash == "" && len(p.Vector) == c.building.Dims && c.sameEmbedder &&
		(c.identified || utf8.RuneCountInString(texts[0]) <= c.building.ChunkSize) {
		e.Text, e.Vector = texts[0], p.Vector
		return e, nil
	}
	e.Text = c.rebuild.Rebuild(texts)
	return e, nil
}
