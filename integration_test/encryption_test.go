package integration_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// secretWords are the words of the encryption tests' documents: none may
// appear anywhere at rest.
var secretWords = []string{
	"zanzibar", "quetzalcoatl", "marzipan", "xylophone", "kumquat", "bergamot",
	"fjordland", "wolframite", "gazpacho", "obsidian", "periwinkle", "tamarind",
}

// secretDocs are the documents of the encryption tests, by tenant and doc
// id: alice and bob share the text of "shared".
var secretDocs = []struct{ user, doc, text string }{
	{"alice", "d1", "Zanzibar quetzalcoatl marzipan xylophone."},
	{"alice", "d2", "Kumquat bergamot fjordland wolframite."},
	{"alice", "shared", "Gazpacho obsidian periwinkle tamarind."},
	{"bob", "shared", "Gazpacho obsidian periwinkle tamarind."},
}

// keyFile writes a master key file and returns the setting naming it.
func keyFile(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "master.key")
	if err := os.WriteFile(path, []byte(keyring.NewMasterKey()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return "RAGPIPE_ENCRYPTION_KEY_FILE=" + path
}

// secretEvents are the upserts of secretDocs in collection, with clear
// metadata.
func secretEvents(collection string) []event {
	events := make([]event, len(secretDocs))
	for i, d := range secretDocs {
		events[i] = event{user: d.user, collection: collection, body: map[string]any{
			"doc_id": d.doc, "text": d.text, "version": 1, "metadata": map[string]any{"team": "ops"},
		}}
	}
	return events
}

// unkeyedTermIDs are the keyword vector indices of secretWords without
// encryption.
func unkeyedTermIDs() map[uint32]string {
	ids := map[uint32]string{}
	for _, w := range secretWords {
		for _, id := range pipeline.QueryKeywords(w).Indices {
			ids[id] = w
		}
	}
	return ids
}

// containsSecret returns the first of secretWords in data, case folded.
func containsSecret(data []byte) (string, bool) {
	lower := bytes.ToLower(data)
	for _, w := range secretWords {
		if bytes.Contains(lower, []byte(w)) {
			return w, true
		}
	}
	return "", false
}

// restPoint is a point as Qdrant's REST API returns it.
type restPoint struct {
	ID      string                     `json:"id"`
	Payload map[string]json.RawMessage `json:"payload"`
	Vector  map[string]json.RawMessage `json:"vector"`
}

// restPoints reads every point of collection, payload and vectors, through
// Qdrant's REST API.
func (s *system) restPoints(collection string) []restPoint {
	s.t.Helper()
	body, _ := json.Marshal(map[string]any{"limit": 10000, "with_payload": true, "with_vector": true})
	resp, err := http.Post(s.qdrant.HTTPURL()+"/collections/"+collection+"/points/scroll", "application/json", bytes.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Result struct {
			Points []restPoint `json:"points"`
			Next   any         `json:"next_page_offset"`
		} `json:"result"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		s.t.Fatalf("scroll %s: %d %v", collection, resp.StatusCode, err)
	}
	if out.Result.Next != nil {
		s.t.Fatalf("scroll %s: more than one page", collection)
	}
	return out.Result.Points
}

// sparseIndices returns the indices of a point's sparse (keyword) vectors.
func (p restPoint) sparseIndices() []uint32 {
	var all []uint32
	for _, raw := range p.Vector {
		var sv struct {
			Indices []uint32 `json:"indices"`
		}
		if json.Unmarshal(raw, &sv) == nil {
			all = append(all, sv.Indices...)
		}
	}
	slices.Sort(all)
	return all
}

func (p restPoint) str(key string) string {
	var v string
	_ = json.Unmarshal(p.Payload[key], &v)
	return v
}

// TestEncryptionQdrant runs a worker and a searcher with a master key file
// against real Qdrant and NATS: Qdrant's REST API shows none of the
// documents' words in any payload field, text hashes are keyed, keyword
// indices are not the words' unkeyed term ids; two tenants' equal texts
// share no ciphertext, hash or term id; searches return the clear text in
// every mode; a ciphertext copied onto another point is left out; migrate
// copies the stored bytes as they are.
func TestEncryptionQdrant(t *testing.T) {
	fake := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 64})
	keys := keyFile(t)
	s := newSystem(t, append(openAIEnv(fake, "m", "k"), keys, "RAGPIPE_COLLECTIONS=docs:64:cosine")...)
	s.defaultEmbedder = true
	s.startWorker()
	s.publish(secretEvents("docs"))
	s.waitDrained(time.Minute)

	points := s.restPoints("docs")
	if len(points) != len(secretDocs) {
		t.Fatalf("%d points, want %d", len(points), len(secretDocs))
	}
	unkeyed := unkeyedTermIDs()
	byDoc := map[string]restPoint{}
	for _, p := range points {
		raw, _ := json.Marshal(p.Payload)
		if w, found := containsSecret(raw); found {
			t.Errorf("point %s: payload holds %q: %s", p.ID, w, raw)
		}
		text, hash := p.str("text"), p.str("text_hash")
		if !keyring.IsSealed(text) {
			t.Errorf("point %s: text %q is not sealed", p.ID, text)
		}
		d := secretDocs[slices.IndexFunc(secretDocs, func(d struct{ user, doc, text string }) bool {
			return d.user == p.str("user_id") && d.doc == p.str("doc_id")
		})]
		if hash == "" || hash == pipeline.TextHash("openai/m", d.text) {
			t.Errorf("point %s: text hash %q is missing or unkeyed", p.ID, hash)
		}
		if !strings.Contains(string(raw), `"team":"ops"`) {
			t.Errorf("point %s: metadata not in clear: %s", p.ID, raw)
		}
		indices := p.sparseIndices()
		if len(indices) != 4 {
			t.Errorf("point %s: keyword indices %v, want its 4 words'", p.ID, indices)
		}
		for _, id := range indices {
			if w, ok := unkeyed[id]; ok {
				t.Errorf("point %s: keyword index %d is the unkeyed term id of %q", p.ID, id, w)
			}
		}
		byDoc[d.user+"/"+d.doc] = p
	}
	a, b := byDoc["alice/shared"], byDoc["bob/shared"]
	if a.str("text") == b.str("text") || a.str("text_hash") == b.str("text_hash") || slices.Equal(a.sparseIndices(), b.sparseIndices()) {
		t.Errorf("alice's and bob's equal texts share a ciphertext, hash or term ids")
	}

	s.startSearcher("searcher", nil)
	client := s.searchClient()
	find := func(user, query, mode string) []pipeline.Hit {
		t.Helper()
		reply, err := client.Search(t.Context(), user, "docs", search.SearchRequest{Query: query, Mode: mode, TopK: 10})
		if err != nil {
			t.Fatalf("%s, mode %q: %v", user, mode, err)
		}
		return reply.Hits
	}
	for _, mode := range []string{"", "hybrid", "dense", "keyword"} {
		for _, d := range secretDocs {
			hits := find(d.user, d.text, mode)
			if len(hits) == 0 || hits[0].DocID != d.doc || hits[0].Text != d.text {
				t.Errorf("%s/%s, mode %q: hits %+v, want the document first, in clear", d.user, d.doc, mode, hits)
			}
			for _, h := range hits {
				if keyring.IsSealed(h.Text) {
					t.Errorf("%s, mode %q: hit %s returned sealed", d.user, mode, h.DocID)
				}
			}
		}
	}

	// d1's ciphertext copied onto d2: d2 no longer opens, d1 still does.
	_, err := s.qc.SetPayload(t.Context(), &qdrant.SetPayloadPoints{
		CollectionName: "docs", Wait: qdrant.PtrOf(true),
		Payload:        qdrant.NewValueMap(map[string]any{"text": byDoc["alice/d1"].str("text")}),
		PointsSelector: qdrant.NewPointsSelector(qdrant.NewID(pipeline.PointID("alice", "d2", 0))),
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, mode := range []string{"dense", "keyword", "hybrid"} {
		hits := find("alice", secretDocs[1].text, mode)
		if slices.ContainsFunc(hits, func(h pipeline.Hit) bool { return h.DocID == "d2" }) {
			t.Errorf("mode %s: the point holding another point's ciphertext is returned: %+v", mode, hits)
		}
	}
	hits := find("alice", secretDocs[0].text, "dense")
	if len(hits) == 0 || hits[0].DocID != "d1" || hits[0].Text != secretDocs[0].text {
		t.Errorf("d1 after the copy: %+v", hits)
	}
	// A tenant that never published: nothing by keyword, a normal dense reply.
	for _, mode := range []string{"keyword", "dense", "hybrid"} {
		if hits := find("carol", secretDocs[0].text, mode); len(hits) != 0 {
			t.Errorf("carol, mode %s: %+v", mode, hits)
		}
	}
	s.assertMigratedAsStored(keys)
}

// assertMigratedAsStored copies "docs" into an embedded store with `ragpipe
// migrate` and checks that every point's stored text, text hash and keyword
// indices are copied as they are, so that the texts open there as they did
// in Qdrant (the seal binds the ragpipe collection name, which migrate
// keeps).
func (s *system) assertMigratedAsStored(keySetting string) {
	t := s.t
	dir := t.TempDir()
	p := s.start("migrate", dir, []string{"migrate", "--from", s.qdrant.URL(), "--to", filepath.Join(dir, "vectors"), "--collection", "docs"})
	<-p.done
	if p.err != nil {
		t.Fatalf("migrate: %v\n%s", p.err, p.log.String())
	}
	store, err := localstore.Open(t.Context(), localstore.Config{Dir: filepath.Join(dir, "vectors")})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	master, err := keyring.LoadMasterKeys(strings.TrimPrefix(keySetting, "RAGPIPE_ENCRYPTION_KEY_FILE="))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyring.Open(t.Context(), s.js, master, keyring.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer keys.Close()
	copied, _, err := store.Scroll(t.Context(), "docs", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]restPoint{}
	for _, p := range s.restPoints("docs") {
		want[p.ID] = p
	}
	if len(copied) != len(want) {
		t.Fatalf("%d points migrated, want %d", len(copied), len(want))
	}
	for _, p := range copied {
		q := want[p.ID]
		if p.Text != q.str("text") || p.TextHash != q.str("text_hash") || p.Keywords == nil || !slices.Equal(p.Keywords.Indices, q.sparseIndices()) {
			t.Errorf("point %s/%s: migrated as %q %q %v, stored as %q %q %v", p.UserID, p.DocID,
				p.Text, p.TextHash, p.Keywords, q.str("text"), q.str("text_hash"), q.sparseIndices())
		}
		key, err := keys.Lookup(t.Context(), p.UserID)
		if err != nil {
			t.Fatal(err)
		}
		_, err = key.Open("docs", p.DocID, p.ChunkIndex, p.Text)
		if moved := p.UserID == "alice" && p.DocID == "d2"; (err == nil) == moved {
			t.Errorf("point %s/%s: migrated text opens with error %v; want it to open unless it holds the moved ciphertext", p.UserID, p.DocID, err)
		}
	}
}

// TestEncryptionDev runs `ragpipe dev` with a master key file: searches
// return clear texts; a dead-lettered event holds its original body in
// JetStream; and once stopped, no file of the data directory (the embedded
// store and JetStream's own store, dead letters included) holds any of the
// documents' words.
func TestEncryptionDev(t *testing.T) {
	d := newDev(t, keyFile(t), "RAGPIPE_COLLECTIONS=docs:64:cosine", "RAGPIPE_EMBEDDER=hash")
	bad := event{user: "alice", collection: "docs", raw: []byte(`{"doc_id":"bad","text":"marzipan kumquat","version":"one"}`)}
	d.publish(append(secretEvents("docs"), bad))
	d.waitDrained(time.Minute)
	dead := d.deadLetters()
	if len(dead) != 1 || !bytes.Contains(dead[0].body, []byte("marzipan")) {
		t.Fatalf("dead letters %v, want the bad event's body", dead)
	}
	for _, mode := range []string{"", "hybrid", "dense", "keyword"} {
		for _, doc := range secretDocs {
			var reply search.SearchReply
			d.request(fmt.Sprintf("rag.search.%s.docs", doc.user), map[string]any{"query": doc.text, "mode": mode}, &reply)
			if len(reply.Hits) == 0 || reply.Hits[0].DocID != doc.doc || reply.Hits[0].Text != doc.text {
				t.Errorf("%s/%s, mode %q: %+v, want the document first, in clear", doc.user, doc.doc, mode, reply.Hits)
			}
		}
	}
	if code := d.proc.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("ragpipe dev exited %d after SIGTERM, want 0", code)
	}
	files := 0
	err := filepath.WalkDir(filepath.Join(d.dir, "data"), func(path string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if w, found := containsSecret(data); found {
			t.Errorf("%s holds %q", path, w)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 5 {
		t.Fatalf("only %d files in the data directory", files)
	}
	// Restarted with the same key, everything is readable again.
	d.start()
	var reply search.SearchReply
	d.request("rag.search.alice.docs", map[string]any{"query": secretDocs[0].text, "mode": "keyword"}, &reply)
	if len(reply.Hits) == 0 || reply.Hits[0].Text != secretDocs[0].text {
		t.Errorf("after a restart: %+v", reply.Hits)
	}
}
