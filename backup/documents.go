package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"time"

	"github.com/ragpipe/ragpipe/pipeline"
)

// page writes the whole documents of one page of a tenant's listing.
func (b *backuper) page(ctx context.Context, seg *segment, user string, docs []pipeline.Doc) error {
	name := b.cp.Current.Collection.store()
	ids := make([]string, len(docs))
	for i, d := range docs {
		ids[i] = d.DocID
	}
	wait := 100 * time.Millisecond
	for attempt := 0; len(ids) > 0; attempt++ {
		pts, err := b.cfg.Source.DocumentPoints(ctx, name, user, ids)
		if err != nil {
			return fmt.Errorf("read points: %w", err)
		}
		byDoc := map[string][]pipeline.Point{}
		for _, p := range pts {
			byDoc[p.DocID] = append(byDoc[p.DocID], p)
		}
		var again []string
		for _, id := range ids {
			whole := pipeline.WholeVersion(byDoc[id])
			switch {
			case whole != nil:
				if err := b.write(seg, whole); err != nil {
					return err
				}
			case len(byDoc[id]) > 0:
				again = append(again, id)
			}
		}
		if ids = again; len(ids) == 0 {
			return nil
		}
		if attempt == b.cfg.Rereads {
			seg.skipped += len(ids)
			b.log.Warn().Str("collection", name).Str("user_id", user).Strs("doc_ids", ids).
				Msg("no whole version of these documents after every reread: left out of the backup")
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
	return nil
}

// write adds one document to the open segment, opening one if needed.
func (b *backuper) write(seg *segment, pts []pipeline.Point) error {
	line, err := encodeDoc(pts)
	if err != nil {
		return err
	}
	if seg.w == nil {
		c := &b.cp.Current.Collection
		name := filepath.Join(c.Name, fmt.Sprintf("seg-%06d.jsonl.zst", len(c.Segments)+1))
		if seg.w, err = createLines(b.cfg.Dir, name); err != nil {
			return err
		}
	}
	if err := seg.w.add(line); err != nil {
		return err
	}
	seg.points += len(pts)
	seg.w.file.Points += len(pts)
	t := seg.tenants[line.UserID]
	t.Documents++
	t.Points += len(pts)
	seg.tenants[line.UserID] = t
	return nil
}
