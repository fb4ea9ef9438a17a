package erase_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/erase"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/worker"
)

// observedKeys is the real keyring, noting what of the tenant was still
// stored when Destroy was first called.
type observedKeys struct {
	*keyring.Keyring
	w       *world
	points  map[string]int
	pending uint64
}

func (o *observedKeys) Destroy(ctx context.Context, userID string) (bool, error) {
	if o.points == nil {
		o.points = map[string]int{}
		for _, coll := range []string{"docs", "notes"} {
			counts, err := o.w.store.Count(ctx, coll)
			if err != nil {
				return false, err
			}
			o.points[coll] = counts[userID]
		}
		o.pending = o.w.messages(worker.IngestStream, "rag.ingest."+userID+".>")
	}
	return o.Keyring.Destroy(ctx, userID)
}

func openEmbedded(t *testing.T) *localstore.Store {
	t.Helper()
	l, err := localstore.Open(t.Context(), localstore.Config{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// TestForgetKeyFirst checks that with encryption on the tenant's key is
// destroyed before anything else is removed, that the other tenant's key is
// untouched, that a second run finds no key, and that the tenant's next
// key is a fresh one, under which its old texts do not open.
func TestForgetKeyFirst(t *testing.T) {
	w := newWorld(t, openEmbedded(t))
	master, err := keyring.ParseMasterKeys([]byte(keyring.NewMasterKey()))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Open(t.Context(), w.js, master, keyring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { keys.Close() })
	stop := w.run()
	w.publish("rag.ingest.alice.docs", `{"doc_id":"a1","text":"alice","version":2}`)
	w.publish("rag.ingest.bob.docs", `{"doc_id":"b1","text":"bob","version":2}`)
	w.waitPoints("docs", map[string]int{"alice": 1, "bob": 1})
	stop()
	w.publish("rag.ingest.alice.notes", `{"doc_id":"p1","text":"pending","version":3}`)
	old, err := keys.Tenant(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	sealed := old.Seal("docs", "a1", 0, "alice")
	if _, err := keys.Tenant(t.Context(), "bob"); err != nil {
		t.Fatal(err)
	}

	obs := &observedKeys{Keyring: keys, w: w}
	cfg := erase.Config{JetStream: w.js, Store: w.store, Versions: w.register, Keys: obs}
	r, err := erase.Forget(t.Context(), cfg, "alice")
	if err != nil || r.Key != erase.KeyDestroyed || r.Points["docs"] != 1 || r.Pending != 1 {
		t.Fatalf("Forget = %+v, %v; want the key destroyed, 1 point, 1 pending event", r, err)
	}
	if fmt.Sprint(obs.points) != "map[docs:1 notes:0]" || obs.pending != 1 {
		t.Fatalf("when the key was destroyed: points %v, pending %d; want everything still there", obs.points, obs.pending)
	}
	if _, err := keys.Lookup(t.Context(), "alice"); !errors.Is(err, keyring.ErrForgotten) {
		t.Fatalf("Lookup(alice) after Forget: %v, want ErrForgotten", err)
	}
	if _, err := keys.Lookup(t.Context(), "bob"); err != nil {
		t.Fatalf("Lookup(bob) after alice's Forget: %v", err)
	}
	if r, err = erase.Forget(t.Context(), cfg, "alice"); err != nil || r.Key != erase.KeyNone {
		t.Fatalf("Forget again = %+v, %v; want no key to destroy", r, err)
	}
	fresh, err := keys.Tenant(t.Context(), "alice")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fresh.Open("docs", "a1", 0, sealed); !errors.Is(err, keyring.ErrUndecryptable) {
		t.Fatalf("alice's old text under her fresh key: %v, want ErrUndecryptable", err)
	}
}

// TestForgetWhileWorking forgets a tenant while a worker processes a
// backlog of both tenants: once Forget has returned, after its sweep waited
// for the batches in flight, nothing of the tenant is stored, registered or
// waiting, and every event of the other tenant is stored.
func TestForgetWhileWorking(t *testing.T) {
	w := newWorld(t, openEmbedded(t))
	w.run()
	for i := range 300 {
		coll := []string{"docs", "notes"}[i%2]
		w.publishAsync("rag.ingest.alice."+coll, fmt.Sprintf(`{"doc_id":"a%d","text":"alice %d","version":1}`, i, i))
		if i%3 == 0 {
			w.publishAsync("rag.ingest.bob."+coll, fmt.Sprintf(`{"doc_id":"b%d","text":"bob %d","version":1}`, i, i))
		}
	}
	w.settled()
	r, err := erase.Forget(t.Context(), erase.Config{JetStream: w.js, Store: w.store, Versions: w.register, Settle: 3 * time.Second}, "alice")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("forget while working: %+v", r)
	for _, coll := range []string{"docs", "notes"} {
		if counts, err := w.store.Count(t.Context(), coll); err != nil || counts["alice"] != 0 {
			t.Errorf("%s after Forget: %v, %v; want no point of alice", coll, counts, err)
		}
	}
	if n := w.messages("RAG_VERSIONS", "rag.version.*.alice.*"); n != 0 {
		t.Errorf("%d register entries of alice after Forget", n)
	}
	if n := w.messages(worker.IngestStream, "rag.ingest.alice.>"); n != 0 {
		t.Errorf("%d events of alice waiting after Forget", n)
	}
	w.waitPoints("docs", map[string]int{"bob": 50})
	w.waitPoints("notes", map[string]int{"bob": 50})
}
