package lww

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Forget removes every register entry of userID, in every collection, with
// one purge by subject (ragpipe forget), and returns how many entries an
// ephemeral consumer counted just before it. An entry claimed between the
// count and the purge is removed without being counted; one claimed after
// the purge stays. Running it again finds nothing. An invalid user id,
// which could widen the filter, is a permanent error.
//
// Removing entries is what lets a forgotten tenant start afresh: its first
// event of a document, version 1 included, is held again (Claimed.First).
// It is the one exception to "entries are never removed" (see the package
// documentation), and it is sound only once no event of the tenant older
// than the forget remains to be processed: an entry is what stops such an
// event from resurrecting a deleted document. ragpipe forget therefore
// purges the tenant's waiting events before its points and entries, and a
// stale event published after the forget is the tenant's new data.
func (r *Register) Forget(ctx context.Context, userID string) (uint64, error) {
	if !pipeline.ValidUserID(userID) {
		return 0, pipeline.Permanent(fmt.Errorf("version register: forget %s: not a user id", pipeline.ShortQuote(userID)))
	}
	// Key puts the collection first and the tenant second; neither holds a dot.
	filter := r.prefix + "*." + userID + ".*"
	cons, err := r.lastEntries(ctx, filter)
	if err != nil {
		return 0, fmt.Errorf("version register: count the entries of %s: %w", userID, err)
	}
	n := cons.CachedInfo().NumPending
	_ = r.stream.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name) // it expires anyway
	if err := r.stream.Purge(ctx, jetstream.WithPurgeSubject(filter)); err != nil {
		return 0, fmt.Errorf("version register: remove the entries of %s: %w", userID, err)
	}
	return n, nil
}
