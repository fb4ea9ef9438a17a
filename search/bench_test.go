package search_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// BenchmarkRequest times one request through NATS to the search service
// in the same process, over the embedded store holding 200 one-chunk
// documents of one tenant: a search by text (embedded by the hash
// embedder), a list page and a status request, each with the collection
// resolved by Config.Embedder alone and by a Config.Serving naming the
// same store collection; and, for scale, a bare NATS round trip to a
// subscriber that echoes the request. Allocations include the client's.
//
//	go test -run XXX -bench Request -count 6 ./search
func BenchmarkRequest(b *testing.B) {
	nc, store, log := startLocal(b)
	emb, err := embedder.NewHash(dims)
	if err != nil {
		b.Fatal(err)
	}
	if err := store.EnsureCollection(b.Context(), pipeline.Collection{Name: "docs", Dims: dims, Keywords: true}, true); err != nil {
		b.Fatal(err)
	}
	var ws []pipeline.DocWrite
	for i := range 200 {
		doc, text := fmt.Sprint("doc-", i), fmt.Sprintf("document %d: %s", i, modeDocs[i%len(modeDocs)].text)
		vs, _ := emb.Embed(b.Context(), []string{text})
		ws = append(ws, pipeline.DocWrite{UserID: "alice", DocID: doc, Version: 1, Points: []pipeline.Point{{
			ID: pipeline.PointID("alice", doc, 0), Vector: vs[0], ChunkCount: 1, Text: text, Keywords: pipeline.Keywords(text),
		}}})
	}
	if err := store.Apply(b.Context(), "docs", ws); err != nil {
		b.Fatal(err)
	}
	configs := []struct {
		name    string
		serving func(context.Context, string, bool) (search.Serving, error)
	}{
		{"embedder", nil},
		{"serving", func(_ context.Context, collection string, _ bool) (search.Serving, error) {
			return search.Serving{Collection: collection, Embedder: emb}, nil
		}},
	}
	requests := []struct{ subject, body string }{
		{"rag.search.alice.docs", `{"query":"ErrQuotaExceeded quota","mode":"dense"}`},
		{"rag.list.alice.docs", `{"limit":10}`},
		{"rag.status.alice.docs", `{"doc_ids":["doc-1","doc-2","none"]}`},
	}
	echo, err := nc.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(m.Data) })
	if err != nil {
		b.Fatal(err)
	}
	b.Run("nats", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := nc.Request("echo", []byte(requests[0].body), 5*time.Second); err != nil {
				b.Fatal(err)
			}
		}
	})
	_ = echo.Unsubscribe()
	for _, c := range configs {
		svc, err := search.Start(b.Context(), search.Config{
			Conn: nc, Index: store, Embedder: func(string) search.Embedder { return emb }, Serving: c.serving, Logger: log,
			Prefix: c.name,
		})
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range requests {
			subject := c.name + r.subject[len("rag"):]
			b.Run(c.name+"/"+r.subject[len("rag."):len(r.subject)-len(".alice.docs")], func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					msg, err := nc.Request(subject, []byte(r.body), 5*time.Second)
					if err != nil || msg.Header.Get("Nats-Service-Error-Code") != "" {
						b.Fatalf("%s: %v %s", subject, err, msg.Data)
					}
				}
			})
		}
		_ = svc.Stop(context.Background())
	}
}
