package bench

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
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
	// Seconds is the time from the first publish to the moment the consumer
	// had nothing pending and nothing awaiting acknowledgement.
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
	// CPU is what Qdrant, the worker and the bench used while timed.
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
	VectorsB64 *Ingest  `json:"vectors_b64,omitempty"`
	Vectors    *Ingest  `json:"vectors,omitempty"`
	Text       *Ingest  `json:"text,omitempty"`
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
	// latency of the raw Query, NATSPing that of a $SRV.PING the searcher
	// answers: the NATS round trip alone.
	RagSearch Latency `json:"rag_search"`
	Qdrant    Latency `json:"qdrant"`
	NATSPing  Latency `json:"nats_ping"`
	// P50OverheadMs is RagSearch.P50Ms - Qdrant.P50Ms.
	P50OverheadMs float64 `json:"p50_overhead_ms"`
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
	Qdrant   *float64 `json:"qdrant,omitempty"`
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

// WriteTable writes the report as aligned tables: ingestion, pinned, search,
// memory, then the figures of issue 17 beside their targets.
func (r *Report) WriteTable(w io.Writer) error {
	s := r.Settings
	var b strings.Builder
	fmt.Fprintf(&b, "ragpipe bench: %d docs of ~%d chars, %d dims, %d tenants, HNSW %s; %d CPUs, load average %.2f at start; Qdrant %s (%s); NATS %s\n",
		s.Docs, s.TextChars, s.Dims, s.Tenants, s.HNSW, s.CPUs, s.LoadAvg1m, s.QdrantVersion, s.Qdrant, s.NATS)
	if r.Interrupted {
		b.WriteString("interrupted: stages not shown did not run\n")
	}
	if r.Ceiling != nil || r.Vectors != nil || r.VectorsB64 != nil || r.Text != nil || r.Builtin != nil {
		b.WriteByte('\n')
		r.writeIngest(&b)
	}
	if r.Pinned != nil {
		b.WriteByte('\n')
		r.writePinned(&b)
	}
	if r.Search != nil {
		b.WriteByte('\n')
		r.writeSearch(&b)
	}
	if r.RSS != nil {
		b.WriteByte('\n')
		r.writeRSS(&b)
	}
	if r.Vectors != nil || r.VectorsB64 != nil || r.Text != nil || r.Pinned != nil || r.Search != nil {
		b.WriteString("\nTARGETS (issue 17)\n")
		r.writeTargets(&b)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// ingestRow is a row of an ingestion table.
type ingestRow struct {
	name string
	in   *Ingest
}

func (r *Report) writeIngest(b *strings.Builder) {
	writeIngestTable(b, r.Ceiling, []ingestRow{
		{"ragpipe, vector (JSON)", r.Vectors}, {"ragpipe, vector_b64", r.VectorsB64},
		{"ragpipe, text + hash", r.Text}, {"ragpipe, text + builtin", r.Builtin},
	})
	if c := r.Ceiling; c != nil && len(c.Trials) > 0 {
		b.WriteString("\nceiling trials, points/s:\n")
		writeTrialGrid(b, c.Trials)
	}
}

func (r *Report) writePinned(b *strings.Builder) {
	p := r.Pinned
	fmt.Fprintf(b, "PINNED: Qdrant alone on CPU %v; the bench's publisher and NATS, and the worker, on CPU %v\n", p.QdrantCPUs, p.OtherCPUs)
	if p.Ceiling != nil {
		writeIngestTable(b, p.Ceiling, []ingestRow{
			{"ragpipe, vector_b64", p.VectorsB64}, {"ragpipe, vector (JSON)", p.Vectors}, {"ragpipe, text + hash", p.Text},
		})
		if len(p.Ceiling.Trials) > 0 {
			b.WriteString("\npinned ceiling trials, points/s:\n")
			writeTrialGrid(b, p.Ceiling.Trials)
		}
	}
	if p.Error != "" {
		fmt.Fprintf(b, "FAILED: %s\n", p.Error)
	}
}

// writeIngestTable writes a ceiling and the drains measured against it.
func writeIngestTable(b *strings.Builder, c *Ceiling, rows []ingestRow) {
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "INGEST\tTIME\tRATE\tVS CEILING\tEXACT COUNT\tCPU S: QDRANT / WORKER / BENCH\tCPU µS/DOC: QDRANT / WORKER\tQDRANT VS CEILING\tNOTES")
	if c != nil {
		switch {
		case c.Best != nil:
			fmt.Fprintf(tw, "ceiling: raw Qdrant upsert\t%s\t%.0f points/s\t1.00\t%s\t%s\t%s / -\t1.00\tbest of %d trials: batch %d, %d parallel\n",
				seconds(c.Best.Seconds), c.Best.PointsPerS, countText(c.Best.CountOK, c.Best.Stored), cpuText(c.Best.CPU),
				micros(c.Best.QdrantUsPerPoint), len(c.Trials), c.Best.Batch, c.Best.Parallel)
		default:
			fmt.Fprintf(tw, "ceiling: raw Qdrant upsert\t-\t-\t-\t-\t-\t-\t-\tFAILED: %s\n", c.Error)
		}
	}
	for _, row := range rows {
		in := row.in
		switch {
		case in == nil:
		case in.Skipped != "":
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\tskipped: %s\n", row.name, in.Skipped)
		case in.Error != "" && in.Seconds == 0:
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\tFAILED: %s\n", row.name, in.Error)
		default:
			count := "-" // not counted
			if in.Error == "" || in.Stored > 0 {
				count = countText(in.CountOK, in.Stored)
			}
			note := failedText(in.Error)
			switch {
			case note != "":
			case in.Embedder == embedderBuiltin && in.ChunksPerCoreS != nil:
				note = fmt.Sprintf("%d docs, %.0f chunks/s per core of the worker", in.Docs, *in.ChunksPerCoreS)
			case in.QdrantCoresPublishing != nil && in.QdrantCoresAfter != nil:
				note = fmt.Sprintf("published in %s; Qdrant busy %.2f cores meanwhile, %.2f after", seconds(in.PublishSeconds),
					*in.QdrantCoresPublishing, *in.QdrantCoresAfter)
			}
			if floor := in.floorText(); floor != "" {
				note = strings.TrimSuffix(floor+"; "+note, "; ")
			}
			fmt.Fprintf(tw, "%s\t%s\t%.0f docs/s\t%s\t%s\t%s\t%s / %s\t%s\t%s\n", row.name, seconds(in.Seconds), in.DocsPerS,
				ratioText(in.RatioToCeiling), count, cpuText(in.CPU), micros(in.QdrantUsPerDoc), micros(in.WorkerUsPerDoc),
				ratioText(in.QdrantVsCeiling), note)
		}
	}
	tw.Flush()
}

// writeTargets writes the figures of issue 17's table beside their targets.
func (r *Report) writeTargets(b *strings.Builder) {
	type figure struct{ name, value, target string }
	var figures []figure
	drains := func(format, target string, f func(*Ingest) string, rows ...ingestRow) {
		for _, row := range rows {
			if row.in != nil {
				figures = append(figures, figure{fmt.Sprintf(format, row.name), f(row.in), target})
			}
		}
	}
	qdrant := func(in *Ingest) string { return ratioText(in.QdrantVsCeiling) }
	drains("Qdrant CPU per document, %s / per point of raw upserts", "<= 1.15", qdrant,
		ingestRow{"vector", r.Vectors}, ingestRow{"vector_b64", r.VectorsB64})
	worker := func(in *Ingest) string {
		switch {
		case in.NATSFloorUsPerDoc != nil:
			return fmt.Sprintf("%s µs (NATS client alone %.1f)", micros(in.WorkerUsPerDoc), *in.NATSFloorUsPerDoc)
		case in.NATSFloorError != "":
			return micros(in.WorkerUsPerDoc) + " µs (NATS client alone not measured)"
		}
		return micros(in.WorkerUsPerDoc) + " µs"
	}
	drains("worker CPU per document, %s", "<= 40 µs", worker, ingestRow{"vector_b64", r.VectorsB64})
	drains("worker CPU per document, %s", "<= 100 µs", worker, ingestRow{"JSON vector", r.Vectors})
	drains("worker CPU per document, %s", "<= 80 µs", worker, ingestRow{"text + hash", r.Text})
	if p := r.Pinned; p != nil {
		rate := func(in *Ingest) string { return ratioText(in.RatioToCeiling) }
		drains("pinned, %s / raw upserts on the same CPU", ">= 0.9", rate, ingestRow{"vector_b64", p.VectorsB64})
		drains("pinned, %s / raw upserts on the same CPU", ">= 0.8", rate, ingestRow{"JSON vector", p.Vectors}, ingestRow{"text + hash", p.Text})
	}
	if s := r.Search; s != nil {
		for _, l := range s.Levels {
			target := "<= +0.3 ms"
			if l.Concurrency > 1 {
				target = "<= +0.5 ms"
			}
			figures = append(figures, figure{fmt.Sprintf("search p50, rag.search - raw Qdrant, c=%d", l.Concurrency),
				fmt.Sprintf("%+.3f ms", l.P50OverheadMs), target})
		}
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tTARGET")
	for _, f := range figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.name, f.value, f.target)
	}
	tw.Flush()
}

// writeTrialGrid writes the trials as a grid: a row per batch size, a
// column per parallelism, in the order they were first tried.
func writeTrialGrid(b *strings.Builder, trials []Trial) {
	var batches, parallels []int
	rates := map[[2]int]Trial{}
	for _, t := range trials {
		if !slices.Contains(batches, t.Batch) {
			batches = append(batches, t.Batch)
		}
		if !slices.Contains(parallels, t.Parallel) {
			parallels = append(parallels, t.Parallel)
		}
		rates[[2]int{t.Batch, t.Parallel}] = t
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "\t")
	for _, p := range parallels {
		fmt.Fprintf(tw, "%d parallel\t", p)
	}
	fmt.Fprintln(tw)
	for _, batch := range batches {
		fmt.Fprintf(tw, "batch %d\t", batch)
		for _, p := range parallels {
			t, ok := rates[[2]int{batch, p}]
			switch {
			case !ok:
				fmt.Fprint(tw, "-\t")
			case !t.CountOK:
				fmt.Fprintf(tw, "%.0f (count %d!)\t", t.PointsPerS, t.Stored)
			default:
				fmt.Fprintf(tw, "%.0f\t", t.PointsPerS)
			}
		}
		fmt.Fprintln(tw)
	}
	tw.Flush()
}

func (r *Report) writeSearch(b *strings.Builder) {
	s := r.Search
	fmt.Fprintf(b, "SEARCH: tenant filter, top_k %d, %d of %d points, %d requests per row, indexed %t\n",
		s.TopK, s.TenantPoints, s.Points, s.Requests, s.Indexed)
	if len(s.Levels) > 0 {
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tCONCURRENCY\tP50\tP99\tP50 OVERHEAD\tCPU µS/REQUEST: QDRANT / SEARCHER / BENCH")
		for _, l := range s.Levels {
			fmt.Fprintf(tw, "rag.search\t%d\t%s\t%s\t%+.3f ms\t%s\n", l.Concurrency, millis(l.RagSearch.P50Ms), millis(l.RagSearch.P99Ms), l.P50OverheadMs, l.RagSearch.CPU.text())
			fmt.Fprintf(tw, "qdrant\t%d\t%s\t%s\t\t%s\n", l.Concurrency, millis(l.Qdrant.P50Ms), millis(l.Qdrant.P99Ms), l.Qdrant.CPU.text())
			if l.NATSPing.P50Ms > 0 {
				fmt.Fprintf(tw, "nats ping\t%d\t%s\t%s\t\t%s\n", l.Concurrency, millis(l.NATSPing.P50Ms), millis(l.NATSPing.P99Ms), l.NATSPing.CPU.text())
			}
		}
		tw.Flush()
	}
	if s.Error != "" {
		fmt.Fprintf(b, "FAILED: %s\n", s.Error)
	}
}

// text renders c for the table, "-" when absent.
func (c *RequestCPU) text() string {
	if c == nil {
		return "-"
	}
	return micros(c.Qdrant) + " / " + micros(c.Searcher) + " / " + micros(&c.Bench)
}

func (r *Report) writeRSS(b *strings.Builder) {
	m := r.RSS
	fmt.Fprintf(b, "WORKER MEMORY: one worker draining a backlog of %d events of ~%d chars (hash embedder, %d dims) for at most %s\n",
		m.Backlog, r.Settings.BacklogChars, r.Settings.Dims, seconds(r.Settings.BacklogTimeS))
	if m.Samples > 0 {
		fmt.Fprintf(b, "drained %d of %d in %s: %.0f docs/s; RSS peak %.1f MiB; start %.1f, middle %.1f, end %.1f MiB (%d samples)\n",
			m.Drained, m.Backlog, seconds(m.Seconds), m.DocsPerS, m.PeakMiB, m.StartMiB, m.MiddleMiB, m.EndMiB, m.Samples)
	}
	if m.Acked > 0 { // counted once the worker had stopped
		fmt.Fprintf(b, "exact count once stopped: %s, %d acknowledged\n", countText(m.CountOK, m.Stored), m.Acked)
	}
	if m.Error != "" {
		fmt.Fprintf(b, "FAILED: %s\n", m.Error)
	}
}

func seconds(s float64) string {
	return (time.Duration(s * float64(time.Second))).Round(time.Millisecond).String()
}

func millis(ms float64) string { return fmt.Sprintf("%.3f ms", ms) }

// micros renders a figure in microseconds, "-" when absent.
func micros(us *float64) string {
	if us == nil {
		return "-"
	}
	return fmt.Sprintf("%.1f", *us)
}

func ratioText(r *float64) string {
	if r == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *r)
}

func countText(ok bool, stored uint64) string {
	if ok {
		return fmt.Sprintf("ok (%d)", stored)
	}
	return fmt.Sprintf("WRONG (%d)", stored)
}

func failedText(msg string) string {
	if msg == "" {
		return ""
	}
	return "FAILED: " + msg
}

// round returns x rounded to the given number of decimals.
func round(x float64, decimals int) float64 {
	p := math.Pow(10, float64(decimals))
	return math.Round(x*p) / p
}
