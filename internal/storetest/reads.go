package storetest

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// testListPages checks List's paging, its cursor and that documents
// existing throughout a listing appear exactly once.
func testListPages(t *testing.T, s Store) {
	Ensure(t, s, "listing", pipeline.Cosine)
	var ws []pipeline.DocWrite
	for i := range 23 {
		ws = append(ws, Write("alice", fmt.Sprintf("doc-%02d", i), uint64(i+1), 1+i%3))
	}
	for i := range 4 {
		ws = append(ws, Write("bob", fmt.Sprintf("bob-%d", i), 7, 2))
	}
	Apply(t, s, "listing", ws...)

	check := func(user string, limit, want int) {
		t.Helper()
		seen := map[string]bool{}
		cursor := ""
		for pages := 0; ; pages++ {
			docs, next, err := s.List(t.Context(), "listing", user, limit, cursor)
			if err != nil {
				t.Fatalf("List(%s, %d, %q): %v", user, limit, cursor, err)
			}
			if len(docs) > limit || (next != "" && len(docs) == 0) || pages > want {
				t.Fatalf("page %d: %d docs, next %q", pages, len(docs), next)
			}
			for _, d := range docs {
				if seen[d.DocID] {
					t.Fatalf("%s listed twice", d.DocID)
				}
				seen[d.DocID] = true
				var i int
				if user == "alice" {
					fmt.Sscanf(d.DocID, "doc-%d", &i)
					if d.Version != uint64(i+1) || d.ChunkCount != 1+i%3 ||
						!reflect.DeepEqual(d.Metadata, map[string]any{"v": int64(i + 1)}) {
						t.Errorf("%+v, want version %d, %d chunks, metadata v=%d", d, i+1, 1+i%3, i+1)
					}
				} else if !strings.HasPrefix(d.DocID, "bob-") || d.Version != 7 || d.ChunkCount != 2 {
					t.Errorf("bob's %+v", d)
				}
			}
			if next == "" {
				break
			}
			cursor = next
		}
		if len(seen) != want {
			t.Errorf("%s, limit %d: listed %d docs, want %d", user, limit, len(seen), want)
		}
	}
	for _, limit := range []int{1, 5, 23, 100} {
		check("alice", limit, 23)
	}
	check("bob", 3, 4)
	check("carol", 10, 0)

	// Documents that exist throughout a listing appear exactly once,
	// whatever changes meanwhile.
	docs, next, err := s.List(t.Context(), "listing", "alice", 5, "")
	if err != nil || next == "" || len(docs) != 5 {
		t.Fatalf("first page: %v %q %v", docs, next, err)
	}
	Apply(t, s, "listing", Write("alice", docs[0].DocID, 100, 0), Write("alice", "doc-22", 100, 0),
		Write("alice", "doc-00a", 1, 1), Write("alice", "zzz", 1, 1))
	seen := map[string]int{}
	for _, d := range docs {
		seen[d.DocID]++
	}
	for next != "" {
		docs, next, err = s.List(t.Context(), "listing", "alice", 5, next)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range docs {
			seen[d.DocID]++
		}
	}
	for i := range 22 {
		if id := fmt.Sprintf("doc-%02d", i); seen[id] != 1 {
			t.Errorf("%s listed %d times", id, seen[id])
		}
	}
	if seen["doc-22"] > 1 || seen["zzz"] > 1 {
		t.Errorf("listed %v", seen)
	}

	for _, cursor := range []string{"not a cursor!", "dGVzdA", "u"} {
		_, _, err := s.List(t.Context(), "listing", "alice", 5, cursor)
		if !errors.Is(err, pipeline.ErrInvalidCursor) || !pipeline.IsPermanent(err) {
			t.Errorf("cursor %q: %v, want permanent ErrInvalidCursor", cursor, err)
		}
	}
	for _, limit := range []int{0, pipeline.MaxLimit + 1} {
		if _, _, err := s.List(t.Context(), "listing", "alice", limit, ""); !pipeline.IsPermanent(err) {
			t.Errorf("limit %d: %v, want a permanent error", limit, err)
		}
	}
}

// ReuseWrite is document "doc" of alice at version 1 with n+1 chunks: chunk
// k has text hash "hash-k" and a vector of dims dimensions starting k, 1,
// except chunk n, stored without a hash.
func ReuseWrite(n, dims int) pipeline.DocWrite {
	w := pipeline.DocWrite{UserID: "alice", DocID: "doc", Version: 1}
	for k := range n + 1 {
		v := make([]float32, dims)
		v[0], v[1] = float32(k), 1
		p := pipeline.Point{ID: pipeline.PointID("alice", "doc", k), Vector: v, ChunkIndex: k,
			ChunkCount: n + 1, Text: fmt.Sprint("chunk ", k), TextHash: fmt.Sprint("hash-", k)}
		if k == n {
			p.TextHash = "" // a point stored without a hash is never found
		}
		w.Points = append(w.Points, p)
	}
	return w
}

// ReuseLookup is what StoredVectors is asked of ReuseWrite(n, ...): the ids
// of its n+1 chunks and of four that do not exist, and "hash-k" for each even
// k among them, so that n/2 vectors are found when n is even.
func ReuseLookup(n int) (ids, hashes []string) {
	for k := range n + 5 { // ids n+1 to n+4 do not exist
		ids = append(ids, pipeline.PointID("alice", "doc", k))
		if k%2 == 0 {
			hashes = append(hashes, fmt.Sprint("hash-", k))
		}
	}
	return ids, hashes
}

// testStoredVectors checks that only the asked ids whose text hash matches
// return their vector.
func testStoredVectors(t *testing.T, s Store) {
	Ensure(t, s, "reuse", pipeline.Dot)
	const n = 30
	Apply(t, s, "reuse", ReuseWrite(n, Dims), VecWrite("bob", "doc", 1, nil, 9, 9, 9, 9))
	ids, hashes := ReuseLookup(n)
	got, err := s.StoredVectors(t.Context(), "reuse", ids, append(hashes, "hash-unknown", ""))
	if err != nil || len(got) != n/2 {
		t.Fatalf("%d vectors (%v), want %d", len(got), err, n/2)
	}
	for k := 0; k < n; k += 2 {
		if v := got[fmt.Sprint("hash-", k)]; !reflect.DeepEqual(v, []float32{float32(k), 1, 0, 0}) {
			t.Errorf("vector of hash-%d: %v", k, v)
		}
	}
	got, err = s.StoredVectors(t.Context(), "reuse", ids[:10], hashes) // only the ids asked for
	if err != nil || len(got) != 5 {
		t.Errorf("%d vectors (%v), want the 5 of the first 10 ids", len(got), err)
	}
	got, err = s.StoredVectors(t.Context(), "reuse", nil, hashes)
	if err != nil || len(got) != 0 {
		t.Errorf("no ids: %v, %v", got, err)
	}
	if _, err := s.StoredVectors(t.Context(), "missing", ids, hashes); !pipeline.IsPermanent(err) {
		t.Errorf("unknown collection: %v, want permanent", err)
	}
}

// testScroll checks that Scroll returns every point exactly once and
// resumes after any point.
func testScroll(t *testing.T, s Store) {
	Ensure(t, s, "scroll", pipeline.Dot)
	want := map[string]pipeline.Point{}
	for _, user := range []string{"alice", "bob", "carol"} {
		var ws []pipeline.DocWrite
		for d := range 9 {
			w := Write(user, fmt.Sprintf("d%d", d), uint64(d+1), 1+d%3)
			for _, p := range w.Points {
				want[p.ID] = p
			}
			ws = append(ws, w)
		}
		Apply(t, s, "scroll", ws...)
	}
	all := Points(t, s, "scroll")
	if len(all) != len(want) {
		t.Fatalf("scrolled %d points, want %d", len(all), len(want))
	}
	for _, p := range all {
		w := want[p.ID]
		if p.UserID != w.UserID || p.DocID != w.DocID || p.ChunkIndex != w.ChunkIndex || p.ChunkCount != w.ChunkCount ||
			p.Text != w.Text || p.Version != w.Version || !reflect.DeepEqual(p.Vector, w.Vector) ||
			!reflect.DeepEqual(p.Metadata, w.Metadata) {
			t.Errorf("scrolled %+v, want %+v", p, w)
		}
	}
	// Resuming after any point returns exactly the rest.
	mid := all[len(all)/2].ID
	rest, _, err := s.Scroll(t.Context(), "scroll", mid, len(all))
	if err != nil || len(rest) != len(all)-len(all)/2-1 || rest[0].ID != all[len(all)/2+1].ID {
		t.Errorf("resume after %s: %d points (%v), want %d", mid, len(rest), err, len(all)-len(all)/2-1)
	}
}
