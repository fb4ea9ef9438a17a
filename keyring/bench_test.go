package keyring_test

import (
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/keyring"
)

// benchKey returns a tenant key from a keyring on a fresh server.
func benchKey(b *testing.B) *keyring.TenantKey {
	b.Helper()
	k := open(b, natstest.Start(b).ClientURL(), masterKeys(b, keyring.NewMasterKey()))
	key, err := k.Tenant(b.Context(), "alice")
	if err != nil {
		b.Fatal(err)
	}
	return key
}

// chunk is a text of the default chunk size, 2,000 characters.
var chunk = strings.Repeat("Nightly backups of prod-orders; restore drill 42 min. ", 40)[:2000]

func BenchmarkSeal(b *testing.B) {
	key := benchKey(b)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		key.Seal("documents", "rds/prod-orders", 3, chunk)
	}
}

func BenchmarkOpen(b *testing.B) {
	key := benchKey(b)
	sealed := key.Seal("documents", "rds/prod-orders", 3, chunk)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := key.Open("documents", "rds/prod-orders", 3, sealed); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkTextHash(b *testing.B) {
	key := benchKey(b)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	for b.Loop() {
		key.TextHash("builtin/1024", chunk)
	}
}

// BenchmarkTermID hashes the terms of a chunk, as the keyword vector of
// every chunk needs.
func BenchmarkTermID(b *testing.B) {
	key := benchKey(b)
	terms := make([][]byte, 0, 400)
	for _, w := range strings.Fields(chunk) {
		terms = append(terms, []byte(strings.Trim(strings.ToLower(w), ".;")))
	}
	b.ReportAllocs()
	b.ResetTimer()
	var sink uint32
	for i := 0; b.Loop(); i++ {
		sink ^= key.TermID(terms[i%len(terms)])
	}
	_ = sink
}

// BenchmarkLookup is a search's look-up of its tenant's key, cached.
func BenchmarkLookup(b *testing.B) {
	k := open(b, natstest.Start(b).ClientURL(), masterKeys(b, keyring.NewMasterKey()))
	if _, err := k.Tenant(b.Context(), "alice"); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.Lookup(b.Context(), "alice"); err != nil {
			b.Fatal(err)
		}
	}
}
