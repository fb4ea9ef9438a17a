package integration_test

import (
	"cmp"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
)

// floorEnv is the setting of the floor tests: small chunks, so that a long
// text has several and a short one a single chunk.
var floorEnv = append([]string{"RAGPIPE_COLLECTIONS=docs:1024:cosine"}, chunking...)

// floorEvents builds events of alice's documents in docs, without versions.
type floorEvents struct{ r *rand.Rand }

func (f floorEvents) upsert(doc string, chars int) event {
	return event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "text": text(f.r, chars)}}
}

func (f floorEvents) delete(doc string) event {
	return event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "op": "delete"}}
}

// fillers are upserts of the short documents filler-<from>… filler-<to-1>,
// or their deletes.
func (f floorEvents) fillers(from, to int, deleted bool) []event {
	var out []event
	for i := from; i < to; i++ {
		if doc := fmt.Sprintf("filler-%02d", i); deleted {
			out = append(out, f.delete(doc))
		} else {
			out = append(out, f.upsert(doc, 100))
		}
	}
	return out
}

// publishUnversioned publishes events and records each in m as its
// document's newest, whatever the version: a later publish must outrank
// what is stored. Its version is its stream sequence, as stored.
func (s *system) publishUnversioned(m *model, events ...event) {
	s.t.Helper()
	seqs := s.publish(events)
	for i, e := range events {
		op, _ := e.body["op"].(string)
		txt, _ := e.body["text"].(string)
		delete(m.newest, [3]string{e.collection, e.user, e.body["doc_id"].(string)})
		m.add(e.collection, e.user, e.body["doc_id"].(string), cmp.Or(op, "upsert"), txt, nil, seqs[i])
	}
}

// TestFloorStreamRecreated deletes RAG_INGEST and restarts the worker, which
// creates it again, then deletes it and creates it by hand, as an operator
// would, before the worker starts. Each time, events published afterwards
// without versions take effect exactly as the newest: an update that shrinks
// a document, one that grows another, a delete, and the publish of documents
// whose deletes, published last before, hold the highest versions, kept
// only in the register.
func TestFloorStreamRecreated(t *testing.T) {
	s := newSystem(t, floorEnv...)
	w := s.startWorker()
	f, m := floorEvents{rand.New(rand.NewPCG(12, 1))}, newModel(t, 300, 30, 1024)
	events := append(f.fillers(0, 20, false), f.upsert("shrinks", 1000), f.upsert("grows", 100), f.upsert("deleted", 1000))
	s.publishUnversioned(m, append(events, f.fillers(0, 5, true)...)...)
	s.waitDrained(time.Minute)
	s.assertStored("docs", m.want("docs"))

	for round, byHand := range []bool{false, true} {
		if code := w.signal(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("worker exited %d after SIGTERM", code)
		}
		if err := s.js.DeleteStream(t.Context(), "RAG_INGEST"); err != nil {
			t.Fatal(err)
		}
		if byHand {
			if _, err := s.js.CreateStream(t.Context(), jetstream.StreamConfig{
				Name: "RAG_INGEST", Subjects: []string{"rag.ingest.>"}, Retention: jetstream.WorkQueuePolicy,
			}); err != nil {
				t.Fatal(err)
			}
		}
		w = s.startWorker()
		if byHand {
			waitLogged(t, w, "ingest stream raised above every stored version")
		}
		grown, shrunk, deleted := "shrinks", "grows", f.delete("deleted") // swapped every round
		if byHand {
			grown, shrunk, deleted = shrunk, grown, f.upsert("deleted", 1000)
		}
		events := f.fillers(5*round, 5*round+5, false)
		slices.Reverse(events) // the first outranks the newest delete
		events = append(events, f.upsert(grown, 1000), f.upsert(shrunk, 100), deleted)
		s.publishUnversioned(m, append(events, f.fillers(5*round+5, 5*round+10, true)...)...)
		s.waitDrained(time.Minute)
		s.assertStored("docs", m.want("docs"))
	}
}

// TestFloorAfterMigrate runs `ragpipe dev`, copies its store into Qdrant
// with `ragpipe migrate`, and starts a worker on a fresh NATS server (a new
// stream, an empty register): updates and deletes without versions outrank
// the copied points, exactly.
func TestFloorAfterMigrate(t *testing.T) {
	d := newDev(t, floorEnv...)
	f, m := floorEvents{rand.New(rand.NewPCG(12, 2))}, newModel(t, 300, 30, 1024)
	d.publishUnversioned(m, append(f.fillers(0, 20, false), f.upsert("shrinks", 1000), f.upsert("grows", 100), f.upsert("deleted", 1000))...)
	d.waitDrained(time.Minute)
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d", code)
	}
	node := qdranttest.Start(t)
	s := attach(t, natstest.Start(t).ClientURL(), node, floorEnv...)
	p := s.start("migrate", d.dir, []string{"migrate", "--from", filepath.Join(d.dir, "data", "vectors"),
		"--to", node.URL(), "--state", filepath.Join(d.dir, "state.json")})
	<-p.done
	if p.err != nil {
		t.Fatalf("migrate: %v\n%s", p.err, p.log.String())
	}
	s.assertStored("docs", m.want("docs")) // copied with their versions

	s.startWorker()
	s.publishUnversioned(m, f.upsert("shrinks", 100), f.upsert("grows", 1000), f.delete("deleted"), f.upsert("new", 100))
	s.waitDrained(time.Minute)
	s.assertStored("docs", m.want("docs"))
}
