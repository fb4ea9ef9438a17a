package ingest_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// openKeyring opens a keyring with a fresh master key on a NATS server of
// its own.
func openKeyring(tb testing.TB) *keyring.Keyring {
	tb.Helper()
	js, err := jetstream.New(natstest.Connect(tb, natstest.Start(tb)))
	if err != nil {
		tb.Fatal(err)
	}
	master, err := keyring.ParseMasterKeys([]byte(keyring.NewMasterKey()))
	if err != nil {
		tb.Fatal(err)
	}
	k, err := keyring.Open(context.Background(), js, master, keyring.Config{})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { k.Close() })
	return k
}

// stageKeys is the StageConfig.Keys of k, as ragpipe wires it.
func stageKeys(k *keyring.Keyring) func(context.Context, string) (ingest.TenantKey, error) {
	return func(ctx context.Context, tenant string) (ingest.TenantKey, error) {
		key, err := k.Tenant(ctx, tenant)
		if err != nil {
			return nil, err
		}
		return key, nil
	}
}

// TestEncryptedPoints: with Keys, a point's text is sealed for its point,
// its text hash and keyword vector are its tenant's keyed ones, and two
// tenants' equal texts share none of them; an update reuses the stored
// vectors of its unchanged chunks through the keyed hashes.
func TestEncryptedPoints(t *testing.T) {
	keys := openKeyring(t)
	l := stores[1].open(t)
	s := &applied{store: l}
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
	stage := newStage(t, s, fake, "", ingest.StageConfig{Keys: stageKeys(keys), Reuse: l.(ingest.VectorSource)})
	text := words(1, 280) + "\n\n" + words(2, 280)
	events := []pipeline.Event{
		{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: text, Version: 1},
		{Op: pipeline.OpUpsert, UserID: "bob", Collection: "docs", DocID: "d", Text: text, Version: 1},
	}
	for i, err := range stage.Process(t.Context(), events) {
		if err != nil {
			t.Fatalf("%s: %v", events[i].UserID, err)
		}
	}
	chunker, _ := pipeline.NewChunker(300, 30)
	chunks := chunker.Split(text)
	if len(s.points) != 2*len(chunks) || len(chunks) < 2 {
		t.Fatalf("%d points written, want %d chunks of each tenant", len(s.points), len(chunks))
	}
	byTenant := make(map[string][]pipeline.Point)
	for _, p := range s.points {
		key, err := keys.Lookup(t.Context(), p.UserID)
		if err != nil {
			t.Fatal(err)
		}
		clear := chunks[p.ChunkIndex]
		if !keyring.IsSealed(p.Text) || strings.Contains(p.Text, "w1-") {
			t.Fatalf("%s/%d: stored text %q is not sealed", p.UserID, p.ChunkIndex, p.Text)
		}
		if got, err := key.Open("docs", p.DocID, p.ChunkIndex, p.Text); err != nil || got != clear {
			t.Fatalf("%s/%d: opens to %q, %v; want the chunk", p.UserID, p.ChunkIndex, got, err)
		}
		if _, err := key.Open("docs", p.DocID, p.ChunkIndex+1, p.Text); err == nil {
			t.Fatalf("%s/%d: opens as another chunk", p.UserID, p.ChunkIndex)
		}
		if want := key.TextHash("openai/m", clear); p.TextHash != want || p.TextHash == pipeline.TextHash("openai/m", clear) {
			t.Fatalf("%s/%d: text hash %s, want the keyed %s", p.UserID, p.ChunkIndex, p.TextHash, want)
		}
		want := pipeline.KeywordsWith(clear, key.TermID)
		if p.Keywords == nil || !slices.Equal(p.Keywords.Indices, want.Indices) || !slices.Equal(p.Keywords.Values, want.Values) {
			t.Fatalf("%s/%d: keywords %v, want the keyed %v", p.UserID, p.ChunkIndex, p.Keywords, want)
		}
		if slices.Equal(p.Keywords.Indices, pipeline.Keywords(clear).Indices) {
			t.Fatalf("%s/%d: keyword indices are the unkeyed ones", p.UserID, p.ChunkIndex)
		}
		byTenant[p.UserID] = append(byTenant[p.UserID], p)
	}
	for k := range chunks {
		a, b := byTenant["alice"][k], byTenant["bob"][k]
		if a.Text == b.Text || a.TextHash == b.TextHash || slices.Equal(a.Keywords.Indices, b.Keywords.Indices) {
			t.Fatalf("chunk %d: alice's and bob's equal texts share a ciphertext, hash or term ids", k)
		}
	}

	// Version 2 changes the second chunk only: the first takes its stored
	// vector, found by its keyed hash.
	before := len(fake.Texts())
	s.points = nil
	update := pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "d", Text: words(1, 280) + "\n\n" + words(3, 280), Version: 2}
	if err := stage.Process(t.Context(), []pipeline.Event{update})[0]; err != nil {
		t.Fatal(err)
	}
	if embedded := len(fake.Texts()) - before; embedded != len(chunker.Split(update.Text))-1 {
		t.Fatalf("%d texts embedded for the update, want all but the unchanged chunk", embedded)
	}
}

// TestKeyUnavailable: an event whose tenant's key cannot be had fails
// alone, not permanently; the other tenants' events are written.
func TestKeyUnavailable(t *testing.T) {
	keys := openKeyring(t)
	s := &applied{store: stores[1].open(t)}
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16})
	stage := newStage(t, s, fake, "", ingest.StageConfig{Keys: func(ctx context.Context, tenant string) (ingest.TenantKey, error) {
		if tenant == "mallory" {
			return nil, fmt.Errorf("key bucket unavailable")
		}
		return stageKeys(keys)(ctx, tenant)
	}})
	events := []pipeline.Event{
		{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: "a", Text: "alpha", Version: 1},
		{Op: pipeline.OpUpsert, UserID: "mallory", Collection: "docs", DocID: "m", Text: "mu", Version: 1},
		{Op: pipeline.OpDelete, UserID: "mallory", Collection: "docs", DocID: "gone", Version: 1},
	}
	errs := stage.Process(t.Context(), events)
	if errs[0] != nil || errs[2] != nil {
		t.Fatalf("alice's upsert and mallory's delete: %v, %v", errs[0], errs[2])
	}
	if errs[1] == nil || pipeline.IsPermanent(errs[1]) || !strings.Contains(errs[1].Error(), "mallory") {
		t.Fatalf("mallory's upsert: %v, want a transient error naming the tenant", errs[1])
	}
	if len(s.points) != 1 || s.points[0].UserID != "alice" {
		t.Fatalf("points written: %v", s.points)
	}
}

// identified is the hash embedder with an identity, so that the stage
// computes text hashes as with a real model.
type identified struct{ *embedder.Hash }

func (identified) Identity() string { return "hash/bench" }

// BenchmarkProcess is the stage's cost per document, 3 chunks of prose,
// batches of 64 new documents of 8 tenants, with the hash embedder and the
// embedded store: without and with encryption at rest.
func BenchmarkProcess(b *testing.B) {
	prose := strings.Repeat("The consumer's maxAckPending bounds unacknowledged messages; "+
		"see /etc/nats/nats.conf and nats.Conn for max_ack_pending. Qdrant stores vectors. ", 50)[:5000]
	for _, encrypted := range []bool{false, true} {
		name := "plain"
		if encrypted {
			name = "encrypted"
		}
		b.Run(name, func(b *testing.B) {
			emb, err := embedder.NewHash(64)
			if err != nil {
				b.Fatal(err)
			}
			l, err := localstore.Open(b.Context(), localstore.Config{Dir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { l.Close() })
			chunker, _ := pipeline.NewChunker(2000, 200)
			cfg := ingest.StageConfig{
				Sink: l, Versions: register(b), Embedder: identified{emb}, Chunker: chunker, Reuse: l,
				Collections: []pipeline.Collection{{Name: "docs", Dims: 64, Distance: pipeline.Cosine, Keywords: true}},
			}
			if encrypted {
				cfg.Keys = stageKeys(openKeyring(b))
			}
			stage, err := ingest.NewStage(cfg)
			if err != nil {
				b.Fatal(err)
			}
			if err := stage.Setup(b.Context()); err != nil {
				b.Fatal(err)
			}
			benchDocs(b, stage, prose)
		})
	}
}

// benchDocs has stage process batches of 64 new documents of 8 tenants,
// each prose preceded by its number, and reports the time per document.
func benchDocs(b *testing.B, stage *ingest.Stage, prose string) {
	events := make([]pipeline.Event, 64)
	n := 0
	b.ReportAllocs()
	for b.Loop() {
		for i := range events {
			n++
			events[i] = pipeline.Event{Op: pipeline.OpUpsert, UserID: fmt.Sprintf("t%d", n%8), Collection: "docs",
				DocID: fmt.Sprintf("d%d", n), Text: fmt.Sprintf("%d %s", n, prose), Version: 1}
		}
		for _, err := range stage.Process(b.Context(), events) {
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(n), "µs/doc")
}

// BenchmarkChunkWork is what encryption adds to the stage's own work on a
// document of 3 chunks, without servers: the keyword vectors and text
// hashes, plain or keyed, and the sealing of the texts.
func BenchmarkChunkWork(b *testing.B) {
	chunker, _ := pipeline.NewChunker(2000, 200)
	chunks := chunker.Split(strings.Repeat("The consumer's maxAckPending bounds unacknowledged messages; "+
		"see /etc/nats/nats.conf and nats.Conn for max_ack_pending. Qdrant stores vectors. ", 50)[:5000])
	b.Run("plain", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for _, c := range chunks {
				pipeline.Keywords(c)
				pipeline.TextHash("hash/bench", c)
			}
		}
	})
	key, err := openKeyring(b).Tenant(b.Context(), "alice")
	if err != nil {
		b.Fatal(err)
	}
	b.Run("encrypted", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			for k, c := range chunks {
				pipeline.KeywordsWith(c, key.TermID)
				key.TextHash("hash/bench", c)
				key.Seal("docs", "d", k, c)
			}
		}
	})
}
