package search_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/telemetry"
)

const dims = 32

// fixture is the search service running in the test process against a real
// NATS server and a real Qdrant node, with a few documents of alice and bob.
type fixture struct {
	ns    *server.Server
	nc    *nats.Conn
	node  *qdranttest.Node
	store *qdrantstore.Store
	svc   *search.Service
	emb   *embedder.Hash
}

func newFixture(t *testing.T, mutate func(*search.Config)) *fixture {
	t.Helper()
	ns := natstest.Start(t)
	nc := natstest.Connect(t, ns)
	node := qdranttest.Start(t)
	log := zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.ErrorLevel)
	store, err := qdrantstore.New(t.Context(), qdrantstore.Config{
		Host: "127.0.0.1", Port: node.GRPCPort(), Logger: log,
		RetryInitialInterval: 20 * time.Millisecond, RetryMaxInterval: 200 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	emb, err := embedder.NewHash(dims)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{ns: ns, nc: nc, node: node, store: store, emb: emb}
	if err := store.EnsureCollection(t.Context(), pipeline.Collection{Name: "docs", Dims: dims}, true); err != nil {
		t.Fatal(err)
	}
	var writes []pipeline.DocWrite
	for _, user := range []string{"alice", "bob"} {
		for i, text := range []string{"the quick brown fox", "jumps over the lazy dog", "a stitch in time saves nine"} {
			doc := fmt.Sprint("doc-", i)
			vs, err := emb.Embed(t.Context(), []string{text})
			if err != nil {
				t.Fatal(err)
			}
			writes = append(writes, pipeline.DocWrite{UserID: user, DocID: doc, Version: 1, Points: []pipeline.Point{{
				ID: pipeline.PointID(user, doc, 0), Vector: vs[0], ChunkCount: 1, Text: text,
				Metadata: map[string]any{"owner": user, "n": int64(i)},
			}}})
		}
	}
	if err := store.Apply(t.Context(), "docs", writes); err != nil {
		t.Fatal(err)
	}
	cfg := search.Config{
		Conn: nc, Index: store, Embedder: func(string) search.Embedder { return emb },
		Metrics: telemetry.NewMetrics(), Logger: log,
	}
	if mutate != nil {
		mutate(&cfg)
	}
	f.svc, err = search.Start(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.svc.Stop(context.Background()) })
	return f
}

// request sends a raw body and returns the reply's code (200 without error
// headers), the error message and the body.
func (f *fixture) request(t *testing.T, subject, body string) (int, string, []byte) {
	t.Helper()
	msg, err := f.nc.Request(subject, []byte(body), 10*time.Second)
	if err != nil {
		t.Fatalf("request %s %s: %v", subject, body, err)
	}
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return 200, "", msg.Data
	}
	desc := msg.Header.Get(micro.ErrorHeader)
	var eb struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &eb); err != nil || eb.Error != desc || strings.ContainsAny(desc, "\r\n") {
		t.Errorf("%s %s: error body %q does not carry the one-line header message %q", subject, body, msg.Data, desc)
	}
	var n int
	fmt.Sscan(code, &n)
	return n, desc, msg.Data
}

// TestSearchServiceRequests checks the answer to every kind of request:
// valid ones, each invalid field (400, the message naming it), an unknown
// collection (404), and the tenant taken from the subject only.
func TestSearchServiceRequests(t *testing.T) {
	f := newFixture(t, nil)
	vec := func(n int) string {
		return "[" + strings.TrimSuffix(strings.Repeat("0.1,", n), ",") + "]"
	}
	tests := []struct {
		subject, body string
		code          int
		want          string // in the error message, or in the body of a 200
	}{
		{"rag.search.alice.docs", `{"query":"quick brown fox"}`, 200, `"doc_id":"doc-0"`},
		{"rag.search.alice.docs", `{"query":"fox","top_k":1,"filter":{"owner":"alice","n":[0,1]},"score_threshold":0.01}`, 200, `"hits":[{"doc_id":"doc-0"`},
		{"rag.search.alice.docs", `{"query":"fox","user_id":"alice","collection":"docs","unknown":{"x":1}}`, 200, `"took_ms"`},
		{"rag.search.alice.docs", `{"vector":` + vec(dims) + `,"top_k":100}`, 200, `"hits":[`},
		{"rag.search.alice.docs", `{"query":"fox","filter":{"owner":"bob"}}`, 200, `"hits":[]`},
		{"rag.search.alice.docs", `{"query":"fox","top_k":null,"filter":null}`, 200, `"hits":[`},
		{"rag.list.alice.docs", ``, 200, `"next_cursor":""`},
		{"rag.list.alice.docs", `{"limit":1000,"cursor":"","user_id":"alice"}`, 200, `"doc_id":"doc-2"`},

		{"rag.search.alice.docs", `not json`, 400, "not valid JSON"},
		{"rag.search.alice.docs", `[1,2]`, 400, "must be a JSON object"},
		{"rag.search.alice.docs", ``, 400, "query: required"},
		{"rag.search.alice.docs", `{}`, 400, "query: required"},
		{"rag.search.alice.docs", `{"query":"  "}`, 400, "query: required"},
		{"rag.search.alice.docs", `{"query":5}`, 400, "query: must be a string"},
		{"rag.search.alice.docs", `{"query":"x","top_k":0}`, 400, "top_k: must be an integer from 1 to 100, got 0"},
		{"rag.search.alice.docs", `{"query":"x","top_k":101}`, 400, "top_k"},
		{"rag.search.alice.docs", `{"query":"x","top_k":-1}`, 400, "top_k"},
		{"rag.search.alice.docs", `{"query":"x","top_k":2.5}`, 400, "top_k"},
		{"rag.search.alice.docs", `{"query":"x","top_k":"5"}`, 400, "top_k"},
		{"rag.search.alice.docs", `{"query":"x","user_id":"bob"}`, 400, `user_id: the body names "bob" but the subject is for "alice"`},
		{"rag.search.alice.docs", `{"query":"x","user_id":7}`, 400, "user_id: must be a string"},
		{"rag.search.alice.docs", `{"query":"x","collection":"other"}`, 400, "collection: the body names"},
		{"rag.search.alice.docs", `{"query":"x","filter":{"user_id":"bob"}}`, 400, `key "user_id" is not allowed`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"doc_id":"doc-0"}}`, 400, `key "doc_id" is not allowed`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"version":1}}`, 400, `key "version"`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"chunk_index":0}}`, 400, `key "chunk_index"`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"chunk_count":1}}`, 400, `key "chunk_count"`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"text":"fox"}}`, 400, `key "text"`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"metadata.owner":"bob"}}`, 400, "may not contain"},
		{"rag.search.alice.docs", `{"query":"x","filter":{"":"bob"}}`, 400, "empty key"},
		{"rag.search.alice.docs", `{"query":"x","filter":{"owner":null}}`, 400, `filter "owner": value is null`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"owner":{"a":1}}}`, 400, `filter "owner": value is an object`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"owner":[]}}`, 400, `filter "owner": an empty list`},
		{"rag.search.alice.docs", `{"query":"x","filter":{"owner":[["a"]]}}`, 400, `filter "owner": element 0 is an array`},
		{"rag.search.alice.docs", `{"query":"x","filter":["owner"]}`, 400, "filter: must be an object"},
		{"rag.search.alice.docs", `{"vector":[1,2]}`, 400, `vector: has 2 dimensions, collection "docs" has 32`},
		{"rag.search.alice.docs", `{"vector":"x"}`, 400, "vector: must be an array of numbers"},
		{"rag.search.alice.docs", `{"vector":[]}`, 400, "vector: must not be empty"},
		{"rag.search.alice.docs", `{"vector":[1e300]}`, 400, "vector: element 0 is out of float32 range"},
		{"rag.search.alice.docs", `{"query":"x","score_threshold":"high"}`, 400, "score_threshold: must be a number"},
		{"rag.search.bad!user.docs", `{"query":"x"}`, 400, `subject "rag.search.bad!user.docs"`},
		{"rag.search.alice.Docs", `{"query":"x"}`, 400, "subject"},
		{"rag.list.alice.docs", `{"limit":0}`, 400, "limit: must be an integer from 1 to 1000, got 0"},
		{"rag.list.alice.docs", `{"limit":1001}`, 400, "limit"},
		{"rag.list.alice.docs", `{"cursor":5}`, 400, "cursor: must be a string"},
		{"rag.list.alice.docs", `{"cursor":"bogus"}`, 400, "cursor: not a cursor"},
		{"rag.list.alice.docs", `{"user_id":"bob"}`, 400, "user_id: the body names"},

		{"rag.status.alice.docs", `{"doc_ids":["doc-1","nope","doc-0","doc-1"],"user_id":"alice"}`, 200, `{"docs":[` +
			`{"doc_id":"doc-1","stored":true,"version":1,"chunk_count":1},{"doc_id":"nope","stored":false},` +
			`{"doc_id":"doc-0","stored":true,"version":1,"chunk_count":1},{"doc_id":"doc-1","stored":true,"version":1,"chunk_count":1}]}`},
		{"rag.status.alice.docs", `{"doc_ids":["` + strings.Repeat("é", 256) + `"]}`, 200, `"stored":false`},
		{"rag.status.alice.docs", ``, 400, "doc_ids: required, an array of 1 to 1000 doc_ids"},
		{"rag.status.alice.docs", `{"doc_ids":null}`, 400, "doc_ids: required"},
		{"rag.status.alice.docs", `{"doc_ids":[]}`, 400, "doc_ids: must hold 1 to 1000 doc_ids, not 0"},
		{"rag.status.alice.docs", `{"doc_ids":[` + strings.Repeat(`"d",`, 1000) + `"d"]}`, 400, "not 1001"},
		{"rag.status.alice.docs", `{"doc_ids":"doc-0"}`, 400, "doc_ids: must be an array of strings, not a string"},
		{"rag.status.alice.docs", `{"doc_ids":["doc-0",5]}`, 400, "doc_ids: element 1 is a number; want a string"},
		{"rag.status.alice.docs", `{"doc_ids":[null]}`, 400, "doc_ids: element 0 is null"},
		{"rag.status.alice.docs", `{"doc_ids":[""]}`, 400, "doc_ids: element 0 is empty"},
		{"rag.status.alice.docs", `{"doc_ids":["\ud800"]}`, 400, "doc_ids: element 0 is not valid UTF-8"},
		{"rag.status.alice.docs", "{\"doc_ids\":[\"a\xffb\"]}", 400, "doc_ids: element 0 is not valid UTF-8"},
		{"rag.status.alice.docs", `{"doc_ids":["` + strings.Repeat("x", 513) + `"]}`, 400, "doc_ids: element 0 is 513 bytes, longer than 512"},
		{"rag.status.alice.docs", `{"doc_ids":["doc-0"],"user_id":"bob"}`, 400, "user_id: the body names"},
		{"rag.status.alice.docs", `{"doc_ids":["doc-0"],"collection":"other"}`, 400, "collection: the body names"},
		{"rag.status.bad!user.docs", `{"doc_ids":["doc-0"]}`, 400, "subject"},

		{"rag.search.alice.nope", `{"query":"x"}`, 404, `collection "nope" does not exist`},
		{"rag.list.alice.nope", `{}`, 404, `collection "nope" does not exist`},
		{"rag.status.alice.nope", `{"doc_ids":["doc-0"]}`, 404, `collection "nope" does not exist`},
	}
	for _, tt := range tests {
		t.Run(tt.subject+" "+tt.body, func(t *testing.T) {
			code, msg, body := f.request(t, tt.subject, tt.body)
			if code != tt.code {
				t.Fatalf("code %d (%s %s), want %d", code, msg, body, tt.code)
			}
			got := msg
			if code == 200 {
				got = string(body)
			}
			if !strings.Contains(got, tt.want) {
				t.Errorf("%q does not contain %q", got, tt.want)
			}
			if code == 200 && strings.Contains(string(body), `"owner":"bob"`) {
				t.Errorf("alice got bob's documents: %s", body)
			}
		})
	}
}

// TestSearchServiceClient checks the client: replies decoded, error replies
// as *search.Error, a private inbox prefix, and ErrNoSearcher.
func TestSearchServiceClient(t *testing.T) {
	f := newFixture(t, nil)
	for _, inbox := range []string{"", "_INBOX.alice"} {
		c := &search.Client{Conn: f.nc, InboxPrefix: inbox}
		reply, err := c.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "lazy dog", TopK: 2,
			Filter: map[string]any{"n": []any{1, 2}}})
		if err != nil || len(reply.Hits) != 2 || reply.Hits[0].DocID != "doc-1" || reply.Hits[0].Metadata["owner"] != "alice" {
			t.Errorf("inbox %q: search %+v, %v", inbox, reply, err)
		}
		list, err := c.List(t.Context(), "alice", "docs", search.ListRequest{Limit: 2})
		if err != nil || len(list.Docs) != 2 || list.NextCursor == "" {
			t.Fatalf("inbox %q: list %+v, %v", inbox, list, err)
		}
		rest, err := c.List(t.Context(), "alice", "docs", search.ListRequest{Cursor: list.NextCursor})
		if err != nil || len(rest.Docs) != 1 || rest.NextCursor != "" {
			t.Errorf("inbox %q: second page %+v, %v", inbox, rest, err)
		}
		_, err = c.Search(t.Context(), "alice", "missing", search.SearchRequest{Query: "x"})
		var e *search.Error
		if !errors.As(err, &e) || e.Code != search.CodeNotFound {
			t.Errorf("inbox %q: unknown collection: %v, want a 404 *search.Error", inbox, err)
		}
		_, err = c.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "x", TopK: 500})
		if !errors.As(err, &e) || e.Code != search.CodeBadRequest || !strings.Contains(e.Message, "top_k") {
			t.Errorf("inbox %q: top_k 500: %v, want a 400 naming top_k", inbox, err)
		}
	}
	_, err := (&search.Client{Conn: f.nc, Prefix: "other"}).Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "x"})
	if !errors.Is(err, search.ErrNoSearcher) {
		t.Errorf("nobody on other.search: %v, want ErrNoSearcher", err)
	}
	_, err = (&search.Client{Conn: f.nc, Prefix: "other", InboxPrefix: "_INBOX.alice"}).Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "x"})
	if !errors.Is(err, search.ErrNoSearcher) {
		t.Errorf("nobody on other.search, private inbox: %v, want ErrNoSearcher", err)
	}
}

var semver = regexp.MustCompile(`^\d+\.\d+\.\d+$`)

// TestSearchServiceDiscovery checks $SRV.PING, $SRV.INFO and $SRV.STATS.
func TestSearchServiceDiscovery(t *testing.T) {
	f := newFixture(t, nil)
	f.request(t, "rag.search.alice.docs", `{"query":"fox"}`)
	f.request(t, "rag.search.alice.docs", `{}`)

	var ping micro.Ping
	discover(t, f.nc, "$SRV.PING", &ping)
	if ping.Name != search.ServiceName || !semver.MatchString(ping.Version) || ping.ID != f.svc.Info().ID {
		t.Errorf("ping %+v", ping)
	}
	var info micro.Info
	discover(t, f.nc, "$SRV.INFO.ragpipe-search", &info)
	subjects := map[string]string{}
	for _, e := range info.Endpoints {
		subjects[e.Name] = e.Subject + " " + e.QueueGroup
	}
	if info.Type != micro.InfoResponseType || info.Description == "" || subjects["search"] != "rag.search.*.* q" ||
		subjects["list"] != "rag.list.*.* q" || subjects["status"] != "rag.status.*.* q" {
		t.Errorf("info %+v", info)
	}
	var stats micro.Stats
	discover(t, f.nc, "$SRV.STATS.ragpipe-search."+info.ID, &stats)
	if stats.Type != micro.StatsResponseType || stats.ID != info.ID || stats.Started.IsZero() || len(stats.Endpoints) != 3 {
		t.Errorf("stats %+v", stats)
	}
	for _, e := range stats.Endpoints {
		var data struct {
			InFlight    int `json:"in_flight"`
			Concurrency int `json:"concurrency"`
		}
		if err := json.Unmarshal(e.Data, &data); err != nil {
			t.Fatal(err)
		}
		switch e.Name {
		case "search":
			if e.NumRequests != 2 || e.NumErrors != 1 || !strings.HasPrefix(e.LastError, "400:query: required") ||
				e.ProcessingTime <= 0 || e.AverageProcessingTime != e.ProcessingTime/2 || data.Concurrency != 32 || e.QueueGroup != "q" {
				t.Errorf("search stats %+v %+v, want 2 requests, 1 error (400), concurrency 32", e, data)
			}
		default:
			if e.NumRequests != 0 || e.NumErrors != 0 {
				t.Errorf("%s stats %+v", e.Name, e)
			}
		}
	}
	// Every instance answers the subjects for all services and for its name.
	for _, subject := range []string{"$SRV.PING", "$SRV.INFO", "$SRV.STATS.ragpipe-search"} {
		var id struct{ ID, Type string }
		discover(t, f.nc, subject, &id)
		if id.ID != info.ID || !strings.HasPrefix(id.Type, "io.nats.micro.v1.") {
			t.Errorf("%s: %+v", subject, id)
		}
	}
}

func discover(t *testing.T, nc *nats.Conn, subject string, v any) {
	t.Helper()
	msg, err := nc.Request(subject, nil, 5*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
	if err := json.Unmarshal(msg.Data, v); err != nil {
		t.Fatalf("%s: %v", subject, err)
	}
}

// TestSearchServiceUnavailableAndStop kills Qdrant: requests are answered
// 503 by their deadline (never left to time out), and handled in parallel
// up to Concurrency. Stop, called while requests are still held and queued,
// answers every one of them before it returns; afterwards nobody answers.
func TestSearchServiceUnavailableAndStop(t *testing.T) {
	const timeout = 1500 * time.Millisecond
	f := newFixture(t, func(c *search.Config) { c.Concurrency = 2; c.Timeout = timeout })
	f.node.Kill(t)

	const n = 6
	type result struct {
		err  error
		took time.Duration
	}
	results := make(chan result, n)
	client := &search.Client{Conn: f.nc}
	for range n {
		go func() {
			start := time.Now()
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := client.Search(ctx, "alice", "docs", search.SearchRequest{Query: "fox"})
			results <- result{err, time.Since(start)}
		}()
	}
	// Stop once the server has delivered every request to the service: two
	// are held by the handlers, the others wait.
	checkfor.Until(t, 10*time.Second, "condition", func() error {
		if got := delivered(t, f.ns, "rag.search.*.*"); got != n {
			return fmt.Errorf("%d requests delivered", got)
		}
		return nil
	})
	stopped := time.Now()
	if err := f.svc.Stop(t.Context()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if took := time.Since(stopped); took > 2*timeout {
		t.Errorf("Stop took %s, want at most the request deadline", took)
	}
	// The service is gone: a request it did not answer would time out (10s).
	for range n {
		select {
		case r := <-results:
			var e *search.Error
			if !errors.As(r.err, &e) || e.Code != search.CodeUnavailable {
				t.Errorf("request with Qdrant down: %v, want a 503 reply", r.err)
			}
			if r.took > timeout+time.Second {
				t.Errorf("503 after %s, want by the %s deadline", r.took, timeout)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a request received before Stop was not answered")
		}
	}
	_, err := client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "fox"})
	if !errors.Is(err, search.ErrNoSearcher) {
		t.Errorf("after Stop: %v, want ErrNoSearcher", err)
	}
}

// delivered is how many messages the server delivered to the subscriptions
// on subject.
func delivered(t *testing.T, ns *server.Server, subject string) int64 {
	t.Helper()
	connz, err := ns.Connz(&server.ConnzOptions{Subscriptions: true, SubscriptionsDetail: true})
	if err != nil {
		t.Fatal(err)
	}
	var n int64
	for _, c := range connz.Conns {
		for _, sub := range c.SubsDetail {
			if sub.Subject == subject {
				n += sub.Msgs
			}
		}
	}
	return n
}

// Example_filterKeys shows which filter keys a search accepts.
func Example_filterKeys() {
	for _, key := range []string{"env", "user_id", "metadata.env"} {
		fmt.Printf("%s: %q\n", key, pipeline.ValidFilterKey(key))
	}
	// Output:
	// env: ""
	// user_id: "key \"user_id\" is not allowed: filters name metadata keys, and the tenant comes from the subject"
	// metadata.env: "key \"metadata.env\" may not contain . [ ] or \" (metadata is flat)"
}

// TestSearchServiceReadyOnStart: a request sent the moment Start returns,
// from another connection, finds the service (its subscriptions reached the
// server before Start returned).
func TestSearchServiceReadyOnStart(t *testing.T) {
	f := newFixture(t, nil)
	for i := range 30 {
		prefix := fmt.Sprint("p", i)
		svc, err := search.Start(t.Context(), search.Config{
			Conn: natstest.Connect(t, f.ns), Index: f.store, Prefix: prefix,
			Embedder: func(string) search.Embedder { return f.emb }, Metrics: telemetry.NewMetrics(),
		})
		if err != nil {
			t.Fatal(err)
		}
		if code, msg, _ := f.request(t, prefix+".search.alice.docs", `{"query":"fox"}`); code != 200 {
			t.Fatalf("request right after Start: %d %s", code, msg)
		}
		_ = svc.Stop(t.Context())
	}
}

// TestSearchRefusedQuery checks that a query text the embedding service
// refuses (OpenAI's 400 context_length_exceeded) is answered 400 with the
// service's reason, not 503 or 500: retrying cannot help the client.
func TestSearchRefusedQuery(t *testing.T) {
	srv := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: dims, MaxInputChars: 50})
	remote, err := embedder.NewOpenAI(embedder.Config{URL: srv.URL, Model: "m", Dimensions: dims})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(c *search.Config) {
		c.Embedder = func(string) search.Embedder { return remote }
	})
	code, msg, _ := f.request(t, "rag.search.alice.docs", `{"query":"`+strings.Repeat("long ", 20)+`"}`)
	if code != search.CodeBadRequest || !strings.Contains(msg, "maximum context length") {
		t.Errorf("over-long query: %d %q, want 400 with the service's reason", code, msg)
	}
	if code, msg, _ := f.request(t, "rag.search.alice.docs", `{"query":"fox"}`); code != 200 {
		t.Errorf("short query: %d %q, want 200", code, msg)
	}
}
