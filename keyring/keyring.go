package keyring

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/singleflight"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Bucket is the JetStream key-value bucket of the tenants' wrapped data
// keys, one entry per tenant (its user id); its stream is "KV_" + Bucket.
const Bucket = "RAG_KEYS"

// maxAttempts bounds the compare-and-set retries of one call: each failed
// attempt means another process changed the entry meanwhile.
const maxAttempts = 16

// Config configures Open.
type Config struct {
	// Replicas of the bucket's stream when Open creates it, 1 to 5; give
	// it the version register's (RAGPIPE_STREAM_REPLICAS). Default: 1.
	Replicas int
}

// Keyring hands out the tenants' data keys: it creates a tenant's key on
// first need, keeps it wrapped by the master key in the RAG_KEYS bucket,
// and caches the unwrapped keys in memory. A watch on the bucket drops a
// cached key as soon as another process changes its entry (a forget, a
// rewrap), so a destroyed key stops being used everywhere within moments.
// It is safe for concurrent use; Close stops the watch.
type Keyring struct {
	master *MasterKeys
	kv     jetstream.KeyValue
	stream jetstream.Stream
	group  singleflight.Group
	stop   context.CancelFunc
	done   chan struct{}

	mu       sync.RWMutex
	cache    map[string]entry  // by tenant; only while watching
	touched  map[string]uint64 // events counted at the tenant's last change
	events   uint64            // changes seen by the watch
	watching bool              // false once the watch has ended: no caching
}

// entry is a tenant's cached state: its key, or that it has none.
type entry struct {
	key       *TenantKey // nil: none
	forgotten bool       // with a nil key: a tombstone
}

// Open creates the RAG_KEYS bucket when missing and returns the keyring,
// its watch started. master holds the master keys, read from the master
// key file with LoadMasterKeys.
func Open(ctx context.Context, js jetstream.JetStream, master *MasterKeys, cfg Config) (*Keyring, error) {
	if master == nil || len(master.keys) == 0 {
		return nil, errors.New("keyring: no master key")
	}
	replicas := max(cfg.Replicas, 1)
	if replicas > 5 {
		return nil, fmt.Errorf("keyring: %d replicas: want 1 to 5", replicas)
	}
	stream, err := bucketStream(ctx, js, replicas)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(ctx, Bucket)
	if err != nil {
		return nil, fmt.Errorf("keyring: bucket %s: %w", Bucket, err)
	}
	wctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	w, err := kv.WatchAll(wctx, jetstream.UpdatesOnly(), jetstream.MetaOnly())
	if err != nil {
		stop()
		return nil, fmt.Errorf("keyring: watch %s: %w", Bucket, err)
	}
	k := &Keyring{
		master: master, kv: kv, stream: stream, stop: stop, done: make(chan struct{}),
		cache: make(map[string]entry), touched: make(map[string]uint64), watching: true,
	}
	go k.watch(w)
	return k, nil
}

// bucketStream creates the bucket's stream, or checks the one there. It is
// a key-value stream of one message per tenant that allows deleting
// messages (nats.go's own buckets forbid it), so that Destroy can erase a
// key securely, and that answers reads from its leader when replicated.
func bucketStream(ctx context.Context, js jetstream.JetStream, replicas int) (jetstream.Stream, error) {
	name := "KV_" + Bucket
	stream, err := js.CreateStream(ctx, jetstream.StreamConfig{
		Name:              name,
		Description:       "ragpipe: tenants' data keys, wrapped by the master key",
		Subjects:          []string{"$KV." + Bucket + ".>"},
		Storage:           jetstream.FileStorage,
		Replicas:          replicas,
		MaxMsgsPerSubject: 1,
		MaxMsgs:           -1,
		MaxBytes:          -1,
		MaxMsgSize:        -1,
		MaxConsumers:      -1,
		Discard:           jetstream.DiscardNew,
		AllowRollup:       true,
		Duplicates:        2 * time.Minute,
		AllowDirect:       replicas <= 1,
	})
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		stream, err = js.Stream(ctx, name)
	}
	if err != nil {
		return nil, fmt.Errorf("keyring: stream %s: %w", name, err)
	}
	cfg := stream.CachedInfo().Config
	switch {
	case cfg.DenyDelete:
		return nil, fmt.Errorf("keyring: stream %s denies deletes, which forgetting a tenant needs: "+
			"it was not created by ragpipe; remove it (it holds only wrapped keys) or set deny_delete false", name)
	case cfg.MaxMsgsPerSubject != 1:
		return nil, fmt.Errorf("keyring: stream %s keeps %d messages per tenant, want 1: "+
			"older wrapped keys would outlive a forget", name, cfg.MaxMsgsPerSubject)
	case cfg.AllowDirect && cfg.Replicas > 1:
		return nil, fmt.Errorf("keyring: stream %s has %d replicas and allows direct gets, which a lagging replica may answer: "+
			"set allow_direct to false on it", name, cfg.Replicas)
	}
	return stream, nil
}

// watch drops the cached state of every tenant whose entry changes, until
// the watch ends; from then on nothing is cached.
func (k *Keyring) watch(w jetstream.KeyWatcher) {
	defer close(k.done)
	defer w.Stop()
	for e := range w.Updates() {
		if e == nil { // the end of the (empty) initial values
			continue
		}
		k.mu.Lock()
		k.events++
		k.touched[e.Key()] = k.events
		delete(k.cache, e.Key())
		k.mu.Unlock()
	}
	k.mu.Lock()
	k.watching = false
	clear(k.cache)
	k.mu.Unlock()
}

// Close stops the watch. The keyring must not be used afterwards.
func (k *Keyring) Close() error {
	k.stop()
	<-k.done
	return nil
}

// MasterKeys returns the master keys the keyring wraps and unwraps with.
func (k *Keyring) MasterKeys() *MasterKeys { return k.master }

// cached returns tenant's cached state and the event count to pass to
// remember after reading it afresh.
func (k *Keyring) cached(tenant string) (entry, bool, uint64) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	e, ok := k.cache[tenant]
	return e, ok, k.events
}

// remember caches tenant's state, read after the watch had counted since
// events, unless the watch has seen the entry change since (the state may be
// stale) or has ended.
func (k *Keyring) remember(tenant string, since uint64, e entry) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.watching && k.touched[tenant] <= since {
		k.cache[tenant] = e
	}
}

// Tenant returns tenant's data key, creating it when the tenant has none or
// was forgotten (a forgotten tenant that comes back starts with a fresh
// key). Creation is a compare-and-set on the bucket, so processes racing to
// create a tenant's key all end with the one that won; concurrent calls of
// one process for one tenant share one read. It blocks on the bucket unless
// the key is cached.
func (k *Keyring) Tenant(ctx context.Context, tenant string) (*TenantKey, error) {
	if e, ok, _ := k.cached(tenant); ok && e.key != nil {
		return e.key, nil
	}
	v, err, _ := k.group.Do(tenant, func() (any, error) { return k.getOrCreate(ctx, tenant) })
	if err != nil {
		return nil, err
	}
	return v.(*TenantKey), nil
}

func (k *Keyring) getOrCreate(ctx context.Context, tenant string) (*TenantKey, error) {
	for range maxAttempts {
		_, _, since := k.cached(tenant)
		key, rev, err := k.read(ctx, tenant)
		if err == nil {
			k.remember(tenant, since, entry{key: key})
			return key, nil
		}
		if !errors.Is(err, ErrNoKey) && !errors.Is(err, ErrForgotten) {
			return nil, err
		}
		rec, dataKey := newRecord(k.master, tenant)
		if rev == 0 {
			_, err = k.kv.Create(ctx, tenant, rec.encode())
		} else { // over the tombstone
			_, err = k.kv.Update(ctx, tenant, rec.encode(), rev)
		}
		if err == nil {
			key := newTenantKey(tenant, dataKey)
			k.remember(tenant, since, entry{key: key})
			return key, nil
		}
		if !isConflict(err) {
			return nil, fmt.Errorf("keyring: create key of tenant %s: %w", tenant, err)
		}
		// Another process created it meanwhile: read theirs.
	}
	return nil, fmt.Errorf("keyring: tenant %s: its entry kept changing over %d attempts", tenant, maxAttempts)
}

// Lookup returns tenant's data key without ever creating one: an error
// wrapping ErrNoKey for a tenant never seen, ErrForgotten for one whose key
// was destroyed. It blocks on the bucket unless the answer is cached.
func (k *Keyring) Lookup(ctx context.Context, tenant string) (*TenantKey, error) {
	e, ok, since := k.cached(tenant)
	if !ok {
		key, _, err := k.read(ctx, tenant)
		switch {
		case err == nil:
			e = entry{key: key}
		case errors.Is(err, ErrForgotten):
			e = entry{forgotten: true}
		case errors.Is(err, ErrNoKey):
		default:
			return nil, err
		}
		k.remember(tenant, since, e)
	}
	switch {
	case e.key != nil:
		return e.key, nil
	case e.forgotten:
		return nil, fmt.Errorf("tenant %s: %w", tenant, ErrForgotten)
	}
	return nil, fmt.Errorf("tenant %s: %w", tenant, ErrNoKey)
}

// read reads tenant's entry and unwraps its key. rev is the entry's
// revision, 0 when there is none; the error wraps ErrNoKey when there is
// none, ErrForgotten on a tombstone.
func (k *Keyring) read(ctx context.Context, tenant string) (key *TenantKey, rev uint64, err error) {
	rec, rev, err := k.readRecord(ctx, tenant)
	if err != nil {
		return nil, rev, err
	}
	if rec.IsTombstone() {
		return nil, rev, fmt.Errorf("tenant %s: %w", tenant, ErrForgotten)
	}
	dataKey, err := k.master.unwrap(tenant, rec.MasterKey, rec.Nonce, rec.Wrapped)
	if err != nil {
		return nil, rev, err
	}
	return newTenantKey(tenant, dataKey), rev, nil
}

// readRecord reads tenant's record; rev is 0 and the error wraps ErrNoKey
// when there is none.
func (k *Keyring) readRecord(ctx context.Context, tenant string) (Record, uint64, error) {
	if !pipeline.ValidUserID(tenant) {
		return Record{}, 0, fmt.Errorf("keyring: tenant %s: want 1-128 characters of A-Z a-z 0-9 _ -", pipeline.ShortQuote(tenant))
	}
	e, err := k.kv.Get(ctx, tenant)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, fmt.Errorf("tenant %s: %w", tenant, ErrNoKey)
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("keyring: read key of tenant %s: %w", tenant, err)
	}
	rec, err := decodeRecord(tenant, e.Value())
	return rec, e.Revision(), err
}

// isConflict reports whether a compare-and-set write failed because the
// entry changed.
func isConflict(err error) bool {
	return errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch)
}
