package localstore_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/reindex"
)

var _ reindex.Store = (*localstore.Store)(nil)

// The reopened store's generation operations, for the contract suite: the
// aliases and collections they change must survive the reopening.

func (r *reopeningStore) CreateGeneration(ctx context.Context, c pipeline.Collection) error {
	defer r.reopen(c.Name)
	return r.s.CreateGeneration(ctx, c)
}

func (r *reopeningStore) SwitchAlias(ctx context.Context, alias, collection string) error {
	defer r.reopen(alias)
	return r.s.SwitchAlias(ctx, alias, collection)
}

func (r *reopeningStore) DropCollection(ctx context.Context, name string) error {
	defer r.reopen(name)
	return r.s.DropCollection(ctx, name)
}

func (r *reopeningStore) AliasTarget(ctx context.Context, name string) (string, error) {
	return r.s.AliasTarget(ctx, name)
}

func (r *reopeningStore) Collections(ctx context.Context) ([]pipeline.Collection, error) {
	return r.s.Collections(ctx)
}

func (r *reopeningStore) CollectionNames(ctx context.Context) ([]string, error) {
	return r.s.CollectionNames(ctx)
}

// TestEmbeddedSwitchAliasReaders switches an alias back and forth between
// two generations while readers search, list and read statuses through it
// and a writer writes through it: no call fails, no read finds nothing,
// and each sees one generation whole. It logs what a switch costs.
func TestEmbeddedSwitchAliasReaders(t *testing.T) {
	s := openEmbedded(t, t.TempDir(), nil)
	storetest.Ensure(t, s, "live", pipeline.Cosine)
	if err := s.CreateGeneration(t.Context(), pipeline.Collection{Name: "live__g2", Dims: storetest.Dims}); err != nil {
		t.Fatal(err)
	}
	// The generations hold the same documents at versions 1 and 2.
	for v, coll := range []string{"live__g1", "live__g2"} {
		var ws []pipeline.DocWrite
		for _, doc := range []string{"a", "b", "c"} {
			ws = append(ws, storetest.Write("alice", doc, uint64(v+1), 2))
		}
		storetest.Apply(t, s, coll, ws...)
	}

	const switches = 200
	switchAll := func() []time.Duration {
		took := make([]time.Duration, 0, switches)
		for i := range switches {
			target := []string{"live__g2", "live__g1"}[i%2]
			start := time.Now()
			if err := s.SwitchAlias(t.Context(), "live", target); err != nil {
				t.Fatal(err)
			}
			took = append(took, time.Since(start))
		}
		slices.Sort(took)
		return took
	}
	took := switchAll()
	t.Logf("SwitchAlias alone: median %v, p99 %v, max %v over %d switches",
		took[len(took)/2], took[len(took)*99/100], took[len(took)-1], switches)

	var reads atomic.Int64
	stop := make(chan struct{})
	var readers sync.WaitGroup
	readers.Go(func() { // and a writer, of another tenant
		for v := uint64(1); ; v++ {
			select {
			case <-stop:
				return
			default:
			}
			if err := s.Apply(t.Context(), "live", []pipeline.DocWrite{storetest.Write("bob", "w", v, 1)}); err != nil {
				t.Errorf("write through the alias: %v", err)
				return
			}
		}
	})
	for range 3 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				hits, err := s.Search(t.Context(), "live", pipeline.Query{UserID: "alice", Vector: storetest.Vec(1, 0), TopK: 10})
				if err != nil || len(hits) != 6 || slices.ContainsFunc(hits, func(h pipeline.Hit) bool { return h.Version != hits[0].Version }) {
					t.Errorf("search through the alias: %d hits, %v", len(hits), err)
					return
				}
				docs, _, err := s.List(t.Context(), "live", "alice", 10, "")
				if err != nil || len(docs) != 3 {
					t.Errorf("list through the alias: %v, %v", docs, err)
					return
				}
				st, err := s.Status(t.Context(), "live", "alice", []string{"a"})
				if err != nil || len(st) != 1 {
					t.Errorf("status through the alias: %v, %v", st, err)
					return
				}
				reads.Add(1)
			}
		})
	}
	took = switchAll()
	close(stop)
	readers.Wait()
	t.Logf("SwitchAlias under reads: median %v, p99 %v, max %v over %d switches; %d reads meanwhile, none failed",
		took[len(took)/2], took[len(took)*99/100], took[len(took)-1], switches, reads.Load())
	if reads.Load() == 0 {
		t.Error("no read completed")
	}
}

// TestEmbeddedAliasesPersist checks that aliases and drops survive a
// reopening, that a drop removes the collection's files and the aliases
// of it, and that Open ignores what an interrupted drop leaves.
func TestEmbeddedAliasesPersist(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "docs", pipeline.Dot)
	if err := s.CreateGeneration(t.Context(), pipeline.Collection{Name: "docs__g2", Dims: storetest.Dims, Distance: pipeline.Dot}); err != nil {
		t.Fatal(err)
	}
	storetest.Apply(t, s, "docs__g2", storetest.Write("alice", "a", 2, 1))
	if err := s.SwitchAlias(t.Context(), "docs", "docs__g2"); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(t.Context(), "other", "docs__g1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DropCollection(t.Context(), "docs__g1"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "docs__g1")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("docs__g1's directory after the drop: %v", err)
	}
	if err := s.DropCollection(t.Context(), "docs"); !pipeline.IsPermanent(err) {
		t.Errorf("DropCollection of an alias: %v, want a permanent error", err)
	}
	s.Close()

	// Leftovers of a drop interrupted by a crash, and an alias of it.
	if err := os.MkdirAll(filepath.Join(dir, ".tmp-drop-x", "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "aliases.json"), []byte(`{"aliases":{"docs":"docs__g2","x":"x__g1"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s = openEmbedded(t, dir, nil)
	if _, err := os.Stat(filepath.Join(dir, ".tmp-drop-x")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an interrupted drop's directory after Open: %v", err)
	}
	for alias, want := range map[string]string{"docs": "docs__g2", "other": "", "x": ""} {
		if got, err := s.AliasTarget(t.Context(), alias); got != want || err != nil {
			t.Errorf("AliasTarget(%s) after reopening = %q, %v; want %q", alias, got, err, want)
		}
	}
	storetest.ExpectDoc(t, s, "docs", "alice", "a", 2, 1)
	names, err := s.CollectionNames(t.Context())
	if err != nil || !slices.Equal(names, []string{"docs"}) {
		t.Errorf("CollectionNames = %v, %v; want [docs]", names, err)
	}
	if d, err := s.Describe(t.Context(), "docs"); err != nil || d != (pipeline.Collection{Name: "docs", Dims: storetest.Dims, Distance: pipeline.Dot, Keywords: true}) {
		t.Errorf("Describe(docs) = %+v, %v", d, err)
	}
}

// TestEmbeddedAdoptPlain follows a collection created before generations
// (testdata/v1) through its adoption: it opens and is listed as it is, is
// ensured without a generation being created, its name cannot be an alias
// while it exists, and once it is dropped the alias takes its name.
func TestEmbeddedAdoptPlain(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS("testdata/v1")); err != nil {
		t.Fatal(err)
	}
	s := openEmbedded(t, dir, nil)
	c, err := s.Describe(t.Context(), "legacy")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	if target, err := s.AliasTarget(t.Context(), "legacy"); target != "" || err != nil {
		t.Fatalf("AliasTarget(legacy) = %q, %v; want no alias", target, err)
	}
	before := storetest.Points(t, s, "legacy")
	if len(before) == 0 {
		t.Fatal("the legacy collection holds no points")
	}
	c.Name = "legacy__g1"
	if err := s.CreateGeneration(t.Context(), c); err != nil {
		t.Fatal(err)
	}
	if err := s.Upsert(t.Context(), "legacy__g1", before); err != nil {
		t.Fatal(err)
	}
	if names, err := s.CollectionNames(t.Context()); err != nil || !slices.Equal(names, []string{"legacy"}) {
		t.Errorf("CollectionNames = %v, %v; want [legacy]", names, err)
	}
	if err := s.SwitchAlias(t.Context(), "legacy", "legacy__g1"); !errors.Is(err, pipeline.ErrNameTaken) {
		t.Fatalf("SwitchAlias over the plain collection: %v, want ErrNameTaken", err)
	}
	if err := s.DropCollection(t.Context(), "legacy"); err != nil {
		t.Fatal(err)
	}
	if err := s.SwitchAlias(t.Context(), "legacy", "legacy__g1"); err != nil {
		t.Fatal(err)
	}
	if after := storetest.Points(t, s, "legacy"); len(after) != len(before) {
		t.Errorf("through the alias: %d points, want %d", len(after), len(before))
	}
	if names, err := s.CollectionNames(t.Context()); err != nil || !slices.Equal(names, []string{"legacy"}) {
		t.Errorf("CollectionNames = %v, %v; want [legacy]", names, err)
	}
}

// TestEmbeddedDropWhileWriting drops a collection that a writer writes to
// and the compactor compacts: the writes in flight complete, the later ones
// find no collection, and the files are gone, also after a reopening.
func TestEmbeddedDropWhileWriting(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, func(c *localstore.Config) { c.CompactBytes = 4 << 10 })
	if err := s.CreateGeneration(t.Context(), pipeline.Collection{Name: "doomed__g2", Dims: storetest.Dims}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	var written atomic.Uint64
	go func() {
		for v := uint64(1); ; v++ {
			err := s.Apply(t.Context(), "doomed__g2", []pipeline.DocWrite{storetest.Write("u", "d", v, 3)})
			if err != nil {
				done <- err
				return
			}
			written.Store(v)
		}
	}()
	checkfor.Until(t, 10*time.Second, "writes and compactions", func() error {
		if n := written.Load(); n < 30 {
			return fmt.Errorf("%d writes", n)
		}
		return nil
	})
	if err := s.DropCollection(t.Context(), "doomed__g2"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Fatalf("write after the drop: %v, want ErrUnknownCollection", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "doomed__g2")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the dropped collection's directory: %v", err)
	}
	s.Close()
	s = openEmbedded(t, dir, nil)
	if ok, err := s.CollectionExists(t.Context(), "doomed__g2"); ok || err != nil {
		t.Errorf("CollectionExists after reopening = %t, %v", ok, err)
	}
}
