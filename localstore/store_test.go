package localstore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// openEmbedded opens a store in dir, closed when the test ends.
func openEmbedded(t testing.TB, dir string, mutate func(*localstore.Config)) *localstore.Store {
	t.Helper()
	cfg := localstore.Config{Dir: dir, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := localstore.Open(t.Context(), cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestEmbeddedContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store { return openEmbedded(t, t.TempDir(), nil) })
}

// TestEmbeddedContractReopened runs the contract against a store that is
// closed and reopened after every write, and compacted before every other
// reopening: every semantic must survive the log replay and the snapshot.
func TestEmbeddedContractReopened(t *testing.T) {
	storetest.Run(t, func(t *testing.T) storetest.Store {
		r := &reopeningStore{t: t, dir: t.TempDir()}
		r.s = openEmbedded(t, r.dir, nil)
		return r
	})
}

// reopeningStore is an embedded store reopened after each write.
type reopeningStore struct {
	t      *testing.T
	dir    string
	s      *localstore.Store
	writes int
}

func (r *reopeningStore) reopen(collection string) {
	r.t.Helper()
	r.writes++
	if r.writes%2 == 0 {
		if err := r.s.Compact(r.t.Context(), collection); err != nil && !errors.Is(err, pipeline.ErrUnknownCollection) {
			r.t.Fatalf("Compact: %v", err)
		}
	}
	if err := r.s.Close(); err != nil {
		r.t.Fatalf("Close: %v", err)
	}
	r.s = openEmbedded(r.t, r.dir, nil)
}

func (r *reopeningStore) EnsureCollection(ctx context.Context, c pipeline.Collection, create bool) error {
	defer r.reopen(c.Name)
	return r.s.EnsureCollection(ctx, c, create)
}

func (r *reopeningStore) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	defer r.reopen(collection)
	return r.s.Apply(ctx, collection, writes)
}

func (r *reopeningStore) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	defer r.reopen(collection)
	return r.s.Prune(ctx, collection, docs)
}

func (r *reopeningStore) Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error) {
	return r.s.Search(ctx, collection, q)
}

func (r *reopeningStore) List(ctx context.Context, collection, userID string, limit int, cursor string) ([]pipeline.Doc, string, error) {
	return r.s.List(ctx, collection, userID, limit, cursor)
}

func (r *reopeningStore) StoredVectors(ctx context.Context, collection string, ids, hashes []string) (map[string][]float32, error) {
	return r.s.StoredVectors(ctx, collection, ids, hashes)
}

func (r *reopeningStore) Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error) {
	return r.s.Scroll(ctx, collection, after, limit)
}

func TestEmbeddedConfig(t *testing.T) {
	for name, cfg := range map[string]localstore.Config{
		"no dir":           {},
		"negative compact": {Dir: t.TempDir(), CompactBytes: -1},
		"negative search":  {Dir: t.TempDir(), SearchParallelism: -1},
	} {
		if s, err := localstore.Open(t.Context(), cfg); err == nil {
			s.Close()
			t.Errorf("%s: no error", name)
		}
	}
}

func TestEmbeddedUnknownCollectionErrors(t *testing.T) {
	s := openEmbedded(t, t.TempDir(), nil)
	isUnknown := func(what string, err error) {
		t.Helper()
		if !errors.Is(err, pipeline.ErrUnknownCollection) || !pipeline.IsPermanent(err) {
			t.Errorf("%s: %v, want permanent ErrUnknownCollection", what, err)
		}
	}
	isUnknown("Apply", s.Apply(t.Context(), "absent", []pipeline.DocWrite{storetest.Write("u", "d", 1, 1)}))
	isUnknown("Prune", s.Prune(t.Context(), "absent", []pipeline.DocVersion{{UserID: "u", DocID: "d", Version: 1}}))
	isUnknown("Upsert", s.Upsert(t.Context(), "absent", storetest.Write("u", "d", 1, 1).Points))
	_, err := s.Search(t.Context(), "absent", pipeline.Query{UserID: "u", Vector: storetest.Vec(1, 0), TopK: 1})
	isUnknown("Search", err)
	_, _, err = s.List(t.Context(), "absent", "u", 1, "")
	isUnknown("List", err)
	_, _, err = s.Scroll(t.Context(), "absent", "", 1)
	isUnknown("Scroll", err)
	_, err = s.Count(t.Context(), "absent")
	isUnknown("Count", err)
	isUnknown("Compact", s.Compact(t.Context(), "absent"))
	for name, c := range map[string]pipeline.Collection{
		"bad name":          {Name: "Bad/Name", Dims: 4},
		"no storetest.Dims": {Name: "ok", Dims: 0},
		"bad dist":          {Name: "ok", Dims: 4, Distance: "hamming"},
		"too long":          {Name: strings.Repeat("a", 65), Dims: 4},
		"dot first":         {Name: ".tmp-x", Dims: 4},
	} {
		if err := s.EnsureCollection(t.Context(), c, true); !pipeline.IsPermanent(err) {
			t.Errorf("%s: %v, want permanent", name, err)
		}
	}
	storetest.Ensure(t, s, "c", pipeline.Dot)
	if _, _, err := s.Scroll(t.Context(), "c", "nope", 1); !pipeline.IsPermanent(err) {
		t.Errorf("Scroll bad cursor: %v, want permanent", err)
	}
}

// TestEmbeddedMigrationAPI covers what ragpipe migrate uses: Collections,
// Scroll, Upsert and Count copy a collection exactly.
func TestEmbeddedMigrationAPI(t *testing.T) {
	src := openEmbedded(t, t.TempDir(), nil)
	dst := openEmbedded(t, t.TempDir(), nil)
	storetest.Ensure(t, src, "b", pipeline.Euclid)
	storetest.Ensure(t, src, "a", pipeline.Dot)
	m := storetest.Model{}
	for i := range 40 {
		w := storetest.Write([]string{"alice", "bob", "carol"}[i%3], fmt.Sprintf("d%d", i), uint64(i+1), i%4)
		m.Apply(w)
		storetest.Apply(t, src, "a", w)
	}
	colls, err := src.Collections(t.Context())
	if err != nil || !reflect.DeepEqual(colls, []pipeline.Collection{
		{Name: "a", Dims: storetest.Dims, Distance: pipeline.Dot, Keywords: true}, {Name: "b", Dims: storetest.Dims, Distance: pipeline.Euclid, Keywords: true},
	}) {
		t.Fatalf("Collections: %+v, %v", colls, err)
	}
	for _, c := range colls {
		if err := dst.EnsureCollection(t.Context(), c, true); err != nil {
			t.Fatal(err)
		}
		after := ""
		for {
			pts, next, err := src.Scroll(t.Context(), c.Name, after, 9)
			if err != nil {
				t.Fatal(err)
			}
			// Twice: Upsert is idempotent.
			for range 2 {
				if err := dst.Upsert(t.Context(), c.Name, pts); err != nil {
					t.Fatal(err)
				}
			}
			if next == "" {
				break
			}
			after = next
		}
		want, _ := src.Count(t.Context(), c.Name)
		got, err := dst.Count(t.Context(), c.Name)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: counts %v (%v), want %v", c.Name, got, err, want)
		}
	}
	if !reflect.DeepEqual(storetest.Points(t, src, "a"), storetest.Points(t, dst, "a")) {
		t.Error("copied points differ")
	}
	// Upsert overwrites unconditionally, and refuses what Apply refuses.
	old := storetest.Write("alice", "d0", 1, 1)
	if err := dst.Apply(t.Context(), "a", []pipeline.DocWrite{storetest.Write("alice", "d0", 5, 1)}); err != nil {
		t.Fatal(err)
	}
	if err := dst.Upsert(t.Context(), "a", old.Points); err != nil {
		t.Fatal(err)
	}
	m.Apply(old)
	if d := m.Diff(storetest.Points(t, dst, "a")); d != "" {
		t.Errorf("after Upsert of an older point:\n%s", d)
	}
	bad := storetest.Write("alice", "x", 1, 1).Points
	bad[0].Version = 0 // Upsert takes the version from the point
	var be *pipeline.BatchError
	if err := dst.Upsert(t.Context(), "a", bad); !errors.As(err, &be) || !pipeline.IsPermanent(err) {
		t.Errorf("Upsert without a version: %v, want a permanent BatchError", err)
	}
}

// embeddedLog returns the path of collection's current log.
func embeddedLog(t *testing.T, dir, collection string) string {
	t.Helper()
	files := embeddedFiles(t, dir, collection)
	var logs []string
	for _, f := range files {
		if strings.HasPrefix(f, "log-") {
			logs = append(logs, f)
		}
	}
	if len(logs) != 1 {
		t.Fatalf("log files %v, want one", files)
	}
	return filepath.Join(dir, collection, logs[0])
}

func embeddedFiles(t *testing.T, dir, collection string) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(dir, collection))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	return names
}

func sizeOf(t *testing.T, path string) int64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Size()
}

// TestEmbeddedTornTail damages the log's tail the ways a crash or a disk can
// and checks that recovery keeps every complete record and nothing else,
// and that the log is usable afterwards.
func TestEmbeddedTornTail(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "torn", pipeline.Dot)
	m := storetest.Model{}
	var sizes []int64 // log size after each write
	path := embeddedLog(t, dir, "torn__g1")
	for i := range 6 {
		w := storetest.Write("u", fmt.Sprintf("d%d", i%4), uint64(i+1), 1+i%3)
		storetest.Apply(t, s, "torn", w)
		m.Apply(w)
		sizes = append(sizes, sizeOf(t, path))
	}
	s.Close()
	before := m.Clone() // without the last write
	delete(before, storetest.DocKey{User: "u", Doc: "d1"})
	before.Apply(storetest.Write("u", "d1", 2, 2))

	damage := func(name string, f func(data []byte) []byte, want storetest.Model, wantSize int64) {
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, f(slices.Clone(data)), 0o644); err != nil {
				t.Fatal(err)
			}
			s := openEmbedded(t, dir, nil)
			if d := want.Diff(storetest.Points(t, s, "torn")); d != "" {
				t.Fatalf("after recovery:\n%s", d)
			}
			if got := sizeOf(t, path); got != wantSize {
				t.Errorf("log of %d bytes after recovery, want %d", got, wantSize)
			}
			s.Close()
			// Restore the intact log for the next case.
			if err := os.WriteFile(path, data[:sizes[5]], 0o644); err != nil {
				t.Fatal(err)
			}
		})
	}
	last := sizes[5]
	damage("Garbage", func(b []byte) []byte { return append(b, []byte("garbage that is no record at all")...) }, m, last)
	damage("Zeros", func(b []byte) []byte { return append(b, make([]byte, 4096)...) }, m, last)
	damage("TruncatedBody", func(b []byte) []byte { return b[:last-3] }, before, sizes[4])
	damage("TruncatedHeader", func(b []byte) []byte { return b[:sizes[4]+5] }, before, sizes[4])
	damage("FlippedBit", func(b []byte) []byte { b[last-10] ^= 0x10; return b }, before, sizes[4])
	damage("HugeLength", func(b []byte) []byte {
		return append(b, 0xff, 0xff, 0xff, 0x7f, 1, 2, 3, 4, 5)
	}, m, last)

	// A recovered log takes new records after its last good one.
	f, err := os.OpenFile(path, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString("torn tail"); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s = openEmbedded(t, dir, nil)
	w := storetest.Write("u", "new", 9, 2)
	storetest.Apply(t, s, "torn", w)
	m.Apply(w)
	s.Close()
	s = openEmbedded(t, dir, nil)
	if d := m.Diff(storetest.Points(t, s, "torn")); d != "" {
		t.Fatalf("after a write on a recovered log:\n%s", d)
	}
}

func TestEmbeddedCorruptSnapshot(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "snap", pipeline.Dot)
	storetest.Apply(t, s, "snap", storetest.Write("u", "d", 1, 3))
	if err := s.Compact(t.Context(), "snap"); err != nil {
		t.Fatal(err)
	}
	s.Close()
	var snap string
	for _, f := range embeddedFiles(t, dir, "snap__g1") {
		if strings.HasPrefix(f, "snap-") {
			snap = filepath.Join(dir, "snap__g1", f)
		}
	}
	if err := os.Truncate(snap, sizeOf(t, snap)-1); err != nil {
		t.Fatal(err)
	}
	if s, err := localstore.Open(t.Context(), localstore.Config{Dir: dir}); err == nil || !strings.Contains(err.Error(), "snapshot") {
		if err == nil {
			s.Close()
		}
		t.Fatalf("Open with a truncated snapshot: %v, want an error", err)
	}
}

// TestEmbeddedCompaction checks that the files stay bounded however much is
// written, that compaction leaves one snapshot and one log, and that the
// state survives it.
func TestEmbeddedCompaction(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, func(c *localstore.Config) { c.CompactBytes = 16 << 10 })
	storetest.Ensure(t, s, "compact", pipeline.Dot)
	m := storetest.Model{}
	written := int64(0)
	for i := range 1500 {
		w := storetest.Write(fmt.Sprintf("u%d", i%3), fmt.Sprintf("d%d", i%10), uint64(i+1), 1+i%4)
		storetest.Apply(t, s, "compact", w)
		m.Apply(w)
		written += 150 * int64(len(w.Points)) // at least, per point
	}
	dirSize := func() (int64, error) {
		var total int64
		files := embeddedFiles(t, dir, "compact__g1")
		snaps, logs := 0, 0
		for _, f := range files {
			st, err := os.Stat(filepath.Join(dir, "compact__g1", f))
			if err != nil {
				return 0, err
			}
			total += st.Size()
			switch {
			case strings.HasSuffix(f, ".tmp"):
				return 0, fmt.Errorf("temporary file %s left", f)
			case strings.HasPrefix(f, "snap-"):
				snaps++
			case strings.HasPrefix(f, "log-"):
				logs++
			}
		}
		if snaps != 1 || logs != 1 || slices.Contains(files, "snap-0000000000000000") {
			return 0, fmt.Errorf("files %v, want one snapshot of a later generation and one log", files)
		}
		return total, nil
	}
	checkfor.Until(t, 10*time.Second, "condition", func() error { _, err := dirSize(); return err })
	size, _ := dirSize()
	if size > 64<<10 || size*5 > written {
		t.Errorf("%d bytes on disk after writing at least %d", size, written)
	}
	if d := m.Diff(storetest.Points(t, s, "compact")); d != "" {
		t.Fatalf("after compactions:\n%s", d)
	}
	s.Close()
	s = openEmbedded(t, dir, nil)
	if d := m.Diff(storetest.Points(t, s, "compact")); d != "" {
		t.Fatalf("after reopening:\n%s", d)
	}
}

func TestEmbeddedClose(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	storetest.Ensure(t, s, "closing", pipeline.Cosine)
	if err := s.Health(t.Context()); err != nil {
		t.Fatal(err)
	}
	if other, err := localstore.Open(t.Context(), localstore.Config{Dir: dir}); err == nil {
		other.Close()
		t.Fatal("a second store opened the same directory")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.Apply(t.Context(), "closing", []pipeline.DocWrite{storetest.Write("u", "d", 1, 1)})
	if !errors.Is(err, localstore.ErrClosed) || pipeline.IsPermanent(err) {
		t.Errorf("Apply after Close: %v, want transient ErrClosed", err)
	}
	if _, err := s.Search(t.Context(), "closing", pipeline.Query{UserID: "u", Vector: storetest.Vec(1, 0), TopK: 1}); !errors.Is(err, localstore.ErrClosed) {
		t.Errorf("Search after Close: %v", err)
	}
	if err := s.Health(t.Context()); !errors.Is(err, localstore.ErrClosed) {
		t.Errorf("Health after Close: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	s = openEmbedded(t, dir, nil) // the lock is released
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "closing", Dims: storetest.Dims}, false); err != nil {
		t.Errorf("collection lost: %v", err)
	}
}

// TestEmbeddedConcurrent runs writers, searches (in every mode), lists and
// compactions at once (for the race detector) and checks the exact final
// state.
func TestEmbeddedConcurrent(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, func(c *localstore.Config) { c.CompactBytes = 32 << 10 })
	storetest.Ensure(t, s, "busy", pipeline.Dot)
	const writers, rounds = 4, 60
	var wg sync.WaitGroup
	models := make([]storetest.Model, writers)
	for w := range writers {
		models[w] = storetest.Model{}
		wg.Go(func() {
			user := fmt.Sprintf("w%d", w)
			for i := range rounds {
				ws := []pipeline.DocWrite{storetest.Write(user, fmt.Sprintf("d%d", i%7), uint64(i+1), i%5), storetest.Write(user, "fixed", uint64(i+1), 2)}
				if err := s.Apply(t.Context(), "busy", ws); err != nil {
					t.Error(err)
					return
				}
				models[w].Apply(ws...)
				if i%10 == 0 {
					if err := s.Prune(t.Context(), "busy", []pipeline.DocVersion{{UserID: user, DocID: "fixed", Version: uint64(i + 1)}}); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 3 {
		readers.Go(func() {
			user := fmt.Sprintf("w%d", r)
			for {
				select {
				case <-stop:
					return
				default:
				}
				mode := []pipeline.SearchMode{pipeline.ModeDense, pipeline.ModeKeyword, pipeline.ModeHybrid}[rand.IntN(3)]
				hits, err := s.Search(t.Context(), "busy", pipeline.Query{UserID: user, Mode: mode, Vector: storetest.Vec(3, 1),
					Keywords: pipeline.QueryKeywords("fixed d3 chunk"), TopK: 5})
				if err != nil {
					t.Error(err)
					return
				}
				for _, h := range hits {
					if !strings.HasPrefix(h.Text, h.DocID+" v") {
						t.Errorf("hit %+v", h)
					}
				}
				if _, _, err := s.List(t.Context(), "busy", user, 3, ""); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	all := storetest.Model{}
	for _, m := range models {
		for k, v := range m {
			all[k] = v
		}
	}
	if d := all.Diff(storetest.Points(t, s, "busy")); d != "" {
		t.Fatalf("final state:\n%s", d)
	}
}

// TestEmbeddedLargeTenant checks the parallel scan over many blocks, after
// deletes have moved vectors between slots, against a brute-force ranking.
func TestEmbeddedLargeTenant(t *testing.T) {
	const d, n = 48, 6000
	s := openEmbedded(t, t.TempDir(), func(c *localstore.Config) { c.SearchParallelism = 3 })
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "large", Dims: d, Distance: pipeline.Dot}, true); err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	vectors := map[string][]float32{}
	var ws []pipeline.DocWrite
	for i := range n {
		v := make([]float32, d)
		for j := range v {
			v[j] = rng.Float32()*2 - 1
		}
		doc := fmt.Sprintf("doc-%04d", i)
		vectors[doc] = v
		ws = append(ws, storetest.VecWrite("big", doc, 1, map[string]any{"mod": int64(i % 10)}, v...))
		if i%100 == 0 {
			ws = append(ws, storetest.VecWrite("small", doc, 1, nil, v...))
		}
	}
	storetest.Apply(t, s, "large", ws...)
	var dels []pipeline.DocWrite
	for i := 0; i < n; i += 4 { // a quarter, spread over every block
		doc := fmt.Sprintf("doc-%04d", i)
		dels = append(dels, storetest.Write("big", doc, 2, 0))
		delete(vectors, doc)
	}
	storetest.Apply(t, s, "large", dels...)

	for range 5 {
		q := make([]float32, d)
		for j := range q {
			q[j] = rng.Float32()*2 - 1
		}
		for _, filter := range []map[string][]any{nil, {"mod": {int64(3), int64(5)}}} {
			type scored struct {
				doc   string
				score float64
			}
			var want []scored
			for doc, v := range vectors {
				var i int
				fmt.Sscanf(doc, "doc-%d", &i)
				if filter != nil && i%10 != 3 && i%10 != 5 {
					continue
				}
				var sc float64
				for j := range v {
					sc += float64(v[j]) * float64(q[j])
				}
				want = append(want, scored{doc, sc})
			}
			sort.Slice(want, func(i, j int) bool { return want[i].score > want[j].score })
			hits, err := s.Search(t.Context(), "large", pipeline.Query{UserID: "big", Vector: q, TopK: 25, Filter: filter})
			if err != nil {
				t.Fatal(err)
			}
			if len(hits) != 25 {
				t.Fatalf("%d hits", len(hits))
			}
			for i, h := range hits {
				if h.DocID != want[i].doc || math.Abs(float64(h.Score)-want[i].score) > 1e-4 {
					t.Fatalf("filter %v: hit %d is %s (%v), want %s (%v)", filter, i, h.DocID, h.Score, want[i].doc, want[i].score)
				}
			}
		}
	}
	if c, err := s.Count(t.Context(), "large"); err != nil || c["big"] != n-n/4 || c["small"] != n/100 {
		t.Errorf("counts %v, %v", c, err)
	}
}

// Environment of TestEmbeddedCrashChild.
const (
	crashDirEnv   = "RAGPIPE_TEST_EMBEDDED_CRASH_DIR"
	crashStartEnv = "RAGPIPE_TEST_EMBEDDED_CRASH_START"
	crashBatch    = 3 // writes per Apply
	crashDims     = 8
)

// crashWrite is the seq-th write of the crash test: versions grow with seq,
// so each write is its document's newest; every fifth is a delete.
func crashWrite(seq int) pipeline.DocWrite {
	user := []string{"alice", "bob"}[seq%2]
	doc := fmt.Sprintf("doc-%02d", (seq/2)%15)
	w := pipeline.DocWrite{UserID: user, DocID: doc, Version: uint64(seq + 1)}
	n := seq % 5
	for i := range n {
		v := make([]float32, crashDims)
		for j := range v {
			v[j] = float32(seq*31+i*7+j) / 97
		}
		w.Points = append(w.Points, pipeline.Point{
			ID: pipeline.PointID(user, doc, i), Vector: v, UserID: user, DocID: doc, ChunkIndex: i, ChunkCount: n,
			Text:     fmt.Sprintf("%s v%d chunk %d %s", doc, seq+1, i, strings.Repeat("lorem ipsum ", 40)),
			Metadata: map[string]any{"seq": int64(seq), "tags": []any{"t", int64(i)}},
			Version:  uint64(seq + 1),
		})
	}
	return w
}

func crashBatchWrites(b int) []pipeline.DocWrite {
	ws := make([]pipeline.DocWrite, crashBatch)
	for i := range ws {
		ws[i] = crashWrite(b*crashBatch + i)
	}
	return ws
}

// TestEmbeddedCrashChild is the process TestEmbeddedCrash kills: it applies
// batches from RAGPIPE_TEST_EMBEDDED_CRASH_START on, forever, compacting
// often, and prints "ack <batch>" once each Apply has returned.
func TestEmbeddedCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("helper process of TestEmbeddedCrash")
	}
	start, err := strconv.Atoi(os.Getenv(crashStartEnv))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	s, err := localstore.Open(ctx, localstore.Config{Dir: dir, CompactBytes: 24 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.EnsureCollection(ctx, pipeline.Collection{Name: "crash", Dims: crashDims, Distance: pipeline.Dot}, true); err != nil {
		t.Fatal(err)
	}
	fmt.Println("ready")
	for b := start; ; b++ {
		if err := s.Apply(ctx, "crash", crashBatchWrites(b)); err != nil {
			t.Fatal(err)
		}
		fmt.Printf("ack %d\n", b) // os.Stdout is unbuffered
	}
}

// runCrashChild runs TestEmbeddedCrashChild from batch start, SIGKILLs it
// once it has acknowledged kill batches, and returns the last batch it
// acknowledged.
func runCrashChild(t *testing.T, dir string, start, kill int) int {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestEmbeddedCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir, crashStartEnv+"="+strconv.Itoa(start))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	defer close(done)
	go func() { // never wait forever for a stuck child
		select {
		case <-done:
		case <-time.After(2 * time.Minute):
			cmd.Process.Kill()
		}
	}()
	last, acks := -1, 0
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		var b int
		if _, err := fmt.Sscanf(sc.Text(), "ack %d", &b); err != nil {
			continue
		}
		if b != start+acks {
			t.Errorf("ack %d, want %d", b, start+acks)
		}
		last = b
		if acks++; acks == kill {
			// At a random instant of the next writes; their acks may
			// still reach the pipe.
			time.AfterFunc(time.Duration(rand.IntN(3000))*time.Microsecond, func() { cmd.Process.Signal(syscall.SIGKILL) })
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL || acks < kill {
		t.Fatalf("child: %v after %d acks, want killed after %d; stderr:\n%s", err, acks, kill, stderr.String())
	}
	return last
}

// TestEmbeddedCrash kills a writing process at arbitrary instants, several
// times on the same directory, and checks after each that every
// acknowledged write is stored, that the one in flight is stored entirely or
// not at all, and that nothing else is.
func TestEmbeddedCrash(t *testing.T) {
	dir := t.TempDir()
	m := storetest.Model{}
	next := 0
	for round := range 8 {
		kill := 10 + rand.IntN(80)
		last := runCrashChild(t, dir, next, kill)
		for b := next; b <= last; b++ {
			m.Apply(crashBatchWrites(b)...)
		}
		inFlight := m.Clone()
		inFlight.Apply(crashBatchWrites(last + 1)...)

		s := openEmbedded(t, dir, nil)
		got := storetest.Points(t, s, "crash")
		d1, d2 := m.Diff(got), inFlight.Diff(got)
		switch {
		case d1 == "":
			t.Logf("round %d: killed after batch %d; the batch in flight was lost", round, last)
		case d2 == "":
			t.Logf("round %d: killed after batch %d; the batch in flight was stored", round, last)
			m = inFlight
		default:
			t.Fatalf("round %d: killed after batch %d; the state is neither\n%s\nnor, with the batch in flight,\n%s", round, last, d1, d2)
		}
		// Searches and lists agree with the points.
		for _, user := range []string{"alice", "bob"} {
			docs := 0
			for k, w := range m {
				if k.User == user && len(w.Points) > 0 {
					docs++
					hits := storetest.Search(t, s, "crash", pipeline.Query{UserID: user, Vector: w.Points[0].Vector, TopK: 100,
						Filter: map[string][]any{"seq": {int64(w.Version - 1)}}})
					if len(hits) != len(w.Points) || hits[0].DocID != w.DocID {
						t.Errorf("search for %s/%s: %+v", user, w.DocID, hits)
					}
				}
			}
			listed, _, err := s.List(t.Context(), "crash", user, 1000, "")
			if err != nil || len(listed) != docs {
				t.Errorf("%s: listed %d docs (%v), want %d", user, len(listed), err, docs)
			}
		}
		s.Close()
		next = last + 2 // the next round's versions are newer still
	}
	if files := embeddedFiles(t, dir, "crash__g1"); slices.Contains(files, "snap-0000000000000000") {
		t.Errorf("files %v: the children never compacted", files)
	}
}
