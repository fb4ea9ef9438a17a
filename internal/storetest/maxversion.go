package storetest

import (
	"errors"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// testMaxVersion checks MaxVersion, the store's part in the version floor a
// worker starts its ingest stream above (lww.Floor): the highest version of
// any stored point, exact up to pipeline.MaxVersion, 0 for an empty
// collection; a document deleted leaves nothing behind; an unknown
// collection is ErrUnknownCollection.
func testMaxVersion(t *testing.T, s Store) {
	expect := func(coll string, want uint64) {
		t.Helper()
		got, err := s.MaxVersion(t.Context(), coll)
		if err != nil || got != want {
			t.Fatalf("MaxVersion(%s) = %d, %v; want %d", coll, got, err, want)
		}
	}
	Ensure(t, s, "maxversion", pipeline.Cosine)
	expect("maxversion", 0)
	Apply(t, s, "maxversion", Write("alice", "a", 3, 2), Write("bob", "b", 7, 1), Write("alice", "c", 5, 3))
	expect("maxversion", 7)
	Apply(t, s, "maxversion", Write("bob", "b", 9, 0)) // deleted: its version is only in the register
	expect("maxversion", 5)
	// Exact at the top of the range, where float64 still holds every integer.
	Apply(t, s, "maxversion", Write("alice", "a", pipeline.MaxVersion-2, 1), Write("carol", "d", pipeline.MaxVersion-1, 2))
	expect("maxversion", pipeline.MaxVersion-1)
	Apply(t, s, "maxversion", Write("carol", "d", pipeline.MaxVersion, 0))
	expect("maxversion", pipeline.MaxVersion-2)

	if _, err := s.MaxVersion(t.Context(), "no_such_collection"); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Fatalf("MaxVersion of an unknown collection: %v, want ErrUnknownCollection", err)
	}
}
