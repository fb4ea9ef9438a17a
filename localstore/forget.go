package localstore

import (
	"context"
	"fmt"

	"github.com/ragpipe/ragpipe/pipeline"
)

// erasedBelow is the prune bound that removes every point of a document:
// above every valid version.
const erasedBelow = pipeline.MaxVersion + 1

// EraseTenant deletes every point of userID in collection and returns how
// many there were, exactly: it holds the collection's writer lock from the
// count to the delete. The delete is one fsynced log record, a prune of each
// of the tenant's documents below every version. When it deleted anything,
// the collection is then compacted, so that the log records and the
// snapshot that held the tenant's texts leave the disk; should that fail,
// the points stay deleted and the error says so, and the texts leave the
// disk at the next compaction. Running it again finds nothing and deletes
// nothing.
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
	defer release()
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
