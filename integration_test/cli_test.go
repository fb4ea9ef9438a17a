package integration_test

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
)

// run runs the ragpipe binary to completion with env added to a clean
// environment and returns its exit code and combined output.
func run(t testing.TB, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary, args...)
	cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	cmd.Dir = t.TempDir()
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), string(out)
}

// TestHelpAndBadSettings: every command answers --help with exit 0; bad
// settings stop a command with a one-line reason naming the variable, and
// never echo a secret.
func TestHelpAndBadSettings(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--help"}, "publish"},
		{[]string{"help", "worker"}, "RAGPIPE_MAX_DELIVER"},
		{[]string{"worker", "--help"}, "QDRANT_API_KEY"},
		{[]string{"publish", "--help"}, "-collection"},
	} {
		code, out := run(t, nil, c.args...)
		if code != 0 || !strings.Contains(out, c.want) {
			t.Errorf("ragpipe %v: exit %d, output lacks %q:\n%s", c.args, code, c.want, out)
		}
	}
	for _, c := range []struct {
		env  []string
		want string
	}{
		{[]string{"RAGPIPE_CHUNK_SIZE=0"}, "RAGPIPE_CHUNK_SIZE=0"},
		{[]string{"QDRANT_URL=ftp://qdrant:6334"}, "QDRANT_URL"},
		{[]string{"RAGPIPE_COLLECTIONS=docs:12:sideways"}, "RAGPIPE_COLLECTIONS"},
		{[]string{"NATS_URL=nats://u:hunter2@host:4222 x", "NATS_TOKEN=hunter2", "RAGPIPE_MAX_DELIVER=0"}, "RAGPIPE_MAX_DELIVER"},
	} {
		code, out := run(t, c.env, "worker")
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if code == 0 || len(lines) != 1 || !strings.Contains(out, c.want) || strings.Contains(out, "hunter2") {
			t.Errorf("ragpipe worker with %v: exit %d, want non-zero and one line naming %s without secrets:\n%s", c.env, code, c.want, out)
		}
	}
	if code, _ := run(t, nil, "frobnicate"); code == 0 {
		t.Error("unknown command exited 0")
	}
}

// TestPublish publishes a directory (one document per file), a JSON-lines
// file and a delete with `ragpipe publish`, and checks what is stored.
func TestPublish(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine")...)
	s.startWorker()
	dir := t.TempDir()
	files := map[string]string{
		"readme.md":          "ragpipe publishes files.",
		"ec2/i-0abc.txt":     "m5.xlarge in eu-west-1, tagged env=prod.",
		"rds/orders.txt":     "postgres 16, multi-AZ, owner payments.",
		".hidden/secret.txt": "never published",
		"binary.bin":         "\xff\xfe\x00garbage",
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	lines := filepath.Join(t.TempDir(), "events.jsonl")
	if err := os.WriteFile(lines, []byte(`{"doc_id":"chat/1","text":"hello from bob","user_id":"bob","collection":"docs"}

{"doc_id":"chat/2","text":"hello from alice","metadata":{"kind":"chat"}}
not json
`), 0o644); err != nil {
		t.Fatal(err)
	}
	publish := func(args ...string) string {
		t.Helper()
		p := s.start("publish", dir, append([]string{"publish"}, args...))
		select {
		case <-p.done:
		case <-time.After(time.Minute):
			t.Fatal("publish did not finish")
		}
		if p.err != nil {
			t.Fatalf("publish %v: %v\n%s", args, p.err, p.log.String())
		}
		return p.log.String()
	}
	args := []string{"--user", "alice", "--collection", "docs", "--meta", "team=platform", "."}
	out := publish(append(args, lines)...)
	if !strings.Contains(out, "published 5 events") || !strings.Contains(out, "5 stored") || !strings.Contains(out, "2 skipped") {
		t.Errorf("summary: %s", out)
	}
	// A later publish of the same bytes is a new publish (CONTRACT §2): only
	// a retry of one publish may be dropped as a duplicate.
	if out := publish(args...); !strings.Contains(out, "3 stored") {
		t.Errorf("republish within the duplicate window is stored again: %s", out)
	}
	s.waitDrained(time.Minute)
	// Run from the same directory, a file's doc_id is its path as given: the
	// relative path its directory's publish gave it.
	publish("--user", "alice", "--collection", "docs", "--op", "delete", "readme.md")
	s.waitDrained(time.Minute)

	got := map[string]string{}
	for _, p := range s.stored("docs") {
		got[fmt.Sprint(p["user_id"], "/", p["doc_id"])] = fmt.Sprint(p["text"], " ", p["metadata"])
	}
	want := map[string]string{
		"alice/ec2/i-0abc.txt": files["ec2/i-0abc.txt"] + " map[team:platform]",
		"alice/rds/orders.txt": files["rds/orders.txt"] + " map[team:platform]",
		"bob/chat/1":           "hello from bob map[]",
		"alice/chat/2":         "hello from alice map[kind:chat]",
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stored\n%v\nwant\n%v", got, want)
	}
}

// TestHealthAndMetrics checks /healthz, /readyz (which fails while Qdrant is
// down and recovers with it) and that /metrics counts a known workload.
func TestHealthAndMetrics(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:8:cosine")
	w := s.startWorker()
	base := "http://" + httpAddr(t, w)
	var events []event
	for i := range 30 {
		events = append(events, event{user: "alice", collection: "docs", body: map[string]any{"doc_id": fmt.Sprint(i), "text": "text"}})
	}
	for i := range 4 {
		events = append(events, event{user: "alice", collection: "docs", raw: []byte(fmt.Sprint("garbage ", i))})
	}
	s.publish(events)
	s.waitDrained(time.Minute)

	metrics := get(t, base+"/metrics", 200)
	for _, want := range []string{
		`ragpipe_events_total{collection="docs",outcome="acked"} 30`,
		`ragpipe_events_total{collection="docs",outcome="dead_lettered"} 4`,
		`ragpipe_consumer_pending`,
		`ragpipe_batch_size_count`,
		`ragpipe_chunks_embedded_total{collection="docs"} 30`,
		`ragpipe_upsert_seconds_count{collection="docs"}`,
		`ragpipe_embed_seconds_count{collection="docs"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	get(t, base+"/healthz", 200)
	get(t, base+"/readyz", 200)
	s.qdrant.Kill(t)
	checkfor.Until(t, 30*time.Second, "/readyz failing", func() error { return status(base+"/readyz", 503, "qdrant") })
	s.qdrant.Restart(t)
	checkfor.Until(t, 30*time.Second, "/readyz recovering", func() error { return status(base+"/readyz", 200, "ready") })
}

var addrRE = regexp.MustCompile(`"addr":"([0-9.:]+)"[^\n]*serving /healthz`)

// httpAddr returns the address the process serves /metrics on, from its log.
func httpAddr(t testing.TB, p *process) string {
	t.Helper()
	var addr string
	checkfor.Until(t, 10*time.Second, "HTTP address logged", func() error {
		m := addrRE.FindStringSubmatch(p.log.String())
		if m == nil {
			return fmt.Errorf("not logged")
		}
		addr = m[1]
		return nil
	})
	return addr
}

// get fetches url, expects the status code and returns the body.
func get(t testing.TB, url string, code int) string {
	t.Helper()
	body, err := fetch(url, code, "")
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return body
}

// status reports whether url answers code with a body containing want.
func status(url string, code int, want string) error {
	_, err := fetch(url, code, want)
	return err
}

func fetch(url string, code int, want string) (string, error) {
	resp, err := http.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", err
	}
	if resp.StatusCode != code || !strings.Contains(string(body), want) {
		return "", fmt.Errorf("%d %q, want %d with %q", resp.StatusCode, body, code, want)
	}
	return string(body), nil
}
