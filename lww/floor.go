package lww

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/pipeline"
)

// StoredVersions is what Floor reads of a vector store: its collections and
// the highest version stored in each (one indexed query in Qdrant).
type StoredVersions interface {
	Collections(ctx context.Context) ([]pipeline.Collection, error)
	MaxVersion(ctx context.Context, collection string) (uint64, error)
}

// Floor returns the highest version stored in any collection of stored or
// recorded in the register: deleted documents' versions live only in the
// register. An event's default version is its stream sequence, so an ingest
// stream started above the floor gives every later publish a version above
// everything already stored, and the last version wins across a re-created
// stream or data moved to another NATS and store (ragpipe migrate) as within
// one stream. The worker asks for the floor only when it creates the ingest
// stream or finds one it has not checked (worker.Config.VersionFloor).
//
// The store's part is one indexed query per collection. The register's part
// reads every entry (MaxVersion): no index orders them by value. A
// collection deleted while Floor runs is skipped.
func (r *Register) Floor(ctx context.Context, stored StoredVersions) (uint64, error) {
	floor, err := r.MaxVersion(ctx)
	if err != nil {
		return 0, err
	}
	colls, err := stored.Collections(ctx)
	if err != nil {
		return 0, fmt.Errorf("version floor: list collections: %w", err)
	}
	for _, c := range colls {
		v, err := stored.MaxVersion(ctx, c.Name)
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			continue
		}
		if err != nil {
			return 0, fmt.Errorf("version floor: collection %q: %w", c.Name, err)
		}
		floor = max(floor, v)
	}
	return floor, nil
}

// floorBatch is how many register entries MaxVersion asks for at a time;
// floorIdle bounds its wait for the next one, so that a register emptied
// while it reads fails the call instead of blocking it.
const (
	floorBatch = 4096
	floorIdle  = 30 * time.Second
)

// MaxVersion returns the highest version recorded in the register, 0 when
// it is empty. It reads every entry once, in stream order, with an ordered
// consumer: a cost proportional to the number of documents ever seen, paid
// only when a worker computes the floor of a new ingest stream.
func (r *Register) MaxVersion(ctx context.Context) (uint64, error) {
	info, err := r.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("version register: %w", err)
	}
	if info.State.Msgs == 0 {
		return 0, nil
	}
	cons, err := r.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{r.prefix + ">"},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
	})
	if err != nil {
		return 0, fmt.Errorf("version register: read every entry: %w", err)
	}
	it, err := cons.Messages(jetstream.PullMaxMessages(floorBatch))
	if err != nil {
		return 0, fmt.Errorf("version register: read every entry: %w", err)
	}
	defer it.Stop()
	defer context.AfterFunc(ctx, it.Stop)()
	var top uint64
	for {
		msg, err := it.Next(jetstream.NextMaxWait(floorIdle))
		if err != nil {
			return 0, fmt.Errorf("version register: read every entry: %w", cmp.Or(ctx.Err(), err))
		}
		meta, err := msg.Metadata()
		if err != nil {
			return 0, fmt.Errorf("version register: read every entry: %w", err)
		}
		if key := strings.TrimPrefix(msg.Subject(), r.prefix); !strings.HasPrefix(key, "_") { // else a marker
			v, err := strconv.ParseUint(string(msg.Data()), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("version register: entry %s holds %q: %w", msg.Subject(), msg.Data(), err)
			}
			top = max(top, v)
		}
		if meta.NumPending == 0 {
			return top, nil
		}
	}
}
