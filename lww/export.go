package lww

import (
	"cmp"
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"
)

// Export calls fn with every entry of the register whose key belongs to
// collection (Key's first token), in stream order: the key and its
// version. It reads the entries once with an ephemeral consumer, each
// document's newest message only, so its cost grows with the number of
// documents the collection ever had (deleted ones included: their entries
// are what keeps a stale event from resurrecting them). Claims made while
// it runs may or may not be seen. It returns fn's first error.
//
// A restore writes the entries back with Restore.
func (r *Register) Export(ctx context.Context, collection string, fn func(key string, version uint64) error) error {
	cons, err := r.lastEntries(ctx, r.prefix+collection+".>")
	if err != nil {
		return fmt.Errorf("version register: export %s: %w", collection, err)
	}
	defer r.stream.DeleteConsumer(context.WithoutCancel(ctx), cons.CachedInfo().Name) //nolint:errcheck // it expires anyway
	if cons.CachedInfo().NumPending == 0 {
		return nil
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(floorBatch))
	if err != nil {
		return fmt.Errorf("version register: export %s: %w", collection, err)
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	for {
		msg, err := it.Next(jetstream.NextMaxWait(floorIdle))
		if err != nil {
			return fmt.Errorf("version register: export %s: %w", collection, cmp.Or(ctx.Err(), err))
		}
		meta, err := msg.Metadata()
		if err != nil {
			return fmt.Errorf("version register: export %s: %w", collection, err)
		}
		key := strings.TrimPrefix(msg.Subject(), r.prefix)
		v, err := strconv.ParseUint(string(msg.Data()), 10, 64)
		if err != nil {
			return fmt.Errorf("version register: entry %s holds %q: %w", msg.Subject(), msg.Data(), err)
		}
		if err := fn(key, v); err != nil {
			return err
		}
		if meta.NumPending == 0 {
			return nil
		}
	}
}

// Restore records version as key's entry only when the register has none,
// and reports whether it did: a restore first claims the version of every
// document it writes back, then restores the backup's other entries (those
// of deleted documents) without raising any of those claims. An entry above
// a document's stored version would make the next event of that document,
// however old, prune the stored points (Claims.Settle).
func (r *Register) Restore(ctx context.Context, key string, version uint64) (bool, error) {
	_, err := r.js.Publish(ctx, r.prefix+key, strconv.AppendUint(nil, version, 10), jetstream.WithExpectLastSequencePerSubject(0))
	switch {
	case err == nil:
		return true, nil
	case isWrongLastSequence(err):
		return false, nil
	}
	return false, fmt.Errorf("version register: restore %s: %w", key, err)
}

// lastEntries creates an ephemeral consumer of the newest entry of each
// register subject matching filter; the caller deletes it (it expires on
// its own after floorIdle).
func (r *Register) lastEntries(ctx context.Context, filter string) (jetstream.Consumer, error) {
	return r.stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		FilterSubject:     filter,
		DeliverPolicy:     jetstream.DeliverLastPerSubjectPolicy,
		AckPolicy:         jetstream.AckNonePolicy,
		InactiveThreshold: floorIdle,
		MemoryStorage:     true,
	})
}
