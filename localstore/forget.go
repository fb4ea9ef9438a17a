package localstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/ragpipe/ragpipe/pipeline"
)

// erasedBelow is the prune bound that removes every point of a document:
// above every valid version.
const erasedBelow = pipeline.MaxVersion + 1

// EraseTenant deletes every point of userID in collection (an alias: in
// its collection) and in every generation collection__gN of it, and
// returns how many there were in collection, exactly: in each, it holds
// the collection's writer lock from the count to the delete. So ragpipe
// forget, which erases each listed collection, reaches the generations a
// reindex builds or keeps too. Each delete is one fsynced log record, a
// prune of each of the tenant's documents below every version. A
// collection it deleted anything from is then compacted, so that the log
// records and the snapshot that held the tenant's texts leave the disk;
// should that fail, the points stay deleted and the error says so, and the
// texts leave the disk at the next compaction. Running it again finds
// nothing and deletes nothing.
//
// An invalid user id is a permanent error; an unknown collection wraps
// pipeline.ErrUnknownCollection.
func (s *Store) EraseTenant(ctx context.Context, collection, userID string) (int, error) {
	if !pipeline.ValidUserID(userID) {
		return 0, pipeline.Permanent(fmt.Errorf("embedded erase %q: user %s: invalid", collection, pipeline.ShortQuote(userID)))
	}
	c, release, err := s.acquire(collection)
	if err != nil {
		return 0, err
	}
	n, err := s.erase(ctx, c, userID)
	release()
	if err != nil {
		return n, err
	}
	for _, name := range s.generationsOf(collection, c.name) {
		g, release, err := s.acquire(name)
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			continue // dropped meanwhile
		}
		if err != nil {
			return n, err
		}
		_, err = s.erase(ctx, g, userID)
		release()
		if err != nil {
			return n, fmt.Errorf("embedded erase %q: generation %q: %w", collection, name, err)
		}
	}
	return n, nil
}

// erase is EraseTenant in c alone; the caller holds c (acquire).
func (s *Store) erase(ctx context.Context, c *coll, userID string) (int, error) {
	unlock, err := c.lockWriter(ctx)
	if err != nil {
		return 0, err
	}
	defer unlock()
	c.mu.RLock()
	var prunes []pruneIn
	n := 0
	if t := c.st.tenants[userID]; t != nil {
		n = len(t.pts)
		for doc := range t.docs {
			prunes = append(prunes, pruneIn{user: userID, doc: doc, version: erasedBelow})
		}
	}
	c.mu.RUnlock()
	if n == 0 {
		return 0, nil
	}
	if err := c.append(encodePrune(prunes), s.log); err != nil {
		return 0, fmt.Errorf("embedded store: collection %q: %w", c.name, err)
	}
	c.mu.Lock()
	for _, p := range prunes {
		c.st.deleteOlder(p.user, p.doc, p.version)
	}
	c.mu.Unlock()
	// The store's lock is held (acquire) and so is the writer's: compact
	// directly, as Store.compact would after taking both.
	if err := c.compact(ctx, s.log); err != nil {
		return n, fmt.Errorf("embedded store: %d points of %s deleted from %q, but compacting failed, so their texts stay on disk until a compaction succeeds: %w",
			n, userID, c.name, err)
	}
	return n, nil
}
