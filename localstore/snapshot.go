package localstore

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// snapBatchPoints is the number of points per snapshot record.
const snapBatchPoints = 256

// replay applies the log's records to c's state and truncates a torn tail.
func (c *coll) replay(path string, log zerolog.Logger) (int, error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer f.Close()
	rr, err := newRecReader(f)
	if err != nil {
		return 0, err
	}
	scratch := make([]float32, c.dims)
	records := 0
	for {
		body, err := rr.next()
		if errors.Is(err, io.EOF) {
			return records, nil
		}
		if errors.Is(err, errTorn) {
			log.Warn().Str("collection", c.name).Str("log", path).Int64("offset", rr.off).
				Int64("discarded_bytes", rr.size-rr.off).Int("records_kept", records).
				Msg("discarding the torn tail of an embedded log (a write interrupted by a crash)")
			if err := f.Truncate(rr.off); err != nil {
				return records, err
			}
			return records, f.Sync()
		}
		if err != nil {
			return records, err
		}
		if err := c.replayRecord(body, scratch); err != nil {
			return records, fmt.Errorf("record %d at offset %d: %w", records, rr.off, err)
		}
		records++
	}
}

// replayRecord applies one intact log record to c's state.
func (c *coll) replayRecord(body []byte, scratch []float32) error {
	d := &dec{b: body[1:]}
	switch body[0] {
	case opApply, opApplyKw:
		withKw := body[0] == opApplyKw
		for range d.count(3) {
			user, doc, version := d.str(), d.str(), d.uvarint()
			for range d.count(1) {
				p := pointIn{payload: payload{user: user, doc: doc, version: version}, vec: scratch}
				d.pointBody(&p, withKw)
				if d.err != nil {
					return d.err
				}
				c.loaded(&p, withKw)
				c.st.put(&p, true, version)
			}
			c.st.deleteOlder(user, doc, version)
		}
	case opPrune:
		for range d.count(3) {
			user, doc, version := d.str(), d.str(), d.uvarint()
			if d.err != nil {
				return d.err
			}
			c.st.deleteOlder(user, doc, version)
		}
	case opUpsert, opUpsertKw:
		return c.replayUpsert(d, scratch, body[0] == opUpsertKw)
	default:
		return fmt.Errorf("unexpected record kind %d", body[0])
	}
	return d.done()
}

// replayUpsert stores the points of an upsert record unconditionally.
func (c *coll) replayUpsert(d *dec, scratch []float32, withKw bool) error {
	for range d.count(3) {
		p := pointIn{vec: scratch}
		p.user, p.doc, p.version = d.str(), d.str(), d.uvarint()
		d.pointBody(&p, withKw)
		if d.err != nil {
			return d.err
		}
		c.loaded(&p, withKw)
		c.st.put(&p, false, 0)
	}
	return d.done()
}

// loaded completes a point read from a record: one of a kind without
// keyword vectors gets its keyword vector computed from its text, and the
// collection is marked for rewriting.
func (c *coll) loaded(p *pointIn, withKw bool) {
	if withKw || !c.keywords {
		return
	}
	p.kw, _ = c.keywordsOf(nil, p.text) // computed vectors are valid
	c.legacy = true
}

// loadSnapshot reads a complete snapshot; anything less is an error.
func loadSnapshot(cdir, path string) (*coll, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	rr, err := newRecReader(f)
	if err != nil {
		return nil, err
	}
	corrupt := func(err error) error { return fmt.Errorf("snapshot %s is corrupt at offset %d: %w", path, rr.off, err) }
	body, err := rr.next()
	if err != nil {
		return nil, corrupt(err)
	}
	d := &dec{b: body[1:]}
	cfg := pipeline.Collection{Name: d.str(), Dims: int(d.uvarint()), Distance: pipeline.Distance(d.str()), Keywords: true}
	if len(d.b) > 0 {
		cfg.Keywords = d.uvarint()&flagKeywords != 0
	}
	if err := d.done(); err != nil || body[0] != opConfig || cfg.Dims <= 0 {
		return nil, corrupt(fmt.Errorf("bad header record (%v)", err))
	}
	c := newColl(cdir, cfg)
	scratch := make([]float32, cfg.Dims)
	for {
		body, err := rr.next()
		if err != nil {
			return nil, corrupt(err) // io.EOF too: the trailer is missing
		}
		d := &dec{b: body[1:]}
		switch body[0] {
		case opUpsert, opUpsertKw:
			if err := c.replayUpsert(d, scratch, body[0] == opUpsertKw); err != nil {
				return nil, corrupt(err)
			}
		case opEnd:
			n := d.uvarint()
			if err := d.done(); err != nil || n != uint64(len(c.st.points)) {
				return nil, corrupt(fmt.Errorf("trailer counts %d points, read %d (%v)", n, len(c.st.points), err))
			}
			c.snapSize = rr.off
			return c, nil
		default:
			return nil, corrupt(fmt.Errorf("unexpected record kind %d", body[0]))
		}
	}
}

// writeSnapshot writes c's state to path and fsyncs it, returning its size.
// The caller holds wsem, so the state does not change meanwhile.
func (c *coll) writeSnapshot(ctx context.Context, path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return 0, err
	}
	size, err := c.writeSnapshotTo(ctx, f)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return size, err
}

func (c *coll) writeSnapshotTo(ctx context.Context, f *os.File) (int64, error) {
	bw := bufio.NewWriterSize(f, 1<<20)
	var size int64
	put := func(rec []byte) error {
		size += int64(len(rec))
		_, err := bw.Write(rec)
		return err
	}
	e := newRecord(opConfig, 64+len(c.name))
	e.str(c.name)
	e.uvarint(uint64(c.dims))
	e.str(string(c.dist))
	flags := uint64(0)
	if c.keywords {
		flags |= flagKeywords
	}
	e.uvarint(flags)
	if err := put(e.finish()); err != nil {
		return 0, err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	batch := make([]pointIn, 0, snapBatchPoints)
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := put(encodeUpsert(batch))
		batch = batch[:0]
		if err == nil {
			err = ctx.Err()
		}
		return err
	}
	for _, t := range c.st.tenants {
		for slot, p := range t.pts {
			batch = append(batch, pointIn{payload: p.payload, vec: t.vec(slot)})
			if len(batch) == snapBatchPoints {
				if err := flush(); err != nil {
					return 0, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return 0, err
	}
	e = newRecord(opEnd, 10)
	e.uvarint(uint64(len(c.st.points)))
	if err := put(e.finish()); err != nil {
		return 0, err
	}
	return size, bw.Flush()
}
