package search_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// lookupKeys is the search.Config.Keys of k, as ragpipe wires it.
func lookupKeys(k *keyring.Keyring) func(context.Context, string) (search.TenantKey, error) {
	return func(ctx context.Context, tenant string) (search.TenantKey, error) {
		key, err := k.Lookup(ctx, tenant)
		switch {
		case errors.Is(err, keyring.ErrNoKey), errors.Is(err, keyring.ErrForgotten):
			return nil, nil
		case err != nil:
			return nil, err
		}
		return key, nil
	}
}

// TestSearchServiceDecrypts: with Keys, hits come back with clear texts in
// every mode, found by the tenant's keyed term ids; a ciphertext copied
// onto another point is left out; a tenant without a key finds nothing by
// keyword and gets a normal (empty) dense reply; a key that cannot be read
// is a 503.
func TestSearchServiceDecrypts(t *testing.T) {
	nc, store, log := startLocal(t)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	master, _ := keyring.ParseMasterKeys([]byte(keyring.NewMasterKey()))
	keys, err := keyring.Open(t.Context(), js, master, keyring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	hash, _ := embedder.NewHash(dims)
	if err := store.EnsureCollection(t.Context(), pipeline.Collection{Name: "enc", Dims: dims, Keywords: true}, true); err != nil {
		t.Fatal(err)
	}
	var ws []pipeline.DocWrite
	write := func(user, doc, text, stored string, key *keyring.TenantKey) {
		vs, _ := hash.Embed(t.Context(), []string{text})
		ws = append(ws, pipeline.DocWrite{UserID: user, DocID: doc, Version: 1, Points: []pipeline.Point{{
			ID: pipeline.PointID(user, doc, 0), Vector: vs[0], ChunkCount: 1, Text: stored,
			Keywords: pipeline.KeywordsWith(text, key.TermID),
		}}})
	}
	const text = "calls fail with ErrQuotaExceeded when the project runs out of quota"
	alice, _ := keys.Tenant(t.Context(), "alice")
	bob, _ := keys.Tenant(t.Context(), "bob")
	sealed := alice.Seal("enc", "quota", 0, text)
	write("alice", "quota", text, sealed, alice)
	write("alice", "moved", text, sealed, alice) // the ciphertext of another point
	write("bob", "quota", text, bob.Seal("enc", "quota", 0, text), bob)
	if err := store.Apply(t.Context(), "enc", ws); err != nil {
		t.Fatal(err)
	}
	var failKeys atomic.Bool
	lookup := lookupKeys(keys)
	svc, err := search.Start(t.Context(), search.Config{
		Conn: nc, Index: store, Embedder: func(string) search.Embedder { return hash }, Logger: log,
		Keys: func(ctx context.Context, tenant string) (search.TenantKey, error) {
			if failKeys.Load() {
				return nil, errors.New("key bucket unavailable")
			}
			return lookup(ctx, tenant)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	client := &search.Client{Conn: nc}

	for _, mode := range []string{"", "hybrid", "dense", "keyword"} {
		for _, user := range []string{"alice", "bob"} {
			reply, err := client.Search(t.Context(), user, "enc", search.SearchRequest{Query: "ErrQuotaExceeded quota", Mode: mode})
			if err != nil {
				t.Fatalf("%s, mode %q: %v", user, mode, err)
			}
			if len(reply.Hits) != 1 || reply.Hits[0].DocID != "quota" || reply.Hits[0].Text != text {
				t.Errorf("%s, mode %q: hits %+v, want the one chunk in clear", user, mode, reply.Hits)
			}
		}
		reply, err := client.Search(t.Context(), "carol", "enc", search.SearchRequest{Query: "ErrQuotaExceeded quota", Mode: mode})
		if err != nil || len(reply.Hits) != 0 {
			t.Errorf("carol, mode %q: %v, %v; want no hits", mode, reply, err)
		}
	}
	// Alice's chunk is not found by the unkeyed term ids of its words.
	hits, err := store.Search(t.Context(), "enc", pipeline.Query{UserID: "alice", Mode: pipeline.ModeKeyword, TopK: 10,
		Keywords: pipeline.QueryKeywords("ErrQuotaExceeded quota")})
	if err != nil || len(hits) != 0 {
		t.Errorf("search by unkeyed term ids: %v, %v; want nothing", hits, err)
	}
	for _, h := range hitsOf(t, store, "alice") {
		if !strings.HasPrefix(h.Text, keyring.SealedPrefix) {
			t.Errorf("stored text %q is not sealed", h.Text)
		}
	}

	failKeys.Store(true)
	_, err = client.Search(t.Context(), "alice", "enc", search.SearchRequest{Query: "quota", Mode: "keyword"})
	if e, ok := errors.AsType[*search.Error](err); !ok || e.Code != search.CodeUnavailable {
		t.Errorf("key unavailable: %v, want a 503", err)
	}
}

// hitsOf is every stored chunk of user in "enc", as stored.
func hitsOf(t *testing.T, store *localstore.Store, user string) []pipeline.Hit {
	t.Helper()
	v := make([]float32, dims)
	v[0] = 1
	hits, err := store.Search(t.Context(), "enc", pipeline.Query{UserID: user, Mode: pipeline.ModeDense, Vector: v, TopK: 100})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}
