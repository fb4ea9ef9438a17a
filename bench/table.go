package bench

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

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
			{"ragpipe, vector_b64", p.VectorsB64}, {"ragpipe, vector_b64, stream filled first", p.VectorsB64Backlog},
			{"ragpipe, vector (JSON)", p.Vectors}, {"ragpipe, vector (JSON), stream filled first", p.VectorsBacklog},
			{"ragpipe, text + hash", p.Text}, {"ragpipe, text + hash, stream filled first", p.TextBacklog},
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
			case in.StreamFilledFirst:
				note = fmt.Sprintf("published in %s before the worker started; timed from its ready line", seconds(in.PublishSeconds))
				if in.QdrantCoresAfter != nil {
					note += fmt.Sprintf("; Qdrant busy %.2f cores", *in.QdrantCoresAfter)
				}
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
		const pinned = "pinned, %s / raw upserts on the same CPU"
		drains(pinned, ">= 0.9", p.VectorsB64Backlog.beside, ingestRow{"vector_b64", p.VectorsB64})
		drains(pinned, ">= 0.8", p.VectorsBacklog.beside, ingestRow{"JSON vector", p.Vectors})
		drains(pinned, ">= 0.8", p.TextBacklog.beside, ingestRow{"text + hash", p.Text})
	}
	if s := r.Search; s != nil {
		for _, l := range s.Levels {
			target := "<= +0.3 ms"
			if l.Concurrency > 1 {
				target = "<= +0.5 ms"
			}
			value := fmt.Sprintf("%+.3f ms", l.P50OverheadMs)
			if l.PassThrough.P50Ms > 0 {
				value += fmt.Sprintf(" (pass-through: %+.3f ms)", l.PassThroughOverheadMs)
			}
			figures = append(figures, figure{fmt.Sprintf("search p50, rag.search - raw Qdrant, c=%d", l.Concurrency), value, target})
		}
	}
	tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "FIGURE\tMEASURED\tTARGET")
	for _, f := range figures {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", f.name, f.value, f.target)
	}
	tw.Flush()
}

// beside renders the ratio to the ceiling of live, a drain published while
// its worker consumed, with that of filled, the same drain from a stream
// filled first (nil when it did not run): "0.79 (stream filled first:
// 0.91)".
func (filled *Ingest) beside(live *Ingest) string {
	s := ratioText(live.RatioToCeiling)
	switch {
	case filled == nil:
		return s
	case filled.Error != "":
		return s + " (stream filled first: FAILED)"
	}
	return s + " (stream filled first: " + ratioText(filled.RatioToCeiling) + ")"
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
			if l.PassThrough.P50Ms > 0 {
				fmt.Fprintf(tw, "pass-through\t%d\t%s\t%s\t%+.3f ms\t%s\n", l.Concurrency, millis(l.PassThrough.P50Ms), millis(l.PassThrough.P99Ms), l.PassThroughOverheadMs, l.PassThrough.CPU.text())
			}
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
