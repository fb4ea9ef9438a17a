package qdrantstore

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// BenchmarkApplyCost prints the Qdrant CPU per point of write-path
// variants, once whatever b.N; RAGPIPE_APPLY_COST picks the measurement
// (unset: upserts; versions, scroll, filter, filter1):
//
//	go test -run XXX -bench ApplyCost -benchtime 1x ./qdrantstore
func BenchmarkApplyCost(b *testing.B) {
	var t testing.TB = b
	node := qdranttest.Start(t)
	pid := qdrantPID(t, node.Dir())
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
			units := make([]unit, n)
			for i := range writes {
				if units[i], err = s.writeUnit(&writes[i], c); err != nil {
					t.Fatal(err)
				}
			}
			reqs := pack(units, v.batch)
			cpu0 := procCPU(t, pid)
			start := time.Now()
			var g errgroup.Group
			g.SetLimit(v.par)
			for _, req := range reqs {
				g.Go(func() error {
					if v.read {
						s.nothingStored(t.Context(), name, req)
					}
					var ops []*qdrant.PointsUpdateOperation
					if v.filter {
						ops = operations(req, false)
					} else {
						var pts []*qdrant.PointStruct
						for _, u := range req {
							pts = append(pts, u.points...)
						}
						ops = []*qdrant.PointsUpdateOperation{qdrant.NewPointsUpdateUpsert(&qdrant.PointsUpdateOperation_PointStructList{Points: pts})}
					}
					_, err := s.client.UpdateBatch(t.Context(), &qdrant.UpdateBatchPoints{
						CollectionName: name, Wait: qdrant.PtrOf(true), Operations: ops, Ordering: &qdrant.WriteOrdering{Type: v.ordering}})
					return err
				})
			}
			if err := g.Wait(); err != nil {
				t.Fatal(err)
			}
			el := time.Since(start)
			cpu := procCPU(t, pid) - cpu0
			t.Logf("%-20s batch %4d par %d: %6.0f points/s, Qdrant %.1f µs/point", v.name, v.batch, v.par, n/el.Seconds(), cpu/n*1e6)
			_ = s.DropCollection(t.Context(), generation.Name(name, 1))
		}
	}
}

func qdrantPID(t testing.TB, dir string) int {
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		env, err := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		if err == nil && bytes.Contains(env, []byte(filepath.Join(dir, "storage"))) {
			return pid
		}
	}
	t.Fatal("qdrant pid not found")
	return 0
}

func procCPU(t testing.TB, pid int) float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := bytes.Fields(b[bytes.LastIndexByte(b, ')')+1:])
	u, _ := strconv.ParseFloat(string(f[11]), 64)
	sy, _ := strconv.ParseFloat(string(f[12]), 64)
	return (u + sy) / 100
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
			cpu0 := procCPU(t, pid)
			start := time.Now()
			for range 40 {
				if !v.f() {
					t.Fatal("found")
				}
			}
			t.Logf("scroll %s: %.2f ms/read, Qdrant %.2f ms CPU/read", v.name, time.Since(start).Seconds()*1000/40, (procCPU(t, pid)-cpu0)*1000/40)
		}
	}
}

// filterCost alternates plain upserts, upserts with the update_filter of
// operations and upserts with an alternative filter (per write: user_id,
// doc_id and the version bound, under one has_id of all the points), 256
// new points a request, into one collection.
func filterCost(t testing.TB, s *Store, pid int, writes []pipeline.DocWrite) {
	c := pipeline.Collection{Name: "filter", Dims: 1024, Distance: pipeline.Cosine}
	if err := s.EnsureCollection(t.Context(), c, true); err != nil {
		t.Fatal(err)
	}
	units := make([]unit, len(writes))
	for i := range writes {
		writes[i].Version = uint64(i + 1)
		if os.Getenv("RAGPIPE_APPLY_COST") == "filter1" {
			writes[i].Version = 1 // one clause per request
		}
		var err error
		if units[i], err = s.writeUnit(&writes[i], c); err != nil {
			t.Fatal(err)
		}
	}
	var used [3]float64
	var n [3]int
	for i, req := range pack(units, 256) {
		kind := i % 3
		var pts []*qdrant.PointStruct
		var ids []*qdrant.PointId
		var docs []*qdrant.Condition
		for _, u := range req {
			pts = append(pts, u.points...)
			for _, p := range u.points {
				ids = append(ids, p.Id)
			}
			docs = append(docs, qdrant.NewFilterAsCondition(&qdrant.Filter{Must: []*qdrant.Condition{
				qdrant.NewMatchKeyword(keyUserID, u.doc.userID), qdrant.NewMatchKeyword(keyDocID, u.doc.docID),
				qdrant.NewRange(keyVersion, &qdrant.Range{Lte: qdrant.PtrOf(float64(u.version))}),
			}}))
		}
		list := &qdrant.PointsUpdateOperation_PointStructList{Points: pts}
		ops := []*qdrant.PointsUpdateOperation{qdrant.NewPointsUpdateUpsert(list)}
		switch kind {
		case 1:
			ops = operations(req, false)
		case 2:
			list.UpdateFilter = &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewHasID(ids...)}, Should: docs}
		}
		cpu0 := procCPU(t, pid)
		if _, err := s.client.UpdateBatch(t.Context(), &qdrant.UpdateBatchPoints{
			CollectionName: "filter", Wait: qdrant.PtrOf(true), Operations: ops}); err != nil {
			t.Fatal(err)
		}
		used[kind] += procCPU(t, pid) - cpu0
		n[kind] += len(pts)
	}
	t.Logf("upsert of new points, %s: plain %.1f µs/point, update_filter %.1f, alternative %.1f",
		os.Getenv("RAGPIPE_APPLY_COST"), used[0]/float64(n[0])*1e6, used[1]/float64(n[1])*1e6, used[2]/float64(n[2])*1e6)
}
