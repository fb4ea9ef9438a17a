package qdrantstore

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// modelRounds is rounds as it was written first, one growing append per
// unit: the model the faster rounds must agree with.
func modelRounds(units []unit) [][]unit {
	var out [][]unit
	seen := make(map[docKey]int)
	for _, u := range units {
		k := seen[u.doc]
		seen[u.doc]++
		if k == len(out) {
			out = append(out, nil)
		}
		out[k] = append(out[k], u)
	}
	return out
}

// modelPack is pack as it was written first, copying each request's units.
func modelPack(units []unit, maxWeight int) [][]unit {
	var reqs [][]unit
	var cur []unit
	weight := 0
	for _, u := range units {
		if len(cur) > 0 && weight+u.weight > maxWeight {
			reqs = append(reqs, cur)
			cur, weight = nil, 0
		}
		cur = append(cur, u)
		weight += u.weight
	}
	if len(cur) > 0 {
		reqs = append(reqs, cur)
	}
	return reqs
}

// TestRoundsPackModel checks that rounds and pack group units exactly as
// modelRounds and modelPack do (same units, same requests, same order), that
// every group they return has len == cap, and that they leave units as given.
func TestRoundsPackModel(t *testing.T) {
	type input struct {
		name  string
		units []unit
	}
	u := func(index int, user, doc string, version uint64, weight int) unit {
		w := &pipeline.DocWrite{UserID: user, DocID: doc, Version: version}
		return unit{index: index, doc: docKey{user, doc}, version: version, weight: weight, write: w,
			metadata: [][]byte{[]byte(fmt.Sprint(index))}}
	}
	inputs := []input{
		{"none", nil},
		{"empty", []unit{}},
		{"one", []unit{u(0, "a", "d1", 1, 3)}},
		{"distinct", []unit{u(0, "a", "d1", 1, 2), u(1, "a", "d2", 1, 2), u(2, "b", "d1", 1, 2)}},
		{"versions of one document", []unit{u(0, "a", "d", 1, 1), u(1, "a", "d", 3, 2), u(2, "a", "d", 2, 4), u(3, "a", "d", 9, 1)}},
		{"repeated among others", []unit{u(0, "a", "d1", 1, 1), u(1, "a", "d2", 1, 1), u(2, "a", "d1", 2, 1),
			u(3, "b", "d1", 5, 1), u(4, "a", "d1", 3, 1), u(5, "a", "d2", 2, 1)}},
		{"deletes", []unit{u(0, "a", "d1", 2, 1), {index: 1, doc: docKey{"a", "d1"}, version: 4, weight: 1},
			{index: 2, doc: docKey{"a", "d3"}, version: 1, weight: 1}}},
	}
	// Batches filling requests exactly (weights summing to the request size).
	exact := make([]unit, 0, 12)
	for i := range 12 {
		exact = append(exact, u(i, "a", fmt.Sprintf("d%d", i), 1, 4))
	}
	inputs = append(inputs, input{"exact boundaries", exact})
	// Spare capacity beyond len, as Apply's units have when writes fail.
	spare := make([]unit, 0, 10)
	spare = append(spare, u(0, "a", "d1", 1, 1), u(1, "a", "d2", 1, 1))
	inputs = append(inputs, input{"spare capacity", spare})

	r := rand.New(rand.NewPCG(17, 2))
	for i := range 300 {
		n := r.IntN(40)
		docs := 1 + r.IntN(max(n, 1))
		units := make([]unit, n)
		for j := range units {
			units[j] = u(j, fmt.Sprintf("u%d", r.IntN(2)), fmt.Sprintf("d%d", r.IntN(docs)),
				uint64(1+r.IntN(5)), 1+r.IntN(6))
			if r.IntN(5) == 0 { // a delete
				units[j].write, units[j].metadata, units[j].weight = nil, nil, 1
			}
		}
		inputs = append(inputs, input{fmt.Sprintf("random %d", i), units})
	}

	for _, in := range inputs {
		before := slices.Clone(in.units)
		want := modelRounds(slices.Clone(in.units))
		got := rounds(in.units)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s: rounds = %v, want %v", in.name, indexes(got), indexes(want))
		}
		checkFull(t, in.name+": rounds", got)
		for k, round := range got {
			for _, size := range []int{0, 1, 2, 4, 5, 8, 12, 16, 256} {
				wantReqs := modelPack(slices.Clone(round), size)
				gotReqs := pack(round, size)
				if !reflect.DeepEqual(gotReqs, wantReqs) {
					t.Fatalf("%s: round %d: pack(%d) = %v, want %v", in.name, k, size, indexes(gotReqs), indexes(wantReqs))
				}
				checkFull(t, fmt.Sprintf("%s: round %d: pack(%d)", in.name, k, size), gotReqs)
			}
		}
		if !reflect.DeepEqual(in.units, before) {
			t.Fatalf("%s: units changed", in.name)
		}
	}
}

// checkFull fails unless every group has len == cap, so that appending to
// one cannot write into another.
func checkFull(t *testing.T, what string, groups [][]unit) {
	t.Helper()
	for i, g := range groups {
		if len(g) != cap(g) {
			t.Fatalf("%s: group %d has len %d, cap %d", what, i, len(g), cap(g))
		}
	}
}

// indexes returns the units' indexes, group by group.
func indexes(groups [][]unit) [][]int {
	out := make([][]int, len(groups))
	for i, g := range groups {
		for _, u := range g {
			out[i] = append(out[i], u.index)
		}
	}
	return out
}

// BenchmarkRoundsRepeated measures, per unit, rounds then pack of 256 units
// of 64 documents, 4 versions each in turn (4 rounds), with the model
// functions ("model") and Apply's ("rounds").
func BenchmarkRoundsRepeated(b *testing.B) {
	units := make([]unit, 256)
	for i := range units {
		units[i] = unit{index: i, doc: docKey{"user", fmt.Sprintf("doc-%d", i%64)}, version: uint64(1 + i/64), weight: 1}
	}
	for _, f := range []struct {
		name   string
		rounds func([]unit) [][]unit
		pack   func([]unit, int) [][]unit
	}{{"model", modelRounds, modelPack}, {"rounds", rounds, pack}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			done := cputimetest.Per(b, len(units), "cpu-ns/point")
			for b.Loop() {
				for _, r := range f.rounds(units) {
					_ = f.pack(r, 256)
				}
			}
			done()
		})
	}
}

// TestDistinctDocs checks distinctDocs beyond its stack buffer of hashes:
// documents differing in where user_id ends and doc_id starts are
// distinct, and one repeat among many is found.
func TestDistinctDocs(t *testing.T) {
	units := make([]unit, 0, 600)
	for i := range 300 {
		units = append(units, unit{doc: docKey{fmt.Sprint("u", i%7), fmt.Sprint("d", i)}},
			unit{doc: docKey{fmt.Sprint("u", i%7, "d"), fmt.Sprint(i)}})
	}
	if !distinctDocs(units) {
		t.Fatal("distinct documents reported repeated")
	}
	if units = append(units, units[417]); distinctDocs(units) {
		t.Fatal("a repeated document not reported")
	}
}
