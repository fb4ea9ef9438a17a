package localstore

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Names in the data directory (see Embedded).
const (
	tmpPrefix  = ".tmp-" // a collection being created, or (as suffix) a snapshot being written
	tmpSuffix  = ".tmp"
	snapPrefix = "snap-"
	logPrefix  = "log-"
)

// Record kinds; the first byte of a record's body.
const (
	opConfig byte = 1 + iota // snapshot header: name, dims, distance
	opApply                  // Apply: writes with their points
	opPrune                  // Prune: documents and version bounds
	opUpsert                 // Upsert and snapshot contents: points with their tenant, document and version
	opEnd                    // snapshot trailer: number of points
)

const (
	recHeader       = 8   // uint32 length, uint32 CRC-32C of the length and the body
	snapBatchPoints = 256 // points per snapshot record
	maxValueDepth   = 64  // nesting of metadata values
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// errTorn marks a log tail that is not a complete, intact record.
var errTorn = errors.New("torn record")

// coll is one collection: its files and its in-memory state.
type coll struct {
	name string
	dims int
	dist pipeline.Distance
	dir  string

	wsem chan struct{} // held by the one writer (Apply, Prune, Upsert, compaction)
	// Guarded by wsem:
	wal      *wal
	gen      uint64
	snapSize int64
	broken   error // set when the log's state on disk is unknown

	brokenMsg atomic.Pointer[error] // broken, readable without wsem

	mu sync.RWMutex // guards st: readers search, the writer applies
	st *state
}

func newColl(dir string, c pipeline.Collection) *coll {
	return &coll{
		name: c.Name, dims: c.Dims, dist: c.Distance, dir: dir,
		wsem: make(chan struct{}, 1),
		st:   newState(c.Dims),
	}
}

// lockWriter makes the caller the collection's one writer, waiting at most
// until ctx ends; it fails at once when the collection is broken.
func (c *coll) lockWriter(ctx context.Context) (unlock func(), err error) {
	select {
	case c.wsem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if c.broken != nil {
		<-c.wsem
		return nil, c.brokenErr()
	}
	return func() { <-c.wsem }, nil
}

// compactionDue reports whether the log has outgrown both the threshold and
// the snapshot. The caller holds wsem.
func (c *coll) compactionDue(threshold int64) bool {
	return c.wal.size >= threshold && c.wal.size >= c.snapSize
}

// setBroken makes the collection refuse writes until the store is reopened.
func (c *coll) setBroken(err error, log zerolog.Logger) {
	c.broken = err
	wrapped := fmt.Errorf("embedded store: collection %q refuses writes after a disk failure, restart to recover: %w", c.name, err)
	c.brokenMsg.Store(&wrapped)
	log.Error().Err(err).Str("collection", c.name).Msg("embedded collection log in an unknown state; writes refused until restart")
}

// brokenErr is the (transient) error of a broken collection, or nil.
func (c *coll) brokenErr() error {
	if p := c.brokenMsg.Load(); p != nil {
		return *p
	}
	return nil
}

// append writes rec to the log and fsyncs it; a failure is cut off the log
// again, or breaks the collection if that fails too.
func (c *coll) append(rec []byte, log zerolog.Logger) error {
	err := c.wal.append(rec)
	if err == nil {
		return nil
	}
	if rerr := c.wal.rollback(); rerr != nil {
		c.setBroken(errors.Join(err, rerr), log)
		return c.brokenErr()
	}
	log.Warn().Err(err).Str("collection", c.name).Msg("embedded log write failed; rolled back")
	return err
}

// wal is a collection's open log file.
type wal struct {
	f    *os.File
	size int64 // bytes of complete, fsynced records
}

func openWal(path string) (*wal, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &wal{f: f, size: st.Size()}, nil
}

// append writes rec and fsyncs the file.
func (w *wal) append(rec []byte) error {
	if _, err := w.f.Write(rec); err != nil {
		return err
	}
	if err := w.f.Sync(); err != nil {
		return err
	}
	w.size += int64(len(rec))
	return nil
}

// rollback truncates whatever a failed append left and fsyncs.
func (w *wal) rollback() error {
	if err := w.f.Truncate(w.size); err != nil {
		return err
	}
	return w.f.Sync()
}

func (w *wal) close() error {
	if w == nil || w.f == nil {
		return nil
	}
	err := w.f.Close()
	w.f = nil
	return err
}

func snapName(gen uint64) string { return fmt.Sprintf("%s%016x", snapPrefix, gen) }
func logName(gen uint64) string  { return fmt.Sprintf("%s%016x", logPrefix, gen) }

// parseGen reads the generation of a snapshot or log file name.
func parseGen(name, prefix string) (uint64, bool) {
	hex, ok := strings.CutPrefix(name, prefix)
	if !ok || len(hex) != 16 {
		return 0, false
	}
	gen, err := strconv.ParseUint(hex, 16, 64)
	return gen, err == nil
}

// createColl creates collection c's directory under dir with an empty
// snapshot and log, durably: built under a temporary name, then renamed.
func createColl(dir string, c pipeline.Collection, log zerolog.Logger) (*coll, error) {
	final := filepath.Join(dir, c.Name)
	tmp := filepath.Join(dir, tmpPrefix+c.Name)
	if _, err := os.Lstat(final); err == nil {
		return nil, fmt.Errorf("%s exists but is not a collection of this store", final)
	}
	if err := os.RemoveAll(tmp); err != nil {
		return nil, err
	}
	if err := os.Mkdir(tmp, 0o755); err != nil {
		return nil, err
	}
	nc := newColl(final, c)
	err := func() error {
		size, err := nc.writeSnapshot(context.Background(), filepath.Join(tmp, snapName(0)))
		if err != nil {
			return err
		}
		nc.snapSize = size
		w, err := openWal(filepath.Join(tmp, logName(0)))
		if err != nil {
			return err
		}
		if err := w.close(); err != nil {
			return err
		}
		if err := syncDir(tmp); err != nil {
			return err
		}
		if err := os.Rename(tmp, final); err != nil {
			return err
		}
		if err := syncDir(dir); err != nil {
			os.RemoveAll(final) // not known to be durable: not created
			return err
		}
		return nil
	}()
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	w, err := openWal(filepath.Join(final, logName(0)))
	if err != nil {
		return nil, err
	}
	nc.wal = w
	return nc, nil
}

// openColl loads the collection in dir/name: its newest snapshot, then its
// log, whose torn tail, if any, is truncated away. Files of other
// generations are removed.
func openColl(dir, name string, log zerolog.Logger) (*coll, error) {
	cdir := filepath.Join(dir, name)
	ents, err := os.ReadDir(cdir)
	if err != nil {
		return nil, err
	}
	var gen uint64
	found := false
	for _, ent := range ents {
		if g, ok := parseGen(ent.Name(), snapPrefix); ok && (!found || g > gen) {
			gen, found = g, true
		}
	}
	if !found {
		return nil, fmt.Errorf("%s holds no snapshot: not a collection of the embedded store (its directory must be dedicated to it)", cdir)
	}
	c, err := loadSnapshot(cdir, filepath.Join(cdir, snapName(gen)))
	if err != nil {
		return nil, err
	}
	if c.name != name {
		return nil, fmt.Errorf("snapshot of collection %q found in %s", c.name, cdir)
	}
	c.gen = gen
	logPath := filepath.Join(cdir, logName(gen))
	records, err := c.replay(logPath, log)
	if err != nil {
		return nil, fmt.Errorf("log %s: %w", logPath, err)
	}
	for _, ent := range ents {
		n := ent.Name()
		if n == snapName(gen) || n == logName(gen) {
			continue
		}
		if _, isSnap := parseGen(n, snapPrefix); isSnap || strings.HasSuffix(n, tmpSuffix) || strings.HasPrefix(n, logPrefix) {
			if err := os.Remove(filepath.Join(cdir, n)); err != nil {
				return nil, err
			}
		}
	}
	if c.wal, err = openWal(logPath); err != nil {
		return nil, err
	}
	if err := syncDir(cdir); err != nil { // the log may just have been created
		c.wal.close()
		return nil, err
	}
	log.Debug().Str("collection", name).Uint64("generation", gen).Int("log_records", records).
		Int("points", len(c.st.points)).Msg("embedded collection loaded")
	return c, nil
}

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
	case opApply:
		for range d.count(3) {
			user, doc, version := d.str(), d.str(), d.uvarint()
			for range d.count(1) {
				p := pointIn{payload: payload{user: user, doc: doc, version: version}, vec: scratch}
				d.pointBody(&p)
				if d.err != nil {
					return d.err
				}
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
	case opUpsert:
		return c.replayUpsert(d, scratch)
	default:
		return fmt.Errorf("unexpected record kind %d", body[0])
	}
	return d.done()
}

// replayUpsert stores the points of an upsert record unconditionally.
func (c *coll) replayUpsert(d *dec, scratch []float32) error {
	for range d.count(3) {
		p := pointIn{vec: scratch}
		p.user, p.doc, p.version = d.str(), d.str(), d.uvarint()
		d.pointBody(&p)
		if d.err != nil {
			return d.err
		}
		c.st.put(&p, false, 0)
	}
	return d.done()
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
	cfg := pipeline.Collection{Name: d.str(), Dims: int(d.uvarint()), Distance: pipeline.Distance(d.str())}
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
		case opUpsert:
			if err := c.replayUpsert(d, scratch); err != nil {
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

// compact writes the state to the next generation's snapshot and switches to
// an empty log (see Embedded). The caller holds wsem.
func (c *coll) compact(ctx context.Context, log zerolog.Logger) error {
	gen := c.gen + 1
	snapPath := filepath.Join(c.dir, snapName(gen))
	tmp := snapPath + tmpSuffix
	logPath := filepath.Join(c.dir, logName(gen))
	size, err := c.writeSnapshot(ctx, tmp)
	var w *wal
	if err == nil {
		w, err = openWal(logPath)
	}
	if err == nil {
		err = os.Rename(tmp, snapPath)
	}
	if err != nil {
		w.close()
		os.Remove(tmp)
		os.Remove(logPath)
		return err
	}
	// Committed unless the rename is lost; whether it is, nobody knows
	// until the directory is synced.
	if err := syncDir(c.dir); err != nil {
		w.close()
		c.setBroken(err, log)
		return err
	}
	old := c.wal
	c.wal, c.gen, c.snapSize = w, gen, size
	old.close()
	for _, name := range []string{snapName(gen - 1), logName(gen - 1)} {
		if err := os.Remove(filepath.Join(c.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn().Err(err).Str("collection", c.name).Msg("could not remove an old embedded file; it is removed at the next open")
		}
	}
	return nil
}

// record is a log or snapshot record being encoded.
type record struct{ b []byte }

// newRecord starts a record of about size bytes.
func newRecord(op byte, size int) *record {
	b := make([]byte, recHeader, recHeader+1+size)
	return &record{b: append(b, op)}
}

// pointSize estimates the encoded size of a point.
func pointSize(p *pointIn) int {
	return 64 + len(p.user) + len(p.doc) + len(p.text) + len(p.hash) + 32*len(p.meta) + 4*len(p.vec)
}

// finish fills in the header and returns the framed record.
func (r *record) finish() []byte {
	binary.LittleEndian.PutUint32(r.b[0:4], uint32(len(r.b)-recHeader))
	crc := crc32.Update(crc32.Checksum(r.b[0:4], castagnoli), castagnoli, r.b[recHeader:])
	binary.LittleEndian.PutUint32(r.b[4:8], crc)
	return r.b
}

func (r *record) uvarint(v uint64) { r.b = binary.AppendUvarint(r.b, v) }
func (r *record) varint(v int64)   { r.b = binary.AppendVarint(r.b, v) }

func (r *record) str(s string) {
	r.uvarint(uint64(len(s)))
	r.b = append(r.b, s...)
}

// pointBody encodes what every point record carries after its tenant,
// document and version.
func (r *record) pointBody(p *pointIn) {
	r.b = append(r.b, p.id[:]...)
	r.varint(int64(p.chunk))
	r.varint(int64(p.count))
	r.str(p.text)
	r.str(p.hash)
	r.value(p.meta)
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(len(p.vec)))
	for _, x := range p.vec {
		r.b = binary.LittleEndian.AppendUint32(r.b, math.Float32bits(x))
	}
}

// Value tags.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagInt
	tagFloat
	tagString
	tagList
	tagObject
)

// value encodes a plain payload value (see PayloadMap).
func (r *record) value(v any) {
	switch v := v.(type) {
	case bool:
		if v {
			r.b = append(r.b, tagTrue)
		} else {
			r.b = append(r.b, tagFalse)
		}
	case int64:
		r.b = append(r.b, tagInt)
		r.varint(v)
	case float64:
		r.b = append(r.b, tagFloat)
		r.b = binary.LittleEndian.AppendUint64(r.b, math.Float64bits(v))
	case string:
		r.b = append(r.b, tagString)
		r.str(v)
	case []any:
		r.b = append(r.b, tagList)
		r.uvarint(uint64(len(v)))
		for _, x := range v {
			r.value(x)
		}
	case map[string]any:
		r.b = append(r.b, tagObject)
		r.uvarint(uint64(len(v)))
		for k, x := range v {
			r.str(k)
			r.value(x)
		}
	default: // nil; plainValue produces nothing else
		r.b = append(r.b, tagNull)
	}
}

func encodeApply(ws []writeIn) []byte {
	size := 0
	for i := range ws {
		size += 32 + len(ws[i].user) + len(ws[i].doc)
		for j := range ws[i].points {
			size += pointSize(&ws[i].points[j])
		}
	}
	r := newRecord(opApply, size)
	r.uvarint(uint64(len(ws)))
	for i := range ws {
		w := &ws[i]
		r.str(w.user)
		r.str(w.doc)
		r.uvarint(w.version)
		r.uvarint(uint64(len(w.points)))
		for j := range w.points {
			r.pointBody(&w.points[j])
		}
	}
	return r.finish()
}

func encodePrune(ps []pruneIn) []byte {
	size := 0
	for _, p := range ps {
		size += 32 + len(p.user) + len(p.doc)
	}
	r := newRecord(opPrune, size)
	r.uvarint(uint64(len(ps)))
	for _, p := range ps {
		r.str(p.user)
		r.str(p.doc)
		r.uvarint(p.version)
	}
	return r.finish()
}

func encodeUpsert(ps []pointIn) []byte {
	size := 0
	for i := range ps {
		size += pointSize(&ps[i])
	}
	r := newRecord(opUpsert, size)
	r.uvarint(uint64(len(ps)))
	for i := range ps {
		p := &ps[i]
		r.str(p.user)
		r.str(p.doc)
		r.uvarint(p.version)
		r.pointBody(p)
	}
	return r.finish()
}

// recReader reads framed records from a file.
type recReader struct {
	r    *bufio.Reader
	off  int64 // end of the last intact record
	size int64 // the file's size
	buf  []byte
}

func newRecReader(f *os.File) (*recReader, error) {
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	return &recReader{r: bufio.NewReaderSize(f, 1<<20), size: st.Size()}, nil
}

// next returns the next record's body (valid until the next call): io.EOF
// at the end of the file, errTorn when what follows is not an intact record,
// another error when the file cannot be read.
func (rr *recReader) next() ([]byte, error) {
	var h [recHeader]byte
	if _, err := io.ReadFull(rr.r, h[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, io.EOF
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	n := int64(binary.LittleEndian.Uint32(h[0:4]))
	if n == 0 || n > rr.size-rr.off-recHeader {
		return nil, errTorn
	}
	if int64(cap(rr.buf)) < n {
		rr.buf = make([]byte, n)
	}
	body := rr.buf[:n]
	if _, err := io.ReadFull(rr.r, body); err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, errTorn
		}
		return nil, err
	}
	crc := crc32.Update(crc32.Checksum(h[0:4], castagnoli), castagnoli, body)
	if crc != binary.LittleEndian.Uint32(h[4:8]) {
		return nil, errTorn
	}
	rr.off += recHeader + n
	return body, nil
}

// dec decodes a record body; the first failure sticks.
type dec struct {
	b   []byte
	err error
}

var errBadRecord = errors.New("malformed record")

func (d *dec) fail() {
	if d.err == nil {
		d.err = errBadRecord
	}
	d.b = nil
}

// done reports the first failure, or trailing bytes.
func (d *dec) done() error {
	if d.err == nil && len(d.b) > 0 {
		d.err = fmt.Errorf("%w: %d trailing bytes", errBadRecord, len(d.b))
	}
	return d.err
}

func (d *dec) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) varint() int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a number of items of at least minBytes each, refusing counts
// the rest of the record cannot hold.
func (d *dec) count(minBytes int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/minBytes) {
		d.fail()
		return 0
	}
	return int(n)
}

func (d *dec) take(n int) []byte {
	if n < 0 || n > len(d.b) {
		d.fail()
		return nil
	}
	b := d.b[:n]
	d.b = d.b[n:]
	return b
}

func (d *dec) str() string { return string(d.take(d.count(1))) }

// pointBody decodes what record.pointBody encoded; the vector goes into
// p.vec, which must have the collection's dimensions.
func (d *dec) pointBody(p *pointIn) {
	copy(p.id[:], d.take(len(p.id)))
	p.chunk = int(d.varint())
	p.count = int(d.varint())
	p.text = d.str()
	p.hash = d.str()
	p.meta, _ = d.value(0).(map[string]any)
	if p.meta == nil {
		d.fail()
	}
	if n := d.take(4); n != nil && int(binary.LittleEndian.Uint32(n)) != len(p.vec) {
		d.fail()
	}
	raw := d.take(4 * len(p.vec))
	if d.err != nil {
		return
	}
	for i := range p.vec {
		p.vec[i] = math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:]))
	}
}

func (d *dec) value(depth int) any {
	if depth > maxValueDepth {
		d.fail()
		return nil
	}
	tag := d.take(1)
	if len(tag) == 0 {
		return nil
	}
	switch tag[0] {
	case tagNull:
		return nil
	case tagFalse:
		return false
	case tagTrue:
		return true
	case tagInt:
		return d.varint()
	case tagFloat:
		raw := d.take(8)
		if raw == nil {
			return nil
		}
		return math.Float64frombits(binary.LittleEndian.Uint64(raw))
	case tagString:
		return d.str()
	case tagList:
		out := make([]any, d.count(1))
		for i := range out {
			out[i] = d.value(depth + 1)
		}
		return out
	case tagObject:
		n := d.count(2)
		out := make(map[string]any, n)
		for range n {
			k := d.str()
			out[k] = d.value(depth + 1)
		}
		return out
	default:
		d.fail()
		return nil
	}
}
