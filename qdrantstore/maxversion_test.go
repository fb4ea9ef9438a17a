package qdrantstore_test

import (
	"testing"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
)

// TestMaxVersionForeignCollection checks that a collection ragpipe never
// indexed (no integer index on version, so no order_by) counts as holding no
// ragpipe version, even when its points carry a version field, rather than
// failing the floor of every worker sharing the Qdrant.
func TestMaxVersionForeignCollection(t *testing.T) {
	s := newSink(t, qdranttest.Start(t), nil)
	c := s.Client()
	err := c.CreateCollection(t.Context(), &qdrant.CreateCollection{
		CollectionName: "foreign",
		VectorsConfig:  qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 2, Distance: qdrant.Distance_Cosine}),
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Upsert(t.Context(), &qdrant.UpsertPoints{CollectionName: "foreign", Wait: qdrant.PtrOf(true), Points: []*qdrant.PointStruct{{
		Id: qdrant.NewIDNum(1), Vectors: qdrant.NewVectors(1, 0), Payload: qdrant.NewValueMap(map[string]any{"version": 99}),
	}}})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := s.MaxVersion(t.Context(), "foreign"); v != 0 || err != nil {
		t.Fatalf("MaxVersion(foreign) = %d, %v; want 0, nil", v, err)
	}
}
