package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/proto"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

const (
	// topK is the limit of every search.
	topK = 10
	// searchQueries is the number of distinct queries, used in turn.
	searchQueries = 500
	// searchWarmup is the number of requests per path before measuring.
	searchWarmup = 200
	// searchRounds is the number of turns each path takes at each
	// concurrency.
	searchRounds = 4
	// searchTimeout bounds one request of any path, and the search floor's
	// Qdrant call.
	searchTimeout = 10 * time.Second
	// indexTimeout bounds the wait for Qdrant to finish indexing.
	indexTimeout = 2 * time.Minute
)

// searchConcurrency are the numbers of requests in flight measured.
var searchConcurrency = []int{1, 8}

// searchPath is one way to search: call sends query i (of searchQueries,
// in turn); request, on the paths of NATS requests, sends it and returns
// the answer. server is the process whose CPU is the searcher's column:
// the searcher, or the search floor on the pass-through.
type searchPath struct {
	name    string
	call    func(ctx context.Context, i int) error
	request func(i int) (*nats.Msg, error)
	server  int
}

// search measures, on the text stage's collection, searches of one tenant
// through rag.search against raw Qdrant Query calls of the same vectors and
// tenant filter (the request ragpipe's search sends), beside the same
// Query's bytes through the search floor (searchfloor.go) and a bare NATS
// round trip to the searcher.
func (r *runner) search(ctx context.Context) (*Search, error) {
	tenant := tenants[0]
	var texts []string
	for _, d := range r.documents() {
		if d.user == tenant {
			texts = append(texts, d.text)
		}
	}
	res := &Search{Points: len(r.documents()), TenantPoints: len(texts), TopK: topK, Requests: r.cfg.Searches}
	collection := r.textCollection()
	defer r.cleanup(ctx, collection)
	if r.report.Text == nil || r.report.Text.Error != "" {
		return res, errors.New("not run: the text stage, whose collection it searches, failed")
	}
	var err error
	if res.Indexed, err = r.waitIndexed(ctx, collection); err != nil {
		return res, err
	}
	searcher, err := r.startChild(ctx, "searcher", collection, embedderHash, "search service started")
	if err != nil {
		return res, err
	}
	defer searcher.stop() // when failing; its result is checked below otherwise
	floorSubject := r.cfg.Prefix + ".bench_search_floor_" + r.id
	floor, err := r.startSearchFloor(ctx, floorSubject)
	if err != nil {
		return res, err
	}
	defer floor.stop() // when failing; its result is checked below otherwise
	rag, raw, pass, err := r.searchPaths(ctx, collection, tenant, texts, floorSubject)
	if err != nil {
		return res, err
	}
	ping := r.pingPath()
	rag.server, raw.server, pass.server, ping.server = searcher.pid(), searcher.pid(), floor.pid(), searcher.pid()
	paths := []searchPath{rag, raw, pass, ping}
	for _, p := range paths {
		if _, err := latencies(ctx, 4, min(searchWarmup, r.cfg.Searches), p.call); err != nil {
			return res, fmt.Errorf("warm-up of %s: %w", p.name, err)
		}
	}
	for _, conc := range searchConcurrency {
		lat, err := r.interleaved(ctx, paths, conc)
		if err != nil {
			return res, err
		}
		level := SearchLevel{Concurrency: conc, RagSearch: lat[0], Qdrant: lat[1], PassThrough: lat[2], NATSPing: lat[3]}
		level.P50OverheadMs = round(level.RagSearch.P50Ms-level.Qdrant.P50Ms, 3)
		level.PassThroughOverheadMs = round(level.PassThrough.P50Ms-level.Qdrant.P50Ms, 3)
		r.progressf("search: concurrency %d: rag.search p50 %.3f ms, p99 %.3f ms; qdrant p50 %.3f ms, p99 %.3f ms; pass-through p50 %.3f ms", conc,
			level.RagSearch.P50Ms, level.RagSearch.P99Ms, level.Qdrant.P50Ms, level.Qdrant.P99Ms, level.PassThrough.P50Ms)
		res.Levels = append(res.Levels, level)
	}
	return res, errors.Join(searcher.stop(), floor.stop())
}

// searchPaths makes the queries, pieces of the tenant's texts, and returns
// the three paths, each checked to find something: rag, a rag.search
// request whose body carries the query text (CONTRACT §4); raw, the Qdrant
// Query of the vector the searcher embeds that text into; and pass, the
// same Query's bytes as a request to the search floor on floorSubject.
func (r *runner) searchPaths(ctx context.Context, collection, tenant string, texts []string, floorSubject string) (rag, raw, pass searchPath, err error) {
	rng := rand.New(rand.NewPCG(5, 6))
	queries := make([]string, searchQueries)
	bodies := make([][]byte, searchQueries)
	for i := range queries {
		t := texts[rng.IntN(len(texts))]
		at := rng.IntN(len(t) - 80)
		queries[i] = t[at : at+80]
		// Dense, like the raw Query: the default, hybrid, costs Qdrant a
		// second search and a fusion.
		req := search.SearchRequest{Query: queries[i], TopK: topK, Mode: string(pipeline.ModeDense)}
		if bodies[i], err = json.Marshal(req); err != nil {
			return rag, raw, pass, fmt.Errorf("encode search request: %w", err)
		}
	}
	emb, err := embedder.NewHash(Dims)
	if err != nil {
		return rag, raw, pass, err
	}
	vectors, err := emb.Embed(ctx, queries)
	if err != nil {
		return rag, raw, pass, fmt.Errorf("embed queries: %w", err)
	}
	raws := make([]*qdrant.QueryPoints, searchQueries)
	passBodies := make([][]byte, searchQueries)
	for i, v := range vectors {
		raws[i] = &qdrant.QueryPoints{
			CollectionName: collection,
			Query:          qdrant.NewQueryDense(v),
			Filter:         &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("user_id", tenant)}},
			Limit:          qdrant.PtrOf(uint64(topK)),
			WithPayload:    qdrant.NewWithPayloadInclude("user_id", "doc_id", "chunk_index", "text", "metadata", "version"),
		}
		if passBodies[i], err = proto.Marshal(raws[i]); err != nil {
			return rag, raw, pass, fmt.Errorf("encode query: %w", err)
		}
	}
	rag = r.requestPath("rag.search", r.cfg.Prefix+".search."+tenant+"."+collection, bodies)
	pass = r.requestPath("pass-through", floorSubject, passBodies)
	raw = searchPath{name: "qdrant", call: func(ctx context.Context, i int) error {
		if _, err := r.qc.Query(ctx, raws[i%searchQueries]); err != nil {
			return fmt.Errorf("qdrant query: %w", err)
		}
		return nil
	}}

	// All three find something.
	client := &search.Client{Conn: r.cfg.Conn, Prefix: r.cfg.Prefix}
	reply, err := client.Search(ctx, tenant, collection, search.SearchRequest{Query: queries[0], TopK: topK})
	if err != nil {
		return rag, raw, pass, err
	}
	hits, err := r.qc.Query(ctx, raws[0])
	if err != nil {
		return rag, raw, pass, fmt.Errorf("qdrant query: %w", err)
	}
	msg, err := pass.request(0)
	if err != nil {
		return rag, raw, pass, err
	}
	var passed qdrant.QueryResponse
	if err := proto.Unmarshal(msg.Data, &passed); err != nil {
		return rag, raw, pass, fmt.Errorf("%s: decode the answer: %w", pass.name, err)
	}
	if len(reply.Hits) == 0 || len(hits) == 0 || len(passed.GetResult()) == 0 {
		return rag, raw, pass, fmt.Errorf("a query taken from a document finds %d hits through rag.search, %d through qdrant, %d through the pass-through",
			len(reply.Hits), len(hits), len(passed.GetResult()))
	}
	return rag, raw, pass, nil
}

// pingPath is a bare NATS round trip to the searcher process: a $SRV.PING
// of the search service, answered by the searcher's NATS client without
// Qdrant, what any rag.search request pays for the transport (with a
// smaller reply).
func (r *runner) pingPath() searchPath {
	subject, _ := micro.ControlSubject(micro.PingVerb, search.ServiceName, "") // valid: both names are constant
	return r.requestPath("nats ping", subject, nil)
}

// requestPath is the path of NATS requests to subject, request i carrying
// bodies[i%len(bodies)] (none without bodies), each failing on a NATS
// micro error.
func (r *runner) requestPath(name, subject string, bodies [][]byte) searchPath {
	p := searchPath{name: name}
	p.request = func(i int) (*nats.Msg, error) {
		var body []byte
		if len(bodies) > 0 {
			body = bodies[i%len(bodies)]
		}
		msg, err := r.cfg.Conn.Request(subject, body, searchTimeout)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", subject, err)
		}
		if code := msg.Header.Get(micro.ErrorCodeHeader); code != "" {
			return nil, fmt.Errorf("%s: error %s: %s", subject, code, msg.Data)
		}
		return msg, nil
	}
	p.call = func(_ context.Context, i int) error {
		_, err := p.request(i)
		return err
	}
	return p
}

// interleaved measures paths at concurrency conc, the run's number of
// searches each, in searchRounds rounds in which the paths take turns, so
// that a change of load on the shared machine falls on every path alike;
// and the CPU per request of Qdrant, this process and each path's server.
func (r *runner) interleaved(ctx context.Context, paths []searchPath, conc int) ([]Latency, error) {
	n := r.cfg.Searches
	lats := make([][]time.Duration, len(paths))
	used := make([]*CPU, len(paths))
	for round := range searchRounds {
		from, to := n*round/searchRounds, n*(round+1)/searchRounds
		for i, p := range paths {
			cpu := startCPU(r.cfg.QdrantPID, p.server)
			lat, err := latencies(ctx, conc, to-from, func(ctx context.Context, k int) error { return p.call(ctx, from+k) })
			if err != nil {
				return nil, fmt.Errorf("%s at concurrency %d: %w", p.name, conc, err)
			}
			lats[i] = append(lats[i], lat...)
			used[i] = used[i].plus(cpu.stop())
		}
	}
	perReq := func(s *float64) *float64 {
		if s == nil {
			return nil
		}
		return new(round(*s/float64(n)*1e6, 1))
	}
	res := make([]Latency, len(paths))
	for i, lat := range lats {
		slices.Sort(lat)
		c := used[i]
		res[i] = Latency{P50Ms: millis3(percentile(lat, 50)), P99Ms: millis3(percentile(lat, 99)),
			CPU: &RequestCPU{Qdrant: perReq(c.Qdrant), Searcher: perReq(c.Worker), Bench: *perReq(&c.Bench)}}
	}
	return res, nil
}

// waitIndexed waits until Qdrant reports collection green (no optimization
// pending or running) twice in a row, for at most indexTimeout, and reports
// whether it did.
func (r *runner) waitIndexed(ctx context.Context, collection string) (bool, error) {
	deadline := time.Now().Add(indexTimeout)
	greens := 0
	for greens < 2 {
		info, err := r.qc.GetCollectionInfo(ctx, collection)
		if err != nil {
			return false, fmt.Errorf("collection %s: %w", collection, err)
		}
		greens++
		if info.GetStatus() != qdrant.CollectionStatus_Green {
			greens = 0
		}
		if time.Now().After(deadline) {
			r.progressf("search: %s still %s after %s; measuring anyway", collection, info.GetStatus(), indexTimeout)
			return false, nil
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
	return true, nil
}

// latencies calls call(ctx, i) for i in [0, n) from conc goroutines and
// returns the latencies, sorted.
func latencies(ctx context.Context, conc, n int, call func(ctx context.Context, i int) error) ([]time.Duration, error) {
	lat := make([]time.Duration, n)
	err := parallel(ctx, conc, n, func(ctx context.Context, i int) error {
		start := time.Now()
		if err := call(ctx, i); err != nil {
			return err
		}
		lat[i] = time.Since(start)
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.Sort(lat)
	return lat, nil
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted latencies
// by the nearest-rank method: the smallest value that at least p% of the
// values do not exceed. It returns 0 for no values.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(len(sorted))))
	return sorted[min(max(rank, 1), len(sorted))-1]
}

// millis3 returns d in milliseconds, rounded to the microsecond.
func millis3(d time.Duration) float64 { return round(float64(d)/float64(time.Millisecond), 3) }
