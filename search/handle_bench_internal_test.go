package search

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// cannedHits is an Index whose searches return the same hits at once.
type cannedHits struct {
	Index
	hits []pipeline.Hit
}

func (c cannedHits) Search(context.Context, string, pipeline.Query) ([]pipeline.Hit, error) {
	return slices.Clone(c.hits), nil
}

func (c cannedHits) CollectionExists(context.Context, string) (bool, error) { return true, nil }

// BenchmarkHandle times the service's own work on one search request, as
// a handler does it: the request decoded, the query of 80 characters
// embedded (hash embedder, 1024 dimensions), the store's ten hits of 900
// characters without metadata (returned at once) encoded, the reply
// published (to no one) and counted in the statistics and the metrics.
// cpu-ns/op is the process's CPU time, the connection's writes included.
//
//	flock /tmp/ragpipe-test.lock go test -run XXX -bench Handle -count 5 ./search
func BenchmarkHandle(b *testing.B) {
	nc := natstest.Connect(b, natstest.Start(b))
	emb, err := embedder.NewHash(1024)
	if err != nil {
		b.Fatal(err)
	}
	text := string(bytes.Repeat([]byte("deploy the cluster's replica to zone b, then fail over. "), 16))
	var hits []pipeline.Hit
	for i := range 10 {
		hits = append(hits, pipeline.Hit{DocID: fmt.Sprintf("doc-%07d", i), Score: 0.8 - float32(i)/100, Text: text, Version: 1})
	}
	s, err := Start(b.Context(), Config{
		Conn: nc, Index: cannedHits{hits: hits}, Embedder: func(string) Embedder { return emb }, Metrics: telemetry.NewMetrics(),
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = s.Stop(context.Background()) })
	body := []byte(`{"query":"replica to zone b, then fail over. deploy the cluster's replica to zone b","top_k":10,"mode":"dense"}`)
	b.ReportAllocs()
	done := cputimetest.Per(b, 1, "cpu-ns/op")
	for b.Loop() {
		s.handle(job{endpoint: searchEndpoint, msg: &nats.Msg{Subject: "rag.search.alice.docs", Reply: "nobody", Data: body}, start: time.Now()})
	}
	done()
}

// BenchmarkDecodeSearch decodes a search request body.
//
//	go test -run XXX -bench DecodeSearch -benchmem ./search
func BenchmarkDecodeSearch(b *testing.B) {
	for _, body := range []string{
		`{"query":"replica to zone b, then fail over. deploy the cluster's replica to zone b","top_k":10,"mode":"dense"}`,
		`{"query":"which RDS instances run in production?","top_k":5,"filter":{"env":"prod","tier":[1,2]},"score_threshold":0.1}`,
	} {
		b.Run(fmt.Sprint(len(body)), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, e := decodeSearch([]byte(body), "alice", "docs"); e != nil {
					b.Fatal(e)
				}
			}
		})
	}
}
