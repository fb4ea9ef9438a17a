package qdrantstore

import (
	"testing"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// BenchmarkEncode measures, per point, the parts of an UpdateBatch request
// of 256 writes of one point each (benchWrites) the sink writes itself:
// "units", newUnit of each write (checks and metadata); "metadata",
// appending each point's metadata alone; "request", encodeRequest of units
// built already, with the delete of older points; "rounds", Apply's
// rounds and pack of the units.
func BenchmarkEncode(b *testing.B) {
	q := &Store{ordering: &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Medium}}
	c := pipeline.Collection{Name: "bench", Dims: 1024, Keywords: true}
	writes := benchWrites(256)
	b.Run("units", func(b *testing.B) {
		b.ReportAllocs()
		done := cputimetest.Per(b, len(writes), "cpu-ns/point")
		for b.Loop() {
			var metadata []byte
			for i := range writes {
				if _, err := q.newUnit(&writes[i], c, &metadata); err != nil {
					b.Fatal(err)
				}
			}
		}
		done()
	})
	b.Run("metadata", func(b *testing.B) {
		b.ReportAllocs()
		var buf []byte
		done := cputimetest.Per(b, len(writes), "cpu-ns/point")
		for b.Loop() {
			buf = buf[:0]
			for i := range writes {
				var err error
				if buf, err = appendMetadata(buf, writes[i].Points[0].Metadata); err != nil {
					b.Fatal(err)
				}
			}
		}
		done()
	})
	b.Run("request", func(b *testing.B) {
		units := costUnits(b, q, writes, c)
		b.ReportAllocs()
		done := cputimetest.Per(b, len(writes), "cpu-ns/point")
		for b.Loop() {
			r := newRequest()
			var ok bool
			if r.buf, ok = encodeRequest(r.buf, c.Name, q.ordering, units, true); !ok {
				b.Fatal("no request")
			}
			r.release()
		}
		done()
	})
	b.Run("rounds", func(b *testing.B) {
		units := make([]unit, len(writes))
		for i := range writes {
			units[i] = unit{doc: docKey{writes[i].UserID, writes[i].DocID}, version: writes[i].Version, weight: 1}
		}
		b.ReportAllocs()
		done := cputimetest.Per(b, len(writes), "cpu-ns/point")
		for b.Loop() {
			for _, r := range rounds(units) {
				_ = pack(r, 256)
			}
		}
		done()
	})
}
