package integration_test

import (
	"math"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// TestReindexDev reindexes `documents` in the embedded store of `ragpipe
// dev` to the small profile and another chunking (400 characters, overlap
// 40, from 300 and 30), so that every document's text is rebuilt from its
// stored chunks, while events and searches go on. The new generation ends
// exact, read through the alias and by its name; a rollback serves the old
// one again, exact with the events published since, and --drop-previous
// then deletes the new one.
func TestReindexDev(t *testing.T) {
	fake := startReindexFake(t, embedtest.Config{})
	d := newDev(t, reindexEnv(fake)...)
	w := newWorkload(t, reindexDocs(1500), 5)
	// The texts are ones whose chunks overlap everywhere, so that the rebuilt
	// text is the text (pipeline's tests count the others).
	old, rechunked := chunker(t, 300, 30), chunker(t, 400, 40)
	w.valid = func(txt string) bool { return old.Rebuild(old.Split(txt)) == strings.TrimSpace(txt) }
	w.initial(d.system)
	states := watchStates(t, d.js, "documents")

	st := reindexUnderLoad(t, d.system, states, w, "embedded store", append(toSmall, "--chunk-size", "400", "--chunk-overlap", "40", "--json")...)
	mustServe(t, st, "documents__g2", "documents__g1")
	d.waitDrained(2 * time.Minute)
	states.stop() // dev's NATS server stops with it
	d.inStore(func(store *localstore.Store) {
		assertAlias(t, store, "documents__g2")
		want := w.want(rechunked, newDims, reindexIdentity)
		assertPoints(t, "documents", embeddedPoints(t, store, "documents"), want)
		assertPoints(t, "documents__g2", embeddedPoints(t, store, "documents__g2"), want)
		assertEmbeddedVectors(t, store, "documents__g2")
		assertPoints(t, "documents__g1", embeddedPoints(t, store, "documents__g1"), w.want(nil, oldDims, ""))
	})

	states = watchStates(t, d.js, "documents")
	stopSearches := searching(d.js.Conn(), 2)
	stopPublishing := w.publishing(d.js, loadBurst)
	time.Sleep(time.Second)
	runToEnd(t, d.system, "reindex --rollback", reindexCommand("--rollback"))
	mustServe(t, states.done(), "documents__g1", "documents__g2")
	time.Sleep(time.Second)
	stopPublishing()
	assertSearches(t, "dev rollback", stopSearches())
	d.waitDrained(2 * time.Minute)
	runToEnd(t, d.system, "reindex --drop-previous", reindexCommand("--drop-previous"))
	mustServe(t, states.done(), "documents__g1", "")
	d.inStore(func(store *localstore.Store) {
		assertAlias(t, store, "documents__g1")
		assertPoints(t, "documents", embeddedPoints(t, store, "documents"), w.want(nil, oldDims, ""))
		if ok, err := store.CollectionExists(t.Context(), "documents__g2"); err != nil || ok {
			t.Fatalf("documents__g2 exists (%v) after --drop-previous", err)
		}
	})
}

func chunker(t *testing.T, size, overlap int) *pipeline.Chunker {
	c, err := pipeline.NewChunker(size, overlap)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// inStore stops `ragpipe dev`, opens its store for check and starts dev
// again.
func (d *devSystem) inStore(check func(store *localstore.Store)) {
	d.t.Helper()
	if code := d.proc.signal(d.t, syscall.SIGTERM); code != 0 {
		d.t.Fatalf("ragpipe dev exited %d after SIGTERM, want 0", code)
	}
	store, err := localstore.Open(d.t.Context(), localstore.Config{Dir: filepath.Join(d.dir, "data", "vectors")})
	if err != nil {
		d.t.Fatal(err)
	}
	check(store)
	if err := store.Close(); err != nil {
		d.t.Fatal(err)
	}
	d.start()
}

// assertAlias fails the test unless the embedded store's alias documents
// points at name.
func assertAlias(t *testing.T, store *localstore.Store, name string) {
	t.Helper()
	if got, err := store.AliasTarget(t.Context(), "documents"); err != nil || got != name {
		t.Fatalf("alias documents -> %q (%v), want %s", got, err, name)
	}
}

// assertEmbeddedVectors fails the test unless every point of collection
// holds the embedding test server's vector of its text.
func assertEmbeddedVectors(t *testing.T, store *localstore.Store, collection string) {
	t.Helper()
	for after := ""; ; {
		pts, next, err := store.Scroll(t.Context(), collection, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			want := embedtest.Vector(p.Text, newDims)
			if len(p.Vector) != len(want) {
				t.Fatalf("point %s: %d dimensions, want %d", p.ID, len(p.Vector), len(want))
			}
			for i := range want {
				if math.Abs(float64(p.Vector[i]-want[i])) > 1e-5 {
					t.Fatalf("point %s does not hold the vector of its text %.60q", p.ID, p.Text)
				}
			}
		}
		if next == "" {
			return
		}
		after = next
	}
}
