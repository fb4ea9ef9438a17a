package integration_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// publishCmd runs `ragpipe publish args...` in dir to completion and
// returns its exit code and output.
func (s *system) publishCmd(dir string, args ...string) (int, string) {
	s.t.Helper()
	p := s.start("publish", dir, append([]string{"publish"}, args...))
	select {
	case <-p.done:
	case <-time.After(2 * time.Minute):
		s.t.Fatalf("publish %v did not finish", args)
	}
	return p.cmd.ProcessState.ExitCode(), p.log.String()
}

// mustPublish runs `ragpipe publish` and fails the test unless it exits 0.
func (s *system) mustPublish(dir string, args ...string) string {
	s.t.Helper()
	code, out := s.publishCmd(dir, args...)
	if code != 0 {
		s.t.Fatalf("publish %v: exit %d\n%s", args, code, out)
	}
	return out
}

// lastSeq returns the sequence of the last message RAG_INGEST stored: after
// a `ragpipe publish` of one event, the version that event got.
func (s *system) lastSeq() uint64 {
	s.t.Helper()
	st, err := s.js.Stream(s.t.Context(), "RAG_INGEST")
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := st.Info(s.t.Context())
	if err != nil {
		s.t.Fatal(err)
	}
	return info.State.LastSeq
}

func writeFile(t *testing.T, path, text string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestRepublishWithinDuplicateWindow runs, with the ragpipe binary and no
// explicit versions, the two everyday sequences that JetStream's duplicate
// window used to swallow, each within seconds: a file published, deleted
// and published again unchanged (it must end stored), and a file edited
// A → B → A (it must end as A). The stored chunks are read back exactly.
func TestRepublishWithinDuplicateWindow(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine")...)
	s.startWorker()
	dir := t.TempDir()
	r := rand.New(rand.NewPCG(12, 1))
	textA, textB := text(r, 800), text(r, 250) // about three chunks, one chunk
	writeFile(t, filepath.Join(dir, "kept.txt"), textA)
	writeFile(t, filepath.Join(dir, "edited.txt"), textA)
	m := newModel(t, 300, 30, 64)
	step := func(doc string, op, content string) {
		t.Helper()
		args := []string{"--user", "alice", "--collection", "docs", "--op", op, doc}
		if out := s.mustPublish(dir, args...); !strings.Contains(out, "1 stored") {
			t.Fatalf("publish %v: %s", args, out)
		}
		m.add("docs", "alice", doc, op, content, nil, s.lastSeq())
	}
	step("kept.txt", "upsert", textA)
	step("kept.txt", "delete", "")
	step("kept.txt", "upsert", textA)
	step("edited.txt", "upsert", textA)
	writeFile(t, filepath.Join(dir, "edited.txt"), textB)
	step("edited.txt", "upsert", textB)
	writeFile(t, filepath.Join(dir, "edited.txt"), textA)
	step("edited.txt", "upsert", textA)
	s.waitDrained(time.Minute)
	want := m.want("docs")
	if len(want) < 6 {
		t.Fatalf("the model expects %d points; the texts should make three chunks each", len(want))
	}
	s.assertStored("docs", want)
}

// TestVersionLimit stores versions at the top of the contract's range
// exactly (2^53-2 replaced by 2^53-1, chunk for chunk, and a stale
// 2^53-2 ignored afterwards) and dead-letters 2^53, from the body or the
// Ragpipe-Version header, with the reason.
func TestVersionLimit(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine")...)
	s.startWorker()
	r := rand.New(rand.NewPCG(13, 1))
	long, short := text(r, 800), text(r, 400)
	m := newModel(t, 300, 30, 64)
	upsert := func(txt string, version uint64) event {
		return event{user: "alice", collection: "docs", body: map[string]any{"doc_id": "ts", "text": txt, "version": version}}
	}
	const top = pipeline.MaxVersion // 2^53-1
	s.publish([]event{upsert(long, top-1)})
	m.add("docs", "alice", "ts", "upsert", long, nil, top-1)
	s.waitDrained(time.Minute)
	s.assertStored("docs", m.want("docs"))

	s.publish([]event{upsert(short, top)})
	m.add("docs", "alice", "ts", "upsert", short, nil, top)
	s.waitDrained(time.Minute)
	want := m.want("docs")
	s.assertStored("docs", want)
	for _, p := range want {
		if p["version"] != int64(9007199254740991) {
			t.Fatalf("want version 2^53-1 stored, the model says %v", p["version"])
		}
	}

	over := event{user: "alice", collection: "docs", raw: []byte(`{"doc_id":"ts","text":"over","version":9007199254740992}`)}
	overHeader := event{user: "alice", collection: "docs", body: map[string]any{"doc_id": "ts", "text": "over"},
		header: nats.Header{"Ragpipe-Version": []string{strconv.FormatUint(top+1, 10)}}}
	s.publish([]event{over, overHeader, upsert(long, top-1)})
	s.waitDrained(time.Minute)
	s.assertStored("docs", want)
	dls := s.deadLetters()
	if len(dls) != 2 {
		t.Fatalf("%d dead letters, want 2", len(dls))
	}
	for _, dl := range dls {
		if reason := dl.header.Get("Ragpipe-Error"); !strings.Contains(reason, "2^53-1") {
			t.Errorf("dead letter of %s: reason %q does not name the limit", dl.body, reason)
		}
	}
}

// TestMigrateFromDevDataDir copies the data directory of `ragpipe dev`, as
// a user knows it (RAGPIPE_DATA_DIR), into Qdrant; a directory that is
// neither that nor an embedded store is refused with a one-line reason.
func TestMigrateFromDevDataDir(t *testing.T) {
	d := newDev(t, "RAGPIPE_COLLECTIONS=docs:1024:cosine")
	events, m, _ := devCorpus(t, 20, 4)
	d.publish(events)
	d.waitDrained(time.Minute)
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d", code)
	}
	node := qdranttest.Start(t)
	s := attach(t, "", node)
	dataDir := filepath.Join(d.dir, "data")
	code, out := run(t, s.env, "migrate", "--from", dataDir, "--to", node.URL(), "--state", filepath.Join(d.dir, "state.json"))
	if code != 0 {
		t.Fatalf("migrate --from %s: exit %d\n%s", dataDir, code, out)
	}
	s.assertStored("docs", m.want("docs"))

	other := t.TempDir()
	writeFile(t, filepath.Join(other, "notes.txt"), "not a store")
	code, out = run(t, s.env, "migrate", "--from", other, "--to", node.URL())
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code == 0 || len(lines) != 1 || !strings.Contains(out, "neither an embedded store nor the data directory") {
		t.Fatalf("migrate --from a plain directory: exit %d, want non-zero and one line saying what it wants:\n%s", code, out)
	}
}
