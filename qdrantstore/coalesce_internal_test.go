package qdrantstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/proto"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestBatchReply checks that a QueryBatchResponse decodes into the replies
// its results decode into as QueryResponses (which TestQueryReply checks
// against the model), in order, empty results included.
func TestBatchReply(t *testing.T) {
	g := replyGen{rand.New(rand.NewPCG(5, 8))}
	for i := range 500 {
		batch := &qdrant.QueryBatchResponse{Time: 0.5}
		var want []queryReply
		for range g.r.IntN(5) {
			var resp qdrant.QueryResponse
			if proto.Unmarshal(g.reply("alice"), &resp) != nil {
				continue // invalid UTF-8, say: TestQueryReply covers it
			}
			batch.Result = append(batch.Result, &qdrant.BatchResult{Result: resp.GetResult()})
			single, err := proto.Marshal(&qdrant.QueryResponse{Result: resp.GetResult()})
			if err != nil {
				t.Fatal(err)
			}
			var r queryReply
			if err := r.decode(single); err != nil {
				t.Fatal(err)
			}
			want = append(want, r)
		}
		b, err := proto.Marshal(batch)
		if err != nil {
			t.Fatal(err)
		}
		var got batchReply
		if err := got.decode(bytes.Clone(b)); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if len(got) != len(want) {
			t.Fatalf("batch %d: %d replies, want %d", i, len(got), len(want))
		}
		for k := range want {
			if !reflect.DeepEqual(canonicalHits(got[k].hits), canonicalHits(want[k].hits)) ||
				!reflect.DeepEqual(got[k].owners, want[k].owners) {
				t.Fatalf("batch %d, reply %d: %#v\nwant %#v", i, k, got[k], want[k])
			}
		}
	}
	var bad batchReply
	if err := bad.decode([]byte{0x0a, 0x05, 0x12}); err == nil {
		t.Fatal("a truncated batch decoded without error")
	}
}

// TestCoalescerWaiting holds one request of a collection's searches in
// flight by hand (QueriesInFlight 1), so that searches wait, then lets it
// return: of three waiting, one that gave up returns its context's error
// and is left out of the batch, the batch Qdrant refuses for the other
// two (one has a vector of the wrong dimensions) sends each alone, so
// that the good one gets its hit and the bad one its own permanent error;
// searches of a missing collection, refused together, each learn that it
// is missing (Qdrant's telemetry counts one batch each time), and the
// missing collection is forgotten.
func TestCoalescerWaiting(t *testing.T) {
	node := qdranttest.Start(t)
	s, err := New(t.Context(), Config{Host: "127.0.0.1", Port: node.GRPCPort(), QueriesInFlight: 1,
		Timeout: 10 * time.Second, RetryInitialInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.EnsureCollection(t.Context(), pipeline.Collection{Name: "waiting", Dims: 4}, true); err != nil {
		t.Fatal(err)
	}
	vector := []float32{1, 0, 0, 0}
	storetest.Apply(t, s, "waiting", pipeline.DocWrite{UserID: "alice", DocID: "d", Version: 1, Points: []pipeline.Point{{
		ID: pipeline.PointID("alice", "d", 0), Vector: vector, ChunkCount: 1, Text: "alice's text"}}})

	// search runs a search of collection with vector on a goroutine.
	type result struct {
		hits []pipeline.Hit
		err  error
	}
	search := func(ctx context.Context, collection string, vector []float32) chan result {
		ch := make(chan result, 1)
		go func() {
			hits, err := s.Search(ctx, collection, pipeline.Query{UserID: "alice", Vector: vector, TopK: 3, Mode: pipeline.ModeDense})
			ch <- result{hits, err}
		}()
		return ch
	}
	// hold puts a request of collection in flight by hand; s.next lets it
	// return.
	hold := func(collection string) *coalescer {
		c := s.coalescer(collection)
		c.mu.Lock()
		c.inFlight = 1
		c.mu.Unlock()
		return c
	}
	// waiting waits until n searches of c wait.
	waiting := func(c *coalescer, n int) {
		t.Helper()
		checkfor.Until(t, 10*time.Second, "searches waiting", func() error {
			c.mu.Lock()
			defer c.mu.Unlock()
			if len(c.waiting) != n {
				return fmt.Errorf("%d waiting, want %d", len(c.waiting), n)
			}
			return nil
		})
	}

	const batchMethod = "/qdrant.Points/QueryBatch"
	batches := node.GRPCCalls(t, batchMethod)
	c := hold("waiting")
	leaving, leave := context.WithCancel(t.Context())
	good, gone, bad := search(t.Context(), "waiting", vector), search(leaving, "waiting", vector), search(t.Context(), "waiting", vector[:3])
	waiting(c, 3)
	leave()
	if r := <-gone; !errors.Is(r.err, context.Canceled) {
		t.Errorf("a search that gave up: %v, %v; want context.Canceled", r.hits, r.err)
	}
	s.next(c, "waiting") // the request held returns
	if r := <-good; r.err != nil || len(r.hits) != 1 || r.hits[0].Text != "alice's text" {
		t.Errorf("good search of a refused batch: %+v, %v", r.hits, r.err)
	}
	if r := <-bad; r.err == nil || !pipeline.IsPermanent(r.err) {
		t.Errorf("search with a vector of 3 dimensions: %v; want a permanent error", r.err)
	}
	if n := node.GRPCCalls(t, batchMethod) - batches; n != 1 {
		t.Errorf("%d QueryBatch calls for the two searches left waiting, want 1", n)
	}

	m := hold("missing")
	missing := []chan result{search(t.Context(), "missing", vector), search(t.Context(), "missing", vector)}
	waiting(m, 2)
	s.next(m, "missing")
	for _, ch := range missing {
		if r := <-ch; !errors.Is(r.err, pipeline.ErrUnknownCollection) {
			t.Errorf("search of a missing collection: %v; want pipeline.ErrUnknownCollection", r.err)
		}
	}
	if n := node.GRPCCalls(t, batchMethod) - batches; n != 2 {
		t.Errorf("%d QueryBatch calls in all, want 2", n)
	}
	// The missing collection is forgotten; the other's place in flight is
	// free once its batch has returned.
	if _, ok := s.coalescers.Load("missing"); ok {
		t.Error("the missing collection's coalescer is still held")
	}
	checkfor.Until(t, 10*time.Second, "the held request's place freed", func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.inFlight != 0 || len(c.waiting) != 0 {
			return fmt.Errorf("%d in flight, %d waiting", c.inFlight, len(c.waiting))
		}
		return nil
	})
}
