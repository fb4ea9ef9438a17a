package keyring

import (
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
	"strings"
	"sync"

	"golang.org/x/crypto/chacha20poly1305"
)

// SealedPrefix starts every text Seal returns.
const SealedPrefix = "rp1:"

// TenantKey is one tenant's data key and the subkeys derived from it: it
// seals and opens the tenant's chunk texts and computes its keyed text
// hashes and term ids. It is safe for concurrent use and does not block.
type TenantKey struct {
	tenant  string
	aead    cipher.AEAD // XChaCha20-Poly1305 under the text subkey
	hashKey []byte      // HMAC-SHA256 key of TextHash
	hmacs   sync.Pool   // of hash.Hash: HMAC-SHA256 under hashKey
	term0   uint64      // SipHash-2-4 key of TermID
	term1   uint64
}

// newTenantKey derives the subkeys of dataKey.
func newTenantKey(tenant string, dataKey []byte) *TenantKey {
	aead, _ := chacha20poly1305.NewX(derive(dataKey, "ragpipe/v1/text", chacha20poly1305.KeySize))
	term := derive(dataKey, "ragpipe/v1/term", 16)
	return &TenantKey{
		tenant:  tenant,
		aead:    aead,
		hashKey: derive(dataKey, "ragpipe/v1/text-hash", 32),
		term0:   binary.LittleEndian.Uint64(term),
		term1:   binary.LittleEndian.Uint64(term[8:]),
	}
}

// Tenant returns the tenant the key belongs to.
func (k *TenantKey) Tenant() string { return k.tenant }

// appendAAD appends the associated data of a chunk text to b: the point
// it belongs to, each field length-prefixed so that no two points share it.
func (k *TenantKey) appendAAD(b []byte, collection, docID string, chunkIndex int) []byte {
	b = append(b, "ragpipe/v1/text"...)
	for _, s := range []string{collection, k.tenant, docID} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	return binary.AppendVarint(b, int64(chunkIndex))
}

// scratch holds the buffers of one Seal or Open.
type scratch struct{ aad, buf []byte }

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// Seal encrypts the text of chunk chunkIndex of document docID in
// collection and returns it in its stored form: SealedPrefix followed by
// the standard base64 of a random 24-byte nonce, the XChaCha20-Poly1305
// ciphertext and its 16-byte tag. The point (collection, tenant, document,
// chunk index) is the associated data, so the result opens only there.
func (k *TenantKey) Seal(collection, docID string, chunkIndex int, text string) string {
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	s.aad = k.appendAAD(s.aad[:0], collection, docID, chunkIndex)
	ns := k.aead.NonceSize()
	buf := slices.Grow(s.buf[:0], ns+len(text)+k.aead.Overhead())[:ns]
	_, _ = rand.Read(buf) // never fails: see randomBytes
	buf = append(buf, text...)
	buf = k.aead.Seal(buf[:ns], buf[:ns], buf[ns:], s.aad) // in place
	s.buf = buf

	var out strings.Builder
	out.Grow(len(SealedPrefix) + base64.StdEncoding.EncodedLen(len(buf)))
	out.WriteString(SealedPrefix)
	enc := base64.NewEncoder(base64.StdEncoding, &out)
	_, _ = enc.Write(buf) // a strings.Builder does not fail
	_ = enc.Close()
	return out.String()
}

// Open returns the text Seal sealed for this point. A stored text that is
// not Seal's form, was sealed for another point or tenant, or under another
// key (a forgotten tenant's old key) returns an error wrapping
// ErrUndecryptable.
func (k *TenantKey) Open(collection, docID string, chunkIndex int, stored string) (string, error) {
	enc, ok := strings.CutPrefix(stored, SealedPrefix)
	if !ok {
		return "", fmt.Errorf("%w: %s chunk %d of %s/%s: not a sealed text", ErrUndecryptable, collection, chunkIndex, k.tenant, docID)
	}
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	buf := slices.Grow(s.buf[:0], base64.StdEncoding.DecodedLen(len(enc)))
	buf, err := base64.StdEncoding.AppendDecode(buf, []byte(enc))
	s.buf = buf
	ns := k.aead.NonceSize()
	if err != nil || len(buf) < ns+k.aead.Overhead() {
		return "", fmt.Errorf("%w: %s chunk %d of %s/%s: malformed sealed text", ErrUndecryptable, collection, chunkIndex, k.tenant, docID)
	}
	s.aad = k.appendAAD(s.aad[:0], collection, docID, chunkIndex)
	text, err := k.aead.Open(buf[ns:ns], buf[:ns], buf[ns:], s.aad)
	if err != nil {
		return "", fmt.Errorf("%w: %s chunk %d of %s/%s: %w", ErrUndecryptable, collection, chunkIndex, k.tenant, docID, err)
	}
	return string(text), nil
}

// IsSealed reports whether a stored text has Seal's form (it may still fail
// to open).
func IsSealed(stored string) bool { return strings.HasPrefix(stored, SealedPrefix) }

// TextHash is pipeline.TextHash keyed by the tenant: HMAC-SHA256 of
// identity, a zero byte and text, in hex (64 characters, as
// pipeline.TextHash). Equal texts of one tenant and embedder hash equal, so
// stored vectors are reused; across tenants, or without the key, the hash
// says nothing of the text.
func (k *TenantKey) TextHash(identity, text string) string {
	h, _ := k.hmacs.Get().(hash.Hash)
	if h == nil {
		h = hmac.New(sha256.New, k.hashKey)
	}
	defer k.hmacs.Put(h)
	s := scratchPool.Get().(*scratch)
	defer scratchPool.Put(s)
	s.buf = append(append(append(s.buf[:0], identity...), 0), text...)
	h.Reset()
	h.Write(s.buf)
	var sum [sha256.Size]byte
	return hex.EncodeToString(h.Sum(sum[:0]))
}

// TermID returns the keyword vector index of term for this tenant: the low
// 32 bits of SipHash-2-4 of term under the tenant's term key. Without the
// key an index reveals no word. It does not allocate.
func (k *TenantKey) TermID(term []byte) uint32 {
	return uint32(sipHash24(k.term0, k.term1, term))
}
