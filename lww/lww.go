package lww

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"strings"
)

// Versions is the per-document version register that makes the last version
// win across redeliveries and concurrent workers.
type Versions interface {
	// Claim records v as the newest version of key unless a version >= v is
	// already recorded, and says what it found.
	Claim(ctx context.Context, key string, v uint64) (Claimed, error)
	// Latest returns the newest recorded version of each key, 0 if none. The
	// reads are linearizable: they see every Claim that returned before
	// Latest was called.
	Latest(ctx context.Context, keys []string) ([]uint64, error)
}

// BatchVersions is a Versions that claims many keys in one call for less
// than a Claim each costs; Protocol.Claim uses it when its Versions has it.
type BatchVersions interface {
	Versions
	// ClaimMany claims versions[i] for keys[i], each as Claim does, with at
	// most inFlight claims under way at once, and returns the outcome and
	// error of each.
	ClaimMany(ctx context.Context, keys []string, versions []uint64, inFlight int) ([]Claimed, []error)
}

// Claimed is the outcome of Versions.Claim.
type Claimed struct {
	// Held is true when the caller holds the newest version: v was recorded,
	// or was already (so that redeliveries proceed).
	Held bool
	// Latest is the newest version recorded after the call.
	Latest uint64
	// First is true when Claim recorded v where no version was recorded
	// before: the document is new to the register (its points, if any,
	// predate the register, e.g. copied by ragpipe migrate).
	First bool
}

// Key is the register key of a document: a string of NATS subject
// token characters, unique per (collection, user_id, doc_id).
func Key(collection, userID, docID string) string {
	sum := sha256.Sum256([]byte(docID))
	var hash [43]byte // base64.RawURLEncoding.EncodedLen(sha256.Size)
	base64.RawURLEncoding.Encode(hash[:], sum[:])
	return collection + "." + userID + "." + string(hash[:]) // one allocation: the key
}

// prefixed returns prefix+s for each of ss, all in one allocation: a
// batch's subjects live as long as the batch.
func prefixed(prefix string, ss []string) []string {
	n := 0
	for _, s := range ss {
		n += len(prefix) + len(s)
	}
	var b strings.Builder
	b.Grow(n)
	out := make([]string, len(ss))
	for i, s := range ss {
		start := b.Len()
		b.WriteString(prefix)
		b.WriteString(s)
		out[i] = b.String()[start:]
	}
	return out
}
