package search_test

import (
	"errors"
	"fmt"
	"reflect"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// TestSearchServiceStatus checks the status endpoint through the client
// under tenant scoping: a document of another tenant reads stored:false,
// answers come in request order with the stored version and chunk count, a
// thousand doc_ids are one request, and more are refused.
func TestSearchServiceStatus(t *testing.T) {
	f := newFixture(t, nil)
	vec := func(n int) pipeline.DocWrite {
		w := storetest.Write("bob", "bob-only", 4, n)
		for i := range w.Points {
			w.Points[i].Vector = make([]float32, dims)
			w.Points[i].Vector[i] = 1
		}
		return w
	}
	if err := f.store.Apply(t.Context(), "docs", []pipeline.DocWrite{vec(3)}); err != nil {
		t.Fatal(err)
	}
	for _, inbox := range []string{"", "_INBOX.alice"} {
		c := &search.Client{Conn: f.nc, InboxPrefix: inbox}
		got, err := c.Status(t.Context(), "alice", "docs", search.StatusRequest{DocIDs: []string{"bob-only", "doc-2", "missing", "doc-0"}})
		want := []search.DocStatus{{DocID: "bob-only"}, {DocID: "doc-2", Stored: true, Version: 1, ChunkCount: 1},
			{DocID: "missing"}, {DocID: "doc-0", Stored: true, Version: 1, ChunkCount: 1}}
		if err != nil || !reflect.DeepEqual(got.Docs, want) {
			t.Errorf("inbox %q: alice's status %+v, %v; want %+v", inbox, got, err, want)
		}
		got, err = c.Status(t.Context(), "bob", "docs", search.StatusRequest{DocIDs: []string{"bob-only"}})
		if err != nil || !reflect.DeepEqual(got.Docs, []search.DocStatus{{DocID: "bob-only", Stored: true, Version: 4, ChunkCount: 3}}) {
			t.Errorf("inbox %q: bob's status %+v, %v", inbox, got, err)
		}
	}
	c := &search.Client{Conn: f.nc}
	ids := make([]string, search.MaxStatusDocs)
	for i := range ids {
		ids[i] = fmt.Sprint("doc-", i)
	}
	start := time.Now()
	got, err := c.Status(t.Context(), "alice", "docs", search.StatusRequest{DocIDs: ids})
	if err != nil || len(got.Docs) != len(ids) || !got.Docs[2].Stored || got.Docs[3].Stored || got.Docs[999].DocID != "doc-999" {
		t.Errorf("status of %d doc_ids: %v", len(ids), err)
	}
	t.Logf("status of %d doc_ids answered in %s", len(ids), time.Since(start))
	var e *search.Error
	_, err = c.Status(t.Context(), "alice", "docs", search.StatusRequest{DocIDs: append(ids, "one more")})
	if !errors.As(err, &e) || e.Code != search.CodeBadRequest {
		t.Errorf("status of 1001 doc_ids: %v, want a 400", err)
	}
	_, err = c.Status(t.Context(), "alice", "missing", search.StatusRequest{DocIDs: ids[:1]})
	if !errors.As(err, &e) || e.Code != search.CodeNotFound {
		t.Errorf("status in a missing collection: %v, want a 404", err)
	}
}
