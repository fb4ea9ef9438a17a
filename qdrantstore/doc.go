// Package qdrantstore stores points durably. Store is the Qdrant sink, an
// ingest.Sink over gRPC: collection bootstrap, conditional upserts, deletes
// of older versions, and retries with backoff for transient failures. Its
// Apply and Prune follow the conditional-write rules of package lww, which
// states why they make the last version win; this comment says how.
//
// # Two operations per request
//
// Apply packs writes (pipeline.DocWrite) into UpdateBatch requests
// (wait=true, so a nil return means durable) of about BatchPoints points,
// Parallelism at once, each request holding two operations whatever the
// number of writes:
//
//  1. one upsert of every write's points, whose update_filter is the
//     disjunction, per version V among the writes, of (has_id(points of the
//     writes of version V) AND version <= V): a stored point that already
//     holds a newer version than its write is left alone, a missing point is
//     inserted. When the read below finds nothing stored, the writes of
//     first versions (pipeline.DocWrite.First) are left out of it, and with
//     none left it is version < 1, which matches no point: their points
//     are inserted where missing, and a point stored after the read is left
//     alone, as it can only be of a newer version or of the same one
//     (package lww: an older version's claim would have come first, or is
//     refused after theirs);
//  2. one delete by the filter: the disjunction, per write w, of (user_id =
//     w.UserID AND doc_id = w.DocID AND version < w.Version). In a
//     collection of one replica, a request none of whose documents has a
//     stored point (a bulk load, found by one read, limit 1) leaves it out.
//
// Qdrant applies each operation of a batch as a separate update, a
// write-ahead-log entry and a pass over the segments each, so the operations
// are packed per request, not per write (docs/PERFORMANCE.md). A delete
// event's write has no points and only the delete. Qdrant runs a batch's
// operations in order, so every delete follows its upsert; a write is never
// split across requests. A request holds at most one write per document;
// several writes of one document in one call go in successive rounds, in
// order. Point ids are deterministic, so every operation is idempotent and a
// retried or redelivered request is harmless. Prune sends only deletes.
//
// # Keyword vectors
//
// Collections EnsureCollection and CreateGeneration create hold, unless
// Config.NoKeywords, beside the unnamed dense vector, a sparse vector named
// "keywords" with Qdrant's idf modifier:
// each point carries the BM25 term weights of its text (pipeline.Keywords),
// and Qdrant multiplies them at query time by each term's IDF over the
// shard's points. Search sends keyword and hybrid queries through the Query
// API, hybrid as one request whose dense and keyword prefetches are fused by
// reciprocal rank. Collections created before keyword vectors, or with
// Config.NoKeywords, keep working: their points are written without them
// and searched by vector only.
//
// The IDF is collection-wide (per shard), over every tenant's chunks, and
// in segments Qdrant has indexed it still counts chunks overwritten or
// deleted since, until the vacuum optimizer rebuilds the segment
// (qdrant/qdrant#6735): keyword scores drift with updates, while the hits
// stay exact (TestKeywordsAfterChurnQdrant).
//
// # Generations
//
// A collection EnsureCollection creates is the Qdrant collection
// <name>__g1 (generation.Name) plus the alias <name> pointing at it; a
// collection created before generations stays a plain collection of its
// name. Qdrant resolves the alias in every request on points, payload
// indexes and collection configuration, so everything by the ragpipe name
// reaches the serving generation. A reindex creates the next generation
// (CreateGeneration), points the alias at it (SwitchAlias: one
// UpdateAliases request deleting and creating the alias, which searches by
// the alias never see missing) and drops the previous one (DropCollection,
// which drops the aliases pointing at it too). The listings (Collections,
// CollectionNames) name ragpipe collections: aliases, not the generations
// behind them. Qdrant refuses an alias named like a collection, so the
// alias of a collection created before generations can only be made once
// that collection is dropped.
//
// # Errors
//
// Retryable is the one classification of failures. Transient ones
// (unavailable, timeouts, rate limits, rejected credentials) are retried with
// exponential backoff and jitter for up to MaxRetryTime per call, then
// returned wrapped; permanent ones (invalid input, unknown collection) are
// marked with pipeline.Permanent at once. Writes are validated before they
// are sent (ids, UTF-8, metadata, and vector lengths once EnsureCollection
// has verified the collection), because Qdrant is not atomic even within one
// upsert: it keeps the points it stored before the one it refuses. A request
// Qdrant refuses as invalid anyway is replayed write by write, so one bad
// event does not fail its batch; the *pipeline.BatchError then says which writes
// failed.
package qdrantstore
