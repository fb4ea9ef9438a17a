package pipeline

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"

	"github.com/google/uuid"
)

// PointID returns the deterministic point id of a chunk: UUIDv5 in the RFC 4122 URL namespace of "<user_id>/<doc_id>/<chunk_index>".
//
// Redelivered events therefore overwrite their points instead of duplicating
// them (CONTRACT §2).
func PointID(userID, docID string, chunkIndex int) string {
	name := make([]byte, 0, len(userID)+len(docID)+2+4)
	name = append(name, userID...)
	name = append(name, '/')
	name = append(name, docID...)
	name = append(name, '/')
	name = strconv.AppendInt(name, int64(chunkIndex), 10)
	return uuid.NewSHA1(uuid.NameSpaceURL, name).String()
}

// TextHash is the text hash stored with a chunk (payload key text_hash): the
// hex SHA-256 of the embedder's identity and the chunk's text, so that equal
// hashes mean equal vectors.
func TextHash(identity, text string) string {
	h := sha256.New()
	h.Write([]byte(identity))
	h.Write([]byte{0})
	h.Write([]byte(text))
	return hex.EncodeToString(h.Sum(nil))
}
