// Package localstore is the embedded vector store of ragpipe dev: an
// ingest.Sink, ingest.VectorSource and search index with the semantics of the
// Qdrant store (package qdrantstore), persistent under one directory and used
// by one process. It needs no server.
//
// # Semantics
//
// Apply, Prune and EnsureCollection behave as the Qdrant store's: Apply
// upserts each write's points, overwriting only stored points whose version
// is <= w.Version and inserting missing ones, then deletes the document's
// points whose version is < w.Version. It ignores pipeline.DocWrite.First:
// its writes are serialized and test each stored point's version
// themselves. Point ids are collection-wide, as in Qdrant. Metadata is stored in the plain form of pipeline.PlainMetadata
// (int64, float64, string, bool, nil, []any, map[string]any), as the Qdrant
// store reads it back, and cosine collections store vectors normalised, as
// Qdrant does. Versions are compared exactly, where Qdrant's range filter
// works in float64 (the two agree up to 2^53).
//
// Search scores as Qdrant does: cosine is the dot product of the normalised
// vectors, dot the plain dot product, both best first; euclid and manhattan
// return the distance, smallest first. A score threshold keeps the hits
// scoring at least it for cosine and dot, at most it for the two distances
// (CONTRACT §4: a hit scoring exactly the threshold is kept). Equal scores
// are ordered by point id. Filter values match as Qdrant's conditions on
// metadata.<key> would: a string matches string values, a bool bool values,
// an int64 integer values only (never a float, as Qdrant's integer match), a
// float64 any number equal to it (as a range gte=lte); a key naming an array
// matches when any element does.
//
// # Collections, generations and aliases
//
// As in the Qdrant store, a collection EnsureCollection creates, x, is the
// collection x__g1 (generation.Name) plus the alias x pointing at it, so
// that ragpipe reindex can build x__g2 and switch the alias to it (see
// package generation). Every call taking a collection name resolves an
// alias to its collection; a collection created before generations, under
// the name x itself, is used as it is. SwitchAlias replaces the alias map
// whole, under no lock a read waits for, so a read resolving x meanwhile
// uses the old collection or the new one. The listings (Collections,
// CollectionNames) name ragpipe collections: each alias, each collection
// no alias points at, except the generations x__gN of an x that exists.
//
// # Keyword vectors
//
// Collections the store creates have keyword vectors (pipeline.Collection
// Keywords) unless Config.NoKeywords: each point keeps its pipeline.Point.Keywords, or one computed
// from its text with pipeline.Keywords when it comes without. Each tenant
// has an inverted index, the postings (slot, weight) of its points by term,
// and the collection counts the points with a keyword vector (N) and, per
// term, those containing it (n), updated by every write and delete, for the
// idf of Qdrant's idf modifier: ln(1 + (N - n + 0.5)/(n + 0.5)). A keyword
// search adds up query weight × idf × stored weight over the postings of
// the query's terms in the tenant, then applies the filter and the
// threshold to the points it touched and keeps the best. A hybrid search
// takes pipeline.PrefetchLimit(top_k) candidates from the dense scan and
// from the keyword index, both filtered, and fuses them by reciprocal rank
// (pipeline.RRFK, the keyword list weighing pipeline.KeywordWeight); the threshold applies to the fused score, equal scores
// are ordered by point id. ModeAuto is hybrid for a query with keywords in
// a collection with keyword vectors, else dense.
//
// A data directory written before keyword vectors (a snapshot header
// without flags, records of the kinds without keyword vectors) loads as
// collections with keyword vectors, computed from the points' texts as they
// are read; the compactor then rewrites such a collection at once, so that
// the next load reads them instead.
//
// # Durability
//
// Every collection is a directory under Config.Dir holding a snapshot
// snap-<gen> and an operation log log-<gen> (gen in 16 hex digits). Each
// Apply, Prune or Upsert call appends one record to the log, framed as a
// little-endian uint32 length, a CRC-32C of the length and the body, and the
// body; the call fsyncs the log and only then changes the in-memory state and
// returns, so an acknowledged call is on disk and a search never sees what a
// crash could lose. A failed write or fsync is cut off the log again
// (ftruncate and fsync); if even that fails, the collection refuses writes
// until the process restarts, and Store.Health reports it. EnsureCollection
// writes the new collection's directory under a temporary name, fsyncs it and
// renames it into place. The aliases are the file aliases.json, replaced
// by a fsynced temporary file's rename and a fsync of the directory;
// DropCollection renames the collection's directory away, fsyncs Config.Dir
// and removes it, and Open removes what a crash left of either.
//
// Open loads each collection's newest snapshot (a complete file, or an error)
// and replays its log. The first record that is short, fails its CRC or has
// an impossible length ends the log: that is the tail a crash tore off while
// it was being written, never acknowledged, and it is truncated away before
// new records are appended. Everything before it was fsynced and is replayed.
//
// Once a log is larger than Config.CompactBytes and than its snapshot, a
// background goroutine writes the state to snap-<gen+1>.tmp, fsyncs it,
// creates an empty log-<gen+1>, renames the snapshot into place and fsyncs
// the directory, then switches writers to the new log and removes the old
// pair. The rename is the commit point: a crash before it leaves the old
// pair, after it the new one, and Open deletes whatever the other generation
// left. Writes to the collection wait for a compaction; searches do not.
//
// # Index: an exact scan
//
// In memory, each tenant's vectors lie contiguously in blocks of 1024 points;
// a search scans the tenant's blocks, split over Config.SearchParallelism
// goroutines, with gonum's blas32 dot product, checks the metadata filter
// before scoring, keeps the top k per goroutine in a bounded heap and merges
// them. Deletes move the tenant's last vector into the hole, so blocks stay
// dense.
//
// The scan is exact rather than approximate: it returns exactly Qdrant's
// results (no recall lost to a graph, filters applied before scoring, however
// selective), it needs no per-tenant index to build at open or to maintain on
// the deletes every document update issues, and so the log is all there is
// to persist. docs/PERFORMANCE.md has the measurements behind this choice.
package localstore
