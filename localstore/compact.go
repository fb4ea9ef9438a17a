package localstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/rs/zerolog"
)

// kickCompactor wakes the compactor without waiting.
func (s *Store) kickCompactor() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// compactLoop compacts the collections whose logs have grown, until ctx ends.
func (s *Store) compactLoop(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.kick:
		}
		s.mu.RLock()
		var due []*coll
		for _, c := range s.colls {
			due = append(due, c)
		}
		s.mu.RUnlock()
		for _, c := range due {
			if err := s.compact(ctx, c, false); err != nil && ctx.Err() == nil {
				s.log.Warn().Err(err).Str("collection", c.name).Msg("compaction failed; the log keeps growing until one succeeds")
			}
		}
	}
}

// Compact writes collection's state to a new snapshot and starts an empty
// log now, whatever the log's size. Writes to the collection wait for it;
// searches do not. The store compacts by itself (see CompactBytes); this is
// for tests and operators.
func (s *Store) Compact(ctx context.Context, collection string) error {
	c, release, err := s.acquire(collection)
	if err != nil {
		return err
	}
	release() // compact takes the store's lock itself
	return s.compact(ctx, c, true)
}

// compact compacts c if forced or if its log has outgrown the thresholds.
func (s *Store) compact(ctx context.Context, c *coll, force bool) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if s.colls[c.name] != c { // dropped
		return nil
	}
	unlock, err := c.lockWriter(ctx)
	if err != nil {
		return err
	}
	defer unlock()
	if !force && !c.compactionDue(s.cfg.CompactBytes) {
		return nil
	}
	start := time.Now()
	before := c.wal.size
	if err := c.compact(ctx, s.log); err != nil {
		return fmt.Errorf("embedded store: compact %q: %w", c.name, err)
	}
	s.log.Info().Str("collection", c.name).Int64("log_bytes", before).Int64("snapshot_bytes", c.snapSize).
		Int("points", len(c.st.points)).Dur("took", time.Since(start)).Msg("compacted embedded collection")
	return nil
}

// compact writes the state to the next generation's snapshot and switches to
// an empty log (see the package documentation). The caller holds wsem.
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
	c.wal, c.gen, c.snapSize, c.legacy = w, gen, size, false
	old.close()
	for _, name := range []string{snapName(gen - 1), logName(gen - 1)} {
		if err := os.Remove(filepath.Join(c.dir, name)); err != nil && !errors.Is(err, os.ErrNotExist) {
			log.Warn().Err(err).Str("collection", c.name).Msg("could not remove an old embedded file; it is removed at the next open")
		}
	}
	return nil
}
