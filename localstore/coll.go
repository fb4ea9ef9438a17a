package localstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Names in the data directory (see the package documentation).
const (
	tmpPrefix  = ".tmp-" // a collection being created, or (as suffix) a snapshot being written
	tmpSuffix  = ".tmp"
	snapPrefix = "snap-"
	logPrefix  = "log-"
)

// coll is one collection: its files and its in-memory state.
type coll struct {
	name string
	dims int
	dist pipeline.Distance
	dir  string
	// keywords says whether points keep keyword vectors (keyword and hybrid
	// search).
	keywords bool

	wsem chan struct{} // held by the one writer (Apply, Prune, Upsert, compaction)
	// Guarded by wsem:
	wal      *wal
	gen      uint64
	snapSize int64
	broken   error // set when the log's state on disk is unknown
	// legacy is set when the snapshot or log holds points stored without
	// keyword vectors, which were computed at load: compaction rewrites them
	// with theirs, so that the next load need not.
	legacy bool

	brokenMsg atomic.Pointer[error] // broken, readable without wsem

	mu sync.RWMutex // guards st: readers search, the writer applies
	st *state
}

func newColl(dir string, c pipeline.Collection) *coll {
	return &coll{
		name: c.Name, dims: c.Dims, dist: c.Distance, dir: dir, keywords: c.Keywords,
		wsem: make(chan struct{}, 1),
		st:   newState(c.Dims, c.Keywords),
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
// the snapshot, or whether legacy points are to be rewritten. The caller
// holds wsem.
func (c *coll) compactionDue(threshold int64) bool {
	return c.legacy || c.wal.size >= threshold && c.wal.size >= c.snapSize
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
