package lww_test

import (
	"context"
	"errors"
	"maps"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

// memVersions is an in-memory Versions: the register's semantics without
// JetStream. fail names keys whose calls fail.
type memVersions struct {
	mu     sync.Mutex
	latest map[string]uint64
	fail   map[string]bool
	reads  [][]string // the keys of every Latest call
}

func newMemVersions() *memVersions {
	return &memVersions{latest: make(map[string]uint64), fail: make(map[string]bool)}
}

func (m *memVersions) Claim(_ context.Context, key string, v uint64) (lww.Claimed, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail[key] {
		return lww.Claimed{Held: true}, errors.New("injected: register unavailable")
	}
	cur, ok := m.latest[key]
	if cur >= v {
		return lww.Claimed{Held: cur == v, Latest: cur}, nil
	}
	m.latest[key] = v
	return lww.Claimed{Held: true, Latest: v, First: !ok}, nil
}

func (m *memVersions) Latest(_ context.Context, keys []string) ([]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reads = append(m.reads, keys)
	out := make([]uint64, len(keys))
	for i, k := range keys {
		if m.fail[k] {
			return nil, errors.New("injected: register unavailable")
		}
		out[i] = m.latest[k]
	}
	return out, nil
}

// memStore is an in-memory store following the rules of the package doc.
// fail names documents whose prunes fail, failAll fails every prune.
type memStore struct {
	points  map[chunk]uint64 // version of each stored point
	pruned  [][]pipeline.DocVersion
	fail    map[string]bool
	failAll error
}

type chunk struct {
	doc   string
	index int
}

func newMemStore() *memStore {
	return &memStore{points: make(map[chunk]uint64), fail: make(map[string]bool)}
}

// upsert is the first half of Apply: n points of doc at version v, over
// stored points whose version is <= v only.
func (s *memStore) upsert(doc string, n int, v uint64) {
	for k := range n {
		if cur, ok := s.points[chunk{doc, k}]; !ok || cur <= v {
			s.points[chunk{doc, k}] = v
		}
	}
}

// remove deletes doc's points whose version is < v: the second half of
// Apply, and Prune.
func (s *memStore) remove(doc string, v uint64) {
	maps.DeleteFunc(s.points, func(c chunk, version uint64) bool { return c.doc == doc && version < v })
}

func (s *memStore) Prune(_ context.Context, _ string, docs []pipeline.DocVersion) error {
	s.pruned = append(s.pruned, docs)
	if s.failAll != nil {
		return s.failAll
	}
	errs := make([]error, len(docs))
	for i, d := range docs {
		if s.fail[d.DocID] {
			errs[i] = pipeline.Permanent(errors.New("injected: prune refused"))
			continue
		}
		s.remove(d.DocID, d.Version)
	}
	if slices.ContainsFunc(errs, func(err error) bool { return err != nil }) {
		return &pipeline.BatchError{Op: "prune", Collection: "c", Errs: errs}
	}
	return nil
}

func newProtocol(t *testing.T, v lww.Versions, p lww.Pruner) *lww.Protocol {
	t.Helper()
	proto, err := lww.New(lww.Config{Versions: v, Pruner: p})
	if err != nil {
		t.Fatal(err)
	}
	return proto
}

func doc(id string, v uint64) pipeline.DocVersion {
	return pipeline.DocVersion{UserID: "u", DocID: id, Version: v}
}

func TestNewNeedsRegisterAndPruner(t *testing.T) {
	if _, err := lww.New(lww.Config{Versions: newMemVersions()}); err == nil {
		t.Error("New without a pruner succeeded")
	}
	if _, err := lww.New(lww.Config{Pruner: newMemStore()}); err == nil {
		t.Error("New without a register succeeded")
	}
}

func TestClaimKeepsNewestPerDocument(t *testing.T) {
	versions, store := newMemVersions(), newMemStore()
	p := newProtocol(t, versions, store)
	docs := []pipeline.DocVersion{doc("a", 1), doc("a", 3), doc("b", 1), doc("a", 2), {UserID: "v", DocID: "a", Version: 1}}
	c := p.Claim(t.Context(), "c", docs)
	if got := c.Held(); !slices.Equal(got, []int{1, 2, 4}) {
		t.Fatalf("Held = %v, want [1 2 4]", got)
	}
	if len(versions.latest) != 3 || versions.latest[lww.Key("c", "u", "a")] != 3 {
		t.Fatalf("register = %v; want a at 3, b and v's a at 1", versions.latest)
	}
	for _, i := range c.Held() {
		if !c.First(i) {
			t.Errorf("docs[%d] is new to the register but not First", i)
		}
	}
	for i, err := range c.Settle(t.Context(), nil) {
		if err != nil {
			t.Errorf("docs[%d]: %v", i, err)
		}
	}
	if len(store.pruned) != 0 {
		t.Errorf("versions superseded within the batch were pruned: %v", store.pruned)
	}
}

func TestSettle(t *testing.T) {
	ctx := t.Context()
	for _, tt := range []struct {
		name     string
		claimed  map[string]uint64 // in the register before the batch
		docs     []pipeline.DocVersion
		written  func(held []int) []int
		meantime map[string]uint64 // claimed between Claim and Settle
		// failClaim, failRead, failPrune name documents whose calls fail.
		failClaim, failRead, failPrune string
		failAll                        error
		wantHeld                       []int
		wantPruned                     []pipeline.DocVersion
		wantErrs                       []bool
		wantReads                      int
	}{{
		name: "held, not overtaken", docs: []pipeline.DocVersion{doc("a", 2)},
		written: all, wantHeld: []int{0}, wantErrs: []bool{false}, wantReads: 1,
	}, {
		name: "superseded at claim: pruned below the newer version", claimed: map[string]uint64{"a": 5},
		docs: []pipeline.DocVersion{doc("a", 2)}, written: all,
		wantPruned: []pipeline.DocVersion{doc("a", 5)}, wantErrs: []bool{false},
	}, {
		name: "overtaken after the write: pruned, own write included", docs: []pipeline.DocVersion{doc("a", 2), doc("b", 2)},
		written: all, meantime: map[string]uint64{"a": 7}, wantHeld: []int{0, 1},
		wantPruned: []pipeline.DocVersion{doc("a", 7)}, wantErrs: []bool{false, false}, wantReads: 1,
	}, {
		name: "a redelivery holds its version", claimed: map[string]uint64{"a": 2},
		docs: []pipeline.DocVersion{doc("a", 2)}, written: all, wantHeld: []int{0}, wantErrs: []bool{false}, wantReads: 1,
	}, {
		name: "unwritten (a delete, a failed write): no re-read", docs: []pipeline.DocVersion{doc("a", 2)},
		written: none, meantime: map[string]uint64{"a": 7}, wantHeld: []int{0}, wantErrs: []bool{false},
	}, {
		name: "one re-read, one prune for the batch", claimed: map[string]uint64{"c": 9},
		docs:    []pipeline.DocVersion{doc("c", 1), doc("a", 2), doc("b", 2), doc("d", 2)},
		written: all, meantime: map[string]uint64{"a": 3, "d": 4}, wantHeld: []int{1, 2, 3},
		wantPruned: []pipeline.DocVersion{doc("c", 9), doc("a", 3), doc("d", 4)}, wantErrs: []bool{false, false, false, false}, wantReads: 1,
	}, {
		name: "failed claim", docs: []pipeline.DocVersion{doc("a", 2), doc("b", 2)}, failClaim: "a",
		written: all, wantHeld: []int{1}, wantErrs: []bool{true, false}, wantReads: 1,
	}, {
		name: "failed re-read", docs: []pipeline.DocVersion{doc("a", 2)}, failRead: "a",
		written: all, wantHeld: []int{0}, wantErrs: []bool{true}, wantReads: 1,
	}, {
		name: "failed prune of one document", claimed: map[string]uint64{"a": 5, "b": 5},
		docs: []pipeline.DocVersion{doc("a", 2), doc("b", 2)}, failPrune: "a", written: all,
		wantPruned: []pipeline.DocVersion{doc("a", 5), doc("b", 5)}, wantErrs: []bool{true, false},
	}, {
		name: "failed prune call", claimed: map[string]uint64{"a": 5, "b": 5},
		docs: []pipeline.DocVersion{doc("a", 2), doc("b", 2)}, failAll: errors.New("unavailable"), written: all,
		wantPruned: []pipeline.DocVersion{doc("a", 5), doc("b", 5)}, wantErrs: []bool{true, true},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			versions, store := newMemVersions(), newMemStore()
			for id, v := range tt.claimed {
				versions.latest[lww.Key("c", "u", id)] = v
			}
			versions.fail[lww.Key("c", "u", tt.failClaim)] = true
			store.fail[tt.failPrune], store.failAll = true, tt.failAll
			c := newProtocol(t, versions, store).Claim(ctx, "c", tt.docs)
			versions.fail[lww.Key("c", "u", tt.failClaim)] = false
			if !slices.Equal(c.Held(), tt.wantHeld) {
				t.Fatalf("Held = %v, want %v", c.Held(), tt.wantHeld)
			}
			for id, v := range tt.meantime {
				versions.latest[lww.Key("c", "u", id)] = v
			}
			versions.fail[lww.Key("c", "u", tt.failRead)] = true
			errs := c.Settle(ctx, tt.written(c.Held()))
			for i, err := range errs {
				if (err != nil) != tt.wantErrs[i] {
					t.Errorf("docs[%d]: error %v, want one: %v", i, err, tt.wantErrs[i])
				}
			}
			var pruned []pipeline.DocVersion
			if len(store.pruned) > 1 {
				t.Errorf("%d Prune calls, want at most one", len(store.pruned))
			}
			if len(store.pruned) == 1 {
				pruned = store.pruned[0]
			}
			if !slices.Equal(pruned, tt.wantPruned) {
				t.Errorf("pruned %v, want %v", pruned, tt.wantPruned)
			}
			if len(versions.reads) != tt.wantReads {
				t.Errorf("%d register reads, want %d", len(versions.reads), tt.wantReads)
			}
		})
	}
}

func all(held []int) []int { return held }
func none([]int) []int     { return nil }

// TestConverges plays the protocol with many interleavings: every version of
// a document, some twice, taken in batches by writers whose steps (claim,
// the upsert and the delete of Apply, settle) interleave at random, that die
// at random and whose prunes fail at random. Once every event has succeeded,
// exactly the highest version's points must be stored.
func TestConverges(t *testing.T) {
	for seed := range uint64(2000) {
		r := rand.New(rand.NewPCG(seed, 1))
		type version struct {
			v      uint64
			chunks int // 0 for a delete
		}
		var events []version
		for v := range uint64(2 + r.IntN(5)) {
			e := version{v + 1, r.IntN(5)}
			events = append(events, e)
			if r.IntN(3) == 0 {
				events = append(events, e)
			}
		}
		newest := events[len(events)-1]
		versions, store := newMemVersions(), newMemStore()
		p := newProtocol(t, versions, store)
		type writer struct {
			batch  []int // indexes in events
			claims *lww.Claims
			step   int
		}
		pending := make([]int, len(events))
		for i := range pending {
			pending[i] = i
		}
		var writers []*writer
		for steps := 0; len(pending) > 0 || len(writers) > 0; steps++ {
			if steps > 10000 {
				t.Fatalf("seed %d: no progress", seed)
			}
			if len(pending) > 0 && (len(writers) == 0 || r.IntN(3) == 0) {
				r.Shuffle(len(pending), func(i, j int) { pending[i], pending[j] = pending[j], pending[i] })
				n := 1 + r.IntN(min(3, len(pending)))
				writers = append(writers, &writer{batch: slices.Clone(pending[:n])})
				pending = pending[n:]
				continue
			}
			k := r.IntN(len(writers))
			w := writers[k]
			if r.IntN(8) == 0 { // the writer dies: its events are redelivered
				pending = append(pending, w.batch...)
				writers = slices.Delete(writers, k, k+1)
				continue
			}
			store.fail["d"] = r.IntN(6) == 0
			held := func() (version, bool) {
				if h := w.claims.Held(); len(h) > 0 {
					return events[w.batch[h[0]]], true
				}
				return version{}, false
			}
			switch w.step {
			case 0:
				docs := make([]pipeline.DocVersion, len(w.batch))
				for j, i := range w.batch {
					docs[j] = doc("d", events[i].v)
				}
				w.claims = p.Claim(t.Context(), "c", docs)
			case 1:
				if e, ok := held(); ok {
					store.upsert("d", e.chunks, e.v)
				}
			case 2:
				if e, ok := held(); ok {
					store.remove("d", e.v)
				}
			case 3:
				var written []int
				if e, ok := held(); ok && e.chunks > 0 {
					written = w.claims.Held()
				}
				for j, err := range w.claims.Settle(t.Context(), written) {
					if err != nil {
						pending = append(pending, w.batch[j])
					}
				}
				writers = slices.Delete(writers, k, k+1)
			}
			w.step++
		}
		want := make(map[chunk]uint64)
		for k := range newest.chunks {
			want[chunk{"d", k}] = newest.v
		}
		if !maps.Equal(store.points, want) {
			t.Fatalf("seed %d, events %v: stored %v, want %v", seed, events, store.points, want)
		}
	}
}
