package keyring

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
)

// Destroy erases tenant's data key for good, making everything sealed
// under it unreadable: the message holding the wrapped key is deleted
// securely (JetStream overwrites its bytes on disk, in every replica), then
// a tombstone takes its place, so that Lookup answers ErrForgotten and
// every keyring's watch drops the key it cached. destroyed is false when
// there was no live key (never seen, or already forgotten): destroying again
// is harmless. A key created concurrently (an event of the tenant processed
// meanwhile) is destroyed too.
func (k *Keyring) Destroy(ctx context.Context, tenant string) (destroyed bool, err error) {
	for range maxAttempts {
		rec, rev, err := k.readRecord(ctx, tenant)
		switch {
		case err == nil && rec.IsTombstone():
			k.forgetLocally(tenant)
			return destroyed, nil
		case errors.Is(err, ErrNoKey):
		case err != nil && !errors.Is(err, ErrCorrupt): // a corrupt record is erased all the same
			return destroyed, err
		default:
			if err := k.stream.SecureDeleteMsg(ctx, rev); err != nil {
				if _, now, _ := k.readRecord(ctx, tenant); now != rev {
					continue // replaced meanwhile (a rewrap): again
				}
				return destroyed, fmt.Errorf("keyring: destroy key of tenant %s: %w", tenant, err)
			}
			destroyed = true
		}
		_, err = k.kv.Create(ctx, tenant, tombstone(tenant).encode())
		if err == nil {
			k.forgetLocally(tenant)
			return destroyed, nil
		}
		if !isConflict(err) {
			return destroyed, fmt.Errorf("keyring: tombstone of tenant %s: %w", tenant, err)
		}
		// A key was created meanwhile: destroy it too.
	}
	return destroyed, fmt.Errorf("keyring: destroy key of tenant %s: its entry kept changing over %d attempts", tenant, maxAttempts)
}

// forgetLocally drops tenant's cached key at once, without waiting for the
// watch to report the tombstone.
func (k *Keyring) forgetLocally(tenant string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.events++
	k.touched[tenant] = k.events
	delete(k.cache, tenant)
}

// RewrapCounts is what Rewrap did.
type RewrapCounts struct {
	Total     int // entries in the bucket
	Rewrapped int // data keys re-wrapped under the first master key
	Current   int // data keys already wrapped by it
	Forgotten int // tombstones, left alone
	Gone      int // entries removed while Rewrap ran
}

// Rewrap re-wraps every data key under the first master key, so that the
// other keys of the master key file can be retired; the data keys, and so
// everything sealed, stay the same. Each entry is replaced by a
// compare-and-set, so workers may run meanwhile. progress, when not nil,
// is called after each entry with the entries done and the total. It stops
// at the first error (a key wrapped by a master key the file lacks names
// that key); running it again resumes.
func (k *Keyring) Rewrap(ctx context.Context, progress func(done, total int)) (RewrapCounts, error) {
	tenants, err := k.tenants(ctx)
	if err != nil {
		return RewrapCounts{}, err
	}
	c := RewrapCounts{Total: len(tenants)}
	for i, tenant := range tenants {
		if err := k.rewrapOne(ctx, tenant, &c); err != nil {
			return c, err
		}
		if progress != nil {
			progress(i+1, len(tenants))
		}
	}
	return c, nil
}

func (k *Keyring) rewrapOne(ctx context.Context, tenant string, c *RewrapCounts) error {
	primary := k.master.Primary()
	for range maxAttempts {
		rec, rev, err := k.readRecord(ctx, tenant)
		switch {
		case errors.Is(err, ErrNoKey):
			c.Gone++
			return nil
		case err != nil:
			return err
		case rec.IsTombstone():
			c.Forgotten++
			return nil
		case rec.MasterKey == primary:
			c.Current++
			return nil
		}
		dataKey, err := k.master.unwrap(tenant, rec.MasterKey, rec.Nonce, rec.Wrapped)
		if err != nil {
			return err
		}
		rec.MasterKey, rec.Nonce, rec.Wrapped = k.master.wrap(tenant, dataKey)
		_, err = k.kv.Update(ctx, tenant, rec.encode(), rev)
		if err == nil {
			c.Rewrapped++
			return nil
		}
		if !isConflict(err) {
			return fmt.Errorf("keyring: rewrap key of tenant %s: %w", tenant, err)
		}
	}
	return fmt.Errorf("keyring: rewrap key of tenant %s: its entry kept changing over %d attempts", tenant, maxAttempts)
}

// tenants lists the tenants of the bucket's entries, sorted.
func (k *Keyring) tenants(ctx context.Context) ([]string, error) {
	tenants, err := k.kv.Keys(ctx)
	if errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: list %s: %w", Bucket, err)
	}
	return tenants, nil
}

// Export calls fn with the record of every tenant of the bucket, wrapped
// keys and tombstones, in tenant order, for a backup: the records hold no
// clear key, and the master key is never exported. It stops at fn's first
// error and returns it.
func (k *Keyring) Export(ctx context.Context, fn func(Record) error) error {
	tenants, err := k.tenants(ctx)
	if err != nil {
		return err
	}
	for _, tenant := range tenants {
		rec, _, err := k.readRecord(ctx, tenant)
		if errors.Is(err, ErrNoKey) {
			continue // destroyed and gone meanwhile
		}
		if err != nil {
			return err
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
	return nil
}

// Import stores a record Export produced (a restore) unless the tenant
// already has an entry; it never overwrites one. It returns nil when it
// stored the record or when the same one is there already (the same data
// key, however wrapped, or a tombstone over a tombstone: a resumed restore);
// an error wrapping ErrForgotten when the tenant was forgotten here
// (its restored data will not be readable: skip it); and one wrapping
// ErrConflict when the tenant has a different data key here, or a live key
// where the record is a tombstone. A wrapped key must unwrap under the
// master keys: the error names a missing master key.
func (k *Keyring) Import(ctx context.Context, rec Record) error {
	if err := rec.check(); err != nil {
		return err
	}
	var dataKey []byte
	if !rec.IsTombstone() {
		var err error
		if dataKey, err = k.master.unwrap(rec.Tenant, rec.MasterKey, rec.Nonce, rec.Wrapped); err != nil {
			return err
		}
	}
	_, err := k.kv.Create(ctx, rec.Tenant, rec.encode())
	if err == nil {
		return nil
	}
	if !isConflict(err) {
		return fmt.Errorf("keyring: import key of tenant %s: %w", rec.Tenant, err)
	}
	have, _, err := k.readRecord(ctx, rec.Tenant)
	if err != nil {
		return err
	}
	switch {
	case have.IsTombstone() && rec.IsTombstone():
		return nil
	case have.IsTombstone():
		return fmt.Errorf("keyring: import tenant %s: %w here", rec.Tenant, ErrForgotten)
	case rec.IsTombstone():
		return fmt.Errorf("keyring: import tenant %s: a tombstone, but %w", rec.Tenant, ErrConflict)
	}
	haveKey, err := k.master.unwrap(have.Tenant, have.MasterKey, have.Nonce, have.Wrapped)
	if err != nil {
		return err
	}
	if !bytes.Equal(haveKey, dataKey) {
		return fmt.Errorf("keyring: import tenant %s: %w", rec.Tenant, ErrConflict)
	}
	return nil
}
