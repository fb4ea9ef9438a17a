package qdrantstore

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"

	"github.com/ragpipe/ragpipe/pipeline"
)

// BenchmarkPointStruct measures building the Qdrant form of one chunk of
// about 900 characters with a 1024-dimensional vector, without and with
// its keyword vector.
func BenchmarkPointStruct(b *testing.B) {
	text := strings.Repeat("The consumer's maxAckPending bounds unacknowledged messages; see nats.Conn. ", 12)[:900]
	w := &pipeline.DocWrite{UserID: "alice", DocID: "doc", Version: 1}
	p := &pipeline.Point{ID: pipeline.PointID("alice", "doc", 0), Vector: make([]float32, 1024), ChunkCount: 1,
		Text: text, Metadata: map[string]any{"env": "prod"}, Keywords: pipeline.Keywords(text)}
	for _, keywords := range []bool{false, true} {
		name := "dense"
		if keywords {
			name = "keywords"
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pointStruct(w, p, keywords); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchWrites returns n writes of one point each, of distinct documents
// and versions: a 1024-dimensional vector, about 900 characters of text of
// about 100 distinct terms with their keyword vector, a text hash and a
// little metadata.
func benchWrites(n int) []pipeline.DocWrite {
	r := rand.New(rand.NewPCG(1, 2))
	words := make([]string, 400)
	for i := range words {
		words[i] = fmt.Sprintf("term%c%c%d", 'a'+rune(i%26), 'a'+rune(i/26%26), i)
	}
	writes := make([]pipeline.DocWrite, n)
	for i := range writes {
		var text strings.Builder
		for text.Len() < 900 {
			text.WriteString(words[r.IntN(len(words))])
			text.WriteByte(' ')
		}
		v := make([]float32, 1024)
		for j := range v {
			v[j] = r.Float32() - 0.5
		}
		user, doc := fmt.Sprintf("user-%d", i%8), fmt.Sprintf("doc-%06d", i)
		writes[i] = pipeline.DocWrite{UserID: user, DocID: doc, Version: uint64(1_700_000_000_000 + i), Points: []pipeline.Point{{
			ID: pipeline.PointID(user, doc, 0), Vector: v, ChunkCount: 1, Text: text.String(),
			Metadata: map[string]any{"source": "wiki", "lang": "en", "tags": []any{"a", "b"}, "rev": int64(i)},
			TextHash: pipeline.TextHash("bench", text.String()), Keywords: pipeline.Keywords(text.String()),
		}}}
	}
	return writes
}

// BenchmarkUpdateBatch measures building and encoding one UpdateBatch
// request of 256 writes of one point each (see benchWrites), with the
// delete of older points, as gRPC gets it from the codec: "protobuf" builds
// the go-client's messages (writeUnit, operations) and marshals them with
// gRPC's proto codec, as the go-client does; "encoded" is the sink's
// newUnit and encodeRequest, through requestCodec.
func BenchmarkUpdateBatch(b *testing.B) {
	q := &Store{ordering: &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Medium}}
	c := pipeline.Collection{Name: "bench", Dims: 1024, Keywords: true}
	writes := benchWrites(256)
	codec := encoding.GetCodecV2(grpcproto.Name)
	b.Run("protobuf", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			units := make([]modelUnit, len(writes))
			for i := range writes {
				u, err := q.writeUnit(&writes[i], c)
				if err != nil {
					b.Fatal(err)
				}
				units[i] = u
			}
			req := &qdrant.UpdateBatchPoints{CollectionName: c.Name, Wait: qdrant.PtrOf(true),
				Operations: operations(units, true), Ordering: q.ordering}
			data, err := codec.Marshal(req)
			if err != nil {
				b.Fatal(err)
			}
			data.Free()
		}
	})
	b.Run("encoded", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			units := make([]unit, len(writes))
			var metadata []byte
			for i := range writes {
				u, err := q.newUnit(&writes[i], c, &metadata)
				if err != nil {
					b.Fatal(err)
				}
				units[i] = u
			}
			r := newRequest()
			var ok bool
			if r.buf, ok = encodeRequest(r.buf, c.Name, q.ordering, units, true); !ok {
				b.Fatal("no request")
			}
			data, err := requestCodec{}.Marshal(r)
			if err != nil {
				b.Fatal(err)
			}
			data.Free()
			r.release()
		}
	})
}
