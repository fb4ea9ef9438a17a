package storetest

import (
	"errors"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// testEraseTenant checks EraseTenant, the store's part in ragpipe forget:
// it deletes exactly the tenant's points and counts them (a tenant whose id
// extends another's is a different tenant), running it again deletes
// nothing, and afterwards a write of the tenant at any version, version 1
// included, is stored as on an empty collection. A bad user id is
// permanent, an unknown collection ErrUnknownCollection.
func testEraseTenant(t *testing.T, s Store) {
	const coll = "erase"
	Ensure(t, s, coll, pipeline.Cosine)
	Apply(t, s, coll, Write("alice", "a", 3, 2), Write("alice", "b", 9, 3), Write("bob", "a", 4, 2),
		Write("alice_2", "a", 5, 1), Write("alice", "c", 6, 0))
	erase := func(user string, want int) {
		t.Helper()
		n, err := s.EraseTenant(t.Context(), coll, user)
		if err != nil || n != want {
			t.Fatalf("EraseTenant(%s) = %d, %v; want %d", user, n, err, want)
		}
	}
	erase("alice", 5)
	if got := len(Points(t, s, coll)); got != 3 {
		t.Fatalf("%d points left, want bob's 2 and alice_2's 1", got)
	}
	ExpectDoc(t, s, coll, "bob", "a", 4, 2)
	ExpectDoc(t, s, coll, "alice_2", "a", 5, 1)
	erase("alice", 0)
	erase("carol", 0)

	// Nothing of alice is left to outrank a fresh start.
	Apply(t, s, coll, Write("alice", "b", 1, 1))
	ExpectDoc(t, s, coll, "alice", "b", 1, 1)
	ExpectDoc(t, s, coll, "alice", "a", 0, 0)
	hits := Search(t, s, coll, pipeline.Query{UserID: "alice", Vector: Vec(9, 0), TopK: 10})
	if len(hits) != 1 || hits[0].DocID != "b" || hits[0].Version != 1 {
		t.Fatalf("alice's search after the fresh start: %+v, want b at version 1 alone", hits)
	}
	if v, err := s.MaxVersion(t.Context(), coll); err != nil || v != 5 {
		t.Fatalf("MaxVersion = %d, %v; want alice_2's 5", v, err)
	}

	for _, bad := range []string{"", "a.b", "*", ">"} {
		if _, err := s.EraseTenant(t.Context(), coll, bad); !pipeline.IsPermanent(err) {
			t.Errorf("EraseTenant(%q): %v, want a permanent error", bad, err)
		}
	}
	if _, err := s.EraseTenant(t.Context(), "no_such_collection", "alice"); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Errorf("EraseTenant of an unknown collection: %v, want ErrUnknownCollection", err)
	}
}
