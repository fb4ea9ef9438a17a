package localstore_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/ragpipe/ragpipe/internal/storetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

func (r *reopeningStore) EraseTenant(ctx context.Context, collection, userID string) (int, error) {
	defer r.reopen(collection)
	return r.s.EraseTenant(ctx, collection, userID)
}

// TestEraseTenantLeavesNoText checks that an erased tenant's texts leave
// the disk (log records and snapshots alike) while another tenant's stay,
// and that the erasure survives a reopening.
func TestEraseTenantLeavesNoText(t *testing.T) {
	dir := t.TempDir()
	s := openEmbedded(t, dir, nil)
	const coll = "docs"
	storetest.Ensure(t, s, coll, pipeline.Cosine)
	write := func(user, doc, text string) {
		t.Helper()
		w := storetest.Write(user, doc, 2, 1)
		w.Points[0].Text = text
		storetest.Apply(t, s, coll, w)
	}
	write("alice", "a", "alice-secret-one")
	if err := s.Compact(t.Context(), coll); err != nil { // one text in the snapshot, one in the log
		t.Fatal(err)
	}
	write("alice", "b", "alice-secret-two")
	write("bob", "a", "bob-keeps-this")
	if got := onDisk(t, dir, "alice-secret-one", "alice-secret-two", "bob-keeps-this"); got != 3 {
		t.Fatalf("%d of the 3 texts on disk before the erasure", got)
	}
	if n, err := s.EraseTenant(t.Context(), coll, "alice"); err != nil || n != 2 {
		t.Fatalf("EraseTenant = %d, %v; want 2", n, err)
	}
	if got := onDisk(t, dir, "alice-secret-one", "alice-secret-two"); got != 0 {
		t.Errorf("%d of alice's texts still on disk after the erasure", got)
	}
	if got := onDisk(t, dir, "bob-keeps-this"); got != 1 {
		t.Errorf("bob's text gone from disk")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openEmbedded(t, dir, nil)
	counts, err := s.Count(t.Context(), coll)
	if err != nil || len(counts) != 1 || counts["bob"] != 1 {
		t.Fatalf("after reopening: %v, %v; want bob's one point alone", counts, err)
	}
}

// onDisk counts the texts found in some file under dir.
func onDisk(t *testing.T, dir string, texts ...string) int {
	t.Helper()
	found := map[string]bool{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, text := range texts {
			if bytes.Contains(data, []byte(text)) {
				found[text] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return len(found)
}
