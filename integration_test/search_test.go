package integration_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/qdrant/go-client/qdrant"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

// startSearcher runs `ragpipe searcher args...` and waits until its service
// is registered.
func (s *system) startSearcher(name string, args []string, env ...string) *process {
	s.t.Helper()
	p := s.start(name, "", append([]string{"searcher"}, args...), env...)
	checkfor.Until(s.t, 60*time.Second, name+" serving", func() error {
		select {
		case <-p.done:
			return fmt.Errorf("%s exited: %v", name, p.err)
		default:
		}
		if !strings.Contains(p.log.String(), "search service started") {
			return errors.New("not started yet")
		}
		return nil
	})
	return p
}

// searchClient is a search client on a connection of the test's own.
func (s *system) searchClient() *search.Client {
	return &search.Client{Conn: natstest.Connect(s.t, s.nats)}
}

// ask sends a raw request body and returns the reply's status code (200
// without error headers), error message and body. Error replies must follow
// the micro convention: both headers, and the message in the body.
func ask(t testing.TB, nc *nats.Conn, subject, body string, timeout time.Duration) (int, string, []byte, error) {
	t.Helper()
	msg, err := nc.Request(subject, []byte(body), timeout)
	if err != nil {
		return 0, "", nil, err
	}
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return 200, "", msg.Data, nil
	}
	desc := msg.Header.Get(micro.ErrorHeader)
	var eb struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &eb); err != nil || eb.Error != desc || desc == "" {
		t.Errorf("%s: error reply %q, header %q: want {\"error\": <the header>}", subject, msg.Data, desc)
	}
	var n int
	fmt.Sscan(code, &n)
	return n, desc, msg.Data, nil
}

// docIDs returns the distinct documents of hits, in order of first hit.
func docIDs(hits []pipeline.Hit) []string {
	var ids []string
	for _, h := range hits {
		if !slices.Contains(ids, h.DocID) {
			ids = append(ids, h.DocID)
		}
	}
	return ids
}

// Documents for the search quality test: prose from a small vocabulary with
// a document's own host, instance, team, region, ticket and bucket.
var (
	fillerWords = strings.Fields(`the a of to and in for on with by from after before during when which that
is was will be has have not all each every some other more most only also then than
service services cluster queue bucket database cache gateway index shard replica snapshot backup
pipeline job alert dashboard certificate token secret volume node pod deployment release migration
schema incident ticket runbook budget quota report export request response latency error timeout
retry connection memory disk network storage stream message event log metric version config
primary secondary stale healthy degraded encrypted public private nightly hourly regional global
internal external slow fast large small idle busy failed running stopped pending
runs serves stores replicates rotates monitors throttles caches indexes exports restores scales
drains migrates pages alerts checks updates deletes creates blocks allows reviews merges`)
	teamNames   = strings.Fields(`payments search identity platform growth checkout ledger fraud messaging storage observability mobile data security billing`)
	systemNames = strings.Fields(`orders billing catalog inventory auth notifications reports shipping pricing profiles sessions`)
	regionNames = strings.Fields(`us-east-1 us-west-2 eu-west-1 eu-central-1 ap-southeast-1 ap-northeast-1 sa-east-1 ca-central-1`)
)

// docProfile holds the distinctive tokens of one quality-test document.
type docProfile struct{ host, instance, team, region, ticket, bucket string }

func newDocProfile(r *rand.Rand) docProfile {
	sys := systemNames[r.IntN(len(systemNames))]
	return docProfile{
		host:     fmt.Sprintf("%s-%d.internal", sys, r.IntN(90)),
		instance: fmt.Sprintf("i-%012x", r.Uint64()>>16),
		team:     teamNames[r.IntN(len(teamNames))],
		region:   regionNames[r.IntN(len(regionNames))],
		ticket:   fmt.Sprintf("OPS-%04d", r.IntN(10000)),
		bucket:   fmt.Sprintf("%s-%s-%04x", sys, []string{"logs", "exports", "assets"}[r.IntN(3)], r.IntN(1<<16)),
	}
}

func filler(r *rand.Rand, n int) string {
	w := make([]string, n)
	for i := range w {
		w[i] = fillerWords[r.IntN(len(fillerWords))]
	}
	return strings.Join(w, " ")
}

// sentence is one sentence of p's document: about one in three is plain
// prose without any of its distinctive tokens.
func (p docProfile) sentence(r *rand.Rand) string {
	switch r.IntN(6) {
	case 0:
		return fmt.Sprintf("Host %s runs instance %s in %s for the %s team.", p.host, p.instance, p.region, p.team)
	case 1:
		return fmt.Sprintf("Ticket %s says %s on %s.", p.ticket, filler(r, 5), p.host)
	case 2:
		return fmt.Sprintf("Nightly %s of %s go to bucket %s.", filler(r, 2), p.instance, p.bucket)
	case 3:
		return fmt.Sprintf("The %s team %s %s in %s.", p.team, filler(r, 4), p.bucket, p.region)
	default:
		return strings.ToUpper(filler(r, 1)) + " " + filler(r, 6+r.IntN(10)) + "."
	}
}

// TestSearchQuality ingests 300 documents with the worker and the built-in
// hash embedder (1024 dimensions) and queries rag.search with one sentence
// of each: the document must rank first in at least 95% of the queries.
func TestSearchQuality(t *testing.T) {
	const (
		docs    = 300
		minTop1 = 0.95
	)
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:1024:cosine")
	s.startWorker()
	r := rand.New(rand.NewPCG(3, 1))
	events := make([]event, docs)
	queries := make([]string, docs)
	for d := range docs {
		p := newDocProfile(r)
		var sentences []string
		for range 4 + r.IntN(10) {
			sentences = append(sentences, p.sentence(r))
		}
		queries[d] = sentences[r.IntN(len(sentences))]
		events[d] = event{user: "alice", collection: "docs", body: map[string]any{
			"doc_id": fmt.Sprint("doc-", d), "text": strings.Join(sentences, " "),
		}}
	}
	s.publish(events)
	s.waitDrained(2 * time.Minute)
	s.startSearcher("searcher", nil)
	client := s.searchClient()

	var first atomic.Int64
	var g errgroup.Group
	g.SetLimit(4)
	for d := range docs {
		g.Go(func() error {
			reply, err := client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: queries[d], TopK: 3})
			if err != nil {
				return fmt.Errorf("query %d: %w", d, err)
			}
			if len(reply.Hits) > 0 && reply.Hits[0].DocID == fmt.Sprint("doc-", d) {
				first.Add(1)
			} else if testing.Verbose() {
				t.Logf("doc-%d not first for %q: %v", d, queries[d], docIDs(reply.Hits))
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	rate := float64(first.Load()) / docs
	t.Logf("the source document ranked first for %d of %d queries (%.1f%%)", first.Load(), docs, 100*rate)
	if rate < minTop1 {
		t.Errorf("top-1 rate %.3f, want >= %.2f", rate, minTop1)
	}
}

// TestSearchIsolation stores the same documents for five tenants (each with
// its owner in the metadata) plus a secret document per tenant, then sends
// thousands of randomized search and list requests from every tenant,
// including bodies that name another user, filter on user_id, filter on
// another tenant's metadata or query with the vector of another tenant's
// secret. No reply may hold anything of another tenant, and every request
// the contract refuses must be refused.
func TestSearchIsolation(t *testing.T) {
	const (
		shared   = 30
		requests = 3000
		dims     = 64
	)
	s := newSystem(t, fmt.Sprintf("RAGPIPE_COLLECTIONS=docs:%d:cosine", dims))
	s.startWorker()
	r := rand.New(rand.NewPCG(5, 6))
	texts := make([]string, shared)
	for i := range texts {
		texts[i] = text(r, 80+r.IntN(300))
	}
	secret := func(user string) string {
		return "The secret launch code of " + user + " is " + strings.ToLower(user) + "-7731."
	}
	var events []event
	for _, u := range users {
		for i, txt := range texts {
			events = append(events, event{user: u, collection: "docs", body: map[string]any{
				"doc_id": fmt.Sprint("doc-", i), "text": txt,
				"metadata": map[string]any{"owner": u, "n": i % 5, "env": []string{"prod", "dev"}[i%2]},
			}})
		}
		events = append(events, event{user: u, collection: "docs", body: map[string]any{
			"doc_id": "secret", "text": secret(u), "metadata": map[string]any{"owner": u},
		}})
	}
	s.publish(events)
	s.waitDrained(2 * time.Minute)
	s.startSearcher("searcher", nil)
	emb, err := embedder.NewHash(dims)
	if err != nil {
		t.Fatal(err)
	}
	secretVectors := map[string][]float32{}
	for _, u := range users {
		v, err := emb.Embed(t.Context(), []string{secret(u)})
		if err != nil {
			t.Fatal(err)
		}
		secretVectors[u] = v[0]
	}
	client := s.searchClient()
	forbidden := []string{"user_id", "doc_id", "version", "chunk_index", "chunk_count", "text"}

	var hitsChecked, refused, foreign atomic.Int64
	check := func(user string, meta map[string]any, text, what string) {
		hitsChecked.Add(1)
		if meta["owner"] != user || (strings.Contains(text, "secret launch code") && !strings.Contains(text, " "+user+" ")) {
			foreign.Add(1)
			t.Errorf("%s as %s returned %q of %v", what, user, text, meta)
		}
	}
	var g errgroup.Group
	g.SetLimit(8)
	for i := range requests {
		seed := r.Uint64()
		g.Go(func() error {
			r := rand.New(rand.NewPCG(seed, uint64(i)))
			ui := r.IntN(len(users))
			user, other := users[ui], users[(ui+1+r.IntN(len(users)-1))%len(users)]
			req := search.SearchRequest{Query: texts[r.IntN(shared)], TopK: 1 + r.IntN(pipeline.MaxTopK)}
			if r.IntN(3) == 0 {
				req.Query = "secret launch code of " + other
			}
			wantCode, wantAll := 200, false
			kind := r.IntN(10)
			switch kind {
			case 0:
				req.Filter = map[string]any{"owner": other}
			case 1:
				req.Filter = map[string]any{"owner": []any{user, other}, "n": []any{0, 1, 2, 3, 4}}
			case 2:
				req.Filter = map[string]any{forbidden[r.IntN(len(forbidden))]: []string{user, other}[r.IntN(2)]}
				wantCode = 400
			case 3:
				req.Query, req.Vector = "", secretVectors[other]
			case 4:
				req.TopK, req.ScoreThreshold = pipeline.MaxTopK, new(float32(-1))
				wantAll = true
			}
			what := fmt.Sprintf("request %d (kind %d)", i, kind)
			if kind == 5 || kind == 6 { // the body names a user: only its own is accepted
				body := map[string]any{"query": req.Query, "top_k": req.TopK, "user_id": other}
				if kind == 6 {
					body["user_id"] = user
				} else {
					wantCode = 400
				}
				data, _ := json.Marshal(body)
				code, msg, reply, err := ask(t, client.Conn, "rag.search."+user+".docs", string(data), 10*time.Second)
				if err != nil {
					return fmt.Errorf("%s: %w", what, err)
				}
				if code != wantCode {
					return fmt.Errorf("%s naming %v: code %d (%s), want %d", what, body["user_id"], code, msg, wantCode)
				}
				if code == 400 {
					refused.Add(1)
					return nil
				}
				var sr search.SearchReply
				if err := json.Unmarshal(reply, &sr); err != nil {
					return err
				}
				for _, h := range sr.Hits {
					check(user, h.Metadata, h.Text, what)
				}
				return nil
			}
			if kind == 7 { // list every page
				cursor, n := "", 0
				for {
					page, err := client.List(t.Context(), user, "docs", search.ListRequest{Limit: 1 + r.IntN(20), Cursor: cursor})
					if err != nil {
						return fmt.Errorf("%s: %w", what, err)
					}
					for _, d := range page.Docs {
						check(user, d.Metadata, "", what)
						n++
					}
					if cursor = page.NextCursor; cursor == "" {
						break
					}
				}
				if n != shared+1 {
					return fmt.Errorf("%s: listed %d documents of %s, want %d", what, n, user, shared+1)
				}
				return nil
			}
			reply, err := client.Search(t.Context(), user, "docs", req)
			var e *search.Error
			switch {
			case wantCode == 400 && errors.As(err, &e) && e.Code == 400:
				refused.Add(1)
				return nil
			case err != nil || wantCode != 200:
				return fmt.Errorf("%s %+v: %v, want code %d", what, req, err, wantCode)
			}
			for _, h := range reply.Hits {
				check(user, h.Metadata, h.Text, what)
			}
			switch {
			case kind == 0 && len(reply.Hits) != 0:
				return fmt.Errorf("%s: filter owner=%s gave %d hits", what, other, len(reply.Hits))
			case wantAll && len(reply.Hits) != shared+1:
				return fmt.Errorf("%s: %d hits with threshold -1, want all %d chunks of %s", what, len(reply.Hits), shared+1, user)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d requests: %d refused as the contract requires, %d hits and listed documents checked, %d of another tenant",
		requests, refused.Load(), hitsChecked.Load(), foreign.Load())
	if hitsChecked.Load() < requests {
		t.Errorf("only %d hits checked: the test checked too little", hitsChecked.Load())
	}
}

// TestSearchFiltersAndPaging checks, end to end through the worker and the
// searcher, metadata filters of each JSON type, score_threshold, top_k and
// its bounds, and that listing with any page size returns every live
// document of the tenant exactly once, after updates that change the number
// of chunks and after deletes.
func TestSearchFiltersAndPaging(t *testing.T) {
	s := newSystem(t, append(chunking, "RAGPIPE_COLLECTIONS=docs:64:cosine")...)
	s.startWorker()
	metas := []map[string]any{
		{"env": "prod", "n": 1, "ratio": 0.5, "ok": true, "tags": []any{"web", "tier1"}},
		{"env": "staging", "n": 2, "ratio": 1.5, "ok": false, "tags": []any{"db"}},
		{"env": "prod", "n": 3, "tags": []any{"db", "tier1"}},
		{"env": "dev", "n": 1},
		nil,
		{"env": "prod", "ok": true},
	}
	r := rand.New(rand.NewPCG(8, 9))
	var events []event
	for _, u := range []string{"alice", "bob"} {
		for i, m := range metas {
			events = append(events, event{user: u, collection: "docs", body: map[string]any{
				"doc_id": fmt.Sprint("f", i), "text": fmt.Sprintf("filter document %d of the inventory", i), "metadata": m}})
		}
		for i := range 20 {
			events = append(events, event{user: u, collection: "docs", body: map[string]any{
				"doc_id": fmt.Sprintf("g%02d", i), "text": text(r, 100+r.IntN(150)), "metadata": map[string]any{"env": "filler"}}})
		}
	}
	// Paging: 150 documents of alice, many of several chunks, 40 of bob;
	// then 15 of alice's are deleted and 15 rewritten with other lengths.
	m := newModel(t, 300, 30, 64)
	page := func(u string, i int, version uint64, op string) event {
		doc, txt := fmt.Sprintf("p%03d", i), text(r, 50+r.IntN(1200))
		meta := map[string]any{"i": i, "v": int(version)}
		m.add("paged", u, doc, op, txt, meta, version)
		return event{user: u, collection: "paged", body: map[string]any{"op": op, "doc_id": doc, "text": txt, "metadata": meta, "version": version}}
	}
	for i := range 150 {
		events = append(events, page("alice", i, 1, "upsert"))
		if i < 40 {
			events = append(events, page("bob", i, 1, "upsert"))
		}
	}
	for i := range 15 {
		events = append(events, page("alice", 10*i, 2, "delete"), page("alice", 10*i+5, 2, "upsert"))
	}
	s.publish(events)
	s.waitDrained(2 * time.Minute)
	s.startSearcher("searcher", nil)
	client := s.searchClient()

	t.Run("filters", func(t *testing.T) {
		for _, tt := range []struct {
			filter map[string]any
			want   []string
		}{
			{map[string]any{"env": "prod"}, []string{"f0", "f2", "f5"}},
			{map[string]any{"env": []any{"staging", "dev"}}, []string{"f1", "f3"}},
			{map[string]any{"n": 1}, []string{"f0", "f3"}},
			{map[string]any{"n": []any{2, 3}}, []string{"f1", "f2"}},
			{map[string]any{"n": json.Number("1.0")}, []string{"f0", "f3"}}, // a float matches numerically
			{map[string]any{"ratio": 1.5}, []string{"f1"}},
			{map[string]any{"ok": true}, []string{"f0", "f5"}},
			{map[string]any{"ok": false}, []string{"f1"}},
			{map[string]any{"tags": "tier1"}, []string{"f0", "f2"}},
			{map[string]any{"env": "prod", "ok": true}, []string{"f0", "f5"}},
			{map[string]any{"env": "prod", "tags": []any{"db", "web"}}, []string{"f0", "f2"}},
			{map[string]any{"missing": "x"}, nil},
		} {
			for _, u := range []string{"alice", "bob"} {
				reply, err := client.Search(t.Context(), u, "docs", search.SearchRequest{Query: "filter document inventory", TopK: 100, Filter: tt.filter})
				if err != nil {
					t.Fatalf("%v: %v", tt.filter, err)
				}
				got := docIDs(reply.Hits)
				slices.Sort(got)
				if !slices.Equal(got, tt.want) {
					t.Errorf("%s, filter %v: docs %v, want %v", u, tt.filter, got, tt.want)
				}
			}
		}
	})

	t.Run("score threshold and top_k", func(t *testing.T) {
		all, err := client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "filter document 3 of the inventory", TopK: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(all.Hits) != 26 || all.Hits[0].DocID != "f3" {
			t.Fatalf("top_k 100: %d hits, first %v; want all 26 of alice's chunks, f3 first", len(all.Hits), docIDs(all.Hits[:1]))
		}
		threshold := all.Hits[4].Score
		want := 0
		for _, h := range all.Hits {
			if h.Score >= threshold {
				want++
			}
		}
		cut, err := client.Search(t.Context(), "alice", "docs", search.SearchRequest{Query: "filter document 3 of the inventory", TopK: 100, ScoreThreshold: &threshold})
		if err != nil {
			t.Fatal(err)
		}
		if len(cut.Hits) != want || cut.Hits[len(cut.Hits)-1].Score < threshold {
			t.Errorf("threshold %v: %d hits, want the %d scoring at least that", threshold, len(cut.Hits), want)
		}
		for body, want := range map[string]int{`{"query":"inventory"}`: 10, `{"query":"inventory","top_k":1}`: 1, `{"query":"inventory","top_k":100}`: 26} {
			code, msg, data, err := ask(t, client.Conn, "rag.search.alice.docs", body, 10*time.Second)
			var reply search.SearchReply
			if err == nil && code == 200 {
				err = json.Unmarshal(data, &reply)
			}
			if err != nil || code != 200 || len(reply.Hits) != want {
				t.Errorf("%s: code %d %s %v, %d hits; want %d", body, code, msg, err, len(reply.Hits), want)
			}
		}
		for _, body := range []string{`{"query":"x","top_k":0}`, `{"query":"x","top_k":101}`} {
			if code, msg, _, err := ask(t, client.Conn, "rag.search.alice.docs", body, 10*time.Second); code != 400 || !strings.Contains(msg, "top_k") {
				t.Errorf("%s: code %d %q %v, want 400 naming top_k", body, code, msg, err)
			}
		}
	})

	t.Run("list every document once", func(t *testing.T) {
		want := map[string]string{}
		for k, e := range m.newest {
			if k[0] == "paged" && k[1] == "alice" && e.op != "delete" {
				meta, _ := json.Marshal(e.meta)
				want[k[2]] = fmt.Sprintf("v%d %d chunks %s", e.version, len(m.chunker.Split(e.text)), meta)
			}
		}
		for _, limit := range []int{1, 7, 100, 1000} {
			got := map[string]string{}
			cursor, pages := "", 0
			for {
				reply, err := client.List(t.Context(), "alice", "paged", search.ListRequest{Limit: limit, Cursor: cursor})
				if err != nil {
					t.Fatalf("limit %d, page %d: %v", limit, pages, err)
				}
				pages++
				for _, d := range reply.Docs {
					if _, dup := got[d.DocID]; dup {
						t.Errorf("limit %d: %s listed twice", limit, d.DocID)
					}
					meta, _ := json.Marshal(d.Metadata)
					got[d.DocID] = fmt.Sprintf("v%d %d chunks %s", d.Version, d.ChunkCount, meta)
				}
				if cursor = reply.NextCursor; cursor == "" {
					break
				}
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("limit %d: %d documents in %d pages, want exactly the %d live ones of alice", limit, len(got), pages, len(want))
				for id, w := range want {
					if got[id] != w {
						t.Logf("%s: got %q, want %q", id, got[id], w)
					}
				}
			}
		}
	})
}

// TestSearchErrorCodes checks every error code end to end with the searcher
// binary: 400, 404, 500 (a collection whose dimensions differ from its
// embedder's), and 503 while Qdrant is down (answered by the deadline,
// never a silent timeout), recovering when it is back; and the
// ragpipe_search_* metrics and /readyz.
func TestSearchErrorCodes(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine")
	s.startWorker()
	s.publish([]event{{user: "alice", collection: "docs", body: map[string]any{"doc_id": "a", "text": "alpha beta gamma"}}})
	s.waitDrained(time.Minute)
	// A collection made outside ragpipe with 8 dimensions: queries embedded
	// with the default 64 dimensions cannot run on it.
	if err := s.qc.CreateCollection(t.Context(), &qdrant.CreateCollection{CollectionName: "odd",
		VectorsConfig: qdrant.NewVectorsConfig(&qdrant.VectorParams{Size: 8, Distance: qdrant.Distance_Cosine})}); err != nil {
		t.Fatal(err)
	}
	p := s.startSearcher("searcher", []string{"--timeout", "2s"})
	base := "http://" + httpAddr(t, p)
	nc := natstest.Connect(t, s.nats)
	expect := func(subject, body string, code int, want string) {
		t.Helper()
		start := time.Now()
		got, msg, data, err := ask(t, nc, subject, body, 10*time.Second)
		if err != nil {
			t.Fatalf("%s %s: %v after %s (a reply was due)", subject, body, err, time.Since(start))
		}
		if got != code || !strings.Contains(msg+string(data), want) {
			t.Errorf("%s %s: %d %q %s, want %d with %q", subject, body, got, msg, data, code, want)
		}
	}
	expect("rag.search.alice.docs", `{"query":"alpha"}`, 200, `"doc_id":"a"`)
	expect("rag.list.alice.docs", `{}`, 200, `"doc_id":"a"`)
	expect("rag.search.alice.docs", `{"query":"alpha","filter":{"user_id":"bob"}}`, 400, "user_id")
	expect("rag.search.alice.docs", `{"query":"alpha","user_id":"bob"}`, 400, "user_id")
	expect("rag.search.alice.docs", `{"top_k":5}`, 400, "query")
	expect("rag.list.alice.docs", `{"limit":5000}`, 400, "limit")
	expect("rag.search.alice.nothere", `{"query":"alpha"}`, 404, `collection "nothere" does not exist`)
	expect("rag.list.alice.nothere", `{}`, 404, "does not exist")
	expect("rag.search.alice.odd", `{"query":"alpha"}`, 500, "internal error")

	s.qdrant.Kill(t)
	for _, subject := range []string{"rag.search.alice.docs", "rag.list.alice.docs"} {
		start := time.Now()
		expect(subject, `{"query":"alpha"}`, 503, "unavailable")
		if took := time.Since(start); took < 1500*time.Millisecond || took > 5*time.Second {
			t.Errorf("%s: 503 after %s, want after retrying for about the 2s deadline", subject, took)
		}
	}
	checkfor.Until(t, 30*time.Second, "/readyz failing", func() error { return status(base+"/readyz", 503, "qdrant") })
	s.qdrant.Restart(t)
	checkfor.Until(t, 30*time.Second, "searches answered again", func() error {
		code, msg, _, err := ask(t, nc, "rag.search.alice.docs", `{"query":"alpha"}`, 10*time.Second)
		if err == nil && code != 200 {
			err = fmt.Errorf("%d %s", code, msg)
		}
		return err
	})
	checkfor.Until(t, 30*time.Second, "/readyz recovering", func() error { return status(base+"/readyz", 200, "ready") })

	metrics := get(t, base+"/metrics", 200)
	for _, want := range []string{
		`ragpipe_search_requests_total{code="200",collection="docs"}`,
		`ragpipe_search_requests_total{code="400",collection="docs"} 4`,
		`ragpipe_search_requests_total{code="404",collection="_other"} 2`,
		`ragpipe_search_requests_total{code="500",collection="odd"} 1`,
		`ragpipe_search_requests_total{code="503",collection="docs"}`,
		`ragpipe_search_seconds_count{collection="docs"}`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
}

// TestSearchReplicas runs two searchers: both answer a parallel load (the
// default queue group shares it). One is SIGKILLed while the load goes on:
// requests keep being answered, losing at most those it held. A third one
// joins and the second gets SIGTERM under load: it answers everything it
// received, nothing is lost, and it exits 0.
func TestSearchReplicas(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine")
	s.startWorker()
	r := rand.New(rand.NewPCG(4, 4))
	var events []event
	for i := range 50 {
		events = append(events, event{user: "alice", collection: "docs", body: map[string]any{"doc_id": fmt.Sprint("d", i), "text": text(r, 200)}})
	}
	s.publish(events)
	s.waitDrained(time.Minute)
	replicas := []*process{s.startSearcher("searcher-1", nil), s.startSearcher("searcher-2", nil)}
	nc := natstest.Connect(t, s.nats)

	// load sends requests from 8 goroutines until stop is closed, counting
	// answers and failures.
	type counts struct{ ok, failed atomic.Int64 }
	load := func(stop <-chan struct{}, c *counts) *sync.WaitGroup {
		var wg sync.WaitGroup
		for range 8 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					code, msg, _, err := ask(t, nc, "rag.search.alice.docs", `{"query":"instance volume bucket","top_k":5}`, 3*time.Second)
					if err != nil || code != 200 {
						c.failed.Add(1)
						if code != 0 {
							t.Errorf("reply %d %s", code, msg)
						}
						continue
					}
					c.ok.Add(1)
				}
			})
		}
		return &wg
	}
	served := func() map[string]int {
		out := map[string]int{}
		sub, err := nc.SubscribeSync(nats.NewInbox())
		if err != nil {
			t.Fatal(err)
		}
		defer sub.Unsubscribe()
		if err := nc.PublishRequest("$SRV.STATS.ragpipe-search", sub.Subject, nil); err != nil {
			t.Fatal(err)
		}
		for {
			msg, err := sub.NextMsg(time.Second)
			if err != nil {
				return out
			}
			var st micro.Stats
			if err := json.Unmarshal(msg.Data, &st); err != nil {
				t.Fatal(err)
			}
			for _, e := range st.Endpoints {
				if e.Name == "search" {
					out[st.ID] = e.NumRequests
				}
			}
		}
	}

	// underLoad runs the load, waits until two replicas serve part of it,
	// does what it is told and waits for 500 more answers; it returns how
	// many requests failed.
	underLoad := func(what string, do func()) int64 {
		var c counts
		stop := make(chan struct{})
		wg := load(stop, &c)
		checkfor.Until(t, time.Minute, "two replicas serving", func() error {
			if n := served(); len(n) != 2 || slices.Min(slices.Collect(maps.Values(n))) < 50 {
				return fmt.Errorf("search requests per replica: %v", n)
			}
			return nil
		})
		do()
		since := c.ok.Load()
		checkfor.Until(t, time.Minute, "answers after "+what, func() error {
			if n := c.ok.Load() - since; n < 500 {
				return fmt.Errorf("%d answers since %s", n, what)
			}
			return nil
		})
		close(stop)
		wg.Wait()
		t.Logf("%s of one of two replicas under load: %d answered, %d lost", what, c.ok.Load(), c.failed.Load())
		return c.failed.Load()
	}
	lost := underLoad("SIGKILL", func() {
		if err := replicas[0].cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		<-replicas[0].done
	})
	if lost > 8 {
		t.Errorf("%d requests failed around the SIGKILL; at most the 8 in flight may be lost", lost)
	}
	replicas = append(replicas, s.startSearcher("searcher-3", nil))
	lost = underLoad("SIGTERM", func() {
		if code := replicas[1].signal(t, syscall.SIGTERM); code != 0 {
			t.Errorf("searcher exited %d after SIGTERM, want 0", code)
		}
	})
	if lost != 0 {
		t.Errorf("%d requests failed across a SIGTERM; a draining replica must answer all it received", lost)
	}
	if log := replicas[1].log.String(); !strings.Contains(log, "stopped") {
		t.Errorf("SIGTERMed searcher did not log a clean stop:\n%s", tail(log, 10))
	}
}

// TestSearchQueryCommand runs `ragpipe query`: the table, --json, --filter,
// --top-k, --list, and one-line errors with a non-zero exit.
func TestSearchQueryCommand(t *testing.T) {
	s := newSystem(t, "RAGPIPE_COLLECTIONS=docs:64:cosine")
	s.startWorker()
	s.publish([]event{
		{user: "alice", collection: "docs", body: map[string]any{"doc_id": "rds/orders", "text": "postgres 16 multi-AZ\n\nowner payments, env prod", "metadata": map[string]any{"env": "prod", "tier": 1}}},
		{user: "alice", collection: "docs", body: map[string]any{"doc_id": "rds/reports", "text": "postgres 15 single-AZ owner analytics, env staging", "metadata": map[string]any{"env": "staging", "tier": 2}}},
		{user: "bob", collection: "docs", body: map[string]any{"doc_id": "rds/bob", "text": "postgres 16 of bob", "metadata": map[string]any{"env": "prod"}}},
	})
	s.waitDrained(time.Minute)
	s.startSearcher("searcher", nil)
	env := []string{"NATS_URL=" + s.nats.ClientURL()}
	query := func(args ...string) (int, string) {
		t.Helper()
		return run(t, env, append([]string{"query"}, args...)...)
	}

	code, out := query("--user", "alice", "--collection", "docs", "postgres", "prod")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 4 || !strings.HasPrefix(lines[0], "SCORE") || !strings.Contains(lines[1], "rds/orders") ||
		!strings.Contains(lines[1], "postgres 16 multi-AZ owner payments") || !strings.HasPrefix(lines[3], "2 hits in ") || strings.Contains(out, "bob") {
		t.Errorf("table: exit %d:\n%s", code, out)
	}
	code, out = query("--user", "alice", "--collection", "docs", "--json", "--top-k", "1", "--filter", "env=staging", "--filter", "tier=2", "postgres")
	var reply search.SearchReply
	if err := json.Unmarshal([]byte(out), &reply); code != 0 || err != nil || len(reply.Hits) != 1 || reply.Hits[0].DocID != "rds/reports" {
		t.Errorf("--json with filters: exit %d, %v:\n%s", code, err, out)
	}
	code, out = query("--user", "alice", "--collection", "docs", "--filter", "env=prod", "--filter", "env=staging", "--json", "postgres")
	if err := json.Unmarshal([]byte(out), &reply); code != 0 || err != nil || len(reply.Hits) != 2 {
		t.Errorf("--filter repeated: exit %d, %v:\n%s", code, err, out)
	}
	code, out = query("--user", "alice", "--list", "--collection", "docs", "--limit", "1", "--all")
	if code != 0 || !strings.Contains(out, "rds/orders") || !strings.Contains(out, "rds/reports") || !strings.Contains(out, "2 documents") {
		t.Errorf("--list --all: exit %d:\n%s", code, out)
	}
	code, out = query("--user", "alice", "--list", "--collection", "docs", "--limit", "1")
	if code != 0 || !strings.Contains(out, "1 documents") || !strings.Contains(out, "more: --cursor ") {
		t.Errorf("--list one page: exit %d:\n%s", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--user", "alice", "--collection", "nothere", "postgres"}, `404: collection "nothere" does not exist`},
		{[]string{"--user", "alice", "--collection", "docs", "--filter", "user_id=bob", "postgres"}, `400: filter: key "user_id" is not allowed`},
		{[]string{"--user", "alice", "--top-k", "0", "postgres"}, "--top-k 0"},
		{[]string{"--user", "alice"}, "no query text"},
		{[]string{"postgres"}, "--user"},
	} {
		code, out := query(c.args...)
		if lines := strings.Split(strings.TrimSpace(out), "\n"); code == 0 || len(lines) != 1 || !strings.Contains(out, c.want) {
			t.Errorf("query %v: exit %d, want non-zero and one line with %q:\n%s", c.args, code, c.want, out)
		}
	}
	code, out = run(t, []string{"NATS_URL=" + s.nats.ClientURL(), "RAGPIPE_SUBJECT_PREFIX=nobody"}, "query", "--user", "alice", "x")
	if code == 0 || !strings.Contains(out, "no search service") {
		t.Errorf("no searcher: exit %d:\n%s", code, out)
	}
	for _, args := range [][]string{{"query", "--help"}, {"searcher", "--help"}} {
		if code, out := run(t, nil, args...); code != 0 || !strings.Contains(out, "NATS_URL") {
			t.Errorf("%v: exit %d:\n%s", args, code, out)
		}
	}
}
