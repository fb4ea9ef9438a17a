package qdrantstore

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
)

// TestEncodeStoredQuery checks that encodeStoredQuery writes the bytes the
// go-client's ScrollPoints message of nothingStored marshals to (the
// model's storedQuery), after whatever the buffer holds.
func TestEncodeStoredQuery(t *testing.T) {
	bench := make([]unit, 0, 256)
	for _, w := range benchWrites(256) {
		bench = append(bench, unit{doc: docKey{w.UserID, w.DocID}, version: w.Version})
	}
	var many []unit // users beyond the first 8, ids of multi-byte lengths
	for i := range 40 {
		many = append(many, unit{doc: docKey{fmt.Sprint("user-", i%20), strings.Repeat("dé", 10*i+1)}})
	}
	for _, tc := range []struct {
		name, collection string
		units            []unit
	}{
		{"one", "docs", []unit{{doc: docKey{"alice", "doc-1"}}}},
		{"bench", "docs", bench},
		{"many", "a_longer_collection_name", many},
		{"no collection", "", many[:3]},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want, err := proto.Marshal(storedQuery(tc.collection, tc.units))
			if err != nil {
				t.Fatal(err)
			}
			got := encodeStoredQuery([]byte("prefix"), tc.collection, tc.units)
			if !bytes.Equal(got[len("prefix"):], want) || string(got[:len("prefix")]) != "prefix" {
				t.Fatalf("encoded %d bytes, want %d:\n%x\nwant\n%x", len(got)-len("prefix"), len(want), got, want)
			}
		})
	}
}

// BenchmarkStoredQuery measures, per unit, the ScrollPoints request of
// nothingStored for 256 writes (benchWrites): "message" builds the
// go-client's message and marshals it with gRPC's proto codec, as the
// go-client does; "encoded" is encodeStoredQuery into a reused buffer.
func BenchmarkStoredQuery(b *testing.B) {
	units := make([]unit, 0, 256)
	for _, w := range benchWrites(256) {
		units = append(units, unit{doc: docKey{w.UserID, w.DocID}, version: w.Version})
	}
	b.Run("message", func(b *testing.B) {
		b.ReportAllocs()
		done := cputimetest.Per(b, len(units), "cpu-ns/unit")
		for b.Loop() {
			wire, err := protoCodec.Marshal(storedQuery("bench", units))
			if err != nil {
				b.Fatal(err)
			}
			wire.Free()
		}
		done()
	})
	b.Run("encoded", func(b *testing.B) {
		b.ReportAllocs()
		done := cputimetest.Per(b, len(units), "cpu-ns/unit")
		for b.Loop() {
			r := newRequest()
			r.buf = encodeStoredQuery(r.buf, "bench", units)
			r.release()
		}
		done()
	})
}
