package qdrantstore

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/proto"
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
