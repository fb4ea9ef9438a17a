// Package bench measures ragpipe side by side with what its servers absorb
// on the same machine, in one run: `ragpipe bench`.
//
// Its stages, in order:
//
//   - ceiling: raw Qdrant upserts (wait=true) of the documents' points into
//     collections made the way ragpipe makes them, for every batch size and
//     parallelism of a small grid; the best rate is the ceiling.
//   - vectors: one `ragpipe worker` process ingests the same documents
//     published as events carrying their vectors, timed from the first
//     publish to the last acknowledgement, then the points are counted;
//     twice, the vectors as JSON arrays (`vector`) and as base64
//     (`vector_b64`).
//     After each of these drains and the text stage's, the NATS floor: the
//     same events consumed from a stream of their own by a process that
//     only acknowledges them, with the worker's consumer settings; its CPU
//     per event is what the NATS client alone costs (floor.go).
//   - text: the same with text only, embedded by the hash embedder.
//   - search: searches through rag.search (one `ragpipe searcher` process)
//     against raw Qdrant Query calls with the same tenant filter, on the text
//     stage's collection, at concurrency 1 and 8, beside the same Query's
//     bytes through the search floor, a process that only forwards them to
//     Qdrant (searchfloor.go), and a bare NATS round trip to the searcher;
//     the paths take turns in interleaved rounds.
//   - builtin: fewer documents (BuiltinDocs), embedded by the builtin
//     semantic embedder: its chunks per second of worker CPU.
//   - pinned: Qdrant alone on one CPU and everything else on another: the
//     ceiling, then the vector_b64, vector and text drains against it, each
//     followed by the same drain from a stream filled first: every event
//     published while no worker consumes, then one worker started and timed
//     from its ready line to the last acknowledgement (backlog.go).
//   - rss: the resident memory of one worker draining a backlog of small
//     events published before it starts.
//
// Every collection is fresh, and deleted when its stage is done.
package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/qdrant/go-client/qdrant"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/qdrantstore"
	"github.com/ragpipe/ragpipe/worker"
)

// Stage names, for Config.Stages and ParseStages.
const (
	StageCeiling = "ceiling"
	StageVectors = "vectors"
	StageText    = "text"
	StageBuiltin = "builtin"
	StagePinned  = "pinned"
	StageSearch  = "search"
	StageRSS     = "rss"
)

// Stages are every stage, in the order they run.
// Search follows text at once: it keeps the text stage's collection, which
// Qdrant indexes in the background, and deletes it, so that the indexing
// does not count in the stages after it.
var Stages = []string{StageCeiling, StageVectors, StageText, StageSearch, StageBuiltin, StagePinned, StageRSS}

const (
	// Dims is the dimensions of every collection the bench creates.
	Dims = 1024
	// textChars is the length of a document's text: one chunk.
	textChars = 900
	// backlogChars is the length of the text of a backlog event.
	backlogChars = 200
	// stallTimeout is how long a drain may go without any progress.
	stallTimeout = 60 * time.Second
	// cleanupTimeout bounds the removal of one collection's traces.
	cleanupTimeout = time.Minute
)

// ParseStages parses a comma-separated list of stage names; empty means
// every stage. The result is in run order. The search stage searches the
// text stage's collection, so selecting it selects text too.
func ParseStages(list string) ([]string, error) {
	if strings.TrimSpace(list) == "" {
		return slices.Clone(Stages), nil
	}
	want := map[string]bool{}
	for _, name := range strings.Split(list, ",") {
		name = strings.TrimSpace(name)
		if !slices.Contains(Stages, name) {
			return nil, fmt.Errorf("unknown stage %q: want some of %s", name, strings.Join(Stages, ","))
		}
		want[name] = true
	}
	if want[StageSearch] {
		want[StageText] = true
	}
	var stages []string
	for _, s := range Stages {
		if want[s] {
			stages = append(stages, s)
		}
	}
	return stages, nil
}

// Config configures Run; zero fields take the documented defaults.
type Config struct {
	// Executable is the ragpipe binary, run as `ragpipe worker` and
	// `ragpipe searcher`. Required.
	Executable string
	// Env is the environment of those processes, which therefore take
	// their settings from it, except for those the bench sets: NATS_URL,
	// QDRANT_URL, RAGPIPE_COLLECTIONS (the stage's fresh collection, Dims
	// dimensions, cosine), RAGPIPE_EMBEDDER=hash, RAGPIPE_HTTP_ADDR (a free
	// loopback port) and RAGPIPE_LOG_LEVEL=info.
	Env []string
	// NATSURL is the NATS those processes connect to, the one Conn is
	// connected to. Required.
	NATSURL string
	// QdrantURL is the Qdrant those processes write to, in QDRANT_URL form,
	// the one Store is connected to. Required.
	QdrantURL string
	// Conn is the bench's own NATS connection: it publishes events, reads
	// the consumer's state and sends searches. Required.
	Conn *nats.Conn
	// Store is the bench's Qdrant, configured like the processes' so that
	// the collections it creates are made the same way. Required.
	Store *qdrantstore.Store
	// QdrantPID is the process id of Qdrant when the bench started it, for
	// the CPU it uses; 0 when unknown.
	QdrantPID int
	// Prefix is the subject prefix, RAGPIPE_SUBJECT_PREFIX. Default "rag".
	Prefix string
	// PurgeNATS removes what each stage left in the streams (events not
	// consumed, dead letters, version register entries of its collection)
	// when the stage is done; for a NATS that outlives the run.
	PurgeNATS bool

	// Stages are the stages to run, see ParseStages. Default: all.
	Stages []string
	// Docs is the number of documents of the ceiling, vectors, text and
	// pinned stages. Default 10,000.
	Docs int
	// BuiltinDocs is the number of documents of the builtin stage, at most
	// Docs. Default 1,000.
	BuiltinDocs int
	// Searches is the number of search requests per path and concurrency.
	// Default 2,000.
	Searches int
	// Backlog is the number of events of the rss stage. Default 1,000,000.
	Backlog int
	// BacklogTime is the longest the rss stage drains. Default 5m.
	BacklogTime time.Duration

	// Settings describe the run in the report; Run fills in the figures
	// it knows (sizes, Qdrant's version, CPUs), the caller where the
	// servers came from and the HNSW mode.
	Settings Settings
	// Progress receives a line per step. Default: discarded.
	Progress io.Writer
}

func (c *Config) setDefaults() error {
	if c.Executable == "" || c.NATSURL == "" || c.QdrantURL == "" || c.Conn == nil || c.Store == nil {
		return errors.New("bench: Executable, NATSURL, QdrantURL, Conn and Store are required")
	}
	if c.Prefix == "" {
		c.Prefix = "rag"
	}
	if c.Stages == nil {
		c.Stages = slices.Clone(Stages)
	}
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Docs, 10_000)
	def(&c.BuiltinDocs, 1_000)
	c.BuiltinDocs = min(c.BuiltinDocs, c.Docs)
	def(&c.Searches, 2_000)
	def(&c.Backlog, 1_000_000)
	if c.BacklogTime == 0 {
		c.BacklogTime = 5 * time.Minute
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.Docs < 1 || c.Searches < 1 || c.Backlog < 1 || c.BacklogTime < 0 {
		return fmt.Errorf("bench: docs %d, searches %d, backlog %d and backlog time %s must be positive",
			c.Docs, c.Searches, c.Backlog, c.BacklogTime)
	}
	return nil
}

// runner is one run's state.
type runner struct {
	cfg      Config
	id       string // in every collection name, so that runs never collide
	js       jetstream.JetStream
	consumer jetstream.Consumer // the workers', once found
	qc       *qdrant.Client
	report   *Report
	docs     []doc // made on first use
	// points are the documents' points of the ceiling, with keyword
	// vectors named pointsSparse (none when empty); made on first use.
	points       []*qdrant.PointStruct
	pointsSparse string
	live         map[string]struct{} // collections not yet cleaned up
	// pinOthers are the CPUs of the workers while the pinned stage runs;
	// nil otherwise.
	pinOthers []int
}

// Run runs the stages in order and returns what they measured. A stage that
// fails is reported as failed and the others still run, except search
// without its text stage's collection; the error then names every failed
// stage. When ctx ends (SIGINT, SIGTERM), Run stops the processes it
// started, cleans up, marks the report interrupted and returns an error
// wrapping ctx's. The report is never nil.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	report := &Report{Settings: cfg.Settings}
	if err := cfg.setDefaults(); err != nil {
		return report, err
	}
	js, err := jetstream.New(cfg.Conn)
	if err != nil {
		return report, fmt.Errorf("bench: %w", err)
	}
	r := &runner{
		cfg: cfg, id: fmt.Sprintf("%06x", rand.Uint32()&0xffffff), js: js, qc: cfg.Store.Client(),
		report: report, live: map[string]struct{}{},
	}
	s := &report.Settings
	s.Docs, s.BuiltinDocs, s.TextChars, s.Dims, s.Tenants = cfg.Docs, cfg.BuiltinDocs, textChars, Dims, len(tenants)
	s.Searches, s.Backlog, s.BacklogChars, s.BacklogTimeS = cfg.Searches, cfg.Backlog, backlogChars, cfg.BacklogTime.Seconds()
	s.CPUs, s.GoVersion, s.LoadAvg1m = runtime.NumCPU(), runtime.Version(), loadAverage()
	health, err := r.qc.HealthCheck(ctx)
	if err != nil {
		return report, fmt.Errorf("bench: qdrant health check: %w", err)
	}
	s.QdrantVersion = health.GetVersion()

	defer r.cleanupAll(ctx)
	for _, stage := range cfg.Stages {
		if ctx.Err() == nil {
			r.progressf("%s: starting", stage)
			r.run(ctx, stage)
		}
		if ctx.Err() != nil {
			report.Interrupted = true
			return report, fmt.Errorf("interrupted during the %s stage: %w", stage, ctx.Err())
		}
	}
	return report, report.Err()
}

// run runs one stage and records its result in the report.
func (r *runner) run(ctx context.Context, stage string) {
	outcome := func(err error) string {
		switch {
		case err == nil:
			return ""
		case ctx.Err() != nil:
			return "interrupted"
		default:
			r.progressf("%s: FAILED: %v", stage, err)
			return strings.Join(strings.Fields(err.Error()), " ")
		}
	}
	switch stage {
	case StageCeiling:
		res, err := r.ceiling(ctx, "ceiling")
		res.Error = outcome(err)
		r.report.Ceiling = res
	case StageVectors:
		for _, d := range []struct {
			body string
			out  **Ingest
		}{{bodyVector, &r.report.Vectors}, {bodyVectorB64, &r.report.VectorsB64}} {
			res, err := r.ingest(ctx, drain{name: d.body, body: d.body, embedder: embedderHash, docs: r.cfg.Docs, oneChunk: true, floor: true},
				r.report.Ceiling)
			res.Error = outcome(err)
			*d.out = res
		}
	case StageText, StageBuiltin:
		d := drain{name: stage, body: bodyText, embedder: embedderHash, docs: r.cfg.Docs, oneChunk: true,
			keep: stage == StageText && slices.Contains(r.cfg.Stages, StageSearch), floor: true}
		if stage == StageBuiltin {
			d.embedder, d.docs, d.oneChunk, d.floor = embedderBuiltin, r.cfg.BuiltinDocs, false, false
		}
		res, err := r.ingest(ctx, d, r.report.Ceiling)
		res.Error = outcome(err)
		if stage == StageText {
			r.report.Text = res
		} else {
			r.report.Builtin = res
		}
	case StagePinned:
		res, err := r.pinned(ctx)
		res.Error = outcome(err)
		r.report.Pinned = res
	case StageSearch:
		res, err := r.search(ctx)
		res.Error = outcome(err)
		r.report.Search = res
	case StageRSS:
		res, err := r.rss(ctx)
		res.Error = outcome(err)
		r.report.RSS = res
	}
}

func (r *runner) progressf(format string, args ...any) {
	fmt.Fprintf(r.cfg.Progress, "bench: "+format+"\n", args...)
}

// documents returns the documents of the ceiling, vectors, text and search
// stages, making them on first use.
func (r *runner) documents() []doc {
	if r.docs == nil {
		r.docs = makeDocs(r.cfg.Docs)
	}
	return r.docs
}

// collection returns the name of a fresh collection for what, and
// remembers to clean it up.
func (r *runner) collection(what string) string {
	name := fmt.Sprintf("bench_%s_%s", r.id, what)
	r.live[name] = struct{}{}
	return name
}

// textCollection is the text stage's collection, which search reads.
func (r *runner) textCollection() string { return fmt.Sprintf("bench_%s_%s", r.id, StageText) }

// subject is the ingest subject of user's events for collection.
func (r *runner) subject(user, collection string) string {
	return r.cfg.Prefix + ".ingest." + user + "." + collection
}

// count returns the exact number of points in collection.
func (r *runner) count(ctx context.Context, collection string) (uint64, error) {
	n, err := r.qc.Count(ctx, &qdrant.CountPoints{CollectionName: collection, Exact: qdrant.PtrOf(true)})
	if err != nil {
		return 0, fmt.Errorf("count %s: %w", collection, err)
	}
	return n, nil
}

// cleanup deletes collection (the generation it is an alias of, with the
// alias) and, with PurgeNATS, removes its events,
// dead letters and version register entries from the streams. It runs even
// when ctx has ended.
func (r *runner) cleanup(ctx context.Context, collection string) {
	if _, ok := r.live[collection]; !ok {
		return
	}
	delete(r.live, collection)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	// A collection ragpipe creates is an alias of its generation: deleting
	// the alias' name would leave the generation and its points behind.
	target, err := r.cfg.Store.AliasTarget(ctx, collection)
	if err == nil {
		if target == "" {
			target = collection
		}
		err = r.cfg.Store.DropCollection(ctx, target)
	}
	if err != nil {
		r.progressf("delete collection %s: %v", collection, err)
	}
	if !r.cfg.PurgeNATS {
		return
	}
	p := r.cfg.Prefix
	for stream, subject := range map[string]string{
		worker.IngestStream: p + ".ingest.*." + collection,
		worker.DLQStream:    p + ".dlq.*." + collection,
		// Register keys start with the collection (lww.Key).
		lww.RegisterStream: p + ".version." + collection + ".>",
	} {
		s, err := r.js.Stream(ctx, stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err == nil {
			err = s.Purge(ctx, jetstream.WithPurgeSubject(subject))
		}
		if err != nil {
			r.progressf("purge %s from %s: %v", subject, stream, err)
		}
	}
}

// cleanupAll cleans up the collections a failed or interrupted stage left.
func (r *runner) cleanupAll(ctx context.Context) {
	for collection := range r.live {
		r.cleanup(ctx, collection)
	}
}

// loadAverage returns the one-minute load average of the machine, 0 when
// /proc/loadavg cannot be read.
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	first, _, _ := strings.Cut(string(b), " ")
	load, _ := strconv.ParseFloat(first, 64)
	return load
}

// parallel calls f(ctx, i) for every i in [0, n) from workers goroutines,
// each taking the next i, and returns the first error.
func parallel(ctx context.Context, workers, n int, f func(ctx context.Context, i int) error) error {
	var next atomic.Int64
	g, ctx := errgroup.WithContext(ctx)
	for range workers {
		g.Go(func() error {
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				if err := f(ctx, i); err != nil {
					return err
				}
			}
			return nil
		})
	}
	return g.Wait()
}
