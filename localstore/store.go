package localstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Config configures Open; zero fields take the documented defaults.
type Config struct {
	// Dir is the data directory, created if missing. It must be dedicated to
	// the store (ragpipe dev uses RAGPIPE_DATA_DIR/vectors) and is used by
	// one process at a time: Open fails while another holds it. Required: no
	// default.
	Dir string
	// CompactBytes is the log size from which a collection is compacted into
	// a new snapshot, once its log is also at least as large as its current
	// snapshot, so the files stay within about three times the live data.
	// Default 64 MiB.
	CompactBytes int64
	// SearchParallelism is the most goroutines one search scans a tenant
	// with; a tenant of fewer than 2^18 vector elements (points times
	// dimensions) is scanned by one. Default runtime.GOMAXPROCS(0).
	SearchParallelism int
	// NoKeywords creates collections without keyword vectors: their points
	// keep none and keyword and hybrid searches of them fail
	// (pipeline.ErrNoKeywords). Existing collections are used as they are
	// either way. Default false: created collections keep keyword vectors.
	NoKeywords bool
	// Logger receives open, recovery, compaction and disk-failure events.
	// Default: the zero Logger, which discards everything.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.CompactBytes == 0 {
		c.CompactBytes = 64 << 20
	}
	if c.SearchParallelism == 0 {
		c.SearchParallelism = runtime.GOMAXPROCS(0)
	}
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("data directory is required"))
	}
	if c.CompactBytes < 0 {
		errs = append(errs, fmt.Errorf("compact bytes %d is negative", c.CompactBytes))
	}
	if c.SearchParallelism < 0 {
		errs = append(errs, fmt.Errorf("search parallelism %d is negative", c.SearchParallelism))
	}
	return errors.Join(errs...)
}

// ErrClosed is returned by calls made after Close. It is transient:
// the event was not processed and a restarted process may still do it.
var ErrClosed = errors.New("embedded store closed")

// Store is the embedded vector store; see the package documentation for its
// semantics, durability and index. It is safe for concurrent use: writes to
// one collection are serialised, searches and lists run concurrently with
// each other and with the disk part of writes.
type Store struct {
	cfg  Config
	log  zerolog.Logger
	lock *os.File

	mu     sync.RWMutex // held for reading by every call, for writing by Close and to change colls
	closed bool
	colls  map[string]*coll
	// aliases maps each alias to its collection; replaced whole (under
	// meta), so that a call resolving a name sees the old map or the new.
	aliases atomic.Pointer[map[string]string]
	meta    sync.Mutex // serialises collection creation, drops and alias switches

	kick      chan struct{} // wakes the compactor
	stop      context.CancelFunc
	compactor sync.WaitGroup
}

// Open opens the store in cfg.Dir, creating the directory if needed,
// and loads every collection found there, recovering each from its snapshot
// and log (a torn log tail is discarded, see the package documentation). It blocks until all
// are loaded. It fails on invalid settings, when another process holds the
// directory, and when a snapshot is unreadable.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("embedded store: %w", err)
	}
	s := &Store{
		cfg:   cfg,
		log:   cfg.Logger.With().Str("component", "embedded").Logger(),
		lock:  lock,
		colls: make(map[string]*coll),
		kick:  make(chan struct{}, 1),
	}
	s.aliases.Store(&map[string]string{})
	if err := s.load(ctx); err != nil {
		for _, c := range s.colls {
			c.wal.close()
		}
		unlockDir(lock)
		return nil, fmt.Errorf("embedded store %s: %w", cfg.Dir, err)
	}
	cctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	s.compactor.Go(func() { s.compactLoop(cctx) })
	s.kickCompactor() // logs left large by the last run, legacy points to rewrite
	return s, nil
}

// load opens every collection directory in Dir and removes unfinished ones.
func (s *Store) load(ctx context.Context) error {
	entries, err := os.ReadDir(s.cfg.Dir)
	if err != nil {
		return err
	}
	start := time.Now()
	points := 0
	for _, ent := range entries {
		name := ent.Name()
		switch {
		case strings.HasPrefix(name, tmpPrefix):
			// A collection whose creation never completed.
			if err := os.RemoveAll(filepath.Join(s.cfg.Dir, name)); err != nil {
				return err
			}
		case ent.IsDir() && validStoreName(name):
			if err := ctx.Err(); err != nil {
				return err
			}
			c, err := openColl(s.cfg.Dir, name, s.log)
			if err != nil {
				return fmt.Errorf("collection %q: %w", name, err)
			}
			s.colls[name] = c
			points += len(c.st.points)
		}
	}
	if err := s.loadAliases(); err != nil {
		return err
	}
	s.log.Info().Str("dir", s.cfg.Dir).Int("collections", len(s.colls)).Int("aliases", len(s.aliasMap())).Int("points", points).
		Dur("took", time.Since(start)).Msg("embedded store opened")
	return nil
}

// Close stops compaction (an unfinished one is abandoned, harmlessly), waits
// for calls in flight, closes the logs and releases the directory. Later
// calls fail with ErrClosed. Closing twice is harmless.
func (s *Store) Close() error {
	s.mu.RLock()
	closed := s.closed
	s.mu.RUnlock()
	if closed {
		return nil
	}
	s.stop()
	s.compactor.Wait()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	var errs []error
	for _, c := range s.colls {
		c.wsem <- struct{}{} // no write in flight: all hold s.mu
		errs = append(errs, c.wal.close())
	}
	errs = append(errs, unlockDir(s.lock))
	return errors.Join(errs...)
}

// Health reports whether the store is open and every collection accepts
// writes; for /readyz.
func (s *Store) Health(ctx context.Context) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if _, err := os.Stat(s.cfg.Dir); err != nil {
		return fmt.Errorf("embedded store: %w", err)
	}
	for _, c := range s.colls {
		if err := c.brokenErr(); err != nil {
			return err
		}
	}
	return nil
}

// acquire returns the open collection name, or the one the alias name
// points at; release must be called when done.
func (s *Store) acquire(name string) (c *coll, release func(), err error) {
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return nil, nil, ErrClosed
	}
	c = s.colls[name]
	if c == nil {
		c = s.colls[s.aliasMap()[name]]
	}
	if c == nil {
		s.mu.RUnlock()
		return nil, nil, unknownCollection(name)
	}
	return c, s.mu.RUnlock, nil
}

func unknownCollection(name string) error {
	return pipeline.Permanent(fmt.Errorf("embedded store: collection %q: %w", name, pipeline.ErrUnknownCollection))
}

// EnsureCollection makes sure collection c exists, or the alias c.Name
// of one, with c's dimensions and distance (an empty distance means
// cosine). A missing one is created when create is true, as the collection
// generation.Name(c.Name, 1), with keyword vectors unless Config.NoKeywords
// (c.Keywords is ignored), plus the alias c.Name pointing at it, durably
// before it returns; otherwise the error wraps
// pipeline.ErrUnknownCollection. An existing collection is used with or
// without keyword vectors, as it was created; one of other dimensions or
// distance, an invalid name (CONTRACT §1) or invalid dimensions are
// permanent errors naming both values. A collection created before
// generations, under the name itself, is used as it is.
func (s *Store) EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error {
	c.Keywords = !s.cfg.NoKeywords
	valid := validStoreName // a generation's name is checked as it is
	if create {
		valid = pipeline.ValidCollection // the alias' name
	}
	if err := checkCollection(&c, valid); err != nil {
		return err
	}
	have, release, err := s.acquire(c.Name)
	if err == nil {
		release()
		return collMismatch(c, have)
	}
	if !errors.Is(err, pipeline.ErrUnknownCollection) || !create {
		return err
	}
	s.meta.Lock()
	defer s.meta.Unlock()
	if have, release, err := s.acquire(c.Name); err == nil { // created meanwhile
		release()
		return collMismatch(c, have)
	}
	g := c
	g.Name = generation.Name(c.Name, 1)
	if err := s.create(ctx, g); err != nil { // a generation left by a crash is used if it fits
		return err
	}
	return s.switchAlias(ctx, c.Name, g.Name)
}

// CheckCollection verifies, without changing anything, that collection
// want.Name exists with want's dimensions and distance (empty means cosine),
// as the Qdrant store's does: a missing collection gives a permanent error
// wrapping pipeline.ErrUnknownCollection, a different one a permanent error
// naming both values.
func (s *Store) CheckCollection(ctx context.Context, want pipeline.Collection) error {
	if want.Distance == "" {
		want.Distance = pipeline.Cosine
	}
	c, release, err := s.acquire(want.Name)
	if err != nil {
		return err
	}
	release()
	return collMismatch(want, c)
}

// collMismatch reports, as a permanent error, how have differs from want.
func collMismatch(want pipeline.Collection, have *coll) error {
	return pipeline.CollectionMismatch("the embedded store", want, pipeline.Collection{Name: want.Name, Dims: have.dims, Distance: have.dist})
}
