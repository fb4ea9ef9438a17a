// Package keyring keeps the per-tenant keys of encryption at rest
// (RAGPIPE_ENCRYPTION_KEY_FILE, contract §3): it creates each tenant's data
// key on first need, stores it only wrapped by a master key, and derives
// from it what the ingest stage and the search service need to keep a
// tenant's text unreadable in the vector store.
//
// # Master key file
//
// One key a line, each the standard base64 (with padding) of 32 random
// bytes, as `ragpipe keys new` prints; blank lines and lines starting with
// # are ignored. The first key wraps new data keys; the others only unwrap
// (rotation: put a new key first, keep the old one after it, run `ragpipe
// keys rewrap`, then remove the old line). A key's id is the first 8 bytes
// of its SHA-256, in hex (16 characters): records and errors name keys by
// id, never show them.
//
// # Data keys
//
// Each tenant (user id) has one data key of 32 random bytes, kept in the
// JetStream key-value bucket RAG_KEYS (stream KV_RAG_KEYS, replicated like
// the version register, one message per tenant) as a JSON Record:
//
//	{"v":1,"tenant":"alice","master_key":"<id>","nonce":"<base64, 24 bytes>",
//	 "wrapped":"<base64, 48 bytes>","created":"2026-12-06T17:00:00Z"}
//
// wrapped is XChaCha20-Poly1305 under the master key of that id, with the
// associated data "ragpipe/v1/data-key", a zero byte and the tenant, so a
// record copied to another tenant does not unwrap. Creation is a
// compare-and-set (no entry yet), so concurrent workers agree on one key.
// A forgotten tenant's entry is a tombstone, {"v":1,"tenant":"alice",
// "forgotten":"<time>"}: its key's message was deleted securely first
// (overwritten on disk), and a later event of the tenant creates a fresh
// key over the tombstone.
//
// # Subkeys and stored forms
//
// HKDF-SHA256 of the data key (no salt) gives three independent subkeys,
// by info string:
//
//   - "ragpipe/v1/text" (32 bytes): XChaCha20-Poly1305 of chunk texts. A
//     stored text is "rp1:" followed by the standard base64 of a random
//     24-byte nonce, the ciphertext (as long as the UTF-8 text) and the
//     16-byte tag. The associated data is "ragpipe/v1/text" then the
//     collection, the tenant and the document id, each preceded by its
//     length as a uvarint, then the chunk index as a varint: a ciphertext
//     copied to another point, document, tenant or collection does not open.
//   - "ragpipe/v1/text-hash" (32 bytes): the HMAC-SHA256 key of
//     TenantKey.TextHash, the keyed form of pipeline.TextHash (64 hex
//     characters).
//   - "ragpipe/v1/term" (16 bytes): the SipHash-2-4 key of TenantKey.TermID,
//     the keyed keyword vector index of a term (its low 32 bits).
//
// MasterKeys.Derive gives keys derived from a master key for other uses:
// `ragpipe dev` derives its embedded NATS server's store key
// (JetStream's encryption at rest) that way.
//
// # What is and is not protected
//
// Without the master key, whoever holds the vector store (its disks,
// snapshots, a hosted Qdrant) or the NATS data reads no chunk text, cannot
// test a guess of a text against its text hash, and cannot tell which word
// a keyword index stands for. They still see the metadata (kept clear so
// that filters work), the tenant, document and collection names, chunk
// counts and lengths (a ciphertext is 40 bytes longer than its text, before
// base64), versions, the vectors (dense embeddings carry some meaning of the
// text), and which chunks of one tenant share a word or a text. Events
// waiting in JetStream and dead letters hold the original bodies: JetStream's
// own encryption at rest covers them.
//
// Destroy removes the wrapped key's message by a secure delete. Earlier
// messages of the entry replaced by Rewrap are removed by the stream's limit
// of one message per tenant without being overwritten: until JetStream
// compacts their block they may remain on disk, wrapped by the old master
// key, so retire an old master key for good only with JetStream encryption
// at rest on, or after its disks are gone.
package keyring
