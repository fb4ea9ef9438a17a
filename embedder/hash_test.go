package embedder_test

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/ingest"
	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
)

var (
	_ ingest.Embedder   = (*embedder.Hash)(nil)
	_ ingest.Embedder   = (*embedder.Remote)(nil)
	_ ingest.Identified = (*embedder.Remote)(nil)
)

func newHash(t testing.TB, dims int) *embedder.Hash {
	t.Helper()
	h, err := embedder.NewHash(dims)
	if err != nil {
		t.Fatalf("NewHash(%d): %v", dims, err)
	}
	return h
}

func embed(t testing.TB, h *embedder.Hash, texts ...string) [][]float32 {
	t.Helper()
	vs, err := h.Embed(t.Context(), texts)
	if err != nil {
		t.Fatalf("Embed: %v", err)
	}
	if len(vs) != len(texts) {
		t.Fatalf("Embed returned %d vectors for %d texts", len(vs), len(texts))
	}
	return vs
}

// checksum is FNV-1a 64 over the little-endian bits of v.
func checksum(v []float32) uint64 {
	f := fnv.New64a()
	var buf [4]byte
	for _, x := range v {
		binary.LittleEndian.PutUint32(buf[:], math.Float32bits(x))
		f.Write(buf[:])
	}
	return f.Sum64()
}

// top formats the n components of v largest in magnitude as index:value.
func top(v []float32, n int) string {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(a, b int) int {
		return cmp.Compare(math.Abs(float64(v[b])), math.Abs(float64(v[a])))
	})
	parts := make([]string, min(n, len(v)))
	for i := range parts {
		parts[i] = fmt.Sprintf("%d:%.6f", idx[i], v[idx[i]])
	}
	return strings.Join(parts, " ")
}

func TestNewHash(t *testing.T) {
	tests := []struct {
		dims    int
		wantErr bool
	}{
		{dims: -1, wantErr: true},
		{dims: 0, wantErr: true},
		{dims: 1},
		{dims: 384},
		{dims: 1024},
		{dims: 65536},
		{dims: 65537, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.dims), func(t *testing.T) {
			h, err := embedder.NewHash(tt.dims)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("NewHash(%d) succeeded, want an error", tt.dims)
				}
				return
			}
			if err != nil {
				t.Fatalf("NewHash(%d): %v", tt.dims, err)
			}
			if got := h.Dimensions(); got != tt.dims {
				t.Errorf("Dimensions() = %d, want %d", got, tt.dims)
			}
		})
	}
}

// hugeText is 1.2 MB with about 100k distinct features, built without
// math/rand so that its checksum can be pinned.
func hugeText() string {
	var b strings.Builder
	for i := range 40000 {
		fmt.Fprintf(&b, "Token%d on host-%x. ", i%977, uint32(i)*2654435761)
	}
	return b.String()
}

// TestHashPinned pins vectors: any change to tokenization, hashing or
// weighting changes them, and would make vectors already stored in Qdrant
// incomparable with new queries.
func TestHashPinned(t *testing.T) {
	tests := []struct {
		name string
		dims int
		text string
		top  string // the largest components
		sum  uint64 // checksum of all components
	}{
		{"ascii", 1024, "The m5.xlarge instance i-0abc123 in eu-west-1 is owned by team payments.", "38:0.186602 68:0.186602 122:-0.186602", 0xa89afce7a6e068b6},
		{"unicode", 384, "Grüße aus Köln: naïve Café-Besitzer zählen 42 Äpfel; 日本語のテキスト", "218:0.274230 322:-0.274230 55:-0.199440", 0xaf848326894d96db},
		{"dims 1", 1, "disk full on orders-db-7", "0:1.000000", 0x4b72477f9c5c2f98},
		{"empty", 1024, "", "0:0.031250 1:0.031250 2:0.031250", 0xa62c7de8f1ed8325},
		{"huge", 1024, hugeText(), "951:0.131702 224:-0.113672 577:0.113133", 0xa2040618a1096da1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := embed(t, newHash(t, tt.dims), tt.text)[0]
			if got := top(v, 3); got != tt.top {
				t.Errorf("largest components = %s, want %s", got, tt.top)
			}
			if got := checksum(v); got != tt.sum {
				t.Errorf("checksum = %#x, want %#x", got, tt.sum)
			}
		})
	}
}

func TestHashDeterministic(t *testing.T) {
	texts := []string{
		"",
		"The m5.xlarge instance i-0abc123 in eu-west-1 is owned by team payments.",
		"Grüße aus Köln — 日本語 — हिन्दी",
		strings.Repeat("again and again ", 2000),
	}
	a, b := newHash(t, 768), newHash(t, 768)
	batchA := embed(t, a, texts...)
	batchB := embed(t, b, texts...)
	for i, text := range texts {
		single := embed(t, a, text)[0]
		if checksum(batchA[i]) != checksum(batchB[i]) {
			t.Errorf("text %d: two instances disagree", i)
		}
		if checksum(batchA[i]) != checksum(single) {
			t.Errorf("text %d: vector in a batch differs from the vector alone", i)
		}
	}
}

func TestHashUnitNorm(t *testing.T) {
	texts := map[string]string{
		"empty":        "",
		"spaces":       " \t\n ",
		"punctuation":  "!?.,;:-- ... ***",
		"one letter":   "a",
		"unicode":      "Grüße aus Köln: naïve Café-Besitzer zählen 42 Äpfel",
		"cjk":          "日本語のテキストを検索する",
		"devanagari":   "हिन्दी में खोज",
		"emoji":        "🚀🔥 deploy 🎉",
		"invalid utf8": "\xff\xfe\xfd abc \xc3",
		"long word":    strings.Repeat("x", 100000),
		"repeated":     strings.Repeat("the ", 300000),
		"huge":         hugeText(),
	}
	for _, dims := range []int{1, 2, 7, 1024, 65536} {
		h := newHash(t, dims)
		for name, text := range texts {
			t.Run(fmt.Sprintf("%s/%d", name, dims), func(t *testing.T) {
				v := embed(t, h, text)[0]
				if len(v) != dims {
					t.Fatalf("len = %d, want %d", len(v), dims)
				}
				var sum float64
				for i, x := range v {
					if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
						t.Fatalf("component %d is %v", i, x)
					}
					sum += float64(x) * float64(x)
				}
				if math.Abs(sum-1) > 1e-5 {
					t.Errorf("squared norm = %v, want 1", sum)
				}
			})
		}
	}
}

func TestHashNormalization(t *testing.T) {
	h := newHash(t, 1024)
	same := []struct{ a, b string }{
		{"Hello, World!", "hello world"},
		{"ÄRGER über STRAẞE", "ärger ÜBER straße"},
		{"i-0ABC123 in EU-WEST-1", "i 0abc123 in eu west 1"},
		{"", "!!! ... ???"},
		{"\xff", ""},
	}
	for _, tt := range same {
		t.Run(tt.a, func(t *testing.T) {
			v := embed(t, h, tt.a, tt.b)
			if checksum(v[0]) != checksum(v[1]) {
				t.Errorf("%q and %q embed differently (cosine %.4f)", tt.a, tt.b, cosine(v[0], v[1]))
			}
		})
	}
}

// TestHashSimilarity checks that near matches (inflection, typos, word order)
// stay closer than unrelated texts.
func TestHashSimilarity(t *testing.T) {
	tests := []struct {
		name            string
		text, near, far string
	}{
		{"inflection", "disk full on the database server", "disks filling up on database servers", "certificate expired for the payment gateway"},
		{"typos", "connection timeout to the orders database", "conection timout to the ordres databse", "the deploy pipeline failed on lint"},
		{"word order", "restart the payments worker", "payments worker restart", "rotate the api keys"},
		{"unicode", "Überprüfung der Zahlungen fehlgeschlagen", "überprüfungen der zahlung fehlgeschlagen", "Speicher voll auf dem Server"},
	}
	h := newHash(t, 1024)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := embed(t, h, tt.text, tt.near, tt.far)
			near, far := cosine(v[0], v[1]), cosine(v[0], v[2])
			if near <= far+0.2 {
				t.Errorf("cosine near = %.3f, far = %.3f: want near clearly above far", near, far)
			}
		})
	}
}

func TestHashEmptyBatch(t *testing.T) {
	vs, err := newHash(t, 8).Embed(t.Context(), nil)
	if err != nil || len(vs) != 0 {
		t.Fatalf("Embed(nil) = %d vectors, %v; want none, nil", len(vs), err)
	}
}

func TestHashVectorsIndependent(t *testing.T) {
	vs := embed(t, newHash(t, 16), "first text", "second text")
	want := checksum(vs[1])
	_ = append(vs[0], 42) // must not write into vs[1]
	if checksum(vs[1]) != want {
		t.Error("appending to one vector changed the next one")
	}
}

func TestHashConcurrent(t *testing.T) {
	h := newHash(t, 1024)
	texts := []string{
		"",
		"The m5.xlarge instance i-0abc123 in eu-west-1 is owned by team payments.",
		"Grüße aus Köln — 日本語 — हिन्दी",
		strings.Repeat("lorem ipsum dolor sit amet ", 200),
		hugeText()[:64<<10],
	}
	want := embed(t, h, texts...)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for round := range 10 {
				// Rotate so that goroutines embed different texts at once.
				batch := make([]string, len(texts))
				for i := range texts {
					batch[i] = texts[(i+g+round)%len(texts)]
				}
				got, err := h.Embed(t.Context(), batch)
				if err != nil {
					t.Errorf("Embed: %v", err)
					return
				}
				for i := range batch {
					if checksum(got[i]) != checksum(want[(i+g+round)%len(texts)]) {
						t.Errorf("goroutine %d round %d: vector %d differs", g, round, i)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestHashContext(t *testing.T) {
	h := newHash(t, 256)
	many := make([]string, 2000)
	text := hugeText()[:64<<10]
	for i := range many {
		many[i] = text
	}

	canceled, cancel := context.WithCancel(t.Context())
	cancel()
	expired, cancel2 := context.WithDeadline(t.Context(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name  string
		ctx   func() context.Context
		texts []string
		want  error
	}{
		{"canceled before", func() context.Context { return canceled }, []string{"a"}, context.Canceled},
		{"deadline passed", func() context.Context { return expired }, []string{"a"}, context.DeadlineExceeded},
		{"canceled during", func() context.Context {
			// 2000 texts of 64 KB take over a second: the cancel lands
			// before the first text or between two of them.
			ctx, cancel := context.WithCancel(t.Context())
			go cancel()
			return ctx
		}, many, context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			vs, err := h.Embed(tt.ctx(), tt.texts)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Embed error = %v, want %v", err, tt.want)
			}
			if vs != nil {
				t.Errorf("Embed returned %d vectors with its error", len(vs))
			}
		})
	}
}

// functionWords and contentWords are the shared language of the synthetic
// documents. About 45% of the words of English prose are function words.
var functionWords = strings.Fields(`
the a of to and in is for on with that by this be are from at as it or
an was will not can has have all new more when which after before should
must may into out up down over under between during without about than
then only also each every other some any most first last next same`)

var contentWords = strings.Fields(`
server servers instance instances cluster clusters node nodes pod pods
container containers service services database databases table tables
index indexes query queries request requests response responses latency
throughput error errors warning warnings timeout timeouts retry retries
connection connections pool pools thread threads memory cpu disk disks
network storage volume volumes bucket buckets queue queues topic topics
stream streams message messages event events log logs metric metrics
alert alerts dashboard dashboards deploy deploys deployment deployments
release releases rollback version versions config configuration secret
secrets certificate certificates key keys token tokens user users
account accounts team teams owner owners region regions zone zones
backup backups snapshot snapshots replica replicas primary leader
follower shard shards partition partitions load balancer gateway proxy
cache caches session sessions job jobs worker workers scheduler cron
pipeline pipelines build builds test tests incident incidents outage
outages ticket tickets runbook runbooks postmortem migration migrations
schema upgrade upgrades patch patches policy policies role roles
permission permissions audit billing invoice invoices payment payments
order orders customer customers report reports export import upload
download file files folder path paths endpoint endpoints api route routes
traffic spike peak capacity quota limit limits budget cost costs
high low slow fast stale healthy unhealthy degraded failed failing
running stopped pending blocked ready busy idle full empty large small
restart restarts restarted scale scaled scaling rotate rotated rotation
monitor monitored check checks checked verify verified update updated
create created delete deleted drop dropped increase increased reduce
reduced enable enabled disable disabled block allow allowed deny denied
investigate investigated fix fixed resolve resolved escalate escalated
page paged notify notified review reviewed approve approved merge merged
daily weekly monthly nightly hourly morning evening yesterday today
production staging development internal external public private
`)

var (
	instanceFamilies = []string{"m5", "m6i", "c5", "c6g", "r6g", "t3", "i3en", "g5", "x2idn", "m7g"}
	instanceSizes    = []string{"large", "xlarge", "2xlarge", "4xlarge", "8xlarge"}
	regions          = []string{"us-east-1", "us-east-2", "us-west-2", "eu-west-1", "eu-west-2", "eu-central-1", "eu-north-1", "ap-southeast-1", "ap-southeast-2", "ap-northeast-1", "sa-east-1", "ca-central-1"}
	teams            = []string{"payments", "search", "identity", "platform", "growth", "checkout", "ledger", "fraud", "messaging", "storage", "observability", "mobile", "data", "ml", "security"}
	systems          = []string{"orders", "billing", "catalog", "inventory", "auth", "notifications", "reports", "ledger", "shipping", "pricing", "profiles", "sessions"}
	roles            = []string{"api", "db", "worker", "cache", "gateway", "queue", "cron", "search"}
)

// profile holds the distinctive tokens of one synthetic document.
type profile struct {
	instanceType, instanceID, region, team, host, ticket, ip, bucket string
}

func newProfile(r *rand.Rand) profile {
	system := systems[r.IntN(len(systems))]
	role := roles[r.IntN(len(roles))]
	return profile{
		instanceType: instanceFamilies[r.IntN(len(instanceFamilies))] + "." + instanceSizes[r.IntN(len(instanceSizes))],
		instanceID:   fmt.Sprintf("i-0%x", r.Uint64()>>4),
		region:       regions[r.IntN(len(regions))],
		team:         teams[r.IntN(len(teams))],
		host:         fmt.Sprintf("%s-%s-%d.prod.internal", system, role, r.IntN(40)),
		ticket:       fmt.Sprintf("INC-%05d", r.IntN(100000)),
		ip:           fmt.Sprintf("10.%d.%d.%d", r.IntN(256), r.IntN(256), r.IntN(256)),
		bucket:       fmt.Sprintf("%s-%s-%x", system, []string{"logs", "backups", "exports", "assets"}[r.IntN(4)], r.Uint32()>>12),
	}
}

func (p profile) token(r *rand.Rand) string {
	return []string{p.instanceType, p.instanceID, p.region, p.team, p.host, p.ticket, p.ip, p.bucket}[r.IntN(8)]
}

// generator writes varied documents: prose of Zipf-distributed words, sprinkled with a document's distinctive tokens, and sentences
// in several phrasings around those tokens, each phrasing used at most once
// per document.
type generator struct {
	r                 *rand.Rand
	function, content *rand.Zipf
}

func newGenerator(seed uint64) *generator {
	r := rand.New(rand.NewPCG(seed, 0x5eed))
	return &generator{
		r:        r,
		function: rand.NewZipf(r, 1.1, 2, uint64(len(functionWords)-1)),
		content:  rand.NewZipf(r, 1.1, 10, uint64(len(contentWords)-1)),
	}
}

var phrasings = []func(g *generator, p profile) string{
	func(g *generator, p profile) string {
		return fmt.Sprintf("The %s instance %s in %s is owned by team %s.", p.instanceType, p.instanceID, p.region, p.team)
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("%s runs on %s and serves %s from %s.", p.host, p.instanceType, g.words(2), p.region)
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("Ticket %s tracks %s on %s.", p.ticket, g.words(4), p.host)
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("%s resolves to %s and writes %s to bucket %s.", p.host, p.ip, g.words(1), p.bucket)
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("Team %s was paged at %02d:%02d because %s on %s.", p.team, g.r.IntN(24), g.r.IntN(60), g.words(3), p.instanceID)
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("Snapshots of %s are copied %s to %s in %s.", p.instanceID, g.words(1), p.bucket, p.region)
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("If %s is %s, page the %s on-call and check %s first.", p.host, g.words(1), p.team, g.words(2))
	},
	func(g *generator, p profile) string {
		return fmt.Sprintf("Capacity for %s in %s is %d %s, see %s.", p.team, p.region, 2+g.r.IntN(500), g.words(1), p.ticket)
	},
}

func (g *generator) prose(p profile) string {
	words := strings.Fields(g.words(6 + g.r.IntN(14)))
	for range g.r.IntN(3) {
		words[g.r.IntN(len(words))] = p.token(g.r)
	}
	words[0] = strings.ToUpper(words[0][:1]) + words[0][1:]
	return strings.Join(words, " ") + "."
}

func (g *generator) words(n int) string {
	ws := make([]string, n)
	for i := range ws {
		if g.r.Float64() < 0.45 {
			ws[i] = functionWords[g.function.Uint64()]
		} else {
			ws[i] = contentWords[g.content.Uint64()]
		}
	}
	return strings.Join(ws, " ")
}

// document returns the sentences of a document of about minBytes..maxBytes.
func (g *generator) document(minBytes, maxBytes int) []string {
	p := newProfile(g.r)
	target := minBytes + g.r.IntN(maxBytes-minBytes+1)
	order := g.r.Perm(len(phrasings))
	var sentences []string
	for size := 0; size < target; {
		var s string
		if len(order) > 0 && g.r.IntN(3) == 0 {
			s = phrasings[order[0]](g, p)
			order = order[1:]
		} else {
			s = g.prose(p)
		}
		sentences = append(sentences, s)
		size += len(s) + 1
	}
	return sentences
}

// TestHashRanking embeds 300 synthetic documents, queries each with one of its
// own sentences and checks that the document ranks first.
func TestHashRanking(t *testing.T) {
	const (
		docs    = 300
		minTop1 = 0.95
	)
	tests := []struct {
		name               string
		minBytes, maxBytes int
	}{
		{"short documents", 200, 800},
		{"chunks of 1-2 KB", 1000, 2000},
	}
	h := newHash(t, 1024)
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := newGenerator(uint64(i + 1))
			texts := make([]string, docs)
			queries := make([]string, docs)
			for d := range docs {
				sentences := g.document(tt.minBytes, tt.maxBytes)
				texts[d] = strings.Join(sentences, " ")
				queries[d] = sentences[g.r.IntN(len(sentences))]
			}
			docVecs := embed(t, h, texts...)
			queryVecs := embed(t, h, queries...)

			top1 := 0
			for d, q := range queryVecs {
				own := cosine(q, docVecs[d])
				rank := 1
				for o, v := range docVecs {
					if o != d && cosine(q, v) >= own {
						rank++
					}
				}
				if rank == 1 {
					top1++
				} else if testing.Verbose() {
					t.Logf("rank %d for %q", rank, queries[d])
				}
			}
			got := float64(top1) / docs
			t.Logf("source document first for %d of %d queries (%.1f%%)", top1, docs, 100*got)
			if got < minTop1 {
				t.Errorf("top-1 rate %.3f, want >= %.2f", got, minTop1)
			}
		})
	}
}

// benchText returns a 1 KB text of prose and distinctive tokens.
func benchText(seed uint64, size int) string {
	g := newGenerator(seed)
	var b strings.Builder
	for b.Len() < size {
		b.WriteString(strings.Join(g.document(size, size), " "))
		b.WriteByte(' ')
	}
	return b.String()[:size]
}

func BenchmarkEmbed1KB(b *testing.B) {
	h := newHash(b, 1024)
	texts := []string{benchText(1, 1024)}
	ctx := b.Context()
	b.SetBytes(1024)
	b.ReportAllocs()
	cpu := cputimetest.Now(b)
	for b.Loop() {
		if _, err := h.Embed(ctx, texts); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/KB")
	b.ReportMetric(float64((cputimetest.Now(b)-cpu).Nanoseconds())/float64(b.N)/1e3, "cpu-µs/KB")
}

func BenchmarkEmbedBatch(b *testing.B) {
	for _, n := range []int{16, 128} {
		b.Run(fmt.Sprintf("%dx2KB", n), func(b *testing.B) {
			h := newHash(b, 1024)
			texts := make([]string, n)
			var total int
			for i := range texts {
				texts[i] = benchText(uint64(i), 2000)
				total += len(texts[i])
			}
			ctx := b.Context()
			b.SetBytes(int64(total))
			b.ReportAllocs()
			cpu := cputimetest.Now(b)
			for b.Loop() {
				if _, err := h.Embed(ctx, texts); err != nil {
					b.Fatal(err)
				}
			}
			kb := float64(b.N) * float64(total) / 1024
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/kb, "µs/KB")
			b.ReportMetric(float64((cputimetest.Now(b)-cpu).Nanoseconds())/1e3/kb, "cpu-µs/KB")
		})
	}
}

// TestHashPinnedQueries pins the vectors of texts of every length from a
// search query's to a chunk's, embedded one per call and in one batch that
// alternates long and short texts, so that no buffer reused between texts
// leaks into the next vector.
func TestHashPinnedQueries(t *testing.T) {
	var texts []string
	for i, size := range []int{6000, 1, 2000, 80, 900, 2, 400, 3, 200, 5, 120, 8, 80, 13, 40, 20} {
		texts = append(texts, benchText(uint64(100+i), size), "")
	}
	for _, tt := range []struct {
		dims int
		sum  uint64
	}{{1, 0x3b1aabedd664193e}, {64, 0x3b93e6c3382a5e79}, {100, 0xe60dd8f3fa34ec8e}, {1024, 0xfd8eebab1d6b1f48}, {4096, 0x4f105bcff3baa8fa}} {
		t.Run(fmt.Sprint(tt.dims), func(t *testing.T) {
			h := newHash(t, tt.dims)
			f := fnv.New64a()
			batch := embed(t, h, texts...)
			for i, text := range texts {
				one := embed(t, h, text)[0]
				if checksum(one) != checksum(batch[i]) {
					t.Errorf("text %d (%d bytes): the vector alone differs from the vector in a batch", i, len(text))
				}
				binary.Write(f, binary.LittleEndian, checksum(one))
			}
			if got := f.Sum64(); got != tt.sum {
				t.Errorf("checksum = %#x, want %#x", got, tt.sum)
			}
		})
	}
}

// BenchmarkEmbedQuery embeds search queries of 80 characters, one per call,
// as the search service does, into 1024 dimensions.
func BenchmarkEmbedQuery(b *testing.B) {
	h := newHash(b, 1024)
	queries := make([][]string, 64)
	for i := range queries {
		queries[i] = []string{benchText(uint64(1000+i), 80)}
	}
	ctx := b.Context()
	b.ReportAllocs()
	cpu := cputimetest.Now(b)
	i := 0
	for b.Loop() {
		if _, err := h.Embed(ctx, queries[i%len(queries)]); err != nil {
			b.Fatal(err)
		}
		i++
	}
	b.ReportMetric(float64((cputimetest.Now(b)-cpu).Nanoseconds())/float64(b.N)/1e3, "cpu-µs/op")
}
