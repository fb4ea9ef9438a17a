package qdrantstore

import (
	"context"
	"fmt"
	"hash/maphash"
	"math/bits"
	"reflect"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Apply stores writes: each write's points are upserted, overwriting only
// stored points whose version is <= w.Version (missing points are inserted),
// then the document's points whose version is < w.Version are deleted. A
// write without points (a delete) has only the delete. In a collection of
// one replica, a request whose documents have no stored point at all (a
// bulk load) skips the delete, after one read that says so, and upserts the
// points of first versions (pipeline.DocWrite.First) insert-only.
//
// Writes are packed into UpdateBatch requests (wait=true, with the configured
// ordering) of about BatchPoints points, a write never split; each request
// carries one upsert operation for all its writes' points and one delete
// operation for all their older points (see the package documentation for
// why two operations, not two per write). Several writes of one document in
// one call are applied in the given order, one after another. Up to
// Parallelism requests run at once. Transient failures are retried for up to
// MaxRetryTime per request; every operation is idempotent.
//
// Apply returns nil once every write is durable. If a request fails
// permanently, its writes are retried one by one so that one bad write does
// not fail the others; when all failures are permanent the error is a
// *pipeline.BatchError saying which writes failed (the others are stored), otherwise
// it is transient. It is safe for concurrent use.
//
// Versions are compared by Qdrant's range filter, which works in float64:
// exact up to 2^53; above that, versions closer than float64's spacing there
// (e.g. 256 near 1.7e18, nanosecond timestamps) are indistinguishable.
func (q *Store) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	var shape pipeline.Collection // unknown (zero): Qdrant checks the dimensions
	if c, ok := q.known.Load(collection); ok {
		shape = c.(pipeline.Collection)
	}
	units := make([]unit, 0, len(writes))
	errs := make([]error, len(writes))
	var metadata []byte // of all the units
	for i := range writes {
		u, err := q.newUnit(&writes[i], shape, &metadata)
		if err != nil {
			errs[i] = pipeline.Permanent(err)
			continue
		}
		u.index = i
		units = append(units, u)
	}
	return q.run(ctx, "apply", collection, units, errs)
}

// Prune deletes, for each document, its points whose version is < d.Version,
// packed into UpdateBatch requests like Apply's, with the same errors.
func (q *Store) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	units := make([]unit, 0, len(docs))
	errs := make([]error, len(docs))
	for i, d := range docs {
		if err := pipeline.CheckDoc(d.UserID, d.DocID, d.Version); err != nil {
			errs[i] = pipeline.Permanent(err)
			continue
		}
		units = append(units, unit{index: i, doc: docKey{d.UserID, d.DocID}, version: d.Version, weight: 1})
	}
	return q.run(ctx, "prune", collection, units, errs)
}

// newUnit builds the unit of one write for a collection of shape c, after
// pipeline.CheckDoc and pipeline.CheckPoint. With c.Dims > 0 it checks
// vector lengths, sparing Qdrant a batch it would refuse; with c.Keywords
// the points' keyword vectors are stored. Each point's metadata is encoded here, appended to
// *metadata, once for consecutive points of the same map (a document's
// chunks share theirs).
func (q *Store) newUnit(w *pipeline.DocWrite, c pipeline.Collection, metadata *[]byte) (unit, error) {
	dims := c.Dims
	if err := pipeline.CheckDoc(w.UserID, w.DocID, w.Version); err != nil {
		return unit{}, err
	}
	u := unit{doc: docKey{w.UserID, w.DocID}, version: w.Version, weight: max(len(w.Points), 1),
		write: w, first: w.First, keywords: c.Keywords}
	for i := range w.Points {
		p := &w.Points[i]
		if n := len(p.Vector); dims > 0 && n != dims {
			return unit{}, fmt.Errorf("point %s of %s/%s: vector of %d dimensions, collection has %d",
				p.ID, w.UserID, w.DocID, n, dims)
		}
		if err := pipeline.CheckPoint(w, p); err != nil {
			return unit{}, err
		}
		if i > 0 && sameMap(p.Metadata, w.Points[i-1].Metadata) {
			if u.metadata != nil {
				u.metadata[i] = u.metadata[i-1]
			}
		} else {
			start := len(*metadata)
			var err error
			if *metadata, err = appendMetadata(*metadata, p.Metadata); err != nil {
				return unit{}, fmt.Errorf("point %s: metadata: %w", p.ID, err)
			}
			md := (*metadata)[start:len(*metadata):len(*metadata)]
			if i == 0 {
				u.shared = md
			} else {
				if u.metadata == nil {
					u.metadata = make([][]byte, len(w.Points))
					for k := range i {
						u.metadata[k] = u.shared
					}
				}
				u.metadata[i] = md
			}
		}
		if kw := p.Keywords; c.Keywords && kw != nil && len(kw.Indices) > 0 {
			if err := kw.Check(); err != nil {
				return unit{}, fmt.Errorf("point %s: keyword vector: %w", p.ID, err)
			}
		}
	}
	return u, nil
}

// sameMap reports whether a and b are the same map (or both nil).
func sameMap(a, b map[string]any) bool {
	return reflect.ValueOf(a).UnsafePointer() == reflect.ValueOf(b).UnsafePointer()
}

// docKey names a document within a collection.
type docKey struct{ userID, docID string }

// unit is one write or prune: points to upsert over versions <= version,
// then the document's points below version to delete. It is never split
// across requests.
type unit struct {
	index   int // in the caller's slice
	doc     docKey
	version uint64
	weight  int // points carried, at least 1

	write    *pipeline.DocWrite // whose points are upserted; nil for a prune
	first    bool               // write.First: insert-only once a read finds nothing stored
	keywords bool               // the points' keyword vectors are stored
	shared   []byte             // the encoded payload Value of every point's metadata, unless metadata is set
	metadata [][]byte           // of each point of write, when their metadata differ
}

// metadataOf returns the encoded payload Value of the metadata of the i-th
// point of u.
func (u *unit) metadataOf(i int) []byte {
	if u.metadata == nil {
		return u.shared
	}
	return u.metadata[i]
}

// writePoints returns the points u upserts.
func (u *unit) writePoints() []pipeline.Point {
	if u.write == nil {
		return nil
	}
	return u.write.Points
}

// rounds splits units into rounds holding at most one unit per document, the
// k-th unit of each document in round k, so that running the rounds one
// after another applies a document's units in order. When no document
// repeats, the one round is units itself (a copy when distinctDocs cannot
// tell); the rounds are read, never appended to (each has len == cap).
func rounds(units []unit) [][]unit {
	if len(units) == 0 {
		return nil
	}
	if distinctDocs(units) {
		return [][]unit{units[:len(units):len(units)]}
	}
	seen := make(map[docKey]int, len(units))
	n := 1 // rounds
	for i := range units {
		k := seen[units[i].doc] + 1
		seen[units[i].doc] = k
		n = max(n, k)
	}
	// Round k holds one unit of each document with more than k units.
	sizes := make([]int, n)
	for _, c := range seen {
		for k := range c {
			sizes[k]++
		}
	}
	all := make([]unit, len(units))
	out := make([][]unit, n)
	off := 0
	for k, size := range sizes {
		out[k] = all[off : off : off+size]
		off += size
	}
	clear(seen)
	for i := range units {
		k := seen[units[i].doc]
		seen[units[i].doc] = k + 1
		out[k] = append(out[k], units[i])
	}
	return out
}

// distinctDocs reports whether no two units are of the same document, the
// common case, with a sort of hashes of their documents instead of a map.
// Equal hashes, a repeated document or a collision, make it answer false.
func distinctDocs(units []unit) bool {
	var buf [256]uint64
	hashes := buf[:0]
	for i := range units {
		d := &units[i].doc
		hashes = append(hashes, maphash.String(docSeed, d.userID)^bits.RotateLeft64(maphash.String(docSeed, d.docID), 32))
	}
	slices.Sort(hashes)
	for i := 1; i < len(hashes); i++ {
		if hashes[i] == hashes[i-1] {
			return false
		}
	}
	return true
}

var docSeed = maphash.MakeSeed()

// pack groups units into requests of about maxWeight points, in order. The
// requests are sub-slices of units, each of len == cap so that an append to
// one never writes into the next.
func pack(units []unit, maxWeight int) [][]unit {
	var reqs [][]unit
	start, weight := 0, 0
	for i := range units {
		if i > start && weight+units[i].weight > maxWeight {
			reqs = append(reqs, units[start:i:i])
			start, weight = i, 0
		}
		weight += units[i].weight
	}
	if start < len(units) {
		reqs = append(reqs, units[start:len(units):len(units)])
	}
	return reqs
}

// run sends units, round by round (see rounds), in packed requests,
// Parallelism at a time, and reports failures per unit in errs, which holds
// those found while building the units already (one per write or prune).
func (q *Store) run(ctx context.Context, what, collection string, units []unit, errs []error) error {
	var mu sync.Mutex
	fail := func(u unit, err error) {
		mu.Lock()
		errs[u.index] = err
		mu.Unlock()
	}
	for _, round := range rounds(units) {
		var g errgroup.Group
		g.SetLimit(q.cfg.Parallelism)
		for _, r := range pack(round, q.cfg.BatchPoints) {
			g.Go(func() error {
				err := q.send(ctx, what, collection, r)
				if err == nil {
					return nil
				}
				// Only a refused operation (a bad vector, a bad id) is
				// specific to one write; anything else fails them all.
				if !isCode(err, codes.InvalidArgument) || len(r) == 1 || ctx.Err() != nil {
					for _, u := range r {
						fail(u, err)
					}
					return nil
				}
				// One bad write must not fail the others: some of the
				// request's points may be stored already; replay the
				// writes one by one (all idempotent).
				q.log.Warn().Err(err).Str("collection", collection).Int("writes", len(r)).
					Msg("qdrant refused a batch; retrying its writes one by one")
				for _, u := range r {
					if err := q.send(ctx, what, collection, []unit{u}); err != nil {
						fail(u, err)
					}
				}
				return nil
			})
		}
		_ = g.Wait()
	}

	failed := 0
	var transient error
	for _, err := range errs {
		if err == nil {
			continue
		}
		failed++
		if transient == nil && !pipeline.IsPermanent(err) {
			transient = err
		}
	}
	switch {
	case failed == 0:
		return nil
	case transient != nil:
		// Something is merely unavailable: the caller retries the whole
		// call, which is harmless.
		return fmt.Errorf("qdrant %s: %d of %d failed: %w", what, failed, len(errs), transient)
	default:
		return &pipeline.BatchError{Op: "qdrant " + what, Collection: collection, Errs: errs}
	}
}

// send runs the units' operations as one UpdateBatch request (see
// encodeRequest), with retries.
func (q *Store) send(ctx context.Context, what, collection string, units []unit) error {
	deleteOlder := what != "apply" || !q.nothingStored(ctx, collection, units)
	r := newRequest()
	defer r.release()
	var ok bool
	if r.buf, ok = encodeRequest(r.buf, collection, q.ordering, units, deleteOlder); !ok {
		return nil // deletes of documents that have nothing stored
	}
	err := q.retry(ctx, what, collection, func(ctx context.Context) error {
		return q.updateBatch(ctx, collection, r)
	})
	if !isCode(err, codes.NotFound) {
		return err
	}
	if _, vanished := q.known.Load(collection); vanished {
		// An ensured collection vanished (deleted by an operator, or not yet
		// visible on this peer): not the events' fault. Transient, so that
		// the caller ensures it again and retries.
		q.forget(collection, err)
		return fmt.Errorf("qdrant %s %q: %w (%v)", what, collection, pipeline.ErrUnknownCollection, status.Convert(err).Message())
	}
	// A collection never ensured (or dropped by this process) stays a
	// permanent error, which callers recognise.
	return fmt.Errorf("qdrant %s %q: %w: %w", what, collection, pipeline.ErrUnknownCollection, err)
}

// nothingStored reports whether none of the units' documents has a stored
// point, so that their deletes of older points can be left out. It answers
// only for a collection of one replica, where a read sees every
// acknowledged write; with replicas a read may miss a write another replica
// acknowledged, so it answers false, as it does when the read fails.
//
// The read (encodeStoredQuery) matches every point whose user_id is one of
// the units' and whose doc_id is one of theirs: a superset of their
// documents' points (another tenant's document of the same doc_id matches
// too, which only costs the delete), found with two keyword index lookups
// where a disjunction of one conjunction per document makes Qdrant test
// each condition in turn.
//
// Why skipping is then safe: a point of an older version written after
// this read was written after this write's version was claimed (the claim
// comes first), so its writer's re-read of the version register sees the
// newer version and prunes it (see the package documentation). For a first
// version no older version's writer exists at all (its claim would have
// come first, or be refused after ours), so a point written after this read
// is of a newer version or of this one, and the upsert need not overwrite
// it: the request's update_filter leaves first versions out.
func (q *Store) nothingStored(ctx context.Context, collection string, units []unit) bool {
	c, ok := q.known.Load(collection)
	if !ok || c.(pipeline.Collection).ReplicationFactor != 1 {
		return false
	}
	r := newRequest()
	defer r.release()
	r.buf = encodeStoredQuery(r.buf, collection, units)
	var found int
	err := q.call(ctx, func(ctx context.Context) error {
		points, err := q.scroll(ctx, collection, r)
		found = len(points)
		return err
	})
	return err == nil && found == 0
}
