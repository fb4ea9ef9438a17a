package publish_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/publish"
)

// ingestStream is the stream the worker creates (CONTRACT §1), with its
// two-minute duplicate window.
var ingestStream = jetstream.StreamConfig{
	Name: "RAG_INGEST", Subjects: []string{"rag.ingest.>"},
	Retention: jetstream.WorkQueuePolicy, Duplicates: 2 * time.Minute,
}

// streamMessages returns the messages of RAG_INGEST in order.
func streamMessages(t *testing.T, js jetstream.JetStream) []*jetstream.RawStreamMsg {
	t.Helper()
	s, err := js.Stream(t.Context(), "RAG_INGEST")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []*jetstream.RawStreamMsg
	for seq := info.State.FirstSeq; info.State.Msgs > 0 && seq <= info.State.LastSeq; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

func newPublisher(t *testing.T, nc *nats.Conn, cfg publish.Config) *publish.Publisher {
	t.Helper()
	cfg.Conn = nc
	p, err := publish.New(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestRetryResendsTheLineRead publishes JSON lines while no stream takes
// them: every publish meets no responders (status 503, as during a leader
// election) and nats.go retries it 250ms later, by which time the stream
// exists and the scanner has long reused its buffer for later lines. The
// stream must hold exactly the lines read, each once.
func TestRetryResendsTheLineRead(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	// Lines of about 1 KiB, far more than the scanner's 64 KiB buffer holds,
	// each distinct throughout so that an overwritten one cannot pass.
	var lines []string
	for i := range 300 {
		lines = append(lines, fmt.Sprintf(`{"doc_id":"d%03d","text":"%s"}`, i, strings.Repeat(fmt.Sprintf("line %03d ", i), 110)))
	}
	file := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(file, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	p := newPublisher(t, nc, publish.Config{UserID: "alice", Collection: "docs"})
	if err := p.Path(t.Context(), file); err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), ingestStream); err != nil {
		t.Fatal(err)
	}
	p.Flush()
	if n := p.Counts(); n.Stored != int64(len(lines)) || n.Failed != 0 || n.Duplicates != 0 {
		t.Fatalf("counts %+v, want all %d stored", n, len(lines))
	}
	got := map[string]bool{}
	for _, m := range streamMessages(t, js) {
		got[string(m.Data)] = true
	}
	missing := 0
	for _, l := range lines {
		if !got[l] {
			missing++
		}
	}
	if missing > 0 || len(got) != len(lines) {
		t.Fatalf("the stream holds %d distinct bodies, %d of the %d lines are not among them", len(got), missing, len(lines))
	}
}

// TestEveryPublishItsOwnID publishes a file, deletes it and publishes it
// again, in one run and in runs of their own, within the duplicate window:
// every publish is stored, and each carries a Nats-Msg-Id of its own and no
// other header.
func TestEveryPublishItsOwnID(t *testing.T) {
	nc := natstest.Connect(t, natstest.Start(t))
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), ingestStream); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	file := filepath.Join(dir, "a.txt")
	if err := os.WriteFile(file, []byte("unchanged text"), 0o644); err != nil {
		t.Fatal(err)
	}
	lines := filepath.Join(dir, "same.jsonl")
	line := `{"doc_id":"x","text":"same bytes"}` + "\n"
	if err := os.WriteFile(lines, []byte(line+line), 0o644); err != nil {
		t.Fatal(err)
	}
	run := func(op pipeline.Op, want int64, paths ...string) {
		t.Helper()
		p := newPublisher(t, nc, publish.Config{UserID: "alice", Collection: "docs", Op: op})
		for _, path := range paths {
			if err := p.Path(t.Context(), path); err != nil {
				t.Fatal(err)
			}
		}
		p.Flush()
		if n := p.Counts(); n.Stored != want || n.Duplicates != 0 {
			t.Fatalf("%s %v: counts %+v, want every publish stored", op, paths, n)
		}
	}
	run(pipeline.OpUpsert, 1, file)
	run(pipeline.OpDelete, 1, file)
	run(pipeline.OpUpsert, 1, file)
	run(pipeline.OpUpsert, 4, file, file, lines) // one run: the file twice, two identical lines
	msgs := streamMessages(t, js)
	if len(msgs) != 7 {
		t.Fatalf("stream holds %d messages, want 7", len(msgs))
	}
	ids := map[string]bool{}
	for _, m := range msgs {
		id := m.Header.Get(jetstream.MsgIDHeader)
		if id == "" || ids[id] {
			t.Errorf("message %d: Nats-Msg-Id %q is empty or repeated", m.Sequence, id)
		}
		ids[id] = true
		for k := range m.Header {
			if k != jetstream.MsgIDHeader {
				t.Errorf("message %d carries header %s, which the contract does not name", m.Sequence, k)
			}
		}
	}
	if !bytes.Contains(msgs[1].Data, []byte(`"op":"delete"`)) {
		t.Errorf("second message %s, want the delete", msgs[1].Data)
	}
}

// TestNewRefusesBadConfig: bad settings are errors, not panics.
func TestNewRefusesBadConfig(t *testing.T) {
	ctx := context.Background()
	if _, err := publish.New(ctx, publish.Config{}); err == nil {
		t.Error("no connection: no error")
	}
	nc := natstest.Connect(t, natstest.Start(t))
	for _, cfg := range []publish.Config{
		{Conn: nc, Op: "merge"},
		{Conn: nc, UserID: "a.b"},
		{Conn: nc, Collection: "Docs"},
	} {
		if _, err := publish.New(ctx, cfg); err == nil {
			t.Errorf("%+v: no error", cfg)
		}
	}
}
