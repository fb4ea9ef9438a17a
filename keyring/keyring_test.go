package keyring_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/keyring"
)

// masterKeys parses lines as a master key file.
func masterKeys(t testing.TB, lines ...string) *keyring.MasterKeys {
	t.Helper()
	m, err := keyring.ParseMasterKeys([]byte(strings.Join(lines, "\n")))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// jetStream connects to url.
func jetStream(t testing.TB, url string) jetstream.JetStream {
	t.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc) // fails on bad options only
	return js
}

// open opens a keyring on its own connection to url.
func open(t testing.TB, url string, m *keyring.MasterKeys) *keyring.Keyring {
	t.Helper()
	k, err := keyring.Open(t.Context(), jetStream(t, url), m, keyring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { k.Close() })
	return k
}

// same reports whether a and b are the same data key: what one seals the
// other opens.
func same(a, b *keyring.TenantKey) bool {
	got, err := b.Open("c", "d", 0, a.Seal("c", "d", 0, "x"))
	return err == nil && got == "x"
}

func TestTenantAndLookup(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	k := open(t, url, masterKeys(t, keyring.NewMasterKey()))
	ctx := t.Context()
	if _, err := k.Lookup(ctx, "alice"); !errors.Is(err, keyring.ErrNoKey) {
		t.Fatalf("Lookup of a tenant never seen: %v, want ErrNoKey", err)
	}
	a, err := k.Tenant(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if a.Tenant() != "alice" {
		t.Fatalf("Tenant() = %q", a.Tenant())
	}
	again, err := k.Lookup(ctx, "alice")
	if err != nil || !same(a, again) {
		t.Fatalf("Lookup after Tenant: %v, same key %v", err, err == nil && same(a, again))
	}
	b, err := k.Tenant(ctx, "bob")
	if err != nil {
		t.Fatal(err)
	}
	if same(a, b) {
		t.Fatal("alice and bob share a key")
	}
	if _, err := k.Tenant(ctx, "no.dots"); err == nil {
		t.Fatal("Tenant accepted an invalid user id")
	}
}

// TestConcurrentCreate races many goroutines of two processes to create
// one tenant's key: all must end with the same key.
func TestConcurrentCreate(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	m := masterKeys(t, keyring.NewMasterKey())
	rings := []*keyring.Keyring{open(t, url, m), open(t, url, m)}
	const n = 32
	keys := make([]*keyring.TenantKey, 2*n)
	errs := make([]error, 2*n)
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() { keys[i], errs[i] = rings[i%2].Tenant(t.Context(), "carol") })
	}
	wg.Wait()
	for i := range keys {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if !same(keys[0], keys[i]) {
			t.Fatalf("goroutine %d has another key", i)
		}
	}
}

func TestSealOpen(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	k := open(t, url, masterKeys(t, keyring.NewMasterKey()))
	alice, _ := k.Tenant(t.Context(), "alice")
	bob, _ := k.Tenant(t.Context(), "bob")
	text := "Backups of prod-orders run nightly; restore time 42 min. ünïcödé"
	sealed := alice.Seal("documents", "rds/prod", 3, text)
	if !strings.HasPrefix(sealed, keyring.SealedPrefix) || strings.Contains(sealed, "prod-orders") || !keyring.IsSealed(sealed) {
		t.Fatalf("sealed form %q", sealed)
	}
	if again := alice.Seal("documents", "rds/prod", 3, text); again == sealed {
		t.Fatal("two seals of one text are equal: nonces repeat")
	}
	got, err := alice.Open("documents", "rds/prod", 3, sealed)
	if err != nil || got != text {
		t.Fatalf("Open = %q, %v", got, err)
	}
	if got, err := alice.Open("documents", "d", 0, alice.Seal("documents", "d", 0, "")); err != nil || got != "" {
		t.Fatalf("empty text: %q, %v", got, err)
	}
	for _, tc := range []struct {
		name       string
		key        *keyring.TenantKey
		collection string
		doc        string
		chunk      int
		stored     string
	}{
		{"another chunk", alice, "documents", "rds/prod", 4, sealed},
		{"another document", alice, "documents", "rds/prod2", 3, sealed},
		{"another collection", alice, "notes", "rds/prod", 3, sealed},
		{"another tenant", bob, "documents", "rds/prod", 3, sealed},
		{"fields shifted", alice, "documentsr", "ds/prod", 3, sealed},
		{"clear text", alice, "documents", "rds/prod", 3, text},
		{"not base64", alice, "documents", "rds/prod", 3, keyring.SealedPrefix + "!!"},
		{"truncated", alice, "documents", "rds/prod", 3, sealed[:20]},
		{"flipped", alice, "documents", "rds/prod", 3, sealed[:len(sealed)-6] + "AAAA=="},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.key.Open(tc.collection, tc.doc, tc.chunk, tc.stored)
			if !errors.Is(err, keyring.ErrUndecryptable) || got != "" {
				t.Fatalf("Open = %q, %v; want ErrUndecryptable", got, err)
			}
		})
	}
}

func TestTextHashAndTermID(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	k := open(t, url, masterKeys(t, keyring.NewMasterKey()))
	alice, _ := k.Tenant(t.Context(), "alice")
	bob, _ := k.Tenant(t.Context(), "bob")
	h := alice.TextHash("builtin/1024", "some text")
	if len(h) != 64 || strings.Trim(h, "0123456789abcdef") != "" {
		t.Fatalf("TextHash = %q, want 64 hex characters", h)
	}
	switch {
	case alice.TextHash("builtin/1024", "some text") != h:
		t.Fatal("TextHash is not deterministic")
	case alice.TextHash("builtin/1024", "other text") == h, alice.TextHash("hash/1024", "some text") == h:
		t.Fatal("TextHash ignores its input")
	case bob.TextHash("builtin/1024", "some text") == h:
		t.Fatal("TextHash is not keyed by tenant")
	}
	if alice.TermID([]byte("restore")) != alice.TermID([]byte("restore")) ||
		alice.TermID([]byte("restore")) == alice.TermID([]byte("backup")) {
		t.Fatal("TermID is not a function of the term")
	}
	differ := 0
	for i := range 64 {
		term := fmt.Appendf(nil, "term%d", i)
		if alice.TermID(term) != bob.TermID(term) {
			differ++
		}
	}
	if differ < 60 {
		t.Fatalf("TermID of alice and bob differ on %d of 64 terms", differ)
	}
}

func TestRotation(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	old, fresh := keyring.NewMasterKey(), keyring.NewMasterKey()
	ctx := t.Context()
	before := open(t, url, masterKeys(t, old))
	var sealed []string
	for i := range 5 {
		key, err := before.Tenant(ctx, fmt.Sprint("t", i))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, key.Seal("c", "d", i, "text"))
	}
	if _, err := before.Destroy(ctx, "t4"); err != nil {
		t.Fatal(err)
	}
	before.Close()

	// Without the old key the data keys do not unwrap, and the error says which key is missing.
	alone := open(t, url, masterKeys(t, fresh))
	_, err := alone.Lookup(ctx, "t0")
	oldID := keyring.KeyID(mustDecode(t, old))
	if !errors.Is(err, keyring.ErrUnknownMasterKey) || !strings.Contains(err.Error(), oldID) {
		t.Fatalf("Lookup without the wrapping key: %v; want ErrUnknownMasterKey naming %s", err, oldID)
	}
	alone.Close()

	both := open(t, url, masterKeys(t, fresh, old))
	// A data key wrapped by the second master key is readable.
	if key, err := both.Lookup(ctx, "t0"); err != nil {
		t.Fatal(err)
	} else if got, err := key.Open("c", "d", 0, sealed[0]); err != nil || got != "text" {
		t.Fatalf("t0 under the second master key: %q, %v", got, err)
	}
	// A new tenant's key is wrapped by the first key.
	if _, err := both.Tenant(ctx, "t5"); err != nil {
		t.Fatal(err)
	}
	var progress []int
	counts, err := both.Rewrap(ctx, func(done, total int) { progress = append(progress, done, total) })
	want := keyring.RewrapCounts{Total: 6, Rewrapped: 4, Current: 1, Forgotten: 1}
	if err != nil || counts != want {
		t.Fatalf("Rewrap = %+v, %v; want %+v", counts, err, want)
	}
	if len(progress) != 12 || progress[10] != 6 || progress[11] != 6 {
		t.Fatalf("progress calls %v", progress)
	}
	if counts, _ := both.Rewrap(ctx, nil); counts.Rewrapped != 0 || counts.Current != 5 {
		t.Fatalf("second Rewrap = %+v", counts)
	}
	after := open(t, url, masterKeys(t, fresh)) // the old key removed
	for i := range 4 {
		key, err := after.Lookup(ctx, fmt.Sprint("t", i))
		if err != nil {
			t.Fatal(err)
		}
		if got, err := key.Open("c", "d", i, sealed[i]); err != nil || got != "text" {
			t.Fatalf("t%d after rewrap: %q, %v", i, got, err)
		}
	}
	if _, err := after.Lookup(ctx, "t4"); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("forgotten tenant after rewrap: %v", err)
	}
}

func mustDecode(t *testing.T, line string) []byte {
	t.Helper()
	raw, err := base64.StdEncoding.DecodeString(line)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestDestroy(t *testing.T) {
	url := natstest.Start(t).ClientURL()
	m := masterKeys(t, keyring.NewMasterKey())
	a, b := open(t, url, m), open(t, url, m)
	ctx := t.Context()
	if destroyed, err := a.Destroy(ctx, "nobody"); err != nil || destroyed {
		t.Fatalf("Destroy of a tenant without key = %v, %v", destroyed, err)
	}
	if _, err := a.Lookup(ctx, "nobody"); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("Lookup after Destroy of a tenant without key: %v", err)
	}
	old, err := a.Tenant(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	sealed := old.Seal("c", "d", 0, "secret")
	if _, err := b.Lookup(ctx, "alice"); err != nil { // cached in b
		t.Fatal(err)
	}
	if destroyed, err := a.Destroy(ctx, "alice"); err != nil || !destroyed {
		t.Fatalf("Destroy = %v, %v", destroyed, err)
	}
	if _, err := a.Lookup(ctx, "alice"); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("Lookup after Destroy: %v, want ErrForgotten", err)
	}
	checkfor.Until(t, 5*time.Second, "the other keyring forgets alice", func() error {
		_, err := b.Lookup(ctx, "alice")
		if errors.Is(err, keyring.ErrForgotten) {
			return nil
		}
		return fmt.Errorf("Lookup: %v", err)
	})
	if destroyed, err := b.Destroy(ctx, "alice"); err != nil || destroyed {
		t.Fatalf("Destroy again = %v, %v", destroyed, err)
	}
	// The tenant publishes again: a fresh key, which the old text does not open under.
	fresh, err := b.Tenant(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Open("c", "d", 0, sealed); !errors.Is(err, keyring.ErrUndecryptable) {
		t.Fatalf("old text under the fresh key: %v", err)
	}
	checkfor.Until(t, 5*time.Second, "the first keyring sees the fresh key", func() error {
		key, err := a.Lookup(ctx, "alice")
		if err != nil || !same(key, fresh) {
			return fmt.Errorf("Lookup: %v", err)
		}
		return nil
	})
	// Nothing of the old key is left in the stream: one message, the fresh key's.
	info, err := jetStream(t, url).Stream(ctx, "KV_"+keyring.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	state := info.CachedInfo().State
	if state.Msgs != 2 { // alice's fresh key, nobody's tombstone
		t.Fatalf("stream holds %d messages, want 2", state.Msgs)
	}
}

func TestExportImport(t *testing.T) {
	m := masterKeys(t, keyring.NewMasterKey())
	src := open(t, natstest.Start(t).ClientURL(), m)
	ctx := t.Context()
	var sealed []string
	for i := range 3 {
		key, err := src.Tenant(ctx, fmt.Sprint("t", i))
		if err != nil {
			t.Fatal(err)
		}
		sealed = append(sealed, key.Seal("c", "d", 0, "text"))
	}
	if _, err := src.Destroy(ctx, "t2"); err != nil {
		t.Fatal(err)
	}
	var records []keyring.Record
	if err := src.Export(ctx, func(r keyring.Record) error { records = append(records, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(records) != 3 || records[2].Tenant != "t2" || !records[2].IsTombstone() || records[0].IsTombstone() {
		t.Fatalf("exported %+v", records)
	}

	dst := open(t, natstest.Start(t).ClientURL(), m)
	if _, err := dst.Tenant(ctx, "t1"); err != nil { // t1 already has another key there
		t.Fatal(err)
	}
	for round := range 2 { // the second round is a resumed restore
		for _, r := range records {
			err := dst.Import(ctx, r)
			if r.Tenant == "t1" {
				if !errors.Is(err, keyring.ErrConflict) {
					t.Fatalf("round %d: Import over another key: %v, want ErrConflict", round, err)
				}
				continue
			}
			if err != nil {
				t.Fatalf("round %d: Import %s: %v", round, r.Tenant, err)
			}
		}
	}
	key, err := dst.Lookup(ctx, "t0")
	if err != nil {
		t.Fatal(err)
	}
	if got, err := key.Open("c", "d", 0, sealed[0]); err != nil || got != "text" {
		t.Fatalf("restored key: %q, %v", got, err)
	}
	if _, err := dst.Lookup(ctx, "t2"); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("restored tombstone: %v", err)
	}
	// A tenant forgotten here keeps its tombstone.
	if _, err := dst.Destroy(ctx, "t0"); err != nil {
		t.Fatal(err)
	}
	if err := dst.Import(ctx, records[0]); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("Import over a tombstone: %v, want ErrForgotten", err)
	}
	// A record wrapped by a master key this side lacks is refused by name.
	other := open(t, natstest.Start(t).ClientURL(), masterKeys(t, keyring.NewMasterKey()))
	if err := other.Import(ctx, records[1]); !errors.Is(err, keyring.ErrUnknownMasterKey) || !strings.Contains(err.Error(), records[1].MasterKey) {
		t.Fatalf("Import without the master key: %v", err)
	}
}

func TestParseMasterKeys(t *testing.T) {
	k1, k2 := keyring.NewMasterKey(), keyring.NewMasterKey()
	for _, tc := range []struct {
		name, file string
		ids        int
		err        string
	}{
		{"one", k1 + "\n", 1, ""},
		{"two with comments", "# rotated 2026-12\n\n  " + k2 + "  \n# old\n" + k1, 2, ""},
		{"empty", "# nothing\n\n", 0, "no key"},
		{"short", "c2hvcnQ=\n", 0, "line 1: not a master key"},
		{"not base64", k1 + "\n%%%\n", 0, "line 2: not a master key"},
		{"repeated", k1 + "\n" + k1, 0, "line 2: key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := keyring.ParseMasterKeys([]byte(tc.file))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want %q", err, tc.err)
				}
				for _, k := range []string{k1, k2} {
					if strings.Contains(err.Error(), k) {
						t.Fatal("the error shows a key")
					}
				}
				return
			}
			if err != nil || len(m.IDs()) != tc.ids {
				t.Fatalf("ParseMasterKeys = %v, %v", m, err)
			}
			if strings.Contains(m.String(), k1) || strings.Contains(m.String(), k2) {
				t.Fatal("String shows a key")
			}
		})
	}
}

// TestReplicated runs the keyring on a three-node cluster with three
// replicas: reads go to the stream leader, and the secure delete of a
// forget is replicated.
func TestReplicated(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs a three-node NATS cluster")
	}
	cluster := natstest.StartCluster(t, 3)
	m := masterKeys(t, keyring.NewMasterKey())
	var rings []*keyring.Keyring
	for _, p := range cluster {
		k, err := keyring.Open(t.Context(), jetStream(t, p.URL()), m, keyring.Config{Replicas: 3})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { k.Close() })
		rings = append(rings, k)
	}
	info, err := jetStream(t, cluster[0].URL()).Stream(t.Context(), "KV_"+keyring.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	if cfg := info.CachedInfo().Config; cfg.Replicas != 3 || cfg.AllowDirect || cfg.DenyDelete {
		t.Fatalf("stream config: replicas %d, allow direct %v, deny delete %v", cfg.Replicas, cfg.AllowDirect, cfg.DenyDelete)
	}
	keys := make([]*keyring.TenantKey, 3)
	var wg sync.WaitGroup
	for i, k := range rings {
		wg.Go(func() {
			var err error
			if keys[i], err = k.Tenant(t.Context(), "alice"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if t.Failed() || !same(keys[0], keys[1]) || !same(keys[0], keys[2]) {
		t.Fatal("the nodes' keyrings do not agree on alice's key")
	}
	if destroyed, err := rings[1].Destroy(t.Context(), "alice"); err != nil || !destroyed {
		t.Fatalf("Destroy = %v, %v", destroyed, err)
	}
	for i, k := range rings {
		checkfor.Until(t, 5*time.Second, fmt.Sprint("keyring ", i, " forgets alice"), func() error {
			if _, err := k.Lookup(t.Context(), "alice"); !errors.Is(err, keyring.ErrForgotten) {
				return fmt.Errorf("Lookup: %v", err)
			}
			return nil
		})
	}
}
