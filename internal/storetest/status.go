package storetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// StatusReader is what the search service's status endpoint and its
// collection check read (search.Index).
type StatusReader interface {
	Status(ctx context.Context, collection, userID string, docIDs []string) (map[string]pipeline.Doc, error)
	CollectionExists(ctx context.Context, collection string) (bool, error)
}

// testStatus checks Status (what a search can find of each document: its
// version and chunk count, keyed by doc_id) under tenant scoping, after
// shrinks and deletes, for a thousand doc_ids at once, and CollectionExists.
func testStatus(t *testing.T, s Store) {
	Ensure(t, s, "status", pipeline.Cosine)
	Apply(t, s, "status",
		Write("alice", "a", 3, 2), Write("alice", "b/ü 日本", 7, 1), Write("alice", "gone", 1, 1),
		Write("alice", "shrunk", 1, 3), Write("bob", "a", 5, 3), Write("bob", "c", 2, 1))
	Apply(t, s, "status", Write("alice", "gone", 2, 0), Write("alice", "shrunk", 2, 1))

	status := func(user string, ids ...string) map[string]pipeline.Doc {
		t.Helper()
		got, err := s.Status(t.Context(), "status", user, ids)
		if err != nil {
			t.Fatalf("Status(%s, %q): %v", user, ids, err)
		}
		return got
	}
	doc := func(id string, v uint64, n int) pipeline.Doc {
		return pipeline.Doc{DocID: id, Version: v, ChunkCount: n}
	}
	for _, tt := range []struct {
		user string
		ids  []string
		want map[string]pipeline.Doc
	}{
		{"alice", []string{"a", "b/ü 日本", "gone", "never", "a", "c", "shrunk"},
			map[string]pipeline.Doc{"a": doc("a", 3, 2), "b/ü 日本": doc("b/ü 日本", 7, 1), "shrunk": doc("shrunk", 2, 1)}},
		{"bob", []string{"a", "b/ü 日本", "c"}, map[string]pipeline.Doc{"a": doc("a", 5, 3), "c": doc("c", 2, 1)}},
		{"carol", []string{"a", "c"}, map[string]pipeline.Doc{}},
	} {
		if got := status(tt.user, tt.ids...); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Status(%s, %q) = %v, want %v", tt.user, tt.ids, got, tt.want)
		}
	}

	// A thousand doc_ids in one call, half of them stored.
	var ws []pipeline.DocWrite
	ids := make([]string, 1000)
	for i := range ids {
		ids[i] = fmt.Sprintf("many-%03d", i)
		if i%2 == 0 {
			ws = append(ws, Write("alice", ids[i], uint64(i+1), 1))
		}
	}
	Apply(t, s, "status", ws...)
	got := status("alice", ids...)
	if len(got) != 500 {
		t.Errorf("Status of 1000 doc_ids, 500 stored: %d found", len(got))
	}
	for i, id := range ids {
		if d, ok := got[id]; ok != (i%2 == 0) || ok && !reflect.DeepEqual(d, doc(id, uint64(i+1), 1)) {
			t.Fatalf("Status(%s) = %+v, %t", id, d, ok)
		}
	}

	if _, err := s.Status(t.Context(), "status", "not a user!", []string{"a"}); !pipeline.IsPermanent(err) {
		t.Errorf("Status of an invalid user: %v, want a permanent error", err)
	}
	if _, err := s.Status(t.Context(), "absent", "alice", []string{"a"}); !errors.Is(err, pipeline.ErrUnknownCollection) {
		t.Errorf("Status in a missing collection: %v, want ErrUnknownCollection", err)
	}
	for coll, want := range map[string]bool{"status": true, "absent": false} {
		if ok, err := s.CollectionExists(t.Context(), coll); ok != want || err != nil {
			t.Errorf("CollectionExists(%s) = %t, %v, want %t", coll, ok, err, want)
		}
	}
}
