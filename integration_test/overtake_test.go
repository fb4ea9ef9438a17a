package integration_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// heldSink is the real Qdrant sink, except that Apply for a chosen version
// waits until the test releases it: it forces the interleaving in which a
// newer version is claimed, written and checked while an older one, already
// claimed, has not written yet.
type heldSink struct {
	*qdrantstore.Store
	hold     uint64        // the version whose Apply waits
	reached  chan struct{} // closed when that Apply starts waiting
	released chan struct{} // closed by the test to let it go on
	once     sync.Once
	// failPrunes is how many Prune calls fail (transiently) before the
	// real ones: the older write's cleanup is interrupted.
	failPrunes int
}

func (h *heldSink) Prune(ctx context.Context, collection string, docs []pipeline.DocVersion) error {
	if h.failPrunes > 0 {
		h.failPrunes--
		return errors.New("injected: connection lost before the prune")
	}
	return h.Store.Prune(ctx, collection, docs)
}

func (h *heldSink) Apply(ctx context.Context, collection string, writes []pipeline.DocWrite) error {
	if len(writes) == 1 && writes[0].Version == h.hold {
		h.once.Do(func() { close(h.reached) })
		<-h.released
	}
	return h.Store.Apply(ctx, collection, writes)
}

// TestOlderWriteOvertaken proves the register's post-write check: an older
// version with more chunks writes after a newer version (an upsert with fewer
// chunks, or a delete) has been stored. Its extra chunks are inserted by the
// conditional upsert, and must then be pruned, leaving exactly the newer
// version. When that prune fails, the older event fails and is redelivered:
// superseded by then, it must still prune.
func TestOlderWriteOvertaken(t *testing.T) {
	l := newLocal(t, qdrantstore.Config{})
	chunker, err := pipeline.NewChunker(300, 30)
	if err != nil {
		t.Fatal(err)
	}
	store, register, emb, ctx := l.store, l.register, l.embedder, t.Context()
	s := &system{t: t, qc: store.Client()}
	for _, tc := range []struct {
		newer      string
		failPrunes int
	}{{"upsert", 0}, {"delete", 0}, {"upsert", 1}, {"delete", 1}} {
		newer := tc.newer
		t.Run(fmt.Sprintf("newer %s, %d failed prunes", newer, tc.failPrunes), func(t *testing.T) {
			s.t = t
			held := &heldSink{Store: store, hold: 1, reached: make(chan struct{}), released: make(chan struct{}), failPrunes: tc.failPrunes}
			stage, err := ingest.NewStage(ingest.StageConfig{
				Sink: held, Versions: register, Embedder: emb, Chunker: chunker, AutoCreate: func(string) bool { return true },
			})
			if err != nil {
				t.Fatal(err)
			}
			collection := fmt.Sprintf("overtake-%s-%d", newer, tc.failPrunes)
			m := newModel(t, 300, 30, 16)
			older := pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: collection, DocID: "doc",
				Text: text(rand.New(rand.NewPCG(7, 8)), 1500), Version: 1}
			newest := pipeline.Event{Op: pipeline.Op(newer), UserID: "alice", Collection: collection, DocID: "doc",
				Version: 2}
			if newer == "upsert" {
				newest.Text = "one short chunk"
			}
			m.add(collection, "alice", "doc", string(older.Op), older.Text, nil, 1)
			m.add(collection, "alice", "doc", string(newest.Op), newest.Text, nil, 2)

			done := make(chan []error)
			go func() { done <- stage.Process(ctx, []pipeline.Event{older}) }()
			select {
			case <-held.reached: // version 1 is claimed and about to write
			case <-time.After(30 * time.Second):
				t.Fatal("older version never reached its write")
			}
			if errs := stage.Process(ctx, []pipeline.Event{newest}); errs[0] != nil {
				t.Fatal(errs[0])
			}
			close(held.released)
			errs := <-done
			for range tc.failPrunes { // redeliveries of the older event
				if errs[0] == nil {
					t.Fatal("the older event succeeded although its prune failed")
				}
				errs = stage.Process(ctx, []pipeline.Event{older})
			}
			if errs[0] != nil {
				t.Fatal(errs[0])
			}
			if n := len(chunker.Split(older.Text)); n < 3 {
				t.Fatalf("older version has %d chunks; the test needs more than the newer one", n)
			}
			s.assertStored(collection, m.want(collection))
		})
	}
}
