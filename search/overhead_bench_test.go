package search_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/qdrant/go-client/qdrant"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/internal/natstest"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/search"
	"github.com/ragpipe/ragpipe/telemetry"
)

// Shape of BenchmarkSearchOverhead's collection, as `ragpipe bench` fills
// its text collection: 1024 dimensions, five tenants, texts of about 900
// characters, queries of 80 characters taken from the texts.
const (
	overheadDims    = 1024
	overheadDocs    = 2000
	overheadChars   = 900
	overheadQueries = 500
	overheadTopK    = 10
)

var overheadTenants = []string{"alice", "bob", "carol", "dave", "erin"}

// BenchmarkSearchOverhead times a dense search of one tenant through NATS
// to the search service (its own connection, as a searcher process has)
// over a real Qdrant (rag), and the raw Qdrant Query of the same vector,
// tenant filter, limit and payload (qdrant): the comparison of `ragpipe
// bench --only text,search`, in one process, one request at a time and
// eight at once. For the steps between, it also times the store's Search
// with the query's embedding (store) and a NATS round trip to a subscriber
// answering a search reply's bytes at once (echo), and the search through
// the service when its store answers at once with ten hits (canned). The
// paths take turns in blocks of calls, so that the machine's load weighs on
// them alike; each path's p50 and the process's CPU time per call
// (<path>-cpu-µs: this process only, Qdrant runs in its own) are reported
// in µs. overhead-µs is rag's p50 minus qdrant's; service-cpu-µs is
// canned's CPU minus echo's: what the service spends on a request besides
// the store call and the NATS round trip.
//
//	flock /tmp/ragpipe-test.lock go test -run XXX -bench SearchOverhead -count 5 ./search
func BenchmarkSearchOverhead(b *testing.B) {
	ns := natstest.Start(b)
	client, serviceConn := natstest.Connect(b, ns), natstest.Connect(b, ns)
	node := qdranttest.Start(b)
	log := zerolog.New(zerolog.NewTestWriter(b)).Level(zerolog.ErrorLevel)
	store, emb := overheadStore(b, node.GRPCPort(), log)
	texts := fillOverhead(b, store, emb)
	hits, err := store.Search(b.Context(), "docs", pipeline.Query{UserID: "alice", Mode: pipeline.ModeDense, TopK: overheadTopK, Vector: make([]float32, overheadDims)})
	if err != nil {
		b.Fatal(err)
	}
	// The services' goroutines carry the labels goroutines=service and
	// prefix=rag or canned in a CPU profile (go tool pprof -tagfocus
	// goroutines=service).
	for prefix, index := range map[string]search.Index{"rag": store, "canned": cannedIndex{store, hits}} {
		var svc *search.Service
		pprof.Do(b.Context(), pprof.Labels("goroutines", "service", "prefix", prefix), func(ctx context.Context) {
			svc, err = search.Start(ctx, search.Config{
				Conn: serviceConn, Index: index, Embedder: func(string) search.Embedder { return emb }, Logger: log,
				Metrics: telemetry.NewMetrics(), Prefix: prefix,
			})
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = svc.Stop(context.Background()) })
	}

	bodies, queries, raws := overheadRequests(b, emb, texts)
	// echo answers with a search reply's bytes at once: the NATS round trip alone.
	reply, err := client.Request("rag.search.alice.docs", bodies[0], 10*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	echo, err := serviceConn.Subscribe("echo", func(m *nats.Msg) { _ = m.Respond(reply.Data) })
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = echo.Unsubscribe() })
	paths := []overheadPath{
		{"rag", ragCall(client, "rag", bodies)},
		{"qdrant", qdrantCall(store, raws)},
		{"store", storeCall(store, emb, queries)},
		{"canned", ragCall(client, "canned", bodies)},
		{"echo", func(_ context.Context, i int) error {
			_, err := client.Request("echo", bodies[i%overheadQueries], 10*time.Second)
			return err
		}},
	}
	warmUp(b, paths)
	for _, conc := range []int{1, 8} {
		b.Run(fmt.Sprintf("c%d", conc), func(b *testing.B) {
			lat, cpus := timeCalls(b, conc, paths, cputimetest.Now)
			reportPaths(b, paths, lat, cpus, "")
			b.ReportMetric(float64((lat[0][len(lat[0])/2] - lat[1][len(lat[1])/2]).Microseconds()), "overhead-µs")
			cpu := cpus[0]
			b.ReportMetric(float64((cpu[3] - cpu[4]).Microseconds()), "service-cpu-µs")
		})
	}
}

// overheadPath is one path that BenchmarkSearchOverhead times.
type overheadPath struct {
	name string
	call func(ctx context.Context, i int) error
}

// ragCall is a search of alice's docs through the service of prefix.
func ragCall(client *nats.Conn, prefix string, bodies [][]byte) func(context.Context, int) error {
	return func(_ context.Context, i int) error {
		msg, err := client.Request(prefix+".search.alice.docs", bodies[i%overheadQueries], 10*time.Second)
		if err == nil && msg.Header.Get(micro.ErrorCodeHeader) != "" {
			err = fmt.Errorf("error %s: %s", msg.Header.Get(micro.ErrorCodeHeader), msg.Data)
		}
		return err
	}
}

// qdrantCall is the raw Qdrant Query of search i, with Qdrant's Go client.
func qdrantCall(store *qdrantstore.Store, raws []*qdrant.QueryPoints) func(context.Context, int) error {
	return func(ctx context.Context, i int) error {
		_, err := store.Client().Query(ctx, raws[i%overheadQueries])
		return err
	}
}

// storeCall is what the service does for a dense search of alice's docs
// besides NATS: embedding the query and the store's Search.
func storeCall(store *qdrantstore.Store, emb *embedder.Hash, queries []string) func(context.Context, int) error {
	return func(ctx context.Context, i int) error {
		vs, err := emb.Embed(ctx, []string{queries[i%overheadQueries]})
		if err == nil {
			_, err = store.Search(ctx, "docs", pipeline.Query{UserID: "alice", Mode: pipeline.ModeDense, TopK: overheadTopK, Vector: vs[0]})
		}
		return err
	}
}

// warmUp calls each path 200 times.
func warmUp(b *testing.B, paths []overheadPath) {
	b.Helper()
	for _, p := range paths {
		for i := range 200 {
			if err := p.call(b.Context(), i); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// reportPaths reports each path's p50 and, for each CPU clock, its CPU
// time per call; the clock's name (suffix) follows "cpu".
func reportPaths(b *testing.B, paths []overheadPath, lat [][]time.Duration, cpus [][]time.Duration, suffixes ...string) {
	for k, p := range paths {
		b.ReportMetric(float64(lat[k][len(lat[k])/2].Microseconds()), p.name+"-p50-µs")
		for c, suffix := range suffixes {
			b.ReportMetric(float64(cpus[c][k].Microseconds()), p.name+"-cpu"+suffix+"-µs")
		}
	}
}

// overheadStore returns the Qdrant store on port and the hash embedder of
// overheadDims.
func overheadStore(tb testing.TB, port int, log zerolog.Logger) (*qdrantstore.Store, *embedder.Hash) {
	tb.Helper()
	store, err := qdrantstore.New(tb.Context(), qdrantstore.Config{Host: "127.0.0.1", Port: port, Logger: log})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { store.Close() })
	emb, err := embedder.NewHash(overheadDims)
	if err != nil {
		tb.Fatal(err)
	}
	return store, emb
}

// overheadRequests returns overheadQueries searches of 80 characters taken
// from texts: the request bodies, their queries and the raw Qdrant Query of
// each.
func overheadRequests(b *testing.B, emb *embedder.Hash, texts []string) ([][]byte, []string, []*qdrant.QueryPoints) {
	b.Helper()
	rng := rand.New(rand.NewPCG(5, 6))
	bodies := make([][]byte, overheadQueries)
	queries := make([]string, overheadQueries)
	raws := make([]*qdrant.QueryPoints, overheadQueries)
	for i := range overheadQueries {
		t := texts[rng.IntN(len(texts))]
		at := rng.IntN(len(t) - 80)
		query := t[at : at+80]
		queries[i] = query
		bodies[i] = fmt.Appendf(nil, `{"query":%q,"top_k":%d,"mode":"dense"}`, query, overheadTopK)
		vs, err := emb.Embed(b.Context(), []string{query})
		if err != nil {
			b.Fatal(err)
		}
		raws[i] = &qdrant.QueryPoints{
			CollectionName: "docs",
			Query:          qdrant.NewQueryDense(vs[0]),
			Filter:         &qdrant.Filter{Must: []*qdrant.Condition{qdrant.NewMatchKeyword("user_id", "alice")}},
			Limit:          qdrant.PtrOf(uint64(overheadTopK)),
			WithPayload:    qdrant.NewWithPayloadInclude("user_id", "doc_id", "chunk_index", "text", "metadata", "version"),
		}
	}
	return bodies, queries, raws
}

// timeCalls makes b.N calls of each path from conc goroutines, in blocks
// of 16×conc calls of one path, the paths' blocks taking turns (so that a
// change of the machine's load hits every path alike). It returns each
// path's latencies, sorted, and for each clock (a process's CPU time, user
// and system, every thread's) its time per call of each path.
func timeCalls(b *testing.B, conc int, paths []overheadPath, clocks ...func(testing.TB) time.Duration) ([][]time.Duration, [][]time.Duration) {
	b.Helper()
	lat := make([][]time.Duration, len(paths))
	for k := range lat {
		lat[k] = make([]time.Duration, b.N)
	}
	cpus := make([][]time.Duration, len(clocks))
	for c := range cpus {
		cpus[c] = make([]time.Duration, len(paths))
	}
	before := make([]time.Duration, len(clocks))
	var (
		mu   sync.Mutex
		fail error
	)
	block := 16 * conc
	b.ResetTimer()
	for first := 0; first < b.N && fail == nil; first += block {
		end := min(first+block, b.N)
		for k := range paths {
			path := (first/block + k) % len(paths)
			var (
				wg   sync.WaitGroup
				next atomic.Int64
			)
			next.Store(int64(first))
			for c, clock := range clocks {
				before[c] = clock(b)
			}
			for range conc {
				wg.Go(func() {
					for i := int(next.Add(1) - 1); i < end; i = int(next.Add(1) - 1) {
						start := time.Now()
						if err := paths[path].call(b.Context(), i); err != nil {
							mu.Lock()
							fail = err
							mu.Unlock()
							return
						}
						lat[path][i] = time.Since(start)
					}
				})
			}
			wg.Wait()
			for c, clock := range clocks {
				cpus[c][path] += clock(b) - before[c]
			}
		}
	}
	b.StopTimer()
	if fail != nil {
		b.Fatal(fail)
	}
	for k, l := range lat {
		slices.Sort(l)
		for c := range cpus {
			cpus[c][k] /= time.Duration(b.N)
		}
	}
	return lat, cpus
}

// cannedIndex is the store with every search answered at once with the
// same hits, for timing the service without the store.
type cannedIndex struct {
	search.Index
	hits []pipeline.Hit
}

func (c cannedIndex) Search(context.Context, string, pipeline.Query) ([]pipeline.Hit, error) {
	return slices.Clone(c.hits), nil
}

// fillOverhead writes overheadDocs one-chunk documents, round robin over
// overheadTenants, into the collection "docs", and returns alice's texts.
func fillOverhead(b *testing.B, store *qdrantstore.Store, emb *embedder.Hash) []string {
	b.Helper()
	if err := store.EnsureCollection(b.Context(), pipeline.Collection{Name: "docs", Dims: overheadDims, Keywords: true}, true); err != nil {
		b.Fatal(err)
	}
	words := strings.Fields("deploy cluster node replica shard quota latency backup restore index vector tenant " +
		"service gateway database region zone failover metric alert dashboard runbook incident upgrade")
	rng := rand.New(rand.NewPCG(1, 2))
	var (
		texts  []string
		writes []pipeline.DocWrite
	)
	for i := range overheadDocs {
		var sb strings.Builder
		for sb.Len() < overheadChars {
			sb.WriteString(words[rng.IntN(len(words))])
			sb.WriteByte(' ')
		}
		user, doc, text := overheadTenants[i%len(overheadTenants)], fmt.Sprintf("doc-%07d", i), sb.String()
		if user == "alice" {
			texts = append(texts, text)
		}
		vs, err := emb.Embed(b.Context(), []string{text})
		if err != nil {
			b.Fatal(err)
		}
		writes = append(writes, pipeline.DocWrite{UserID: user, DocID: doc, Version: 1, Points: []pipeline.Point{{
			ID: pipeline.PointID(user, doc, 0), Vector: vs[0], ChunkCount: 1, Text: text, Keywords: pipeline.Keywords(text),
		}}})
		if len(writes) == 200 {
			if err := store.Apply(b.Context(), "docs", writes); err != nil {
				b.Fatal(err)
			}
			writes = writes[:0]
		}
	}
	return texts
}
