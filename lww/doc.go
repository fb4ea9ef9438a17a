// Package lww makes the last version of every document win: once every event
// of a document has succeeded, the store holds exactly the chunks of its
// highest version N, or nothing when N is a delete, whatever the order in
// which the events arrived, however often they were redelivered, and however
// many workers processed them concurrently or died midway. This comment
// states the protocol and the argument; Register, the store packages and the
// ingest Stage implement its parts.
//
// # The register
//
// Versions records, per document (Key), the highest version claimed. Register
// keeps it in the JetStream stream RAG_VERSIONS, one subject per document and
// one message per subject:
//
//   - Claim(key, v) is a compare-and-set (a publish expecting the subject's
//     last sequence, retried on conflict): it records v unless a version >= v
//     is recorded. The caller holds the document's newest version (Held) when
//     v is recorded, now or before (a redelivery); otherwise Latest is the
//     newer version.
//   - Latest(keys) is linearizable: it sees every Claim that returned before
//     it was called (reads go to the stream leader; a direct get only on a
//     stream of one replica, whose one server is the leader).
//   - Entries are never removed, deleted documents' included: a stale upsert
//     that arrives after a delete finds the delete's version claimed. The one
//     exception is Register.Forget (ragpipe forget), which removes a tenant's
//     entries after its waiting events are purged and its points deleted.
//
// # The store's rules
//
// Every store (qdrantstore, localstore; internal/storetest checks both)
// implements two calls, each durable when it returns and idempotent (point
// ids are deterministic):
//
//   - Apply(writes): for each write of a document at version V, in order,
//     upsert its points, overwriting only stored points whose version is
//     <= V (a missing point is inserted), then delete the document's points
//     whose version is < V. The delete may be left out only when a read made
//     during the call finds no stored point of the document; the upsert of a
//     first version (Claimed.First, pipeline.DocWrite.First) may then also
//     leave alone every point stored after that read (insert-only).
//   - Prune(docs): for each document and bound V, delete the document's
//     points whose version is < V.
//
// Conditional writes alone are not enough: an older version that writes late
// inserts the chunks the newer version does not have (an older, longer
// version's extra chunk indexes), because a missing point passes any
// condition. The re-read below closes that gap.
//
// # The writer's steps
//
// Protocol takes, for a batch of documents of one collection:
//
//  1. Claim: of several versions of one document in the batch only the
//     highest goes on; the others succeed as they are. Each remaining version
//     is claimed. A version superseded in the register is not written; it is
//     marked to be pruned below the newer version.
//  2. The caller applies the writes of the held versions (Apply).
//  3. Settle: the register is re-read (one batched Latest) for every held
//     upsert that was written; one overtaken by a newer version meanwhile is
//     marked too. Every marked document is pruned below its newer version,
//     the stray points of the caller's own write included.
//
// A claim, re-read or prune that fails fails its event, which is not
// acknowledged and is processed again.
//
// # Writers cut off from NATS
//
// The argument needs an event's deliveries not to overlap once one of them
// is acknowledged: a worker cut off from NATS longer than AckWait, while
// another processed the redelivery and a newer version was written, would
// otherwise insert its older chunks late, and nobody would prune them. The
// worker fences its writes with leases: processing runs under a context
// cancelled (worker.ErrLeaseLost) once AckWait less a third has passed since
// the server last confirmed a keep-alive of the batch's messages (or since
// their receipt). A write is therefore sent at least a third of AckWait
// before JetStream can redeliver its event; the assumption is that a request
// sent reaches the store within that margin (10 s by default).
//
// # Across streams and stores
//
// An event without a version takes its stream sequence. The argument below
// compares versions only, so across a re-created RAG_INGEST, or data moved
// to another NATS and store (ragpipe migrate), every new sequence must
// outrank what is already there. A worker that creates RAG_INGEST starts it
// just above Register.Floor: the highest version stored in any collection or
// recorded in the register, where alone a deleted document's version lives.
// It raises an empty stream it has not checked, and refuses one holding
// events below the floor (worker.ErrBelowFloor). Points copied by migrate
// keep their versions and count in the floor.
//
// # Why the last version wins
//
// Let N be a document's highest version. Then:
//
//   - N's points are all stored and never removed. N's writer upserts all of
//     them; no stored point has a version above N, so none is left alone.
//     An insert-only upsert of a first version N leaves alone only points
//     stored after its read found none: written by writers that claimed
//     after N's claim (one of an older version is refused), so of version
//     N, the same points. (Forget, which deletes register entries, is the
//     exception: a writer that claimed an older version before it may
//     still write, which is why forget requires that nothing of the
//     tenant be in flight, and sweeps after a settling time otherwise.)
//     Every other upsert is of a version below N and only overwrites points
//     whose version is at most its own; every delete and prune removes only
//     versions below its bound, and no bound exceeds N.
//   - Every point p of a version v < N is removed. Its writer re-reads the
//     register after p is durable. If the re-read returns N, the writer
//     prunes below N. If it does not, the re-read was called before N's claim
//     returned, so p was durable before N's writer called Apply, whose delete
//     (or the read that let it leave the delete out) comes after: the delete
//     of versions < N removes p. Points stored without any claim (copied by
//     ragpipe migrate) are durable before N's Apply too and removed the same
//     way when their version is below N.
//   - Crashes and failures: a writer that fails or dies after writing p and
//     before its prune succeeds leaves its event unacknowledged. Redelivered,
//     the event finds N claimed and, superseded, prunes below N before it is
//     acknowledged. A redelivery of N is held again and rewrites the same
//     points, harmlessly.
//   - A version v dropped in step 1 because the batch holds a higher version
//     M of its document: p, from an earlier attempt of v, was durable before
//     the batch, and M, afterwards, either deletes versions < M (held) or
//     prunes below a version above M (superseded).
//   - Concurrent workers: claims of one document are serialized by the
//     compare-and-set, reads are linearizable, and nothing above assumes a
//     single writer.
//   - When N is a delete, its write has no points and only the delete; a
//     stale upsert arriving later is superseded at claim and writes nothing.
//
// Nothing else is stored, so the document converges to exactly N's chunks, or
// to nothing when N is a delete. The argument assumes that an event's
// deliveries do not overlap once one is acknowledged: the worker keeps a
// message in progress for as long as it processes it.
package lww
