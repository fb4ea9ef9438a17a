package search_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// legacyIndex is the embedded store, except that its collection "legacy"
// answers as a collection created before keyword vectors does: dense and
// auto searches by vector, keyword and hybrid ones with
// pipeline.ErrNoKeywords.
type legacyIndex struct{ *localstore.Store }

func (l legacyIndex) Search(ctx context.Context, collection string, q pipeline.Query) ([]pipeline.Hit, error) {
	if collection == "legacy" {
		if q.Mode == pipeline.ModeKeyword || q.Mode == pipeline.ModeHybrid {
			return nil, pipeline.ErrNoKeywords
		}
		q.Mode, q.Keywords = pipeline.ModeDense, nil
	}
	return l.Store.Search(ctx, collection, q)
}

// Documents of the mode tests: alice's and bob's, with the same identifier.
var modeDocs = []struct{ user, doc, text string }{
	{"alice", "quota", "calls fail with ErrQuotaExceeded when the project runs out of quota"},
	{"alice", "costs", "monthly cloud cost review with the finance team"},
	{"alice", "deploy", "deployment checklist for the payments service"},
	{"bob", "quota", "bob's notes: ErrQuotaExceeded again, the quota is spent"},
}

// modeFixture is the search service over the embedded store, with
// modeDocs in the collections "kw" and "legacy".
type modeFixture struct {
	nc     *nats.Conn
	emb    *countingEmbedder
	client *search.Client
}

// startLocal starts a NATS server and opens the embedded store in a
// temporary directory, both stopped when tb ends; log writes errors to tb.
func startLocal(tb testing.TB) (nc *nats.Conn, store *localstore.Store, log zerolog.Logger) {
	tb.Helper()
	nc = natstest.Connect(tb, natstest.Start(tb))
	log = zerolog.New(zerolog.NewTestWriter(tb)).Level(zerolog.ErrorLevel)
	store, err := localstore.Open(tb.Context(), localstore.Config{Dir: tb.TempDir(), Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	return nc, store, log
}

func newModeFixture(t *testing.T) *modeFixture {
	t.Helper()
	nc, store, log := startLocal(t)
	hash, err := embedder.NewHash(dims)
	if err != nil {
		t.Fatal(err)
	}
	emb := &countingEmbedder{Embedder: hash}
	for _, coll := range []string{"kw", "legacy"} {
		if err := store.EnsureCollection(t.Context(), pipeline.Collection{Name: coll, Dims: dims}, true); err != nil {
			t.Fatal(err)
		}
		var ws []pipeline.DocWrite
		for _, d := range modeDocs {
			vs, err := hash.Embed(t.Context(), []string{d.text})
			if err != nil {
				t.Fatal(err)
			}
			ws = append(ws, pipeline.DocWrite{UserID: d.user, DocID: d.doc, Version: 1, Points: []pipeline.Point{{
				ID: pipeline.PointID(d.user, d.doc, 0), Vector: vs[0], ChunkCount: 1, Text: d.text,
				Keywords: pipeline.Keywords(d.text),
			}}})
		}
		if err := store.Apply(t.Context(), coll, ws); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := search.Start(t.Context(), search.Config{
		Conn: nc, Index: legacyIndex{store}, Embedder: func(string) search.Embedder { return emb }, Logger: log,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = svc.Stop(context.Background()) })
	return &modeFixture{nc: nc, emb: emb, client: &search.Client{Conn: nc}}
}

// TestSearchServiceModes checks the mode field: each mode's answer, the
// modes a search by vector allows, keyword searches that embed nothing,
// and the 400s of bad modes and of collections without keyword vectors.
func TestSearchServiceModes(t *testing.T) {
	f := newModeFixture(t)
	vec := `[` + strings.TrimSuffix(strings.Repeat("0.1,", dims), ",") + `]`
	for _, tc := range []struct {
		subject, body string
		code          int
		want          string // in the error message, or in the body of a 200
		embeds        bool   // whether the query is embedded
	}{
		{"rag.search.alice.kw", `{"query":"ErrQuotaExceeded","mode":"keyword"}`, 200, `"hits":[{"doc_id":"quota"`, false},
		{"rag.search.alice.kw", `{"query":"ErrQuotaExceeded","mode":"hybrid"}`, 200, `"hits":[{"doc_id":"quota"`, true},
		{"rag.search.alice.kw", `{"query":"ErrQuotaExceeded","mode":"dense"}`, 200, `"hits":[{`, true},
		{"rag.search.alice.kw", `{"query":"ErrQuotaExceeded","mode":""}`, 200, `"hits":[{"doc_id":"quota"`, true},
		{"rag.search.alice.kw", `{"query":"ErrQuotaExceeded","mode":null}`, 200, `"hits":[{"doc_id":"quota"`, true},
		{"rag.search.alice.kw", `{"query":"the","mode":"keyword"}`, 200, `"hits":[]`, false},
		{"rag.search.alice.kw", `{"vector":` + vec + `}`, 200, `"hits":[{`, false},
		{"rag.search.alice.kw", `{"vector":` + vec + `,"mode":"dense"}`, 200, `"hits":[{`, false},
		{"rag.search.alice.kw", `{"vector":` + vec + `,"mode":"keyword"}`, 400, `mode "keyword": a search by vector is dense only`, false},
		{"rag.search.alice.kw", `{"vector":` + vec + `,"mode":"hybrid"}`, 400, `mode "hybrid": a search by vector is dense only`, false},
		{"rag.search.alice.kw", `{"query":"x","mode":"fuzzy"}`, 400, `mode "fuzzy": want hybrid, dense or keyword`, false},
		{"rag.search.alice.kw", `{"query":"x","mode":"Hybrid"}`, 400, `mode "Hybrid": want hybrid, dense or keyword`, false},
		{"rag.search.alice.kw", `{"query":"x","mode":1}`, 400, "mode: must be a string", false},
		{"rag.search.alice.legacy", `{"query":"ErrQuotaExceeded","mode":"keyword"}`, 400, "mode: " + pipeline.ErrNoKeywords.Error(), false},
		{"rag.search.alice.legacy", `{"query":"ErrQuotaExceeded","mode":"hybrid"}`, 400, "the collection has no keyword vectors", true},
		{"rag.search.alice.legacy", `{"query":"ErrQuotaExceeded"}`, 200, `"hits":[{`, true},
		{"rag.search.alice.nope", `{"query":"x","mode":"keyword"}`, 404, `collection "nope" does not exist`, false},
	} {
		t.Run(tc.subject+" "+tc.body, func(t *testing.T) {
			before := f.emb.calls.Load()
			code, got, body := (&fixture{nc: f.nc}).request(t, tc.subject, tc.body)
			if code == 200 {
				got = string(body)
			}
			if code != tc.code || !strings.Contains(got, tc.want) {
				t.Errorf("%d %s, want %d with %q", code, got, tc.code, tc.want)
			}
			if embedded := f.emb.calls.Load() > before; embedded != tc.embeds {
				t.Errorf("query embedded: %v, want %v", embedded, tc.embeds)
			}
		})
	}
}

// TestSearchServiceModesTenantIsolation checks through the service, in
// every mode, that a tenant's search never returns another's chunks,
// though they hold the same words.
func TestSearchServiceModesTenantIsolation(t *testing.T) {
	f := newModeFixture(t)
	for _, mode := range []string{"", "hybrid", "dense", "keyword"} {
		for _, user := range []string{"alice", "bob", "carol"} {
			reply, err := f.client.Search(t.Context(), user, "kw", search.SearchRequest{Query: "ErrQuotaExceeded quota", Mode: mode, TopK: 10})
			if err != nil {
				t.Fatalf("%s, mode %q: %v", user, mode, err)
			}
			var want []string
			for _, d := range modeDocs {
				if d.user == user {
					want = append(want, d.text)
				}
			}
			found := false
			for _, h := range reply.Hits {
				if !slices.Contains(want, h.Text) {
					t.Errorf("%s, mode %q: hit %+v is not the tenant's", user, mode, h)
				}
				found = found || strings.Contains(h.Text, "ErrQuotaExceeded")
			}
			if user != "carol" && !found {
				t.Errorf("%s, mode %q: the tenant's chunk with the identifier not found: %+v", user, mode, reply.Hits)
			}
		}
	}
	// The client sends the mode, and returns the refusal of a bad one.
	_, err := f.client.Search(t.Context(), "alice", "kw", search.SearchRequest{Query: "x", Mode: "semantic"})
	var e *search.Error
	if !errors.As(err, &e) || e.Code != search.CodeBadRequest || !strings.Contains(e.Message, "mode") {
		t.Errorf("mode semantic: %v, want a 400 naming mode", err)
	}
	body, _ := json.Marshal(search.SearchRequest{Query: "x", Mode: "keyword"})
	if !strings.Contains(string(body), `"mode":"keyword"`) {
		t.Errorf("request body %s carries no mode", body)
	}
}
