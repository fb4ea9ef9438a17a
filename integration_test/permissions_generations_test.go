package integration_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/search"
)

// TestPermissionsGenerations runs the worker and the searcher under
// deploy/nats/nats.conf with encryption at rest, reindexes a collection
// with `ragpipe reindex` run as the worker user (operators use the
// worker's credentials), and proves that: the worker writes the tenants'
// keys and the generations' States; the searcher reads both (it answers
// with clear text, and follows the switch to a generation of other
// dimensions); neither logs a permission violation; the searcher can
// write neither bucket; and a tenant can touch neither.
func TestPermissionsGenerations(t *testing.T) {
	key := keyFile(t)
	s, url := deploySystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine", key)
	asWorker := []string{"NATS_USER=worker", "NATS_PASSWORD=" + workerPassword}
	// The searcher starts first: the generations' bucket does not exist
	// yet, which it must find out without a permission violation.
	searcher := s.startSearcher("searcher", nil, "NATS_USER=searcher", "NATS_PASSWORD="+searcherPassword)
	worker := s.startWorker(asWorker...)

	alice, err := connectAs(t, url, "alice", alicePassword, "_INBOX.alice")
	if err != nil {
		t.Fatal(err)
	}
	const secret = "the private notes of alice about the harbour"
	body, _ := json.Marshal(map[string]any{"doc_id": "alice-doc", "text": secret})
	if _, err := jetstreamOf(t, alice).Publish(t.Context(), "rag.ingest.alice.docs", body); err != nil {
		t.Fatal(err)
	}
	s.waitDrained(time.Minute)
	assertSealed(t, s, "docs")

	padStates(t, s.js)

	// Before the reindex: generation 1, 64 dimensions.
	client := &search.Client{Conn: alice.Conn}
	if err := searchClear(t, client, 64, secret); err != nil {
		t.Fatalf("before the reindex: %v", err)
	}
	if err := searchClear(t, client, 32, secret); err == nil {
		t.Fatal("before the reindex, a vector of 32 dimensions was served")
	}

	// The reindex CLI writes the Job as the worker user; the worker builds
	// the generation (opening the sealed texts with the tenant's key,
	// sealing them again), checks and switches it.
	cli := s.start("reindex", "", []string{"reindex", "--collection", "docs", "--dims", "32"}, asWorker...)
	select {
	case <-cli.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("ragpipe reindex still running after 2 minutes")
	}
	if code := cli.cmd.ProcessState.ExitCode(); code != 0 {
		t.Fatalf("ragpipe reindex exited %d:\n%s", code, tail(cli.log.String(), 30))
	}
	assertSealed(t, s, generation.Name("docs", 2))

	// The searcher follows the switch: 32 dimensions now, clear text.
	checkfor.Until(t, 30*time.Second, "the searcher serving generation 2", func() error {
		return searchClear(t, client, 32, secret)
	})
	if err := searchClear(t, client, 64, secret); err == nil {
		t.Error("after the switch, a vector of 64 dimensions was served")
	}
	reply, err := client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "harbour notes"})
	if err != nil || len(reply.Hits) != 1 || reply.Hits[0].Text != secret {
		t.Errorf("search by text after the switch: %+v, %v; want alice's document in clear text", reply, err)
	}

	// The searcher's user reads the State from the stream leader as the
	// searcher does when a generation it had cached is gone, reads the
	// keys, and can write neither.
	searcherReads(t, url, strings.TrimPrefix(key, "RAGPIPE_ENCRYPTION_KEY_FILE="))

	// Stopped, both delete their watches' consumers.
	for name, p := range map[string]*process{"worker": worker, "searcher": searcher} {
		if code := p.signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("the %s exited %d after SIGTERM, want 0", name, code)
		}
		if log := strings.ToLower(p.log.String()); strings.Contains(log, "permissions violation") {
			t.Errorf("the %s logged a permission violation:\n%s", name, tail(p.log.String(), 30))
		}
	}

	// A tenant can touch neither bucket: no State written, no key read.
	for _, subject := range []string{
		"$KV.RAG_GENERATIONS.docs",
		"$KV.RAG_KEYS.alice",
		"$JS.API.DIRECT.GET.KV_RAG_KEYS.$KV.RAG_KEYS.alice",
		"$JS.API.STREAM.MSG.GET.KV_RAG_KEYS",
		"$JS.API.STREAM.MSG.GET.KV_RAG_GENERATIONS",
		"$JS.API.CONSUMER.CREATE.KV_RAG_KEYS.peek.$KV.RAG_KEYS.>",
		"$JS.API.STREAM.INFO.KV_RAG_KEYS",
	} {
		if err := alice.Publish(subject, []byte(`{"last_by_subj":"$KV.RAG_KEYS.alice"}`)); err != nil {
			t.Fatal(err)
		}
		alice.refused(t, "Publish", subject)
	}
	for _, subject := range []string{"$KV.RAG_KEYS.>", "$KV.RAG_GENERATIONS.>"} {
		if _, err := alice.SubscribeSync(subject); err != nil {
			t.Fatal(err)
		}
		alice.refused(t, "Subscription", subject)
	}
}

// searcherReads opens the generations and the keyring as the searcher's
// user (master keys from keyFile) with the calls the searcher makes (Registry read-only: watch and
// Current; keyring: Lookup) and proves they work without a permission
// violation, and that the user may write neither bucket nor administer
// their streams.
func searcherReads(t *testing.T, url, keyFile string) {
	t.Helper()
	c, err := connectAs(t, url, "searcher", searcherPassword, "")
	if err != nil {
		t.Fatal(err)
	}
	js, err := jetstream.New(c.Conn)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	reg, err := generation.Open(ctx, js, generation.Config{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	want := generation.Name("docs", 2)
	checkfor.Until(t, 10*time.Second, "the searcher's cached State", func() error {
		if st, ok := reg.Cached("docs"); !ok || st.Serving.Name != want {
			return fmt.Errorf("cached %+v, %v; want serving %s", st.Serving, ok, want)
		}
		return nil
	})
	if st, ok, err := reg.Current(ctx, "docs"); err != nil || !ok || st.Serving.Name != want {
		t.Errorf("Current as the searcher: %+v, %v, %v; want serving %s", st.Serving, ok, err, want)
	}

	master, err := keyring.LoadMasterKeys(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Open(ctx, js, master, keyring.Config{})
	if err != nil {
		t.Fatalf("keyring as the searcher: %v", err)
	}
	if _, err := keys.Lookup(ctx, "alice"); err != nil {
		t.Errorf("Lookup of alice's key as the searcher: %v", err)
	}
	if _, err := keys.Lookup(ctx, "carol"); !errors.Is(err, keyring.ErrNoKey) {
		t.Errorf("Lookup of a tenant without a key as the searcher: %v, want ErrNoKey", err)
	}
	_ = keys.Close()
	_ = reg.Close()
	if err := c.Flush(); err != nil { // the server has answered every request before
		t.Fatal(err)
	}
	select {
	case err := <-c.errs:
		t.Errorf("the searcher's reads: %v", err)
	case <-time.After(500 * time.Millisecond):
	}

	for _, subject := range []string{
		"$KV.RAG_GENERATIONS.docs",
		"$KV.RAG_KEYS.carol",
		"$JS.API.STREAM.DELETE.KV_RAG_KEYS",
		"$JS.API.STREAM.PURGE.KV_RAG_GENERATIONS",
		"$JS.API.STREAM.UPDATE.KV_RAG_GENERATIONS",
		"$JS.API.STREAM.MSG.DELETE.KV_RAG_KEYS",
		"$JS.API.STREAM.INFO.RAG_INGEST",
		"$JS.API.CONSUMER.CREATE.RAG_INGEST.peek",
	} {
		if err := c.Publish(subject, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		c.refused(t, "Publish", subject)
	}
}

// padStates puts, as the worker's user, States of 300 collections that
// do not exist, padded to 4 KiB each: more than a watch's consumer sends
// before it asks the client for flow control, so that every watch of the
// bucket (the running processes' and the ones opened later) answers it.
func padStates(t *testing.T, js jetstream.JetStream) {
	t.Helper()
	kv, err := js.KeyValue(t.Context(), generation.Bucket)
	if err != nil {
		t.Fatal(err)
	}
	padding := strings.Repeat("x", 4096)
	for i := range 300 {
		name := fmt.Sprint("padding", i)
		data, _ := json.Marshal(map[string]any{"serving": map[string]any{"name": name, "number": 0}, "padding": padding})
		if _, err := kv.Put(t.Context(), name, data); err != nil {
			t.Fatal(err)
		}
	}
}

// searchClear searches alice's documents in docs with a vector of dims
// dimensions and returns an error unless the one hit is her document in
// clear text.
func searchClear(t *testing.T, client *search.Client, dims int, text string) error {
	t.Helper()
	vector := make([]float32, dims)
	for i := range vector {
		vector[i] = 1
	}
	reply, err := client.Search(t.Context(), "alice", "docs", search.SearchRequest{Vector: vector})
	switch {
	case err != nil:
		return err
	case len(reply.Hits) != 1 || reply.Hits[0].Text != text:
		return fmt.Errorf("hits %+v, want alice's document in clear text", reply.Hits)
	}
	return nil
}

// assertSealed fails the test unless every point of the Qdrant collection
// name holds a sealed text.
func assertSealed(t *testing.T, s *system, name string) {
	t.Helper()
	points := s.stored(name)
	if len(points) == 0 {
		t.Fatalf("%s holds no point", name)
	}
	for id, p := range points {
		if text, _ := p["text"].(string); !keyring.IsSealed(text) {
			t.Errorf("%s: point %s holds text %q, want it sealed", name, id, text)
		}
	}
}
