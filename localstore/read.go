package localstore

import (
	"context"
	"encoding/base64"
	"fmt"
	"slices"

	"github.com/google/uuid"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Count returns the number of points of collection per tenant, for checks
// after a migration.
func (s *Store) Count(ctx context.Context, collection string) (map[string]int, error) {
	var out map[string]int
	err := s.read(ctx, collection, func(c *coll) error {
		out = make(map[string]int, len(c.st.tenants))
		for id, t := range c.st.tenants {
			out[id] = len(t.pts)
		}
		return nil
	})
	return out, err
}

// read runs f on the open collection with its state locked for reading:
// concurrently with other reads, between the in-memory parts of writes.
func (s *Store) read(ctx context.Context, collection string, f func(c *coll) error) error {
	c, release, err := s.acquire(collection)
	if err != nil {
		return err
	}
	defer release()
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.RLock()
	defer c.mu.RUnlock()
	return f(c)
}

// Scroll returns up to limit points of collection, with vectors (keyword vectors too) and payload,
// in point id order, starting after the point id after ("" for the
// beginning), and the cursor of the next page: the last id returned, or ""
// after the last page. A caller that stops may resume from the last id it
// stored. Points written meanwhile are returned if their id lies ahead.
func (s *Store) Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error) {
	if limit < 1 {
		return nil, "", pipeline.Permanent(fmt.Errorf("scroll limit %d: want at least 1", limit))
	}
	var from uuid.UUID
	if after != "" {
		id, err := uuid.Parse(after)
		if err != nil {
			return nil, "", pipeline.Permanent(fmt.Errorf("scroll cursor %q: %w", after, err))
		}
		from = id
	}
	var out []pipeline.Point
	more := false
	err := s.read(ctx, collection, func(c *coll) error {
		best := newBounded(limit, func(a, b *entry) bool { return idLess(a.id, b.id) })
		for id, p := range c.st.points {
			if after != "" && !idLess(from, id) {
				continue
			}
			if !best.push(p) {
				more = true
			}
		}
		page := best.sorted()
		out = make([]pipeline.Point, len(page))
		for i, p := range page {
			out[i] = pipeline.Point{
				ID:         p.id.String(),
				Vector:     slices.Clone(p.t.vec(p.slot)),
				UserID:     p.user,
				DocID:      p.doc,
				ChunkIndex: p.chunk,
				ChunkCount: p.count,
				Text:       p.text,
				Metadata:   copyMap(p.meta),
				Version:    p.version,
				TextHash:   p.hash,
				Keywords:   cloneSparse(p.kw),
			}
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if !more || len(out) == 0 {
		return out, "", nil
	}
	return out, out[len(out)-1].ID, nil
}

// StoredVectors implements ingest.VectorSource as the Qdrant store does: of
// the points ids of collection, it returns the vectors (as stored: normalised
// for cosine) of those whose text hash is one of hashes, keyed by text hash.
// Points that do not exist, have no hash or another one are left out. An id
// that is not a UUID or an unknown collection is a permanent error.
func (s *Store) StoredVectors(ctx context.Context, collection string, ids, hashes []string) (map[string][]float32, error) {
	found := make(map[string][]float32)
	if len(ids) == 0 || len(hashes) == 0 {
		return found, nil
	}
	want := make(map[string]bool, len(hashes))
	for _, h := range hashes {
		if h != "" {
			want[h] = true
		}
	}
	keys := make([]uuid.UUID, len(ids))
	for i, id := range ids {
		u, err := uuid.Parse(id)
		if err != nil {
			return nil, pipeline.Permanent(fmt.Errorf("embedded stored vectors in %q: id %q: %w", collection, id, err))
		}
		keys[i] = u
	}
	err := s.read(ctx, collection, func(c *coll) error {
		for _, k := range keys {
			if p := c.st.points[k]; p != nil && want[p.hash] {
				found[p.hash] = slices.Clone(p.t.vec(p.slot))
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return found, nil
}

// List returns up to limit documents of userID in collection, ordered by
// doc_id, after the opaque cursor ("" for the first page), and the cursor of
// the next page ("" after the last, so that a full page always has a
// successor). A document is listed from its chunk 0 point (version,
// chunk_count, metadata); every document that exists throughout a listing
// appears exactly once, whatever is written meanwhile. An invalid user or a
// limit outside 1-pipeline.MaxLimit is a permanent error, a cursor List did not
// return one wrapping pipeline.ErrInvalidCursor.
func (s *Store) List(ctx context.Context, collection, userID string, limit int, cursor string) ([]pipeline.Doc, string, error) {
	if !pipeline.ValidUserID(userID) || limit < 1 || limit > pipeline.MaxLimit {
		return nil, "", pipeline.Permanent(fmt.Errorf("embedded list in %q: user %q, limit %d: invalid", collection, userID, limit))
	}
	after, err := decodeListCursor(cursor)
	if err != nil {
		return nil, "", pipeline.Permanent(fmt.Errorf("embedded list in %q: %w", collection, err))
	}
	docs := []pipeline.Doc{}
	more := false
	err = s.read(ctx, collection, func(c *coll) error {
		t := c.st.tenants[userID]
		if t == nil {
			return nil
		}
		best := newBounded(limit, func(a, b *entry) bool { return a.doc < b.doc })
		for doc, chunks := range t.docs {
			if cursor != "" && doc <= after {
				continue
			}
			var head *entry
			for _, p := range chunks {
				if p.chunk == 0 && (head == nil || p.version > head.version) {
					head = p
				}
			}
			if head != nil && !best.push(head) {
				more = true
			}
		}
		for _, p := range best.sorted() {
			docs = append(docs, pipeline.Doc{DocID: p.doc, Version: p.version, ChunkCount: p.count, Metadata: copyMap(p.meta)})
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if !more || len(docs) == 0 {
		return docs, "", nil
	}
	return docs, encodeListCursor(docs[len(docs)-1].DocID), nil
}

// listCursorKind starts every list cursor: base64url of it and the last
// doc_id listed.
const listCursorKind = 'd'

func encodeListCursor(docID string) string {
	return base64.RawURLEncoding.EncodeToString(append([]byte{listCursorKind}, docID...))
}

func decodeListCursor(cursor string) (string, error) {
	if cursor == "" {
		return "", nil
	}
	b, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || len(b) < 2 || b[0] != listCursorKind {
		return "", fmt.Errorf("cursor %q: %w", cursor, pipeline.ErrInvalidCursor)
	}
	return string(b[1:]), nil
}
