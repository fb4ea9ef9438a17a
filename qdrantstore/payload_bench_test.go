package qdrantstore

import (
	"strings"
	"testing"

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
