package localstore

import (
	"context"
	"fmt"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Apply stores writes, in order: for each write it upserts the write's
// points, overwriting only stored points whose version is <= w.Version
// (missing points are inserted), then deletes the document's points whose
// version is < w.Version. A write without points (a delete) has only the
// delete. All valid writes of one call are one log record, fsynced before
// Apply returns and applied all together.
//
// Writes that can never succeed (invalid ids, UTF-8, metadata, versions,
// vectors of the wrong length) are refused before anything is written; when
// some are, the others are still stored and the error is a
// *pipeline.BatchError saying which failed. An unknown collection is a
// permanent error wrapping pipeline.ErrUnknownCollection; a disk failure is
// transient and stores nothing.
func (s *Store) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	return writeItems(ctx, s, "embedded apply", collection, len(writes),
		func(c *coll, i int) (writeIn, error) { return c.prepareWrite(&writes[i]) },
		encodeApply,
		func(st *state, ws []writeIn) {
			for i := range ws {
				st.applyWrite(&ws[i])
			}
		})
}

// Prune deletes, for each document, its points whose version is < d.Version,
// as one fsynced log record, with Apply's errors.
func (s *Store) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	return writeItems(ctx, s, "embedded prune", collection, len(docs),
		func(_ *coll, i int) (pruneIn, error) {
			d := docs[i]
			return pruneIn{user: d.UserID, doc: d.DocID, version: d.Version}, pipeline.CheckDoc(d.UserID, d.DocID, d.Version)
		},
		encodePrune,
		func(st *state, ps []pruneIn) {
			for _, p := range ps {
				st.deleteOlder(p.user, p.doc, p.version)
			}
		})
}

// Upsert stores points as they are, unconditionally (a plain Qdrant upsert),
// for ragpipe migrate: each point carries its own UserID, DocID and Version,
// as Scroll returns them. It is idempotent; errors are Apply's, per point.
func (s *Store) Upsert(ctx context.Context, collection string, points []pipeline.Point) error {
	return writeItems(ctx, s, "embedded upsert", collection, len(points),
		func(c *coll, i int) (pointIn, error) {
			p := &points[i]
			return c.preparePoint(&pipeline.DocWrite{UserID: p.UserID, DocID: p.DocID, Version: p.Version}, p)
		},
		encodeUpsert,
		func(st *state, ps []pointIn) {
			for i := range ps {
				st.put(&ps[i], false, 0)
			}
		})
}

// writeItems is Apply, Prune and Upsert: it validates n items with prepare,
// then commits the valid ones as one log record (encode) and applies them to
// the state (apply). Invalid items fail permanently, each on its own.
func writeItems[T any](ctx context.Context, s *Store, op, collection string, n int,
	prepare func(c *coll, i int) (T, error), encode func([]T) []byte, apply func(*state, []T),
) error {
	if n == 0 {
		return nil
	}
	c, release, err := s.acquire(collection)
	if err != nil {
		return err
	}
	defer release()
	errs := make([]error, n)
	ins := make([]T, 0, n)
	for i := range n {
		in, err := prepare(c, i)
		if err != nil {
			errs[i] = pipeline.Permanent(err)
			continue
		}
		ins = append(ins, in)
	}
	if len(ins) > 0 {
		if err := s.commit(ctx, c, encode(ins), func(st *state) { apply(st, ins) }); err != nil {
			return err
		}
	}
	return batchResult(op, collection, errs)
}

// batchResult is nil when no item failed, else a *pipeline.BatchError.
func batchResult(op, collection string, errs []error) error {
	for _, err := range errs {
		if err != nil {
			return &pipeline.BatchError{Op: op, Collection: collection, Errs: errs}
		}
	}
	return nil
}

// commit appends rec to c's log, fsyncs it, then applies mutate to the
// in-memory state. Writers of one collection wait for each other; a waiting
// writer gives up when ctx ends. Once the record is on disk, commit finishes
// regardless of ctx.
func (s *Store) commit(ctx context.Context, c *coll, rec []byte, mutate func(*state)) error {
	unlock, err := c.lockWriter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if err := c.append(rec, s.log); err != nil {
		return fmt.Errorf("embedded store: collection %q: %w", c.name, err)
	}
	c.mu.Lock()
	mutate(c.st)
	c.mu.Unlock()
	if c.compactionDue(s.cfg.CompactBytes) {
		s.kickCompactor()
	}
	return nil
}
