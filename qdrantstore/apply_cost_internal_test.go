package qdrantstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// BenchmarkApplyCost prints the Qdrant CPU per point of write-path
// variants, once whatever b.N; RAGPIPE_APPLY_COST picks the measurement
// (unset: upserts; versions, scroll, filter, filter1, first):
//
//	go test -run XXX -bench ApplyCost -benchtime 1x ./qdrantstore
func BenchmarkApplyCost(b *testing.B) {
	var t testing.TB = b
	node := qdranttest.Start(t)
	pid := node.Pid()
	s, err := New(t.Context(), Config{Host: "127.0.0.1", Port: node.GRPCPort()})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const n, dims = 10000, 1024
	r := rand.New(rand.NewPCG(1, 2))
	writes := make([]pipeline.DocWrite, n)
	for i := range writes {
		v := make([]float32, dims)
		for j := range v {
			v[j] = r.Float32() - 0.5
		}
		user, doc := fmt.Sprintf("u%d", i%5), fmt.Sprintf("doc-%07d", i)
		version := uint64(1)
		if os.Getenv("RAGPIPE_APPLY_COST") == "versions" {
			version = uint64(i + 1) // as events without a version get: their stream sequence
		}
		writes[i] = pipeline.DocWrite{UserID: user, DocID: doc, Version: version, Points: []pipeline.Point{{
			ID: pipeline.PointID(user, doc, 0), ChunkIndex: 0, ChunkCount: 1, Vector: v,
			Text: string(bytes.Repeat([]byte("lorem ipsum "), 75)),
		}}}
	}
	variants := []struct {
		name         string
		batch, par   int
		filter, read bool
		ordering     qdrant.WriteOrderingType
	}{
		{"plain", 256, 4, false, false, qdrant.WriteOrderingType_Weak},
		{"plain", 1024, 4, false, false, qdrant.WriteOrderingType_Weak},
		{"filter", 256, 4, true, false, qdrant.WriteOrderingType_Weak},
		{"filter+read", 256, 4, true, true, qdrant.WriteOrderingType_Weak},
		{"filter+read medium", 256, 4, true, true, qdrant.WriteOrderingType_Medium},
		{"filter", 1024, 4, true, false, qdrant.WriteOrderingType_Weak},
		{"filter+read", 1024, 4, true, true, qdrant.WriteOrderingType_Weak},
		{"plain", 256, 1, false, false, qdrant.WriteOrderingType_Weak},
		{"filter+read", 256, 1, true, true, qdrant.WriteOrderingType_Weak},
	}
	if v := os.Getenv("RAGPIPE_APPLY_COST"); v == "filter" || v == "filter1" {
		filterCost(t, s, pid, writes)
		return
	}
	if os.Getenv("RAGPIPE_APPLY_COST") == "first" {
		firstCost(t, s, pid)
		return
	}
	if os.Getenv("RAGPIPE_APPLY_COST") == "scroll" {
		scrollCost(t, s, pid, writes)
		return
	}
	for round := range 2 {
		for vi, v := range variants {
			name := fmt.Sprintf("cost_%d_%d", round, vi)
			c := pipeline.Collection{Name: name, Dims: dims, Distance: pipeline.Cosine}
			if err := s.EnsureCollection(t.Context(), c, true); err != nil {
				t.Fatal(err)
			}
			units := costUnits(t, s, writes, c)
			reqs := pack(units, v.batch)
			ordering := &qdrant.WriteOrdering{Type: v.ordering}
			cpu0 := cputimetest.Process(t, pid).Seconds()
			start := time.Now()
			var g errgroup.Group
			g.SetLimit(v.par)
			for _, req := range reqs {
				g.Go(func() error {
					if v.read {
						s.nothingStored(t.Context(), name, req)
					}
					if v.filter {
						b, _ := encodeRequest(nil, name, ordering, req, false)
						return sendRequest(t, s, name, b)
					}
					b, _ := encodeUpsert(nil, name, ordering, req)
					return sendRequest(t, s, name, b)
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			cpu := cputimetest.Process(t, pid).Seconds() - cpu0
			t.Logf("%-20s batch %4d par %d: %6.0f points/s, Qdrant %.1f µs/point", v.name, v.batch, v.par, n/el.Seconds(), cpu/n*1e6)
			_ = s.DropCollection(t.Context(), generation.Name(name, 1))
		}
	}
}

func scrollCost(t testing.TB, s *Store, pid int, writes []pipeline.DocWrite) {
	c := pipeline.Collection{Name: "scroll", Dims: 1024, Distance: pipeline.Cosine}
	if err := s.EnsureCollection(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(t.Context(), "scroll", writes); err != nil {
		t.Fatal(err)
	}
	units := make([]unit, 256)
	for i := range units {
		units[i] = unit{doc: docKey{fmt.Sprintf("u%d", i%5), fmt.Sprintf("new-%07d", i)}}
	}
	old := func() bool {
		docs := make([]*qdrant.Filter, 0, len(units))
		for _, u := range units {
			docs = append(docs, &qdrant.Filter{Must: []*qdrant.Condition{
				qdrant.NewMatchKeyword(keyUserID, u.doc.userID),
				qdrant.NewMatchKeyword(keyDocID, u.doc.docID),
			}})
		}
		points, err := s.client.Scroll(t.Context(), &qdrant.ScrollPoints{
			CollectionName: "scroll", Filter: anyOf(docs), Limit: qdrant.PtrOf(uint32(1)),
			WithPayload: qdrant.NewWithPayload(false), WithVectors: qdrant.NewWithVectors(false),
		})
		return err == nil && len(points) == 0
	}
	for range 3 {
		for _, v := range []struct {
			name string
			f    func() bool
		}{{"old", old}, {"new", func() bool { return s.nothingStored(t.Context(), "scroll", units) }}} {
			cpu0 := cputimetest.Process(t, pid).Seconds()
			start := time.Now()
			for range 40 {
				if !v.f() {
					t.Fatal("found")
				}
			}
			t.Logf("scroll %s: %.2f ms/read, Qdrant %.2f ms CPU/read", v.name, time.Since(start).Seconds()*1000/40, (cputimetest.Process(t, pid).Seconds()-cpu0)*1000/40)
		}
	}
}

// filterCost alternates plain upserts, upserts with the update_filter of
// operations and upserts with an alternative filter (per write: user_id,
// doc_id and the version bound, under one has_id of all the points), 256
// new points a request, into one collection.
func filterCost(t testing.TB, s *Store, pid int, writes []pipeline.DocWrite) {
	c := pipeline.Collection{Name: "filter", Dims: 1024, Distance: pipeline.Cosine}
	for i := range writes {
		writes[i].Version = uint64(i + 1)
		if os.Getenv("RAGPIPE_APPLY_COST") == "filter1" {
			writes[i].Version = 1 // one clause per request
		}
	}
	used := kindCost(t, s, pid, c, writes, []func([]unit) []byte{
		func(req []unit) []byte { b, _ := encodeUpsert(nil, c.Name, nil, req); return b },
		func(req []unit) []byte { b, _ := encodeRequest(nil, c.Name, nil, req, false); return b },
		func(req []unit) []byte { return encodeFiltered(c.Name, nil, req, alternativeFilter) },
	})
	t.Logf("upsert of new points, %s: plain %.1f µs/point, update_filter %.1f, alternative %.1f",
		os.Getenv("RAGPIPE_APPLY_COST"), used[0], used[1], used[2])
}

// firstCost alternates, 256 new points a request into one collection with
// keyword vectors, writes of benchWrites (ragpipe's payload, distinct
// versions) upserted as Apply does after a read that found nothing stored:
// with today's update_filter (not first versions), insert-only (first
// versions: version < 1), and plainly (no update_filter).
func firstCost(t testing.TB, s *Store, pid int) {
	c := pipeline.Collection{Name: "first", Dims: 1024, Distance: pipeline.Cosine, Keywords: true}
	first := func(req []unit) []unit {
		req = slices.Clone(req)
		for i := range req {
			req[i].first = true
		}
		return req
	}
	used := kindCost(t, s, pid, c, benchWrites(10000), []func([]unit) []byte{
		func(req []unit) []byte { b, _ := encodeRequest(nil, c.Name, nil, req, false); return b },
		func(req []unit) []byte { b, _ := encodeRequest(nil, c.Name, nil, first(req), false); return b },
		func(req []unit) []byte { b, _ := encodeUpsert(nil, c.Name, nil, req); return b },
	})
	t.Logf("upsert of new points with keyword vectors: update_filter %.1f µs/point, insert-only %.1f, plain %.1f",
		used[0], used[1], used[2])
}

// kindCost creates collection c and sends the writes in requests of about
// 256 points, encoded in turn by each of kinds, one request at a time, and
// returns the Qdrant CPU per point, in µs, of each kind's requests.
func kindCost(t testing.TB, s *Store, pid int, c pipeline.Collection, writes []pipeline.DocWrite, kinds []func([]unit) []byte) []float64 {
	if err := s.EnsureCollection(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	used := make([]float64, len(kinds))
	n := make([]int, len(kinds))
	for i, req := range pack(costUnits(t, s, writes, c), 256) {
		kind := i % len(kinds)
		b := kinds[kind](req)
		cpu0 := cputimetest.Process(t, pid).Seconds()
		if err := sendRequest(t, s, c.Name, b); err != nil {
			t.Fatal(err)
		}
		used[kind] += cputimetest.Process(t, pid).Seconds() - cpu0
		for _, u := range req {
			n[kind] += len(u.writePoints())
		}
	}
	for k := range used {
		used[k] = used[k] / float64(n[k]) * 1e6
	}
	return used
}

// costUnits builds the units of writes for collection c, as Apply does.
func costUnits(t testing.TB, s *Store, writes []pipeline.DocWrite, c pipeline.Collection) []unit {
	units := make([]unit, len(writes))
	var metadata []byte
	for i := range writes {
		var err error
		if units[i], err = s.newUnit(&writes[i], c, &metadata); err != nil {
			t.Fatal(err)
		}
	}
	return units
}

// sendRequest sends b, an encoded UpdateBatch request of collection, as
// Apply does.
func sendRequest(t testing.TB, s *Store, collection string, b []byte) error {
	r := newRequest()
	defer r.release()
	r.buf = append(r.buf, b...)
	return s.updateBatch(t.Context(), collection, r)
}

// encodeFiltered returns the UpdateBatch request of collection upserting
// the units' points, with no delete and the update_filter filter writes.
// With (*encoder).overwritable it is encodeRequest's request without
// deleteOlder (TestEncodeFiltered).
func encodeFiltered(collection string, ordering *qdrant.WriteOrdering, units []unit, filter func(*encoder, []unit)) []byte {
	size := 0
	for k := range units {
		for i := range units[k].writePoints() {
			size += pointHint(&units[k], i)
		}
	}
	e := encoder{b: make([]byte, 0, size+len(units)*200)}
	e.string(fUpdateBatchCollection, collection)
	e.varint(fUpdateBatchWait, 1)
	op := e.open(fUpdateBatchOperations, size)
	upsert := e.open(fOperationUpsert, size)
	for k := range units {
		for i := range units[k].writePoints() {
			e.point(&units[k], i)
		}
	}
	filter(&e, units)
	e.close(upsert)
	e.close(op)
	e.ordering(ordering)
	return e.b
}

// TestEncodeFiltered checks that encodeFiltered frames a request as
// encodeRequest does.
func TestEncodeFiltered(t *testing.T) {
	md := map[string]any{"k": "v"}
	writes := []pipeline.DocWrite{testWrite("u", "a", 3, 2, md), testWrite("u", "b", 5, 1, nil), testWrite("v", "c", 3, 1, md)}
	units := costUnits(t, &Store{}, writes, pipeline.Collection{Name: "c", Keywords: true})
	for _, o := range []*qdrant.WriteOrdering{nil, {Type: qdrant.WriteOrderingType_Medium}} {
		want, _ := encodeRequest(nil, "c", o, units, false)
		overwritable := func(e *encoder, units []unit) { e.overwritable(units, true) }
		if got := encodeFiltered("c", o, units, overwritable); !bytes.Equal(got, want) {
			t.Errorf("ordering %v: encodeFiltered differs from encodeRequest", o)
		}
	}
}

// alternativeFilter writes an update_filter alternative to overwritable's:
// has_id of all the units' points, and for one of the units, its user_id,
// doc_id and version <= its version.
func alternativeFilter(e *encoder, units []unit) {
	f := e.open(fListFilter, len(units)*200)
	must := e.open(fFilterMust, len(units)*48)
	has := e.open(fConditionHasID, len(units)*48)
	for _, u := range units {
		for _, p := range u.writePoints() {
			id := e.open(fHasIDs, len(p.ID)+2)
			e.string(fIDUUID, p.ID)
			e.close(id)
		}
	}
	e.close(has)
	e.close(must)
	for _, u := range units {
		cond := e.open(fFilterShould, 128)
		nest := e.open(fConditionNest, 128)
		e.matchKeyword(keyUserID, u.doc.userID)
		e.matchKeyword(keyDocID, u.doc.docID)
		e.versionRange(fRangeLte, u.version)
		e.close(nest)
		e.close(cond)
	}
	e.close(f)
}
