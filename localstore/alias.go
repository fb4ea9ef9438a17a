package localstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

// aliasFile holds the aliases in the data directory; not a valid
// collection name, so never a collection's directory.
const aliasFile = "aliases.json"

// aliasDoc is aliasFile's content.
type aliasDoc struct {
	// Aliases maps each alias to its collection.
	Aliases map[string]string `json:"aliases"`
}

// aliasMap returns the current aliases, alias -> collection. The map is
// never modified: changes replace it whole.
func (s *Store) aliasMap() map[string]string { return *s.aliases.Load() }

// validStoreName reports whether name may be a collection of the store: a
// ragpipe collection name, or the name of one of its generations (which
// may be longer than a ragpipe name may be).
func validStoreName(name string) bool {
	if pipeline.ValidCollection(name) {
		return true
	}
	base, _, ok := generation.Parse(name)
	return ok && pipeline.ValidCollection(base)
}

// readAliases reads aliasFile in dir; none is no alias.
func readAliases(dir string) (map[string]string, error) {
	b, err := os.ReadFile(filepath.Join(dir, aliasFile))
	if errors.Is(err, os.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, err
	}
	var doc aliasDoc
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%s: %w", aliasFile, err)
	}
	if doc.Aliases == nil {
		doc.Aliases = map[string]string{}
	}
	return doc.Aliases, nil
}

// writeAliases replaces aliasFile in dir with aliases, durably: written
// under a temporary name and fsynced, renamed into place, the directory
// fsynced. A crash leaves the old file or the new one.
func writeAliases(dir string, aliases map[string]string) error {
	b, err := json.Marshal(aliasDoc{Aliases: aliases})
	if err != nil {
		return err
	}
	tmp := filepath.Join(dir, tmpPrefix+aliasFile)
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, filepath.Join(dir, aliasFile))
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// loadAliases reads the aliases at Open; those whose collection is gone
// (a drop interrupted by a crash) are left out and removed by the next
// change.
func (s *Store) loadAliases() error {
	aliases, err := readAliases(s.cfg.Dir)
	if err != nil {
		return err
	}
	for alias, target := range aliases {
		if s.colls[target] == nil || s.colls[alias] != nil || !pipeline.ValidCollection(alias) {
			s.log.Warn().Str("alias", alias).Str("collection", target).Msg("ignoring an embedded alias whose collection is missing or whose name a collection has")
			delete(aliases, alias)
		}
	}
	s.aliases.Store(&aliases)
	return nil
}

// AliasTarget returns the collection the alias name points at; "" when
// name is not an alias.
func (s *Store) AliasTarget(ctx context.Context, name string) (string, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed {
		return "", ErrClosed
	}
	return s.aliasMap()[name], nil
}

// SwitchAlias points alias at collection, creating the alias when missing.
// The change is durable before it returns (the alias file is replaced: two
// fsyncs) and atomic: a call resolving alias meanwhile, such as a search,
// uses the old collection or the new one, never none, and waits for
// nothing. It fails with a permanent error wrapping pipeline.ErrNameTaken
// when a collection is named alias, wrapping pipeline.ErrUnknownCollection
// when collection does not exist (an alias is not a collection).
func (s *Store) SwitchAlias(ctx context.Context, alias, collection string) error {
	if !pipeline.ValidCollection(alias) {
		return pipeline.Permanent(fmt.Errorf("embedded store: alias %q: invalid", alias))
	}
	s.meta.Lock()
	defer s.meta.Unlock()
	return s.switchAlias(ctx, alias, collection)
}

// switchAlias is SwitchAlias; the caller holds s.meta.
func (s *Store) switchAlias(ctx context.Context, alias, collection string) error {
	s.mu.RLock() // held throughout: Close waits for the file to be written
	defer s.mu.RUnlock()
	if s.closed {
		return ErrClosed
	}
	if s.colls[alias] != nil {
		return pipeline.Permanent(fmt.Errorf("embedded store: alias %q: %w", alias, pipeline.ErrNameTaken))
	}
	if s.colls[collection] == nil {
		return unknownCollection(collection)
	}
	cur := s.aliasMap()
	if cur[alias] == collection {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	next := maps.Clone(cur)
	next[alias] = collection
	if err := writeAliases(s.cfg.Dir, next); err != nil {
		return fmt.Errorf("embedded store: alias %q -> %q: %w", alias, collection, err)
	}
	s.aliases.Store(&next)
	s.log.Info().Str("alias", alias).Str("collection", collection).Str("previous", cur[alias]).Msg("switched embedded alias")
	return nil
}
