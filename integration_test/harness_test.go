// Package integration_test runs ragpipe end to end: the real ragpipe binary
// against the real NATS server (embedded in the test process) and real Qdrant
// processes.
package integration_test

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
)

// binary is the ragpipe binary built by TestMain: with the race detector
// when the tests run under it.
var binary string

// binDir holds the binaries the tests build.
var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "ragpipe-it-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir = dir
	if binary, err = buildRagpipe("ragpipe", raceEnabled); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// buildRagpipe builds cmd/ragpipe into binDir/name, with the race detector
// if race.
func buildRagpipe(name string, race bool) (string, error) {
	out := filepath.Join(binDir, name)
	args := []string{"build", "-o", out}
	if race {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, "../cmd/ragpipe")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		return "", fmt.Errorf("build ragpipe: %w", err)
	}
	return out, nil
}

// plainBinary is a ragpipe binary built without the race detector, on first
// use: for the tests whose processes would saturate the machine
// race-instrumented. It is binary when the tests do not run under the race
// detector.
var plainBinary = sync.OnceValues(func() (string, error) {
	if !raceEnabled {
		return binary, nil
	}
	return buildRagpipe("ragpipe-plain", false)
})

// usePlainBinary makes the processes t starts run plainBinary, until t ends.
// Tests of this package do not run in parallel, so swapping binary is safe.
func usePlainBinary(t *testing.T) {
	t.Helper()
	plain, err := plainBinary()
	if err != nil {
		t.Fatal(err)
	}
	race := binary
	binary = plain
	t.Cleanup(func() { binary = race })
}

// system is one test's NATS server, Qdrant node and clients.
type system struct {
	t      testing.TB
	nats   *server.Server // nil when the system runs on a NATS cluster
	js     jetstream.JetStream
	qdrant *qdranttest.Node
	qc     *qdrant.Client
	env    []string // settings every ragpipe process of the test gets
	// defaultEmbedder leaves RAGPIPE_EMBEDDER unset unless env sets it;
	// otherwise processes use the hash embedder, fast and fit for the
	// small dimensions most tests use.
	defaultEmbedder bool
}

// newSystem starts NATS and Qdrant. env holds extra settings (KEY=VALUE) for
// the ragpipe processes.
func newSystem(t testing.TB, env ...string) *system {
	t.Helper()
	ns := natstest.Start(t)
	s := attach(t, ns.ClientURL(), qdranttest.Start(t), env...)
	s.nats = ns
	return s
}

// attach builds a system on running servers: NATS at natsURL (a
// comma-separated list; "" for none) and Qdrant at node, which the test
// reads from.
func attach(t testing.TB, natsURL string, node *qdranttest.Node, env ...string) *system {
	t.Helper()
	var js jetstream.JetStream
	if natsURL != "" {
		nc, err := nats.Connect(natsURL, nats.MaxReconnects(-1))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(nc.Close)
		if js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
	}
	qc, err := qdrant.NewClient(&qdrant.Config{Host: "127.0.0.1", Port: node.GRPCPort(), SkipCompatibilityCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.Close() })
	return &system{
		t: t, js: js, qdrant: node, qc: qc,
		env: append([]string{
			"NATS_URL=" + natsURL,
			"QDRANT_URL=" + node.URL(),
			"RAGPIPE_HTTP_ADDR=127.0.0.1:0",
			"RAGPIPE_LOG_LEVEL=info",
			"RAGPIPE_FLUSH_INTERVAL=5ms",
		}, env...),
	}
}

// process is a running ragpipe subprocess.
type process struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	err  error
}

// syncBuffer is a bytes.Buffer safe for the subprocess pipe and the test.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer // not embedded: its ReadFrom would bypass the lock
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// start runs `ragpipe args...` in dir (the test's working directory when
// empty) with the system's settings plus env. It is killed when the test
// ends, and its output is logged if the test failed.
func (s *system) start(name, dir string, args []string, env ...string) *process {
	s.t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Dir = dir
	cmd.Env = os.Environ()
	if !s.defaultEmbedder {
		cmd.Env = append(cmd.Env, "RAGPIPE_EMBEDDER=hash")
	}
	cmd.Env = append(append(cmd.Env, s.env...), env...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatal(err)
	}
	p := &process{cmd: cmd, log: out, done: make(chan struct{})}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	s.t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-p.done
		if s.t.Failed() {
			s.t.Logf("--- %s output:\n%s", name, tail(out.String(), 60))
		}
	})
	return p
}

// startWorker runs `ragpipe worker` and waits until it consumes.
func (s *system) startWorker(env ...string) *process {
	s.t.Helper()
	p := s.start("worker", "", []string{"worker"}, env...)
	waitLogged(s.t, p, "worker consuming")
	return p
}

// waitLogged waits until the process has logged text, failing if it exits first.
func waitLogged(t testing.TB, p *process, text string) {
	t.Helper()
	checkfor.Until(t, 60*time.Second, text, func() error {
		select {
		case <-p.done:
			return fmt.Errorf("exited: %v", p.err)
		default:
		}
		if !strings.Contains(p.log.String(), text) {
			return errors.New("not logged yet")
		}
		return nil
	})
}

// createStreams runs a worker until it has created the streams and the
// consumer, then stops it, so that a test can build a backlog first.
func (s *system) createStreams(env ...string) {
	s.t.Helper()
	if code := s.startWorker(env...).signal(s.t, syscall.SIGTERM); code != 0 {
		s.t.Fatalf("idle worker exited %d after SIGTERM, want 0", code)
	}
}

// signal sends sig to the process and waits for it to exit, returning its exit code.
func (p *process) signal(t testing.TB, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("process did not exit within 60s of %v", sig)
	}
	return p.cmd.ProcessState.ExitCode()
}

func (s *system) consumer() jetstream.Consumer {
	s.t.Helper()
	c, err := s.js.Consumer(context.Background(), "RAG_INGEST", "ragpipe-worker")
	if err != nil {
		s.t.Fatal(err)
	}
	return c
}

// consumerInfo reads the consumer's state; polls retry its errors, which
// are expected while NATS servers are killed.
func (s *system) consumerInfo() (*jetstream.ConsumerInfo, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := s.js.Consumer(ctx, "RAG_INGEST", "ragpipe-worker")
	if err != nil {
		return nil, err
	}
	return c.Info(ctx)
}

// event is a test event: its subject tokens, body and optional headers.
type event struct {
	user, collection string
	body             map[string]any
	raw              []byte // sent instead of body when set
	subject          string // sent instead of the derived subject when set
	header           nats.Header
}

// publish publishes events in order and returns their stream sequences.
func (s *system) publish(events []event) []uint64 {
	s.t.Helper()
	ctx := context.Background()
	futures := make([]jetstream.PubAckFuture, len(events))
	for i, e := range events {
		m := nats.NewMsg(cmp.Or(e.subject, "rag.ingest."+e.user+"."+e.collection))
		m.Header = e.header
		m.Data = e.raw
		if m.Data == nil {
			var err error
			if m.Data, err = json.Marshal(e.body); err != nil {
				s.t.Fatal(err)
			}
		}
		f, err := s.js.PublishMsgAsync(m)
		for errors.Is(err, jetstream.ErrTooManyStalledMsgs) {
			// A busy server: let the outstanding publishes finish, then go on.
			select {
			case <-s.js.PublishAsyncComplete():
			case <-time.After(time.Second):
			}
			f, err = s.js.PublishMsgAsync(m)
		}
		if err != nil {
			s.t.Fatal(err)
		}
		futures[i] = f
	}
	seqs := make([]uint64, len(events))
	for i, f := range futures {
		select {
		case ack := <-f.Ok():
			seqs[i] = ack.Sequence
		case err := <-f.Err():
			s.t.Fatalf("publish %d: %v", i, err)
		case <-ctx.Done():
		}
	}
	return seqs
}

// waitDrained waits until every published event has been processed and settled.
func (s *system) waitDrained(timeout time.Duration) {
	s.t.Helper()
	checkfor.Until(s.t, timeout, "consumer drained", func() error {
		info, err := s.consumerInfo()
		if err != nil {
			return err
		}
		if info.NumPending > 0 || info.NumAckPending > 0 {
			return fmt.Errorf("%d pending, %d awaiting ack", info.NumPending, info.NumAckPending)
		}
		if n, err := s.parked(); err != nil || n > 0 {
			return fmt.Errorf("%d parked (%v)", n, err)
		}
		return nil
	})
}

// store returns a qdrantstore.Store on the system's Qdrant, closed when the
// test ends: ragpipe's view of Qdrant (names, aliases, generations).
func (s *system) store() *qdrantstore.Store {
	s.t.Helper()
	store, err := qdrantstore.New(s.t.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: s.qdrant.GRPCPort()})
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { store.Close() })
	return store
}

// dropCollection deletes the ragpipe collection name from Qdrant with its
// points, as an operator wiping it would: the generation its alias points
// at (with the alias), or the plain collection of that name. Deleting the
// alias' name alone would delete nothing.
func (s *system) dropCollection(name string) {
	s.t.Helper()
	ctx, store := s.t.Context(), s.store()
	target, err := store.AliasTarget(ctx, name)
	if err != nil {
		s.t.Fatal(err)
	}
	if target == "" {
		target = name
	}
	if err := store.DropCollection(ctx, target); err != nil {
		s.t.Fatal(err)
	}
	if exists, err := s.qc.CollectionExists(ctx, name); err != nil || exists {
		s.t.Fatalf("%s still exists after dropping %s (%v)", name, target, err)
	}
}

// stored returns every point of collection as id -> payload (plus the vector
// length under "_dims").
func (s *system) stored(collection string) map[string]map[string]any {
	s.t.Helper()
	ctx := context.Background()
	out := map[string]map[string]any{}
	var offset *qdrant.PointId
	for {
		pts, next, err := s.qc.ScrollAndOffset(ctx, &qdrant.ScrollPoints{
			CollectionName: collection, Offset: offset, Limit: qdrant.PtrOf(uint32(200)),
			WithPayload: qdrant.NewWithPayload(true), WithVectors: qdrant.NewWithVectors(true),
		})
		if err != nil {
			s.t.Fatalf("scroll %s: %v", collection, err)
		}
		for _, p := range pts {
			payload := qdrantstore.PayloadMap(p.Payload)
			payload["_dims"] = int64(len(denseVector(p.Vectors)))
			out[p.Id.GetUuid()] = payload
		}
		if next == nil {
			return out
		}
		offset = next
	}
}

// denseVector is a point's dense vector: the unnamed one, alone or beside
// the named keyword vector.
func denseVector(v *qdrant.VectorsOutput) []float32 {
	if named := v.GetVectors(); named != nil {
		return named.GetVectors()[""].GetDenseVector().GetData()
	}
	return v.GetVector().GetDenseVector().GetData()
}

// assertStored fails the test unless collection holds exactly want.
func (s *system) assertStored(collection string, want map[string]map[string]any) {
	s.t.Helper()
	assertPoints(s.t, collection, s.stored(collection), want)
}

// assertPoints fails the test unless got, the points of collection as
// stored() returns them, are exactly want.
func assertPoints(t testing.TB, collection string, got, want map[string]map[string]any) {
	t.Helper()
	var missing, extra, differ []string
	for id, w := range want {
		g, ok := got[id]
		switch {
		case !ok:
			missing = append(missing, fmt.Sprintf("%s/%v/%v", w["user_id"], w["doc_id"], w["chunk_index"]))
		case !reflect.DeepEqual(g, w):
			differ = append(differ, fmt.Sprintf("%s:\n  got  %v\n  want %v", id, g, w))
		}
	}
	for id, g := range got {
		if _, ok := want[id]; !ok {
			extra = append(extra, fmt.Sprintf("%s/%v/%v@v%v", g["user_id"], g["doc_id"], g["chunk_index"], g["version"]))
		}
	}
	if len(missing)+len(extra)+len(differ) > 0 {
		slices.Sort(missing)
		slices.Sort(extra)
		t.Fatalf("collection %s: %d points, want %d: %d missing %v, %d extra %v, %d differ %v",
			collection, len(got), len(want), len(missing), head(missing), len(extra), head(extra), len(differ), head(differ))
	}
}

// model computes the state the contract requires: for every document, the
// chunks of its event with the highest version, or nothing if that is a delete.
type model struct {
	chunker *pipeline.Chunker
	dims    int
	newest  map[[3]string]modelEvent
}

type modelEvent struct {
	version uint64
	op      string
	text    string
	meta    map[string]any
}

func newModel(t testing.TB, chunkSize, overlap, dims int) *model {
	c, err := pipeline.NewChunker(chunkSize, overlap)
	if err != nil {
		t.Fatal(err)
	}
	return &model{chunker: c, dims: dims, newest: map[[3]string]modelEvent{}}
}

// add records an event with its effective version.
func (m *model) add(collection, user, doc, op, text string, meta map[string]any, version uint64) {
	k := [3]string{collection, user, doc}
	if cur, ok := m.newest[k]; !ok || version > cur.version {
		m.newest[k] = modelEvent{version: version, op: op, text: text, meta: meta}
	}
}

// want returns the expected points of collection, as assertStored takes them.
func (m *model) want(collection string) map[string]map[string]any {
	out := map[string]map[string]any{}
	for k, e := range m.newest {
		if k[0] != collection || e.op == "delete" {
			continue
		}
		chunks := m.chunker.Split(e.text)
		meta := e.meta
		if meta == nil {
			meta = map[string]any{}
		}
		for i, text := range chunks {
			out[pipeline.PointID(k[1], k[2], i)] = map[string]any{
				"user_id": k[1], "doc_id": k[2], "chunk_index": int64(i), "chunk_count": int64(len(chunks)),
				"text": text, "metadata": meta, "version": int64(e.version), "_dims": int64(m.dims),
			}
		}
	}
	return out
}

// deadLetter is one message of RAG_DLQ.
type deadLetter struct {
	subject string
	header  nats.Header
	body    []byte
}

// deadLetters reads every message of RAG_DLQ.
func (s *system) deadLetters() []deadLetter {
	s.t.Helper()
	ctx := context.Background()
	stream, err := s.js.Stream(ctx, "RAG_DLQ")
	if err != nil {
		s.t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	var out []deadLetter
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			s.t.Fatal(err)
		}
		out = append(out, deadLetter{subject: m.Subject, header: m.Header, body: m.Data})
	}
	return out
}

func head[S ~[]E, E any](s S) S { return s[:min(len(s), 5)] }

func tail(s string, lines int) string {
	l := strings.Split(s, "\n")
	return strings.Join(l[max(0, len(l)-lines):], "\n")
}
