package localstore

import (
	"context"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// CreateGeneration creates collection c under exactly its name, with
// keyword vectors unless Config.NoKeywords (c.Keywords is ignored), durably
// before it returns, unless it exists with c's dimensions and distance (an
// empty distance means cosine), kept as it is; with others, or when an
// alias has the name (wrapping pipeline.ErrNameTaken), it fails
// permanently. It implements reindex.Store.
func (s *Store) CreateGeneration(ctx context.Context, c pipeline.Collection) error {
	c.Keywords = !s.cfg.NoKeywords
	return s.createExact(ctx, c)
}

// createExact is CreateGeneration, creating c with keyword vectors when
// c.Keywords is set.
func (s *Store) createExact(ctx context.Context, c pipeline.Collection) error {
	if err := checkCollection(&c, validStoreName); err != nil {
		return err
	}
	s.meta.Lock()
	defer s.meta.Unlock()
	return s.create(ctx, c)
}

// checkCollection fills c's default distance and validates c, its name
// with valid.
func checkCollection(c *pipeline.Collection, valid func(string) bool) error {
	if c.Distance == "" {
		c.Distance = pipeline.Cosine
	}
	if !valid(c.Name) || c.Dims <= 0 {
		return pipeline.Permanent(fmt.Errorf("collection %q with %d dimensions: invalid", c.Name, c.Dims))
	}
	if !c.Distance.Valid() {
		return pipeline.Permanent(fmt.Errorf("collection %q: unknown distance %q", c.Name, c.Distance))
	}
	return nil
}

// create creates collection c under exactly its name unless it exists, as
// CreateGeneration. The caller holds s.meta; s.mu is held for reading
// while the files are written, so that Close waits for them.
func (s *Store) create(ctx context.Context, c pipeline.Collection) error {
	s.mu.RLock()
	var nc *coll
	err := func() error {
		if s.closed {
			return ErrClosed
		}
		if have := s.colls[c.Name]; have != nil {
			return collMismatch(c, have)
		}
		if s.aliasMap()[c.Name] != "" {
			return pipeline.Permanent(fmt.Errorf("embedded store: collection %q: %w: an alias has it", c.Name, pipeline.ErrNameTaken))
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		var err error
		if nc, err = createColl(s.cfg.Dir, c, s.log); err != nil {
			return fmt.Errorf("embedded store: create collection %q: %w", c.Name, err)
		}
		return nil
	}()
	s.mu.RUnlock()
	if nc == nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed { // closed meanwhile: the collection is on disk, found by the next Open
		nc.wal.close()
		return ErrClosed
	}
	s.colls[c.Name] = nc
	s.log.Info().Str("collection", c.Name).Int("dims", c.Dims).Str("distance", string(c.Distance)).
		Bool("keywords", c.Keywords).Msg("created embedded collection")
	return nil
}

// DropCollection deletes collection name (exactly that name, not an
// alias) and its files, and the aliases pointing at it; a missing one is
// no error. Calls in flight on it finish first; later ones find no such
// collection. It implements reindex.Store.
func (s *Store) DropCollection(ctx context.Context, name string) error {
	s.meta.Lock()
	defer s.meta.Unlock()
	s.mu.RLock()
	closed, c, target := s.closed, s.colls[name], s.aliasMap()[name]
	s.mu.RUnlock()
	switch {
	case closed:
		return ErrClosed
	case target != "":
		return pipeline.Permanent(fmt.Errorf("embedded store: drop %q: an alias of %q, not a collection", name, target))
	case c == nil:
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	aliases := s.aliasMap()
	if slices.Contains(slices.Collect(maps.Values(aliases)), name) {
		aliases = maps.Clone(aliases)
		maps.DeleteFunc(aliases, func(_, target string) bool { return target == name })
		if err := writeAliases(s.cfg.Dir, aliases); err != nil {
			return fmt.Errorf("embedded store: drop %q: remove its aliases: %w", name, err)
		}
	}
	s.mu.Lock() // waits for the calls holding c
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	delete(s.colls, name)
	s.aliases.Store(&aliases)
	s.mu.Unlock()
	c.wal.close()
	// Renamed away first: Open removes what a crash leaves of it.
	gone := filepath.Join(s.cfg.Dir, tmpPrefix+"drop-"+name)
	err := os.RemoveAll(gone)
	if err == nil {
		err = os.Rename(c.dir, gone)
	}
	if err == nil {
		err = syncDir(s.cfg.Dir)
	}
	if err == nil {
		err = os.RemoveAll(gone)
	}
	if err != nil {
		return fmt.Errorf("embedded store: drop %q: %w", name, err)
	}
	s.log.Info().Str("collection", name).Msg("dropped embedded collection")
	return nil
}

// Describe returns collection's dimensions, distance and keyword vectors,
// named as asked (an alias by its own name). It implements reindex.Store.
func (s *Store) Describe(ctx context.Context, collection string) (pipeline.Collection, error) {
	var out pipeline.Collection
	err := s.read(ctx, collection, func(c *coll) error {
		out = c.describe(collection)
		return nil
	})
	return out, err
}

// describe is c's shape under name.
func (c *coll) describe(name string) pipeline.Collection {
	return pipeline.Collection{Name: name, Dims: c.dims, Distance: c.dist, Keywords: c.keywords}
}

// Collections lists the ragpipe collections of the store, with their shape
// (Keywords is set for those with keyword vectors): each alias under its
// own name, described by its collection; each collection that is no
// alias' target, except the generations x__gN of a collection x that
// exists (as an alias or a collection): those belong to x.
func (s *Store) Collections(ctx context.Context) ([]pipeline.Collection, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return nil, ErrClosed
	}
	aliases := s.aliasMap()
	targets := make(map[string]bool, len(aliases))
	out := make([]pipeline.Collection, 0, len(s.colls))
	for alias, target := range aliases {
		targets[target] = true
		if c := s.colls[target]; c != nil {
			out = append(out, c.describe(alias))
		}
	}
	for name, c := range s.colls {
		if targets[name] {
			continue
		}
		if base, _, ok := generation.Parse(name); ok && (s.colls[base] != nil || aliases[base] != "") {
			continue
		}
		out = append(out, c.describe(name))
	}
	slices.SortFunc(out, func(a, b pipeline.Collection) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// generationsOf returns the collections x__gN of collection x, except
// skip.
func (s *Store) generationsOf(x, skip string) []string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var out []string
	for name := range s.colls {
		if base, _, ok := generation.Parse(name); ok && base == x && name != skip {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return out
}
