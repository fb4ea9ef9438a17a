package bench

import (
	"context"
	"testing"
	"time"

	"github.com/nats-io/nats.go/micro"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/proto"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
)

// TestRunSearchFloorChild sends the search floor a Query's bytes, which it
// answers with Qdrant's QueryResponse, and bytes that are no QueryPoints,
// which Qdrant refuses and the floor answers with an error 500.
func TestRunSearchFloorChild(t *testing.T) {
	ctx := t.Context()
	nc := natstest.Connect(t, natstest.Start(t))
	node := qdranttest.Start(t)
	qc, err := qdrant.NewClient(&qdrant.Config{Host: "127.0.0.1", Port: node.GRPCPort(), PoolSize: 2, SkipCompatibilityCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.Close()
	err = qc.CreateCollection(ctx, &qdrant.CreateCollection{CollectionName: "floor",
		VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Cosine})})
	if err != nil {
		t.Fatal(err)
	}
	_, err = qc.Upsert(ctx, &qdrant.UpsertPoints{CollectionName: "floor", Wait: new(true), Points: []*qdrant.PointStruct{
		{Id: qdrant.NewIDNum(7), Vectors: qdrant.NewVectorsDense([]float32{1, 0}), Payload: qdrant.NewValueMap(map[string]any{"doc_id": "a"})},
	}})
	if err != nil {
		t.Fatal(err)
	}

	floorCtx, stop := context.WithCancel(ctx)
	out := newLineLog(searchFloorReady) // the handlers write from their own goroutines
	served := make(chan error, 1)
	go func() { served <- RunSearchFloorChild(floorCtx, nc, qc, []string{"rag.floor"}, out) }()
	select {
	case <-out.seen:
	case err := <-served:
		t.Fatalf("the search floor returned before serving: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("the search floor did not serve within 10s")
	}

	query, err := proto.Marshal(&qdrant.QueryPoints{CollectionName: "floor", Query: qdrant.NewQueryDense([]float32{1, 0.1}),
		WithPayload: qdrant.NewWithPayload(true)})
	if err != nil {
		t.Fatal(err)
	}
	msg, err := nc.Request("rag.floor", query, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var reply qdrant.QueryResponse
	if err := proto.Unmarshal(msg.Data, &reply); err != nil {
		t.Fatalf("the answer is no QueryResponse: %v", err)
	}
	if hits := reply.GetResult(); len(hits) != 1 || hits[0].GetId().GetNum() != 7 || hits[0].GetPayload()["doc_id"].GetStringValue() != "a" {
		t.Errorf("hits %v, want point 7 with its payload", hits)
	}

	msg, err = nc.Request("rag.floor", []byte{0xff, 0xff, 0xff}, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if code := msg.Header.Get(micro.ErrorCodeHeader); code != "500" || msg.Header.Get(micro.ErrorHeader) == "" {
		t.Errorf("bad bytes answered with code %q, error %q, body %q; want 500 and Qdrant's error", code, msg.Header.Get(micro.ErrorHeader), msg.Data)
	}

	stop()
	if err := <-served; err != nil {
		t.Errorf("stopped: %v, want nil", err)
	}
	for _, args := range [][]string{nil, {""}, {"a", "b"}} {
		if err := RunSearchFloorChild(ctx, nc, qc, args, out); err == nil {
			t.Errorf("RunSearchFloorChild(%q) succeeded", args)
		}
	}
}
