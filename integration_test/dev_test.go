package integration_test

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/localstore"
)

// devSystem runs `ragpipe dev` in dir: no outside servers, the embedded NATS
// server on a free port and the embedded store under dir.
type devSystem struct {
	*system
	dir, url string
	proc     *process
}

func newDev(t *testing.T, env ...string) *devSystem {
	t.Helper()
	dir := t.TempDir()
	url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
	d := &devSystem{dir: dir, url: url, system: &system{t: t, env: append([]string{
		"NATS_URL=" + url, "QDRANT_URL=", "RAGPIPE_HTTP_ADDR=127.0.0.1:0", "RAGPIPE_FLUSH_INTERVAL=5ms",
		"RAGPIPE_DATA_DIR=" + filepath.Join(dir, "data"),
	}, env...)}}
	d.start()
	nc, err := nats.Connect(url, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	if d.js, err = jetstream.New(nc); err != nil {
		t.Fatal(err)
	}
	return d
}

// start runs `ragpipe dev` and waits until it consumes.
func (d *devSystem) start() {
	d.t.Helper()
	d.proc = d.system.start("dev", d.dir, []string{"dev"})
	waitLogged(d.t, d.proc, "worker consuming")
}

// request sends a NATS request and decodes the reply into out.
func (d *devSystem) request(subject string, body any, out any) {
	d.t.Helper()
	data, _ := json.Marshal(body)
	nc := d.js.Conn()
	msg, err := nc.Request(subject, data, 10*time.Second)
	if err != nil {
		d.t.Fatalf("%s: %v", subject, err)
	}
	if code := msg.Header.Get("Nats-Service-Error-Code"); code != "" {
		d.t.Fatalf("%s: %s %s", subject, code, msg.Header.Get("Nats-Service-Error"))
	}
	if err := json.Unmarshal(msg.Data, out); err != nil {
		d.t.Fatal(err)
	}
}

// firstHitRate searches for each query and returns the share of queries
// whose best hit is the document they were taken from.
func (d *devSystem) firstHitRate(queries map[string]string) float64 {
	d.t.Helper()
	found := 0
	for doc, q := range queries {
		var reply struct {
			Hits []struct {
				DocID string `json:"doc_id"`
			} `json:"hits"`
		}
		d.request("rag.search.alice.docs", map[string]any{"query": q, "top_k": 3}, &reply)
		if len(reply.Hits) > 0 && reply.Hits[0].DocID == doc {
			found++
		}
	}
	return float64(found) / float64(len(queries))
}

// devCorpus returns n documents of several sentences, each naming its own
// resource, and for each document one of its sentences as a query.
func devCorpus(t *testing.T, n int, seed uint64) ([]event, *model, map[string]string) {
	r := rand.New(rand.NewPCG(seed, 7))
	m := newModel(t, 2000, 200, 1024)
	queries := map[string]string{}
	events := make([]event, n)
	for i := range events {
		doc := fmt.Sprintf("res-%04d", i)
		var sentences []string
		for s := range 4 {
			sentences = append(sentences, fmt.Sprintf("Resource %s part %d %s.", doc, s, text(r, 80)))
		}
		txt := fmt.Sprint(sentences[0], " ", sentences[1], " ", sentences[2], " ", sentences[3])
		events[i] = event{user: "alice", collection: "docs", body: map[string]any{"doc_id": doc, "text": txt, "version": 1}}
		m.add("docs", "alice", doc, "upsert", txt, nil, 1)
		queries[doc] = sentences[r.IntN(4)]
	}
	return events, m, queries
}

// TestDevRestart runs `ragpipe dev` with nothing else: 300 documents are
// found by their own sentences; SIGTERM exits 0; restarted on the same data
// directory, everything is still searchable.
func TestDevRestart(t *testing.T) {
	d := newDev(t, "RAGPIPE_COLLECTIONS=docs:1024:cosine")
	events, _, queries := devCorpus(t, 300, 1)
	d.publish(events)
	d.waitDrained(2 * time.Minute)
	if rate := d.firstHitRate(queries); rate < 0.95 {
		t.Fatalf("a document's own sentence finds it first in %.1f%% of searches, want >= 95%%", 100*rate)
	}
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d after SIGTERM, want 0", code)
	}
	d.start()
	if rate := d.firstHitRate(queries); rate < 0.95 {
		t.Fatalf("after a restart, %.1f%% found first, want >= 95%%", 100*rate)
	}
}

// TestDevKilled SIGKILLs `ragpipe dev` mid-ingestion and restarts it: the
// embedded NATS server and the embedded store recover, and the final state
// is exact.
func TestDevKilled(t *testing.T) {
	// Small batches, one at a time: the backlog drains slowly enough to be
	// killed in the middle of it.
	d := newDev(t, "RAGPIPE_COLLECTIONS=docs:1024:cosine", "RAGPIPE_BATCH_SIZE=8", "RAGPIPE_CONCURRENCY=1", "RAGPIPE_ACK_WAIT=3s")
	events, m, _ := devCorpus(t, 20000, 2)
	d.publish(events)
	waitProgress(d.system, 300)
	info, err := d.consumer().Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if info.NumPending < 1000 {
		t.Fatalf("only %d events left to ingest: the kill would prove little", info.NumPending)
	}
	if err := d.proc.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-d.proc.done
	d.start()
	d.waitDrained(3 * time.Minute)
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d after SIGTERM, want 0", code)
	}
	store, err := localstore.Open(t.Context(), localstore.Config{Dir: filepath.Join(d.dir, "data", "vectors")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	assertPoints(t, "docs", embeddedPoints(t, store, "docs"), m.want("docs"))
}

// embeddedPoints reads collection from the embedded store in the form
// stored() gives Qdrant's points.
func embeddedPoints(t *testing.T, store *localstore.Store, collection string) map[string]map[string]any {
	t.Helper()
	out := map[string]map[string]any{}
	after := ""
	for {
		pts, next, err := store.Scroll(t.Context(), collection, after, 500)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			md := p.Metadata
			if md == nil {
				md = map[string]any{}
			}
			out[p.ID] = map[string]any{
				"user_id": p.UserID, "doc_id": p.DocID, "chunk_index": int64(p.ChunkIndex),
				"chunk_count": int64(p.ChunkCount), "text": p.Text, "metadata": md,
				"version": int64(p.Version), "_dims": int64(len(p.Vector)),
			}
			if p.TextHash != "" {
				out[p.ID]["text_hash"] = p.TextHash
			}
		}
		if next == "" {
			return out
		}
		after = next
	}
}

// TestMigrateKilled fills the embedded store with `ragpipe dev`, then copies
// it into a real Qdrant with `ragpipe migrate`, SIGKILLed half way and run
// again: the copy resumes and Qdrant ends exactly as the store.
func TestMigrateKilled(t *testing.T) {
	d := newDev(t, "RAGPIPE_COLLECTIONS=docs:1024:cosine")
	events, m, _ := devCorpus(t, 5000, 3)
	d.publish(events)
	d.waitDrained(2 * time.Minute)
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d", code)
	}
	node := qdranttest.Start(t)
	s := attach(t, "", node) // migrate needs no NATS
	args := []string{"migrate", "--from", filepath.Join(d.dir, "data", "vectors"), "--to", node.URL(), "--page-size", "20", "--state", filepath.Join(d.dir, "state.json")}
	p := s.start("migrate", d.dir, args)
	checkfor.Until(t, time.Minute, "migration half way", func() error {
		n, err := s.qc.Count(t.Context(), &qdrant.CountPoints{CollectionName: "docs", Exact: qdrant.PtrOf(true)})
		if err != nil || n < 2500 {
			return fmt.Errorf("%d points copied (%v)", n, err)
		}
		return nil
	})
	if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.done
	if n, _ := s.qc.Count(t.Context(), &qdrant.CountPoints{CollectionName: "docs", Exact: qdrant.PtrOf(true)}); n >= 5000 {
		t.Fatalf("migration finished before it was killed (%d points); the test proves nothing", n)
	}
	p = s.start("migrate", d.dir, args)
	<-p.done
	if p.err != nil || !strings.Contains(p.log.String(), "resumed") {
		t.Fatalf("rerun: %v\n%s", p.err, p.log.String())
	}
	s.assertStored("docs", m.want("docs"))
}
