package keyring

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/ragpipe/ragpipe/pipeline"
)

// recordVersion is the version of the record format Record describes.
const recordVersion = 1

// Record is a tenant's entry in the RAG_KEYS bucket, as stored (JSON) and
// as Export hands it to a backup: a data key wrapped by a master key, or
// the tombstone of a forgotten tenant. It holds no clear key.
type Record struct {
	// Version of the format: 1.
	Version int `json:"v"`
	// Tenant is the user id the key belongs to.
	Tenant string `json:"tenant"`
	// MasterKey is the id of the master key that wraps the data key.
	MasterKey string `json:"master_key,omitempty"`
	// Nonce is the 24-byte XChaCha20-Poly1305 nonce of the wrapping.
	Nonce []byte `json:"nonce,omitempty"`
	// Wrapped is the data key sealed under the master key, with the
	// tenant as associated data (48 bytes: 32 of key, 16 of tag).
	Wrapped []byte `json:"wrapped,omitempty"`
	// Created is when the data key was made.
	Created time.Time `json:"created,omitzero"`
	// Forgotten, on a tombstone, is when the tenant's key was destroyed.
	Forgotten time.Time `json:"forgotten,omitzero"`
}

// IsTombstone reports whether r is the tombstone of a forgotten tenant.
func (r Record) IsTombstone() bool { return !r.Forgotten.IsZero() }

// check validates r's shape (not that it unwraps).
func (r Record) check() error {
	switch {
	case r.Version != recordVersion:
		return fmt.Errorf("%w: tenant %s: record version %d, want %d", ErrCorrupt, r.Tenant, r.Version, recordVersion)
	case !pipeline.ValidUserID(r.Tenant):
		return fmt.Errorf("%w: tenant %s: not a user id", ErrCorrupt, pipeline.ShortQuote(r.Tenant))
	case r.IsTombstone():
		return nil
	case r.MasterKey == "" || len(r.Wrapped) == 0:
		return fmt.Errorf("%w: tenant %s: neither a wrapped key nor a tombstone", ErrCorrupt, r.Tenant)
	}
	return nil
}

// decodeRecord parses a stored record of tenant.
func decodeRecord(tenant string, data []byte) (Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return Record{}, fmt.Errorf("%w: tenant %s: %w", ErrCorrupt, tenant, err)
	}
	if r.Tenant != tenant {
		return Record{}, fmt.Errorf("%w: entry %s holds the record of tenant %s", ErrCorrupt, tenant, pipeline.ShortQuote(r.Tenant))
	}
	return r, r.check()
}

func (r Record) encode() []byte {
	data, err := json.Marshal(r)
	if err != nil {
		panic("keyring: encode record: " + err.Error()) // plain fields only
	}
	return data
}

// newRecord makes a fresh data key for tenant, wrapped by m's first key.
func newRecord(m *MasterKeys, tenant string) (Record, []byte) {
	key := randomBytes(KeySize)
	id, nonce, wrapped := m.wrap(tenant, key)
	return Record{Version: recordVersion, Tenant: tenant, MasterKey: id, Nonce: nonce, Wrapped: wrapped,
		Created: time.Now().UTC().Truncate(time.Second)}, key
}

// tombstone is the record a destroyed key leaves.
func tombstone(tenant string) Record {
	return Record{Version: recordVersion, Tenant: tenant, Forgotten: time.Now().UTC().Truncate(time.Second)}
}
