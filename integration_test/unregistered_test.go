package integration_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// TestPointsTheRegisterNeverSaw: documents stored without any claim in the
// version register (copied by ragpipe migrate into a deployment whose NATS
// is new) are new to the register, yet their next versions must still
// replace them exactly: a shorter version leaves none of the old chunks, a
// delete leaves nothing.
func TestPointsTheRegisterNeverSaw(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:8:cosine")
	s.createStreams()
	var points []*qdrant.PointStruct
	for _, doc := range []string{"shrinks", "deleted"} {
		for k := range 3 {
			points = append(points, &qdrant.PointStruct{
				Id:      qdrant.NewID(pipeline.PointID("alice", doc, k)),
				Vectors: qdrant.NewVectorsDense([]float32{1, 0, 0, 0, 0, 0, 0, float32(k)}),
				Payload: qdrant.NewValueMap(map[string]any{"user_id": "alice", "doc_id": doc, "chunk_index": k,
					"chunk_count": 3, "text": fmt.Sprint("old chunk ", k), "metadata": map[string]any{}, "version": 1}),
			})
		}
	}
	if _, err := s.qc.Upsert(t.Context(), &qdrant.UpsertPoints{CollectionName: "docs", Wait: qdrant.PtrOf(true), Points: points}); err != nil {
		t.Fatal(err)
	}
	s.publish([]event{
		{user: "alice", collection: "docs", body: map[string]any{"doc_id": "shrinks", "text": "new text", "version": 2}},
		{user: "alice", collection: "docs", body: map[string]any{"op": "delete", "doc_id": "deleted", "version": 2}},
	})
	s.startWorker()
	s.waitDrained(time.Minute)
	m := newModel(t, 2000, 200, 8)
	m.add("docs", "alice", "shrinks", "upsert", "new text", nil, 2)
	s.assertStored("docs", m.want("docs"))
}
