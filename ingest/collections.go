package ingest

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/ragpipe/ragpipe/pipeline"
)

// collection returns the collection's description, ensuring it exists in the
// sink the first time it is seen: created when StageConfig.AutoCreate allows
// it and StageConfig.MaxCollections is not reached. A collection refused
// either way fails its events permanently, naming the setting.
func (s *Stage) collection(ctx context.Context, name string) (pipeline.Collection, error) {
	if c, ok := s.known.Load(name); ok {
		return c.(pipeline.Collection), nil
	}
	c := pipeline.Collection{Name: name, Dims: s.embedder(name).Dimensions(), Distance: pipeline.Cosine}
	var err error
	switch {
	case s.cfg.AutoCreate == nil || !s.cfg.AutoCreate(name):
		err = s.cfg.Sink.EnsureCollection(ctx, c, false)
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			err = pipeline.Permanent(fmt.Errorf("collection %q does not exist and RAGPIPE_AUTO_CREATE does not allow creating it: %w", name, err))
		}
	case s.limit == nil:
		err = s.cfg.Sink.EnsureCollection(ctx, c, true)
	default:
		err = s.limit.ensure(ctx, s.cfg.Sink, c)
	}
	if err != nil {
		return c, err
	}
	var known bool
	if c.Keywords, known = s.keywords(ctx, name); known {
		s.known.Store(name, c)
	}
	return c, nil
}

// listingTTL is how long a count of the store's collections that found the
// limit reached is trusted: events for new collections are refused without
// listing the store again until it expires.
const listingTTL = 30 * time.Second

// limiter bounds the collections the Stage creates (StageConfig.MaxCollections).
type limiter struct {
	max        int
	lister     CollectionLister
	configured map[string]bool // StageConfig.Collections, which do not count

	turn     chan struct{} // held by the one creation in progress
	count    int           // collections counted at listedAt, plus those created since
	listedAt time.Time
}

// newLimiter returns the limiter of cfg, nil when cfg sets no limit.
func newLimiter(cfg StageConfig) (*limiter, error) {
	if cfg.MaxCollections <= 0 {
		return nil, nil
	}
	lister, ok := cfg.Sink.(CollectionLister)
	if !ok {
		return nil, fmt.Errorf("ingest: MaxCollections needs a sink that lists its collections (%T does not)", cfg.Sink)
	}
	l := &limiter{max: cfg.MaxCollections, lister: lister, configured: make(map[string]bool), turn: make(chan struct{}, 1)}
	for _, c := range cfg.Collections {
		l.configured[c.Name] = true
	}
	return l, nil
}

// ensure makes sure c exists in sink. A missing c is created only while the
// store holds fewer than max collections besides the configured ones;
// otherwise the error is permanent and names RAGPIPE_MAX_COLLECTIONS.
// Creations by this Stage take turns, so that they cannot pass the limit
// together; replicas each count what they see, and may together pass it by
// the collections they create at the same moment.
func (l *limiter) ensure(ctx context.Context, sink Sink, c pipeline.Collection) error {
	select {
	case l.turn <- struct{}{}:
		defer func() { <-l.turn }()
	case <-ctx.Done():
		return context.Cause(ctx)
	}
	err := sink.EnsureCollection(ctx, c, false)
	if !errors.Is(err, pipeline.ErrUnknownCollection) {
		return err
	}
	n, err := l.collections(ctx)
	if err != nil {
		return fmt.Errorf("count the store's collections: %w", err)
	}
	if n >= l.max {
		return pipeline.Permanent(fmt.Errorf("collection %q does not exist and creating it would pass RAGPIPE_MAX_COLLECTIONS=%d: the store holds %d collections besides those of RAGPIPE_COLLECTIONS",
			c.Name, l.max, n))
	}
	if err := sink.EnsureCollection(ctx, c, true); err != nil {
		return err
	}
	l.count++
	return nil
}

// collections counts the store's collections besides the configured ones.
// It lists them, unless a listing younger than listingTTL found the limit
// reached already.
func (l *limiter) collections(ctx context.Context) (int, error) {
	if l.count >= l.max && time.Since(l.listedAt) < listingTTL {
		return l.count, nil
	}
	names, err := l.lister.CollectionNames(ctx)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, name := range names {
		if !l.configured[name] {
			n++
		}
	}
	l.count, l.listedAt = n, time.Now()
	return n, nil
}
