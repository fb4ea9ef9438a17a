package integration_test

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/checkfor"
)

// TestDeferIndexing: with RAGPIPE_DEFER_INDEXING, a worker finding more
// events waiting than the setting switches the collection to deferred
// indexing (indexing_threshold 0) and restores Qdrant's default once the
// backlog has drained; a worker starting without a backlog restores a
// collection that a dead worker left deferred.
func TestDeferIndexing(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_DEFER_INDEXING=1000")
	threshold := func() uint64 {
		t.Helper()
		info, err := s.qc.GetCollectionInfo(t.Context(), "docs")
		if err != nil {
			t.Fatal(err)
		}
		return info.GetConfig().GetOptimizerConfig().GetIndexingThreshold()
	}
	waitThreshold := func(want uint64) {
		t.Helper()
		checkfor.Until(t, 30*time.Second, fmt.Sprint("indexing threshold ", want), func() error {
			if got := threshold(); got != want {
				return fmt.Errorf("indexing threshold %d", got)
			}
			return nil
		})
	}
	s.createStreams()

	// A worker that died with indexing deferred.
	if err := s.qc.UpdateCollection(t.Context(), &qdrant.UpdateCollection{CollectionName: "docs",
		OptimizersConfig: &qdrant.OptimizersConfigDiff{IndexingThreshold: qdrant.PtrOf(uint64(0))}}); err != nil {
		t.Fatal(err)
	}
	idle := s.startWorker()
	waitThreshold(10000)
	idle.signal(t, syscall.SIGTERM)

	r := rand.New(rand.NewPCG(5, 5))
	events := make([]event, 5000)
	for i := range events {
		events[i] = event{user: users[i%len(users)], collection: "docs",
			body: map[string]any{"doc_id": fmt.Sprint("doc-", i), "text": text(r, 200)}}
	}
	s.publish(events)
	w := s.startWorker()
	waitLogged(t, w, "HNSW indexing of the collection deferred")
	if got := threshold(); got != 0 && !strings.Contains(w.log.String(), "resumed") {
		t.Fatalf("indexing threshold %d while the backlog drains, want 0", got)
	}
	s.waitDrained(time.Minute)
	waitThreshold(10000)
	waitLogged(t, w, "backlog drained: HNSW indexing of the collection resumed")
	if n := len(s.stored("docs")); n != len(events) {
		t.Fatalf("%d points stored, want %d", n, len(events))
	}
}
