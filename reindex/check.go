package reindex

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// maxMismatches bounds the documents a Report names.
const maxMismatches = 20

// sample is a document of the building generation to search for.
type sample struct{ tenant, doc string }

// check compares the generations tenant by tenant and searches the building
// one for sample documents. It returns the Report when every check passed;
// otherwise it records the Report in the Job and fails, naming what
// differs.
func (c *copier) check(ctx context.Context, st generation.State) (*generation.Report, error) {
	from, err := c.tenants(ctx, c.serving.Name)
	if err != nil {
		return nil, err
	}
	to, err := c.tenants(ctx, c.building.Name)
	if err != nil {
		return nil, err
	}
	tenants := slices.Compact(slices.Sorted(slices.Values(append(from, to...))))
	report := &generation.Report{Tenants: []generation.TenantCount{}}
	var problems []string
	var samples []sample
	seen := 0
	rng := rand.New(rand.NewPCG(uint64(len(tenants)), 15))
	for _, t := range tenants {
		tc, bad, stray, docs, err := c.checkTenant(ctx, t)
		if err != nil {
			return nil, err
		}
		report.Tenants = append(report.Tenants, tc)
		for _, b := range bad {
			if len(report.Mismatches) < maxMismatches {
				report.Mismatches = append(report.Mismatches, t+"/"+b)
			}
		}
		if len(bad) > 0 {
			problem := fmt.Sprintf("tenant %s: %d documents differ", t, len(bad))
			for _, b := range bad {
				if err, ok := c.refused[t+"/"+b]; ok {
					problem += fmt.Sprintf(" (%s/%s refused by the new generation: %v)", t, b, err)
					break
				}
			}
			problems = append(problems, problem)
		}
		for _, d := range stray {
			if len(report.Mismatches) < maxMismatches {
				report.Mismatches = append(report.Mismatches, t+"/"+d)
			}
		}
		if len(stray) > 0 {
			problems = append(problems, fmt.Sprintf("tenant %s: the points in %s of %d documents are not their chunks (%s)",
				t, c.building.Name, len(stray), strings.Join(stray[:min(len(stray), 5)], ", ")))
		}
		for _, d := range docs { // reservoir sampling over every tenant's documents
			if seen++; len(samples) < c.cfg.Samples {
				samples = append(samples, sample{t, d})
			} else if k := rng.IntN(seen); k < len(samples) {
				samples[k] = sample{t, d}
			}
		}
	}
	if err := c.searchSamples(ctx, samples, report); err != nil {
		return nil, err
	}
	if report.Answered < report.Searches {
		problems = append(problems, fmt.Sprintf("%d of %d sample searches did not find their document", report.Searches-report.Answered, report.Searches))
	}
	log := c.log.Info()
	if len(problems) > 0 {
		log = c.log.Error()
	}
	log.Int("tenants", len(report.Tenants)).Int("searches", report.Searches).Int("answered", report.Answered).
		Strs("mismatches", report.Mismatches).Msg("generations compared")
	if len(problems) == 0 {
		return report, nil
	}
	if _, err := c.checkpoint(ctx, func(s *generation.State) error {
		s.Job.Report = report
		return nil
	}); err != nil {
		return nil, err
	}
	return nil, pipeline.Permanent(fmt.Errorf("check of %s failed, nothing switched (it keeps being written; --abort drops it): %s",
		c.building.Name, strings.Join(problems, "; ")))
}

// checkTenant compares tenant's documents in both generations: the same
// documents at the same versions (with the same chunking and vectors, the same chunk
// counts), and the building generation's points of each document exactly
// its chunks (see checkPoints). Documents that differ are read again for Config.Settle, as
// workers write both generations meanwhile; those still missing from the
// building generation are copied once more. It returns the counts, the
// documents that still differ, those whose points are not their chunks and
// the documents equal in both.
func (c *copier) checkTenant(ctx context.Context, tenant string) (tc generation.TenantCount, bad, stray, same []string, err error) {
	tc = generation.TenantCount{UserID: tenant}
	from, err := c.listAll(ctx, c.serving.Name, tenant)
	if err != nil {
		return tc, nil, nil, nil, err
	}
	to, err := c.listAll(ctx, c.building.Name, tenant)
	if err != nil {
		return tc, nil, nil, nil, err
	}
	deadline, copied := time.Now().Add(c.cfg.Settle), false
	for {
		diff := c.differing(from, to)
		if len(diff) == 0 {
			break
		}
		if time.Now().After(deadline) {
			var missing []string
			for _, d := range diff {
				if _, ok := to[d]; !ok && !copied {
					missing = append(missing, d)
				}
			}
			if len(missing) == 0 {
				break
			}
			c.log.Warn().Str("tenant", tenant).Strs("doc_ids", missing).Msg("documents missing from the building generation: copying them once more")
			if _, _, err := c.copyDocs(ctx, tenant, missing); err != nil {
				return tc, nil, nil, nil, err
			}
			copied = true
		} else if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return tc, nil, nil, nil, err
		}
		if err := c.reread(ctx, c.serving.Name, tenant, diff, from); err != nil {
			return tc, nil, nil, nil, err
		}
		if err := c.reread(ctx, c.building.Name, tenant, diff, to); err != nil {
			return tc, nil, nil, nil, err
		}
	}
	bad = c.differing(from, to)
	isBad := make(map[string]bool, len(bad))
	for _, id := range bad {
		isBad[id] = true
	}
	tc.FromDocs, tc.ToDocs = len(from), len(to)
	same = make([]string, 0, len(to))
	for id := range to {
		if !isBad[id] {
			same = append(same, id)
		}
	}
	if stray, err = c.checkPoints(ctx, tenant, to, &tc); err != nil {
		return tc, nil, nil, nil, err
	}
	slices.Sort(same)
	return tc, bad, stray, same, nil
}

// checkPoints compares, document by document, tenant's points in the
// building generation with the documents listed (to): a document's points
// are chunk_count points of its listed version. A document that differs is
// read again for Config.Settle; one whose version changes meanwhile is
// being written and left out (a steady write load always has some), one
// that keeps its version and still differs is returned. It fills tc's
// point counts with those of the documents checked.
func (c *copier) checkPoints(ctx context.Context, tenant string, to map[string]pipeline.Doc, tc *generation.TenantCount) ([]string, error) {
	if err := c.retry(ctx, "count "+c.serving.Name, func(ctx context.Context) error {
		n, err := c.cfg.Store.Count(ctx, c.serving.Name)
		tc.FromPoints = n[tenant]
		return err
	}); err != nil {
		return nil, err
	}
	ids := slices.Sorted(maps.Keys(to))
	counted := make(map[string]int, len(ids))
	var suspects []string
	for b := range slices.Chunk(ids, c.cfg.Batch) {
		pts, err := c.points(ctx, tenant, b)
		if err != nil {
			return nil, err
		}
		for _, id := range b {
			counted[id] = len(pts[id])
			if !exact(pts[id], to[id]) {
				suspects = append(suspects, id)
			}
		}
	}
	deadline, writing := time.Now().Add(c.cfg.Settle), 0
	for len(suspects) > 0 && time.Now().Before(deadline) {
		if err := sleep(ctx, 200*time.Millisecond); err != nil {
			return nil, err
		}
		pts, err := c.points(ctx, tenant, suspects)
		if err != nil {
			return nil, err
		}
		var still []string
		for _, id := range suspects {
			switch {
			case newest(pts[id]) != to[id].Version: // rewritten or deleted meanwhile
				writing++
				delete(counted, id)
			case exact(pts[id], to[id]):
				counted[id] = len(pts[id])
			default:
				counted[id] = len(pts[id])
				still = append(still, id)
			}
		}
		suspects = still
	}
	if writing > 0 {
		c.log.Debug().Str("tenant", tenant).Int("documents", writing).Msg("documents written during the check of their points: left out")
	}
	tc.ToPoints, tc.ToChunks = 0, 0
	for id, n := range counted {
		tc.ToPoints += n
		tc.ToChunks += to[id].ChunkCount
	}
	return suspects, nil
}

// points returns the building generation's points of tenant's documents
// ids, every version, by document.
func (c *copier) points(ctx context.Context, tenant string, ids []string) (map[string][]pipeline.Point, error) {
	var pts []pipeline.Point
	if err := c.retry(ctx, "read the points of "+c.building.Name, func(ctx context.Context) (err error) {
		pts, err = c.cfg.Store.DocumentPoints(ctx, c.building.Name, tenant, ids)
		return err
	}); err != nil {
		return nil, err
	}
	byDoc := make(map[string][]pipeline.Point, len(ids))
	for _, p := range pts {
		byDoc[p.DocID] = append(byDoc[p.DocID], p)
	}
	return byDoc, nil
}

// exact reports whether pts are exactly d's chunks: d.ChunkCount points of
// d.Version, one per chunk index.
func exact(pts []pipeline.Point, d pipeline.Doc) bool {
	if len(pts) != d.ChunkCount {
		return false
	}
	seen := make([]bool, d.ChunkCount)
	for _, p := range pts {
		if p.Version != d.Version || p.ChunkCount != d.ChunkCount || p.ChunkIndex < 0 || p.ChunkIndex >= d.ChunkCount || seen[p.ChunkIndex] {
			return false
		}
		seen[p.ChunkIndex] = true
	}
	return true
}

// newest returns the highest version of pts; 0 for none.
func newest(pts []pipeline.Point) uint64 {
	var v uint64
	for _, p := range pts {
		v = max(v, p.Version)
	}
	return v
}

// differing returns the documents whose version differs between from and
// to, or that one of them lacks, sorted; with the same chunking and
// vectors, also those whose chunk counts differ.
func (c *copier) differing(from, to map[string]pipeline.Doc) []string {
	// With the same chunking and vectors, a document keeps its chunks; a
	// vector that came with its event is kept with its text whole only
	// then (and known for one only with an Identified embedder).
	sameChunks := c.serving.ChunkSize == c.building.ChunkSize && c.serving.ChunkOverlap == c.building.ChunkOverlap &&
		c.identified
	var diff []string
	for id, f := range from {
		t, ok := to[id]
		if !ok || t.Version != f.Version || sameChunks && t.ChunkCount != f.ChunkCount {
			diff = append(diff, id)
		}
	}
	for id := range to {
		if _, ok := from[id]; !ok {
			diff = append(diff, id)
		}
	}
	slices.Sort(diff)
	return diff
}

// listAll returns every document of tenant in collection, by id.
func (c *copier) listAll(ctx context.Context, collection, tenant string) (map[string]pipeline.Doc, error) {
	all := make(map[string]pipeline.Doc)
	for cur := ""; ; {
		var docs []pipeline.Doc
		if err := c.retry(ctx, "list "+collection, func(ctx context.Context) (err error) {
			docs, cur, err = c.cfg.Store.List(ctx, collection, tenant, pipeline.MaxLimit, cur)
			return err
		}); err != nil {
			return nil, err
		}
		for _, d := range docs {
			all[d.DocID] = d
		}
		if cur == "" {
			return all, nil
		}
	}
}

// reread reads the documents ids of tenant again into docs: their newest
// whole version, or none.
func (c *copier) reread(ctx context.Context, collection, tenant string, ids []string, docs map[string]pipeline.Doc) error {
	whole, err := c.read(ctx, collection, tenant, ids)
	if err != nil {
		return err
	}
	for _, id := range ids {
		if pts, ok := whole[id]; ok {
			docs[id] = pipeline.Doc{DocID: id, Version: pts[0].Version, ChunkCount: len(pts), Metadata: pts[0].Metadata}
		} else {
			delete(docs, id)
		}
	}
	return nil
}

// searchSamples searches the building generation for each sample with the
// text of its first chunk, embedded by the building generation's embedder:
// a dense search of the tenant, top 10, must find it (or rank ten chunks
// as well as the best, equal texts of other documents). A miss counts only
// when the document is unchanged since its text was read: one rewritten
// meanwhile is searched again with its new text (up to three times), one
// deleted is skipped.
func (c *copier) searchSamples(ctx context.Context, samples []sample, report *generation.Report) error {
	slices.SortFunc(samples, func(a, b sample) int {
		return strings.Compare(a.tenant+"\x00"+a.doc, b.tenant+"\x00"+b.doc)
	})
	for _, s := range samples {
		text, version, err := c.firstChunk(ctx, s)
		for attempt := 0; err == nil && version != 0; attempt++ {
			var hits []pipeline.Hit
			if hits, err = c.search(ctx, s.tenant, text); err != nil {
				break
			}
			if found(hits, s.doc) {
				report.Searches++
				report.Answered++
				break
			}
			var now uint64
			if text, now, err = c.firstChunk(ctx, s); err == nil && now == version {
				report.Searches++
				c.log.Warn().Str("tenant", s.tenant).Str("doc_id", s.doc).Uint64("version", version).
					Msg("a sample search of the building generation did not find its document")
				break
			}
			if attempt == 2 { // rewritten at every search: no verdict
				break
			}
			version = now // rewritten meanwhile: search its new text; 0 (deleted) ends
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// firstChunk returns the clear text of the first chunk of sample s in the
// building generation and the document's version; version 0 when the
// document is gone.
func (c *copier) firstChunk(ctx context.Context, s sample) (string, uint64, error) {
	whole, err := c.read(ctx, c.building.Name, s.tenant, []string{s.doc})
	if err != nil {
		return "", 0, err
	}
	pts := whole[s.doc]
	if pts == nil {
		return "", 0, nil
	}
	text := pts[0].Text
	if c.cfg.Keys != nil {
		var key TenantKey
		if err := c.retry(ctx, "read the key of tenant "+s.tenant, func(ctx context.Context) (err error) {
			key, err = c.cfg.Keys(ctx, s.tenant)
			return err
		}); err != nil {
			return "", 0, err
		}
		if key != nil {
			if text, err = key.Open(c.collection, s.doc, 0, text); err != nil {
				return "", 0, pipeline.Permanent(fmt.Errorf("the first chunk of document %s of tenant %s in %s does not open: %w", s.doc, s.tenant, c.building.Name, err))
			}
		}
	}
	return text, pts[0].Version, nil
}

// search embeds text with the building generation's embedder and returns
// the top 10 chunks of tenant in the building generation by a dense search.
func (c *copier) search(ctx context.Context, tenant, text string) ([]pipeline.Hit, error) {
	var hits []pipeline.Hit
	err := c.retry(ctx, "sample search of "+c.building.Name, func(ctx context.Context) error {
		vectors, err := c.target.Embedder.Embed(ctx, []string{text})
		if err != nil {
			return err
		}
		if len(vectors) != 1 {
			return pipeline.Permanent(errors.New("the embedder returned no vector"))
		}
		hits, err = c.cfg.Store.Search(ctx, c.building.Name, pipeline.Query{
			UserID: tenant, Vector: vectors[0], Mode: pipeline.ModeDense, TopK: 10,
		})
		return err
	})
	return hits, err
}

// found reports whether hits hold doc, or are ten chunks as good as the
// best (equal texts of other documents can crowd it out).
func found(hits []pipeline.Hit, doc string) bool {
	for _, h := range hits {
		if h.DocID == doc {
			return true
		}
	}
	return len(hits) == 10 && hits[9].Score >= hits[0].Score
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
