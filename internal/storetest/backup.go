package storetest

import (
	"cmp"
	"errors"
	"slices"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// testDocumentPoints checks DocumentPoints, what ragpipe backup reads a page
// of documents with: every point of the documents asked for, of that
// tenant only, with vectors and payload; documents not stored add nothing;
// an unknown collection is ErrUnknownCollection.
func testDocumentPoints(t *testing.T, s Store) {
	Ensure(t, s, "docpoints", pipeline.Cosine)
	Apply(t, s, "docpoints", Write("alice", "a", 3, 2), Write("alice", "b", 4, 3), Write("alice", "c", 5, 1), Write("bob", "a", 6, 2))
	pts, err := s.DocumentPoints(t.Context(), "docpoints", "alice", []string{"a", "b", "missing", "a"})
	if err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(pts, func(x, y pipeline.Point) int {
		return cmp.Or(cmp.Compare(x.DocID, y.DocID), cmp.Compare(x.ChunkIndex, y.ChunkIndex))
	})
	want := append(Write("alice", "a", 3, 2).Points, Write("alice", "b", 4, 3).Points...)
	if len(pts) != len(want) {
		t.Fatalf("DocumentPoints = %d points, want %d", len(pts), len(want))
	}
	for i, p := range pts {
		w := want[i]
		if p.ID != w.ID || p.UserID != "alice" || p.DocID != w.DocID || p.ChunkIndex != w.ChunkIndex ||
			p.ChunkCount != w.ChunkCount || p.Version != w.Version || p.Text != w.Text || len(p.Vector) != Dims ||
			p.Metadata["v"] != w.Metadata["v"] {
			t.Fatalf("point %d = %+v, want %+v", i, p, w)
		}
	}
	if pts, err := s.DocumentPoints(t.Context(), "docpoints", "carol", []string{"a"}); err != nil || len(pts) != 0 {
		t.Fatalf("DocumentPoints of a tenant without documents = %d points, %v", len(pts), err)
	}
	if _, err := s.DocumentPoints(t.Context(), "no_such_collection", "alice", []string{"a"}); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Fatalf("DocumentPoints of an unknown collection: %v, want ErrUnknownCollection", err)
	}
}
