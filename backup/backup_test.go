package backup_test

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/backup"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

func open(t *testing.T, dir string) *localstore.Store {
	t.Helper()
	s, err := localstore.Open(t.Context(), localstore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// doc is document i of user at version v, with i%3+1 chunks.
func doc(user string, i int, v uint64) pipeline.DocWrite {
	id := fmt.Sprint("doc-", i)
	w := pipeline.DocWrite{UserID: user, DocID: id, Version: v}
	n := i%3 + 1
	for c := range n {
		w.Points = append(w.Points, pipeline.Point{
			ID: pipeline.PointID(user, id, c), Vector: []float32{1, float32(i), float32(c), float32(v)},
			UserID: user, DocID: id, ChunkIndex: c, ChunkCount: n, Version: v,
			Text: fmt.Sprintf("%s chunk %d version %d", id, c, v), Metadata: map[string]any{"i": int64(i), "f": 3.0, "tags": []any{"a", 1.5}},
		})
	}
	return w
}

// TestRoundTrip backs up an embedded store while it is written, interrupts
// the backup, resumes it, restores into an empty store and compares every
// document.
func TestRoundTrip(t *testing.T) {
	src := open(t, t.TempDir())
	ctx := t.Context()
	if err := src.EnsureCollection(ctx, pipeline.Collection{Name: "docs", Dims: 4, Distance: pipeline.Dot}, true); err != nil {
		t.Fatal(err)
	}
	for _, user := range []string{"alice", "bob"} {
		var ws []pipeline.DocWrite
		for i := range 500 {
			ws = append(ws, doc(user, i, 1))
		}
		if err := src.Apply(ctx, "docs", ws); err != nil {
			t.Fatal(err)
		}
	}
	dir := filepath.Join(t.TempDir(), "backup")
	cfg := backup.Config{Source: src, Dir: dir, PageSize: 50, SegmentPoints: 200}
	// Interrupted after the first segments, as SIGINT would.
	stopCtx, stop := contextAfter(t, 3)
	cfg.Progress = func(string, int, int) { stop() }
	if _, err := backup.Backup(stopCtx, cfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Backup: %v", err)
	}
	// Written meanwhile: updates and deletes.
	var ws []pipeline.DocWrite
	for i := 0; i < 500; i += 7 {
		ws = append(ws, doc("alice", i, 2))
	}
	ws = append(ws, pipeline.DocWrite{UserID: "bob", DocID: "doc-499", Version: 5})
	if err := src.Apply(ctx, "docs", ws); err != nil {
		t.Fatal(err)
	}
	cfg.Progress = nil
	m, err := backup.Backup(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := backup.Backup(ctx, cfg); !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("Backup into a finished backup: %v, want ErrNotEmpty", err)
	}
	if len(m.Collections) != 1 || m.Collections[0].Dims != 4 || m.Collections[0].Distance != pipeline.Dot {
		t.Fatalf("manifest collections = %+v", m.Collections)
	}

	// The restore is interrupted too, then resumed from its state file.
	dst := open(t, t.TempDir())
	state := filepath.Join(t.TempDir(), "state.json")
	stopCtx, stop = contextAfter(t, 2)
	rcfg := backup.RestoreConfig{Dir: dir, Target: dst, StateFile: state, PageSize: 50, Writers: 1,
		Progress: func(string, int, int) { stop() }}
	if _, err := backup.Restore(stopCtx, rcfg); !errors.Is(err, context.Canceled) {
		t.Fatalf("interrupted Restore: %v", err)
	}
	rcfg.Progress = nil
	reports, err := backup.Restore(ctx, rcfg)
	if err != nil {
		t.Fatal(err)
	}
	if !reports[0].Resumed {
		t.Errorf("the second Restore did not resume the first")
	}
	want, _ := src.Count(ctx, "docs")
	if !maps.Equal(reports[0].Target, want) || !maps.Equal(reports[0].Backup, want) {
		t.Fatalf("restore counts: backup %v, target %v, source %v", reports[0].Backup, reports[0].Target, want)
	}
	// Every document is whole at one version: the source's, or version 1
	// for the documents updated after the interrupted run read them.
	a, _, errA := src.Scroll(ctx, "docs", "", 10_000)
	b, _, errB := dst.Scroll(ctx, "docs", "", 10_000)
	if errA != nil || errB != nil || len(a) != len(b) {
		t.Fatalf("source %d points (%v), target %d points (%v)", len(a), errA, len(b), errB)
	}
	updated := 0
	for i := range a {
		if a[i].Version != b[i].Version {
			updated++
			var n int
			fmt.Sscanf(b[i].DocID, "doc-%d", &n)
			a[i] = doc(b[i].UserID, n, 1).Points[b[i].ChunkIndex]
			a[i].Keywords = pipeline.Keywords(a[i].Text)
		}
		if !reflect.DeepEqual(a[i], b[i]) {
			t.Fatalf("point %d:\n%+v\n%+v", i, a[i], b[i])
		}
	}
	if f, ok := b[0].Metadata["f"].(float64); !ok || f != 3 {
		t.Fatalf("metadata float came back as %T %v", b[0].Metadata["f"], b[0].Metadata["f"])
	}
	t.Logf("%d points restored at the version read before the interruption", updated)
	// A second restore into the now full store is refused.
	if _, err := backup.Restore(ctx, backup.RestoreConfig{Dir: dir, Target: dst, StateFile: state + "2"}); !errors.Is(err, backup.ErrNotEmpty) {
		t.Fatalf("Restore into a full collection: %v, want ErrNotEmpty", err)
	}
	// A damaged file is found before anything is written.
	seg := filepath.Join(dir, m.Collections[0].Segments[0].Name)
	data, _ := os.ReadFile(seg)
	data[len(data)/2] ^= 1
	os.WriteFile(seg, data, 0o644)
	if _, err := backup.Restore(ctx, backup.RestoreConfig{Dir: dir, Target: open(t, t.TempDir()), StateFile: state + "3"}); !errors.Is(err, backup.ErrCorrupt) {
		t.Fatalf("Restore of a damaged backup: %v, want ErrCorrupt", err)
	}
}

// contextAfter returns a context cancelled by the n-th call of stop.
func contextAfter(t *testing.T, n int) (context.Context, func()) {
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	t.Cleanup(cancel)
	calls := 0
	return ctx, func() {
		if calls++; calls == n {
			cancel()
		}
	}
}
