package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
)

// Report is what one run measured. Stages that were not selected are
// absent (nil); a stage that failed or was interrupted carries Error and
// whatever it measured before.
type Report struct {
	// Settings describe the run.
	Settings Settings `json:"settings"`
	// Ceiling, Vectors (JSON `vector`), VectorsB64 (`vector_b64`, also of
	// the vectors stage), Text, Builtin, Pinned, Search and RSS are the
	// stages' results.
	Ceiling    *Ceiling `json:"ceiling,omitempty"`
	Vectors    *Ingest  `json:"vectors,omitempty"`
	VectorsB64 *Ingest  `json:"vectors_b64,omitempty"`
	Text       *Ingest  `json:"text,omitempty"`
	Builtin    *Ingest  `json:"builtin,omitempty"`
	Pinned     *Pinned  `json:"pinned,omitempty"`
	Search     *Search  `json:"search,omitempty"`
	RSS        *RSS     `json:"rss,omitempty"`
	// Interrupted is set when SIGINT or SIGTERM stopped the run.
	Interrupted bool `json:"interrupted,omitempty"`
}

// Settings describe the run, so that reports can be compared.
type Settings struct {
	// Docs is the number of documents of the ceiling, vectors, text and
	// pinned stages, each about TextChars characters, one chunk, one point;
	// BuiltinDocs those of the builtin stage.
	Docs        int `json:"docs"`
	BuiltinDocs int `json:"builtin_docs"`
	// TextChars is the length of their texts.
	TextChars int `json:"text_chars"`
	// Dims is the dimensions of every collection.
	Dims int `json:"dims"`
	// Tenants is the number of user_ids the documents are spread over.
	Tenants int `json:"tenants"`
	// Searches is the number of requests per path and concurrency.
	Searches int `json:"searches"`
	// Backlog is the number of small events of the rss stage, each about
	// BacklogChars characters.
	Backlog      int `json:"backlog"`
	BacklogChars int `json:"backlog_chars"`
	// BacklogTimeS is the longest the rss stage drains, in seconds.
	BacklogTimeS float64 `json:"backlog_time_s"`
	// HNSW is the HNSW mode of the collections (RAGPIPE_HNSW).
	HNSW string `json:"hnsw"`
	// NATS and Qdrant say where the servers came from.
	NATS   string `json:"nats"`
	Qdrant string `json:"qdrant"`
	// QdrantVersion is the version Qdrant reports.
	QdrantVersion string `json:"qdrant_version"`
	// CPUs is the number of CPUs of this machine, shared by everything.
	CPUs int `json:"cpus"`
	// LoadAvg1m is the machine's one-minute load average when the run
	// started (Linux; 0 elsewhere): how busy the CPUs were in the minute
	// before, with a build or other tests, say.
	LoadAvg1m float64 `json:"load_avg_1m"`
	// GoVersion is the Go release ragpipe was built with.
	GoVersion string `json:"go_version"`
}

// Ceiling is what Qdrant itself absorbs: raw upserts (wait=true) of the
// documents' points into a collection made like ragpipe's, one fresh
// collection per trial.
type Ceiling struct {
	// Points is the number of points each trial upserts.
	Points int `json:"points"`
	// Best is the fastest trial whose exact count matched.
	Best *Trial `json:"best"`
	// Trials are every batch size and parallelism tried, in order.
	Trials []Trial `json:"trials"`
	// Error says why the stage failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// Trial is one ceiling setting and what it reached.
type Trial struct {
	// Batch is the points per Upsert request.
	Batch int `json:"batch"`
	// Parallel is the number of requests in flight.
	Parallel int `json:"parallel"`
	// Seconds is the time from the first request to the last reply.
	Seconds float64 `json:"seconds"`
	// PointsPerS is Points / Seconds.
	PointsPerS float64 `json:"points_per_s"`
	// Stored is the exact count of points afterwards.
	Stored uint64 `json:"stored"`
	// CountOK reports Stored == Ceiling.Points.
	CountOK bool `json:"count_ok"`
	// CPU is what Qdrant and the bench used during the trial.
	CPU *CPU `json:"cpu_seconds,omitempty"`
	// QdrantUsPerPoint is Qdrant's CPU per point, in microseconds.
	QdrantUsPerPoint *float64 `json:"qdrant_us_per_point,omitempty"`
}

// Ingest is ragpipe end to end: one `ragpipe worker` process, from the first
// publish to the last acknowledgement.
type Ingest struct {
	// Docs is the number of events published, one document each.
	Docs int `json:"docs"`
	// Body is what the events carry: "text", "vector" (a JSON array) or
	// "vector_b64"; Embedder is the worker's RAGPIPE_EMBEDDER.
	Body     string `json:"body"`
	Embedder string `json:"embedder"`
	// StreamFilledFirst marks a drain of a stream filled before its worker
	// started: every event published and acknowledged by the stream while
	// no worker consumed.
	StreamFilledFirst bool `json:"stream_filled_first,omitempty"`
	// Seconds is the time from the first publish (from the worker's ready
	// line when StreamFilledFirst) to the moment the consumer had nothing
	// pending and nothing awaiting acknowledgement.
	Seconds float64 `json:"seconds"`
	// DocsPerS is Docs / Seconds.
	DocsPerS float64 `json:"docs_per_s"`
	// Stored is the exact count of points in the collection afterwards.
	Stored uint64 `json:"stored"`
	// CountOK reports Stored == Docs.
	CountOK bool `json:"count_ok"`
	// RatioToCeiling is DocsPerS over the ceiling's best points/s (one
	// point per document); null without a ceiling.
	RatioToCeiling *float64 `json:"ratio_to_ceiling"`
	// CPU is what Qdrant, the worker and the bench used while timed (when
	// StreamFilledFirst, from the moment the bench saw the worker's ready
	// line, a few milliseconds at most after it was written).
	CPU *CPU `json:"cpu_seconds,omitempty"`
	// WorkerUsPerDoc and QdrantUsPerDoc are the worker's and Qdrant's CPU
	// per document, in microseconds.
	WorkerUsPerDoc *float64 `json:"worker_us_per_doc,omitempty"`
	QdrantUsPerDoc *float64 `json:"qdrant_us_per_doc,omitempty"`
	// QdrantVsCeiling is QdrantUsPerDoc over the ceiling's best trial's
	// Qdrant CPU per point: what Qdrant spends per document beyond storing
	// its point (one point per document); null without a ceiling.
	QdrantVsCeiling *float64 `json:"qdrant_vs_ceiling,omitempty"`
	// ChunksPerCoreS is Stored over the worker's CPU seconds: the points it
	// makes per second of one core.
	ChunksPerCoreS *float64 `json:"chunks_per_core_s,omitempty"`
	// PublishSeconds is the time from the first publish to the last one
	// acknowledged by the stream. QdrantCoresPublishing and QdrantCoresAfter
	// are the cores Qdrant kept busy (its CPU seconds per second) in that
	// time and in the rest of the drain: where it waited for the pipeline.
	// When StreamFilledFirst, publishing came before the timed drain, and
	// QdrantCoresAfter covers the whole of it.
	PublishSeconds        float64  `json:"publish_seconds,omitempty"`
	QdrantCoresPublishing *float64 `json:"qdrant_cores_publishing,omitempty"`
	QdrantCoresAfter      *float64 `json:"qdrant_cores_after,omitempty"`
	// NATSFloorUsPerDoc is the CPU per event, in microseconds, of a NATS
	// client alone: a process that consumes the drain's events again, from
	// a stream of their own, with the worker's consumer settings, and only
	// acknowledges each; the part of WorkerUsPerDoc that this client costs
	// whatever the worker does. Absent for drains that do not measure it;
	// NATSFloorError then says why when they do and it failed, which fails
	// nothing else.
	NATSFloorUsPerDoc *float64 `json:"nats_floor_us_per_doc,omitempty"`
	NATSFloorError    string   `json:"nats_floor_error,omitempty"`
	// Skipped says why the drain did not run (the builtin embedder missing
	// from the build); it is not a failure.
	Skipped string `json:"skipped,omitempty"`
	// Error says why the stage failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// Pinned is the pinned stage: Qdrant alone on QdrantCPUs, this process
// (publisher, embedded NATS) and the worker on OtherCPUs; the drains' ratios
// are to this stage's own ceiling.
type Pinned struct {
	QdrantCPUs []int    `json:"qdrant_cpus"`
	OtherCPUs  []int    `json:"other_cpus"`
	Ceiling    *Ceiling `json:"ceiling,omitempty"`
	// VectorsB64, Vectors and Text are the drains issue 17's figures are
	// taken from: published while the worker consumes.
	VectorsB64 *Ingest `json:"vectors_b64,omitempty"`
	Vectors    *Ingest `json:"vectors,omitempty"`
	Text       *Ingest `json:"text,omitempty"`
	// VectorsB64Backlog, VectorsBacklog and TextBacklog drain the same
	// events from a stream filled before the worker started
	// (StreamFilledFirst), each run right after its live drain: the rate of
	// the worker and Qdrant once the publisher and NATS no longer take CPU
	// from the worker.
	VectorsB64Backlog *Ingest `json:"vectors_b64_backlog,omitempty"`
	VectorsBacklog    *Ingest `json:"vectors_backlog,omitempty"`
	TextBacklog       *Ingest `json:"text_backlog,omitempty"`
	// Error says why the stage failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// Search compares searches through rag.search (a `ragpipe searcher`
// process) with raw Qdrant Query calls of the same tenant filter, on the
// text stage's collection.
type Search struct {
	// Points is the size of the collection, TenantPoints the points of the
	// tenant searched.
	Points       int `json:"points"`
	TenantPoints int `json:"tenant_points"`
	// TopK is the limit of every search.
	TopK int `json:"top_k"`
	// Requests is the number of requests per path and concurrency.
	Requests int `json:"requests"`
	// Indexed reports that Qdrant had finished indexing the collection
	// (status green) before the measurements.
	Indexed bool `json:"indexed"`
	// Levels are the results per concurrency.
	Levels []SearchLevel `json:"levels"`
	// Error says why the stage failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// SearchLevel is one concurrency's latencies on both paths.
type SearchLevel struct {
	// Concurrency is the number of requests in flight.
	Concurrency int `json:"concurrency"`
	// RagSearch is the latency of a NATS request to rag.search, Qdrant the
	// latency of the raw Query, PassThrough that of the raw Query's bytes
	// sent through the search floor (searchfloor.go), the least a search
	// service of its own over NATS costs, and NATSPing that of a $SRV.PING
	// the searcher answers: the NATS round trip alone.
	RagSearch   Latency `json:"rag_search"`
	Qdrant      Latency `json:"qdrant"`
	PassThrough Latency `json:"pass_through"`
	NATSPing    Latency `json:"nats_ping"`
	// P50OverheadMs is RagSearch.P50Ms - Qdrant.P50Ms,
	// PassThroughOverheadMs PassThrough.P50Ms - Qdrant.P50Ms.
	P50OverheadMs         float64 `json:"p50_overhead_ms"`
	PassThroughOverheadMs float64 `json:"pass_through_overhead_ms"`
}

// Latency is a latency distribution's median and 99th percentile
// (nearest rank), in milliseconds.
type Latency struct {
	P50Ms float64 `json:"p50_ms"` // median
	P99Ms float64 `json:"p99_ms"` // 99th percentile
	// CPU is the CPU time each process used per request meanwhile.
	CPU *RequestCPU `json:"cpu_us,omitempty"`
}

// RequestCPU is CPU time per request, in microseconds: on a machine whose
// cores the processes share, what a path adds to every request's wait once
// the cores are busy.
type RequestCPU struct {
	// Qdrant is absent when the bench did not start it (--qdrant-url).
	Qdrant *float64 `json:"qdrant,omitempty"`
	// Searcher is the searcher process's; the search floor's on the
	// pass-through.
	Searcher *float64 `json:"searcher,omitempty"`
	// Bench is this process's: the client, and the embedded NATS server
	// when there is one.
	Bench float64 `json:"bench"`
}

// RSS is the memory of one worker process draining a backlog of small
// events published before it started, for at most the backlog time.
type RSS struct {
	// Backlog is the number of events published.
	Backlog int `json:"backlog"`
	// Seconds is the time from the worker's start to the end of the drain
	// or the time limit.
	Seconds float64 `json:"seconds"`
	// Drained is the number of events acknowledged by then, DrainedAll
	// whether that was all of them.
	Drained    int  `json:"drained"`
	DrainedAll bool `json:"drained_all"`
	// DocsPerS is Drained / Seconds.
	DocsPerS float64 `json:"docs_per_s"`
	// PeakMiB is the worker's peak resident set (VmHWM).
	PeakMiB float64 `json:"peak_mib"`
	// StartMiB, MiddleMiB and EndMiB are samples of its resident set
	// (VmRSS): the first after its first acknowledgement, the one halfway
	// from there to the end, and the last.
	StartMiB  float64 `json:"start_mib"`
	MiddleMiB float64 `json:"middle_mib"`
	EndMiB    float64 `json:"end_mib"`
	// Samples is the number of VmRSS samples taken.
	Samples int `json:"samples"`
	// Acked is the number of events acknowledged once the worker had
	// exited, Stored the exact count of points then; CountOK reports that
	// they are equal.
	Acked   uint64 `json:"acked"`
	Stored  uint64 `json:"stored"`
	CountOK bool   `json:"count_ok"`
	// Error says why the stage failed; empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// Err returns an error naming every stage that failed, or nil.
func (r *Report) Err() error {
	var errs []error
	add := func(stage, msg string) {
		if msg != "" {
			errs = append(errs, fmt.Errorf("%s: %s", stage, msg))
		}
	}
	if r.Ceiling != nil {
		add(StageCeiling, r.Ceiling.Error)
	}
	if r.Vectors != nil {
		add(StageVectors, r.Vectors.Error)
	}
	if r.VectorsB64 != nil {
		add(StageVectors, r.VectorsB64.Error)
	}
	if r.Text != nil {
		add(StageText, r.Text.Error)
	}
	if r.Builtin != nil {
		add(StageBuiltin, r.Builtin.Error)
	}
	if r.Pinned != nil {
		add(StagePinned, r.Pinned.Error)
	}
	if r.Search != nil {
		add(StageSearch, r.Search.Error)
	}
	if r.RSS != nil {
		add(StageRSS, r.RSS.Error)
	}
	return errors.Join(errs...)
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// round returns x rounded to the given number of decimals.
func round(x float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(x*p) / p
}
