package integration_test

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestPublishWait: `ragpipe publish --wait` returns only when what it
// published is searchable, so the test reads the exact state the moment the
// command exits: after upserts published before any worker runs; after a
// delete of a document whose upsert is still queued (not stored, yet not
// done either); after deletes of stored documents. An event that is
// dead-lettered (refused by the decoder, or by the store for its vector's
// length) ends the wait with a non-zero exit and the reason; with no search
// service the wait ends at --wait-timeout, non-zero.
func TestPublishWait(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine")...)
	s.createStreams()
	searcher := s.startSearcher("searcher", nil)
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus")
	if err := os.Mkdir(corpus, 0o755); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(14, 1))
	m := newModel(t, 300, 30, 64)
	var names []string
	texts := map[string]string{}
	for i := range 60 {
		name := fmt.Sprintf("doc-%02d.txt", i)
		names = append(names, name)
		texts[name] = text(r, 200+r.IntN(700))
		writeFile(t, filepath.Join(corpus, name), texts[name])
	}
	slices.Sort(names) // the order a directory is published in
	writeFile(t, filepath.Join(dir, "queued.txt"), texts[names[0]])

	// No worker runs yet.
	s.mustPublish(dir, "--user", "alice", "--collection", "docs", "queued.txt")
	m.add("docs", "alice", "queued.txt", "upsert", texts[names[0]], nil, s.lastSeq())
	del := s.start("publish", dir, []string{"publish", "--user", "alice", "--collection", "docs", "--op", "delete", "--wait", "queued.txt"})
	waitLogged(t, del, "published 1 events")
	m.add("docs", "alice", "queued.txt", "delete", "", nil, s.lastSeq())
	first := s.lastSeq() + 1
	pub := s.start("publish", corpus, []string{"publish", "--user", "alice", "--collection", "docs", "--wait", "."})
	waitLogged(t, pub, "published 60 events")
	if out := del.log.String(); strings.Contains(out, "waited") {
		t.Fatalf("the delete's wait ended before any worker ran:\n%s", out)
	}
	s.startWorker()
	for _, c := range []struct {
		p    *process
		want string
	}{{del, "1 of 1 documents searchable, 0 events failed"}, {pub, "60 of 60 documents searchable, 0 events failed"}} {
		select {
		case <-c.p.done:
		case <-time.After(time.Minute):
			t.Fatal("publish --wait did not return")
		}
		if out := c.p.log.String(); c.p.err != nil || !strings.Contains(out, c.want) {
			t.Fatalf("publish --wait: %v\n%s", c.p.err, out)
		}
	}
	for i, name := range names {
		m.add("docs", "alice", name, "upsert", texts[name], nil, first+uint64(i))
	}
	s.assertStored("docs", m.want("docs"))

	deleted := names[:5]
	first = s.lastSeq() + 1
	out := s.mustPublish(corpus, append([]string{"--user", "alice", "--collection", "docs", "--op", "delete", "--wait"}, deleted...)...)
	if !strings.Contains(out, "5 of 5 documents searchable") {
		t.Fatalf("publish --wait --op delete: %s", out)
	}
	for i, name := range deleted {
		m.add("docs", "alice", name, "delete", "", nil, first+uint64(i))
	}
	s.assertStored("docs", m.want("docs"))

	lines := filepath.Join(dir, "events.jsonl")
	writeFile(t, lines, `{"doc_id":"good","text":"a good line"}
{"doc_id":"huge-version","text":"x","version":9007199254740992}
{"doc_id":"short-vector","text":"x","vector":[0.1,0.2,0.3]}
`)
	code, out := s.publishCmd(dir, "--user", "alice", "--collection", "docs", "--wait", lines)
	if code == 0 || !strings.Contains(out, "1 of 2 documents searchable, 2 events failed") ||
		!strings.Contains(out, "2^53-1") || !strings.Contains(out, `doc_id="short-vector"`) || !strings.Contains(out, "dimensions") {
		t.Fatalf("publish --wait of failing events: exit %d, want non-zero naming both failures:\n%s", code, out)
	}
	m.add("docs", "alice", "good", "upsert", "a good line", nil, s.lastSeq()-2)
	s.assertStored("docs", m.want("docs"))

	if code := searcher.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("searcher exited %d", code)
	}
	code, out = s.publishCmd(corpus, "--user", "alice", "--collection", "docs", "--wait", "--wait-timeout", "1s", names[5])
	if code == 0 || !strings.Contains(out, "not searchable yet") {
		t.Fatalf("publish --wait without a searcher: exit %d, want non-zero after the timeout:\n%s", code, out)
	}
}
