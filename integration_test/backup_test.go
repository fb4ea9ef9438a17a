package integration_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// storedChunk is what the backup checks read of a stored point.
type storedChunk struct {
	index, count int
	version      uint64
	text         string
}

// backupCorpus is the documents of TestBackupRestore: the text of every
// version published of each document ("" for a delete), keyed by
// user/doc_id.
type backupCorpus map[string]map[uint64]string

// TestBackupRestore takes a backup of a single Qdrant node while a worker
// ingests and updates documents, SIGKILLs it mid-way and runs it again to
// completion, wipes Qdrant and the version register, restores into a
// three-node Qdrant cluster with another layout and into the embedded
// store of `ragpipe dev`, and checks each time that every document is whole
// at one of its versions, that the counts are the backup's, and that events
// published afterwards obey last-version-wins: newer ones applied, late
// ones older than the backup ignored. 20,000 documents (3,000 with -short),
// written, backed up and restored by processes built without the race
// detector, which would slow them severalfold; TestBackupRestoreEncrypted and
// TestBackupAdoptedGeneration run backup and restore under it.
func TestBackupRestore(t *testing.T) {
	usePlainBinary(t)
	n := 20000
	if testing.Short() {
		n = 3000
	}
	chunking := []string{"RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_CHUNK_SIZE=200", "RAGPIPE_CHUNK_OVERLAP=20"}
	s := newSystem(t, append(chunking, "RAGPIPE_BATCH_SIZE=128")...)
	r := rand.New(rand.NewPCG(16, 16))
	corpus := backupCorpus{}
	publish := func(lo, hi int, v uint64, op string) {
		t.Helper()
		var events []event
		for i := lo; i < hi; i++ {
			doc, user := fmt.Sprint("doc-", i), users[i%len(users)]
			body := map[string]any{"doc_id": doc, "version": v, "op": op}
			txt := ""
			if op == "upsert" {
				txt = fmt.Sprintf("%s version %d. %s", doc, v, text(r, 100+r.IntN(500)))
				body["text"] = txt
			}
			if corpus[user+"/"+doc] == nil {
				corpus[user+"/"+doc] = map[uint64]string{}
			}
			corpus[user+"/"+doc][v] = txt
			events = append(events, event{user: user, collection: "docs", body: body})
		}
		s.publish(events)
	}
	s.createStreams()
	publish(0, n, 1, "upsert")
	worker := s.startWorker()
	waitProgress(s, uint64(n/3))

	// The backup runs while the worker ingests; it is killed once it has
	// closed two segments, then run again, while updates and deletes go on.
	dir := filepath.Join(t.TempDir(), "backup")
	args := []string{"backup", "--to", dir, "--segment-points", fmt.Sprint(n / 10), "--page-size", "100"}
	first := s.start("backup", "", args)
	checkfor.Until(t, 2*time.Minute, "two segments checkpointed", func() error {
		data, _ := os.ReadFile(filepath.Join(dir, "checkpoint.json"))
		if !strings.Contains(string(data), "seg-000002") {
			return fmt.Errorf("checkpoint: %.100s", data)
		}
		return nil
	})
	if err := first.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-first.done
	updates := make(chan struct{})
	go func() {
		defer close(updates)
		for i := 0; i < n; i += 3 {
			publish(i, i+1, 2, "upsert")
		}
		for i := 5; i < n; i += 10 {
			publish(i, i+1, 3, "delete")
		}
	}()
	start := time.Now()
	out := runToEnd(t, s, "backup (resumed)", args)
	took := time.Since(start)
	<-updates
	t.Logf("backup resumed after SIGKILL while ingesting: %s\n%s", took.Round(time.Millisecond), out)
	backedUp, shards := manifestPoints(t, dir)
	if shards != 1 {
		t.Errorf("the manifest records %d shards, want the source's 1", shards)
	}
	register := backupRegister(t, filepath.Join(dir, "docs", "register.jsonl.zst"))
	s.waitDrained(5 * time.Minute)
	worker.signal(t, syscall.SIGTERM)

	// Qdrant and the version register are wiped.
	s.dropCollection("docs")
	if err := s.js.DeleteStream(t.Context(), "RAG_VERSIONS"); err != nil {
		t.Fatal(err)
	}

	t.Run("cluster", func(t *testing.T) {
		nodes := qdranttest.StartCluster(t, 3)
		c := attach(t, s.nats.ClientURL(), nodes[0], append(chunking, "RAGPIPE_SHARDS=3", "RAGPIPE_REPLICATION_FACTOR=2")...)
		start := time.Now()
		out := runToEnd(t, c, "restore", []string{"restore", "--from", dir, "--to", nodes[0].URL(), "--state", filepath.Join(t.TempDir(), "state")})
		t.Logf("restore into a three-node cluster: %s\n%s", time.Since(start).Round(time.Millisecond), tail(out, 3))
		info, err := c.qc.GetCollectionInfo(t.Context(), "docs")
		if err != nil {
			t.Fatal(err)
		}
		if p := info.GetConfig().GetParams(); p.GetShardNumber() != 3 || p.GetReplicationFactor() != 2 {
			t.Errorf("restored layout: %d shards, replication %d; want the target's 3 and 2", p.GetShardNumber(), p.GetReplicationFactor())
		}
		restored := qdrantDocs(c)
		corpus.checkWhole(t, restored, backedUp)
		c.startWorker()
		late := corpus.afterwards(publishTo(t, c.js, r, corpus), restored, register, n)
		c.waitDrained(5 * time.Minute)
		corpus.checkAfterwards(t, restored, qdrantDocs(c), late)
	})

	t.Run("embedded", func(t *testing.T) {
		data := filepath.Join(t.TempDir(), "data")
		url := fmt.Sprintf("nats://127.0.0.1:%d", natstest.FreePort(t))
		d := &system{t: t, env: append([]string{"NATS_URL=" + url, "QDRANT_URL=", "RAGPIPE_HTTP_ADDR=127.0.0.1:0",
			"RAGPIPE_FLUSH_INTERVAL=5ms", "RAGPIPE_DATA_DIR=" + data}, chunking...)}
		start := time.Now()
		out := runToEnd(t, d, "restore", []string{"restore", "--from", dir, "--to", data, "--state", filepath.Join(t.TempDir(), "state")})
		t.Logf("restore into the embedded store: %s\n%s", time.Since(start).Round(time.Millisecond), tail(out, 3))
		restored := embeddedDocs(t, filepath.Join(data, "vectors"))
		corpus.checkWhole(t, restored, backedUp)

		dev := d.start("dev", "", []string{"dev"})
		waitLogged(t, dev, "worker consuming")
		nc, err := nats.Connect(url)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		if d.js, err = jetstream.New(nc); err != nil {
			t.Fatal(err)
		}
		late := corpus.afterwards(publishTo(t, d.js, r, corpus), restored, register, n)
		d.waitDrained(5 * time.Minute)
		if code := dev.signal(t, syscall.SIGTERM); code != 0 {
			t.Fatalf("ragpipe dev exited %d", code)
		}
		now := embeddedDocs(t, filepath.Join(data, "vectors"))
		corpus.checkAfterwards(t, restored, now, late)

		// A backup of the stopped dev's data directory reads its store and
		// the register of its NATS.
		again := filepath.Join(t.TempDir(), "again")
		runToEnd(t, d, "backup of dev", []string{"backup", "--from", data, "--to", again})
		want := map[string]int{}
		for key, chunks := range now {
			user, _, _ := strings.Cut(key, "/")
			want[user] += len(chunks)
		}
		if got, _ := manifestPoints(t, again); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("backup of dev: points per tenant %v, the store holds %v", got, want)
		}
		if reg := backupRegister(t, filepath.Join(again, "docs", "register.jsonl.zst")); len(reg) < len(now) {
			t.Fatalf("backup of dev: %d register entries for %d documents", len(reg), len(now))
		}
	})
}

// runToEnd runs a ragpipe command to its end and returns its output,
// failing the test unless it exits 0.
func runToEnd(t *testing.T, s *system, name string, args []string) string {
	t.Helper()
	p := s.start(name, "", args)
	select {
	case <-p.done:
	case <-time.After(10 * time.Minute):
		t.Fatalf("%s still running after 10 minutes", name)
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("%s exited %d:\n%s", name, code, tail(p.log.String(), 30))
	}
	return p.log.String()
}

// publishTo returns a publisher of events to js that records them in corpus.
func publishTo(t *testing.T, js jetstream.JetStream, r *rand.Rand, corpus backupCorpus) func(i int, v uint64, op string) {
	return func(i int, v uint64, op string) {
		t.Helper()
		doc, user := fmt.Sprint("doc-", i), users[i%len(users)]
		body := map[string]any{"doc_id": doc, "version": v, "op": op}
		if op == "upsert" {
			body["text"] = fmt.Sprintf("%s version %d. %s", doc, v, text(r, 100+r.IntN(500)))
		}
		data, _ := json.Marshal(body)
		if _, err := js.Publish(context.Background(), "rag.ingest."+user+".docs", data); err != nil {
			t.Fatal(err)
		}
		if v > 3 {
			if op == "delete" {
				corpus[user+"/"+doc][v] = ""
			} else {
				corpus[user+"/"+doc][v] = body["text"].(string)
			}
		}
	}
}

// afterwards publishes, after a restore, newer events (upserts of documents
// 0-99 at version 10, deletes of 100-149 at version 11) and late ones older
// than the backup (version 1 again of documents restored at a later version,
// or absent from the backup with a later version in its register), and
// returns the late documents.
func (c backupCorpus) afterwards(publish func(i int, v uint64, op string), restored map[string][]storedChunk, register map[string]uint64, n int) []int {
	for i := range 100 {
		publish(i, 10, "upsert")
	}
	for i := 100; i < 150; i++ {
		publish(i, 11, "delete")
	}
	var late []int
	for i := 150; i < n && len(late) < 200; i++ {
		user, doc := users[i%len(users)], fmt.Sprint("doc-", i)
		ch := restored[user+"/"+doc]
		if len(ch) > 0 && ch[0].version > 1 || len(ch) == 0 && register[lww.Key("docs", user, doc)] > 1 {
			publish(i, 1, "upsert")
			late = append(late, i)
		}
	}
	return late
}

// checkWhole checks that every stored document is whole at one of its
// published versions, and that the counts per tenant are the backup's.
func (c backupCorpus) checkWhole(t *testing.T, docs map[string][]storedChunk, want map[string]int) {
	t.Helper()
	got := map[string]int{}
	for key, chunks := range docs {
		user, _, _ := strings.Cut(key, "/")
		got[user] += len(chunks)
		v, n := chunks[0].version, chunks[0].count
		txt, ok := c[key][v]
		if !ok || txt == "" || len(chunks) != n {
			t.Fatalf("%s: %d chunks of version %d (chunk_count %d), published: %v", key, len(chunks), v, n, ok)
		}
		for i, ch := range chunks {
			if ch.index != i || ch.count != n || ch.version != v || !strings.Contains(txt, ch.text[:min(len(ch.text), 40)]) {
				t.Fatalf("%s: chunk %d is %+v, not chunk %d of %d of version %d", key, i, ch, i, n, v)
			}
		}
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("points per tenant: %v, the backup's %v", got, want)
	}
}

// checkAfterwards checks the events published after a restore: documents
// 0-99 at version 10, 100-149 gone, the late documents as restored.
func (c backupCorpus) checkAfterwards(t *testing.T, restored, now map[string][]storedChunk, late []int) {
	t.Helper()
	key := func(i int) string { return users[i%len(users)] + "/" + fmt.Sprint("doc-", i) }
	for i := range 100 {
		if ch := now[key(i)]; len(ch) == 0 || ch[0].version != 10 {
			t.Fatalf("%s: newer event not applied: %+v", key(i), ch)
		}
	}
	for i := 100; i < 150; i++ {
		if ch := now[key(i)]; len(ch) != 0 {
			t.Fatalf("%s: newer delete not applied: %+v", key(i), ch)
		}
	}
	for _, i := range late {
		if a, b := fmt.Sprint(restored[key(i)]), fmt.Sprint(now[key(i)]); a != b {
			t.Fatalf("%s: a late event older than the backup changed it: %s -> %s", key(i), a, b)
		}
	}
}

// qdrantDocs reads every stored chunk of docs, by user/doc_id in chunk order.
func qdrantDocs(s *system) map[string][]storedChunk {
	out := map[string][]storedChunk{}
	for _, p := range s.stored("docs") {
		key := p["user_id"].(string) + "/" + p["doc_id"].(string)
		out[key] = append(out[key], storedChunk{int(p["chunk_index"].(int64)), int(p["chunk_count"].(int64)),
			uint64(p["version"].(int64)), p["text"].(string)})
	}
	return sortChunks(out)
}

// embeddedDocs reads every stored chunk of docs in an embedded store.
func embeddedDocs(t *testing.T, dir string) map[string][]storedChunk {
	t.Helper()
	l, err := localstore.Open(t.Context(), localstore.Config{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	out := map[string][]storedChunk{}
	var pts []pipeline.Point
	for after := ""; ; {
		pts, after, err = l.Scroll(t.Context(), "docs", after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pts {
			key := p.UserID + "/" + p.DocID
			out[key] = append(out[key], storedChunk{p.ChunkIndex, p.ChunkCount, p.Version, p.Text})
		}
		if after == "" {
			return sortChunks(out)
		}
	}
}

func sortChunks(docs map[string][]storedChunk) map[string][]storedChunk {
	for _, chunks := range docs {
		for i := range chunks {
			for j := i + 1; j < len(chunks); j++ {
				if chunks[j].index < chunks[i].index {
					chunks[i], chunks[j] = chunks[j], chunks[i]
				}
			}
		}
	}
	return docs
}

// backupRegister reads the version register entries of a backup.
func backupRegister(t *testing.T, path string) map[string]uint64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := zstd.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	defer zr.Close()
	out := map[string]uint64{}
	for dec := json.NewDecoder(zr); dec.More(); {
		var e struct {
			Key     string `json:"key"`
			Version uint64 `json:"version"`
		}
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		out[e.Key] = e.Version
	}
	return out
}

// TestBackupRestoreEncrypted backs up an encrypted collection: the backup
// holds the tenants' wrapped keys and no clear text, nor the master key.
// Qdrant, the register and the keyring are wiped; a restore without the
// key file is refused, one with it brings everything back, and searches
// return the texts in clear.
func TestBackupRestoreEncrypted(t *testing.T) {
	key := keyFile(t)
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine", key)
	s.createStreams()
	s.publish(secretEvents("docs"))
	s.startWorker()
	s.waitDrained(time.Minute)

	dir := filepath.Join(t.TempDir(), "backup")
	runToEnd(t, s, "backup", []string{"backup", "--to", dir})
	master, err := os.ReadFile(strings.TrimPrefix(key, "RAGPIPE_ENCRYPTION_KEY_FILE="))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "keys.jsonl.zst")); err != nil {
		t.Fatalf("no wrapped keys in the backup: %v", err)
	}
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.HasSuffix(path, ".zst") {
			zr, err := zstd.NewReader(bytes.NewReader(data))
			if err != nil {
				return err
			}
			data, err = io.ReadAll(zr)
			zr.Close()
			if err != nil {
				return err
			}
		}
		if w, ok := containsSecret(data); ok {
			t.Errorf("%s holds %q in clear", path, w)
		}
		if bytes.Contains(data, bytes.TrimSpace(master)) {
			t.Errorf("%s holds the master key", path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	s.dropCollection("docs")
	for _, stream := range []string{"RAG_VERSIONS", "KV_RAG_KEYS"} {
		if err := s.js.DeleteStream(t.Context(), stream); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(t.TempDir(), "state")
	refused := s.start("restore", "", []string{"restore", "--from", dir, "--to", s.qdrant.URL(), "--state", state},
		"RAGPIPE_ENCRYPTION_KEY_FILE=")
	<-refused.done
	if code := refused.cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(refused.log.String(), "wrapped data keys") {
		t.Fatalf("restore without the key file exited %d:\n%s", code, refused.log.String())
	}
	runToEnd(t, s, "restore", []string{"restore", "--from", dir, "--to", s.qdrant.URL(), "--state", state})

	s.startSearcher("searcher", nil)
	client := s.searchClient()
	for _, d := range secretDocs {
		reply, err := client.Search(t.Context(), d.user, "docs", search.SearchRequest{Query: d.text, TopK: 3})
		if err != nil {
			t.Fatal(err)
		}
		if len(reply.Hits) == 0 || reply.Hits[0].DocID != d.doc || reply.Hits[0].Text != d.text {
			t.Errorf("%s/%s after the restore: hits %+v, want the document first, in clear", d.user, d.doc, reply.Hits)
		}
	}
}

// manifestPoints reads the points per tenant and the shards of a backup's
// one collection from its manifest.
func manifestPoints(t *testing.T, dir string) (map[string]int, int) {
	t.Helper()
	var m struct {
		Collections []struct {
			Tenants map[string]struct{ Points int } `json:"tenants"`
			Layout  struct{ Shards int }            `json:"layout"`
		} `json:"collections"`
	}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil || json.Unmarshal(data, &m) != nil || len(m.Collections) != 1 {
		t.Fatalf("manifest: %v\n%s", err, data)
	}
	out := map[string]int{}
	for u, c := range m.Collections[0].Tenants {
		out[u] = c.Points
	}
	return out, m.Collections[0].Layout.Shards
}
