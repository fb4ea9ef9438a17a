package keyring

import (
	"bufio"
	"bytes"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"golang.org/x/crypto/chacha20poly1305"
)

// KeySize is the size of a master key and of a tenant's data key, in bytes.
const KeySize = 32

// MasterKeys are the keys of a master key file, in file order: the first
// wraps new data keys, every one unwraps. It never prints the keys
// themselves, only their ids. It is safe for concurrent use.
type MasterKeys struct {
	keys []masterKey
}

type masterKey struct {
	id  string
	raw []byte // kept for Derive
}

// KeyID returns the id of a key: the first 8 bytes of its SHA-256, in hex.
func KeyID(key []byte) string {
	sum := sha256.Sum256(key)
	return hex.EncodeToString(sum[:8])
}

// LoadMasterKeys reads a master key file (see ParseMasterKeys). Errors name
// the file and the line, never a key.
func LoadMasterKeys(path string) (*MasterKeys, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("master key file: %w", err)
	}
	m, err := ParseMasterKeys(data)
	if err != nil {
		return nil, fmt.Errorf("master key file %s: %w", path, err)
	}
	return m, nil
}

// ParseMasterKeys reads the master key file format: one key a line, each
// the standard base64 (padded) of 32 bytes; blank lines and lines starting
// with # are ignored, surrounding spaces too. It needs at least one key and
// refuses a key given twice.
func ParseMasterKeys(data []byte) (*MasterKeys, error) {
	m := &MasterKeys{}
	seen := make(map[string]int)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(line)
		if err != nil || len(raw) != KeySize {
			return nil, fmt.Errorf("line %d: not a master key: want the standard base64 of %d bytes (make one with `ragpipe keys new`)", n, KeySize)
		}
		id := KeyID(raw)
		if first, ok := seen[id]; ok {
			return nil, fmt.Errorf("line %d: key %s repeats line %d", n, id, first)
		}
		seen[id] = n
		m.keys = append(m.keys, masterKey{id: id, raw: raw})
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(m.keys) == 0 {
		return nil, fmt.Errorf("no key in it (one standard base64 line of %d bytes; make one with `ragpipe keys new`)", KeySize)
	}
	return m, nil
}

// NewMasterKey returns a fresh master key line: the standard base64 of 32
// bytes read from crypto/rand.
func NewMasterKey() string {
	return base64.StdEncoding.EncodeToString(randomBytes(KeySize))
}

// IDs returns the ids of the keys, the wrapping key first.
func (m *MasterKeys) IDs() []string {
	ids := make([]string, len(m.keys))
	for i, k := range m.keys {
		ids[i] = k.id
	}
	return ids
}

// Primary returns the id of the key that wraps new data keys.
func (m *MasterKeys) Primary() string { return m.keys[0].id }

// String lists the key ids, never the keys.
func (m *MasterKeys) String() string {
	return "master keys " + strings.Join(m.IDs(), ",")
}

// Derive returns n bytes derived by HKDF-SHA256 from the i-th master key
// (0 is the wrapping key) for purpose, such as "jetstream" for the embedded
// NATS server's store key; ok is false when there is no i-th key. Distinct
// purposes give independent keys.
func (m *MasterKeys) Derive(i int, purpose string, n int) (key []byte, ok bool) {
	if i < 0 || i >= len(m.keys) {
		return nil, false
	}
	return derive(m.keys[i].raw, "ragpipe/v1/master/"+purpose, n), true
}

// key returns the master key of id.
func (m *MasterKeys) key(id string) ([]byte, bool) {
	for _, k := range m.keys {
		if k.id == id {
			return k.raw, true
		}
	}
	return nil, false
}

// derive returns n bytes of HKDF-SHA256 of secret with info and no salt.
func derive(secret []byte, info string, n int) []byte {
	out, err := hkdf.Key(sha256.New, secret, nil, info, n)
	if err != nil {
		panic("keyring: hkdf: " + err.Error()) // only past 255*32 bytes
	}
	return out
}

// randomBytes returns n bytes of crypto/rand, which never fails on the
// systems Go supports (it panics there rather than return short).
func randomBytes(n int) []byte {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return b
}

// wrapAAD is the associated data of a wrapped data key: its purpose and
// tenant, so that a record copied to another tenant fails to unwrap.
func wrapAAD(tenant string) []byte {
	return []byte("ragpipe/v1/data-key\x00" + tenant)
}

// wrap seals a tenant's data key under the wrapping master key.
func (m *MasterKeys) wrap(tenant string, dataKey []byte) (id string, nonce, sealed []byte) {
	k := m.keys[0]
	aead, _ := chacha20poly1305.NewX(k.raw) // the size is checked on load
	nonce = randomBytes(chacha20poly1305.NonceSizeX)
	return k.id, nonce, aead.Seal(nil, nonce, dataKey, wrapAAD(tenant))
}

// unwrap opens a data key wrapped under master key id.
func (m *MasterKeys) unwrap(tenant, id string, nonce, sealed []byte) ([]byte, error) {
	raw, ok := m.key(id)
	if !ok {
		return nil, fmt.Errorf("%w: tenant %s: its data key is wrapped by master key %s, which the master key file (%s) lacks",
			ErrUnknownMasterKey, tenant, id, strings.Join(m.IDs(), ","))
	}
	aead, _ := chacha20poly1305.NewX(raw)
	if len(nonce) != aead.NonceSize() {
		return nil, fmt.Errorf("%w: tenant %s: nonce of %d bytes", ErrCorrupt, tenant, len(nonce))
	}
	key, err := aead.Open(nil, nonce, sealed, wrapAAD(tenant))
	if err != nil || len(key) != KeySize {
		return nil, fmt.Errorf("%w: tenant %s: data key does not unwrap under master key %s", ErrCorrupt, tenant, id)
	}
	return key, nil
}
