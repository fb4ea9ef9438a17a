package bench

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// sampleReport is a report of every stage, as a full run makes it.
func sampleReport() *Report {
	trials := []Trial{
		{Batch: 256, Parallel: 1, Seconds: 0.8, PointsPerS: 12500, Stored: 10000, CountOK: true},
		{Batch: 256, Parallel: 2, Seconds: 0.5, PointsPerS: 20000, Stored: 10000, CountOK: true, CPU: &CPU{Qdrant: new(0.9), Bench: 0.3},
			QdrantUsPerPoint: new(90.0)},
		{Batch: 512, Parallel: 1, Seconds: 0.4, PointsPerS: 25000, Stored: 9999},
		{Batch: 512, Parallel: 2, Seconds: 0.625, PointsPerS: 16000, Stored: 10000, CountOK: true},
	}
	return &Report{
		Settings: Settings{Docs: 10000, TextChars: 900, Dims: 1024, Tenants: 5, Searches: 2000, Backlog: 1000000,
			BacklogChars: 200, BacklogTimeS: 300, HNSW: "tenant", NATS: "embedded", Qdrant: "process",
			QdrantVersion: "1.16.3", CPUs: 2, LoadAvg1m: 0.25, GoVersion: "go1.26"},
		Ceiling: &Ceiling{Points: 10000, Best: new(trials[1]), Trials: trials},
		Vectors: &Ingest{Docs: 10000, Body: "vector", Embedder: "hash", Seconds: 0.8, DocsPerS: 12500, Stored: 10000, CountOK: true,
			RatioToCeiling: new(0.625), CPU: &CPU{Qdrant: new(0.8), Worker: new(0.5), Bench: 0.25},
			WorkerUsPerDoc: new(50.0), QdrantUsPerDoc: new(80.0), QdrantVsCeiling: new(0.889), ChunksPerCoreS: new(20000.0),
			NATSFloorError: "nats floor exited: exit status 1"},
		VectorsB64: &Ingest{Docs: 10000, Body: "vector_b64", Embedder: "hash", Seconds: 0.7, DocsPerS: 14286, Stored: 10000, CountOK: true,
			RatioToCeiling: new(0.714), CPU: &CPU{Qdrant: new(0.9), Worker: new(0.3), Bench: 0.2},
			WorkerUsPerDoc: new(30.0), QdrantUsPerDoc: new(90.0), QdrantVsCeiling: new(1.0), ChunksPerCoreS: new(33333.3),
			PublishSeconds: 0.3, QdrantCoresPublishing: new(0.5), QdrantCoresAfter: new(0.9), NATSFloorUsPerDoc: new(14.2)},
		Text:    &Ingest{Docs: 10000, Body: "text", Embedder: "hash", Error: "worker exited: exit status 1; last line: boom"},
		Builtin: &Ingest{Docs: 1000, Body: "text", Embedder: "builtin", Skipped: "the worker did not start"},
		Pinned: &Pinned{QdrantCPUs: []int{0}, OtherCPUs: []int{1},
			Ceiling: &Ceiling{Points: 10000, Best: new(trials[0]), Trials: trials[:1]},
			VectorsB64: &Ingest{Docs: 10000, Body: "vector_b64", Embedder: "hash", Seconds: 1, DocsPerS: 10000, Stored: 10000, CountOK: true,
				RatioToCeiling: new(0.8), CPU: &CPU{Qdrant: new(1.0), Worker: new(0.4), Bench: 0.3},
				WorkerUsPerDoc: new(40.0), QdrantUsPerDoc: new(100.0), ChunksPerCoreS: new(25000.0),
				PublishSeconds: 0.2, QdrantCoresPublishing: new(0.15), QdrantCoresAfter: new(0.97)},
			VectorsB64Backlog: &Ingest{Docs: 10000, Body: "vector_b64", Embedder: "hash", StreamFilledFirst: true, Seconds: 0.9, DocsPerS: 11111,
				Stored: 10000, CountOK: true, RatioToCeiling: new(0.889), CPU: &CPU{Qdrant: new(0.95), Worker: new(0.35), Bench: 0.1},
				WorkerUsPerDoc: new(35.0), QdrantUsPerDoc: new(95.0), ChunksPerCoreS: new(28571.4), PublishSeconds: 0.4, QdrantCoresAfter: new(1.06)}},
		Search: &Search{Points: 10000, TenantPoints: 2000, TopK: 10, Requests: 2000, Indexed: true, Levels: []SearchLevel{
			{Concurrency: 1, RagSearch: Latency{P50Ms: 0.9, P99Ms: 1.5, CPU: &RequestCPU{Qdrant: new(700.0), Searcher: new(400.0), Bench: 150}},
				Qdrant:      Latency{P50Ms: 0.6, P99Ms: 1.2, CPU: &RequestCPU{Qdrant: new(650.0), Bench: 250}},
				PassThrough: Latency{P50Ms: 0.75, P99Ms: 1.4, CPU: &RequestCPU{Qdrant: new(660.0), Searcher: new(300.0), Bench: 140}},
				NATSPing:    Latency{P50Ms: 0.15, P99Ms: 0.4}, P50OverheadMs: 0.3, PassThroughOverheadMs: 0.15},
		}},
		RSS: &RSS{Backlog: 1000000, Seconds: 300, Drained: 600000, DocsPerS: 2000, PeakMiB: 80.5,
			StartMiB: 70, MiddleMiB: 75.2, EndMiB: 76, Samples: 3000, Acked: 600100, Stored: 600100, CountOK: true},
	}
}

func TestWriteTable(t *testing.T) {
	var b bytes.Buffer
	if err := sampleReport().WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := squeeze(b.String())
	for _, want := range []string{
		"ragpipe bench: 10000 docs of ~900 chars, 1024 dims, 5 tenants, HNSW tenant; 2 CPUs, load average 0.25 at start; Qdrant 1.16.3 (process); NATS embedded\n",
		"\nINGEST TIME RATE VS CEILING EXACT COUNT CPU S: QDRANT / WORKER / BENCH CPU µS/DOC: QDRANT / WORKER QDRANT VS CEILING NOTES\n",
		"\nceiling: raw Qdrant upsert 500ms 20000 points/s 1.00 ok (10000) 0.90 / - / 0.30 90.0 / - 1.00 best of 4 trials: batch 256, 2 parallel\n",
		"\nragpipe, vector (JSON) 800ms 12500 docs/s 0.62 ok (10000) 0.80 / 0.50 / 0.25 80.0 / 50.0 0.89 NATS client alone not measured: nats floor exited: exit status 1\n",
		"\nragpipe, vector_b64 700ms 14286 docs/s 0.71 ok (10000) 0.90 / 0.30 / 0.20 90.0 / 30.0 1.00 NATS client alone 14.2 µs/doc; published in 300ms; Qdrant busy 0.50 cores meanwhile, 0.90 after\n",
		"\nragpipe, text + hash - - - - - - - FAILED: worker exited: exit status 1; last line: boom\n",
		"\nragpipe, text + builtin - - - - - - - skipped: the worker did not start\n",
		"\nPINNED: Qdrant alone on CPU [0]; the bench's publisher and NATS, and the worker, on CPU [1]\n",
		"\nragpipe, vector_b64 1s 10000 docs/s 0.80 ok (10000) 1.00 / 0.40 / 0.30 100.0 / 40.0 - published in 200ms; Qdrant busy 0.15 cores meanwhile, 0.97 after\n",
		"\nQdrant CPU per document, vector / per point of raw upserts 0.89 <= 1.15\n",
		"\nworker CPU per document, vector_b64 30.0 µs (NATS client alone 14.2) <= 40 µs\n",
		"\nworker CPU per document, JSON vector 50.0 µs (NATS client alone not measured) <= 100 µs\n",
		"\nragpipe, vector_b64, stream filled first 900ms 11111 docs/s 0.89 ok (10000) 0.95 / 0.35 / 0.10 95.0 / 35.0 - published in 400ms before the worker started; timed from its ready line; Qdrant busy 1.06 cores\n",
		"\npinned, vector_b64 / raw upserts on the same CPU 0.80 (stream filled first: 0.89) >= 0.9\n",
		"\nsearch p50, rag.search - raw Qdrant, c=1 +0.300 ms (pass-through: +0.150 ms) <= +0.3 ms\n",
		"\n1 parallel 2 parallel\nbatch 256 12500 20000\nbatch 512 25000 (count 9999!) 16000\n",
		"\nSEARCH: tenant filter, top_k 10, 2000 of 10000 points, 2000 requests per row, indexed true\n",
		"\nrag.search 1 0.900 ms 1.500 ms +0.300 ms 700.0 / 400.0 / 150.0\nqdrant 1 0.600 ms 1.200 ms 650.0 / - / 250.0\npass-through 1 0.750 ms 1.400 ms +0.150 ms 660.0 / 300.0 / 140.0\nnats ping 1 0.150 ms 0.400 ms -\n",
		"drained 600000 of 1000000 in 5m0s: 2000 docs/s; RSS peak 80.5 MiB; start 70.0, middle 75.2, end 76.0 MiB (3000 samples)\n",
		"exact count once stopped: ok (600100), 600100 acknowledged\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "interrupted") {
		t.Errorf("a complete run's table says interrupted:\n%s", out)
	}
}

func TestWriteTableOnlySomeStages(t *testing.T) {
	r := sampleReport()
	r.Ceiling, r.Search, r.RSS, r.Pinned, r.Interrupted = nil, nil, nil, nil, true
	r.Vectors.RatioToCeiling, r.Vectors.NATSFloorError = nil, ""
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := squeeze(b.String())
	for _, want := range []string{"interrupted: stages not shown did not run", "\nragpipe, vector (JSON) 800ms 12500 docs/s - ok (10000) 0.80 / 0.50 / 0.25 80.0 / 50.0 0.89\n",
		"\nworker CPU per document, JSON vector 50.0 µs <= 100 µs\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
	for _, absent := range []string{"ceiling", "SEARCH", "WORKER MEMORY", "PINNED"} {
		if strings.Contains(out, absent) {
			t.Errorf("table shows %q of a stage that did not run:\n%s", absent, out)
		}
	}
}

// squeeze trims every line of s and collapses its runs of spaces, so that
// tests check the tables' cells, not their padding.
func squeeze(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		lines[i] = strings.Join(strings.Fields(l), " ")
	}
	return strings.Join(lines, "\n")
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	want := sampleReport()
	if err := want.WriteJSON(&b); err != nil {
		t.Fatal(err)
	}
	var got Report
	if err := json.Unmarshal(b.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&got, want) {
		t.Fatalf("JSON round trip:\ngot  %+v\nwant %+v", got, *want)
	}
	var raw map[string]map[string]any
	if err := json.Unmarshal(b.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for stage, keys := range map[string][]string{
		"ceiling": {"points", "best", "trials"},
		"vectors": {"docs", "body", "embedder", "seconds", "docs_per_s", "stored", "count_ok", "ratio_to_ceiling",
			"worker_us_per_doc", "qdrant_us_per_doc", "qdrant_vs_ceiling", "chunks_per_core_s"},
		"vectors_b64": {"docs", "body", "worker_us_per_doc", "qdrant_vs_ceiling", "nats_floor_us_per_doc"},
		"builtin":     {"embedder", "skipped"},
		"pinned":      {"qdrant_cpus", "other_cpus", "ceiling", "vectors_b64", "vectors_b64_backlog"},
		"text":        {"ratio_to_ceiling", "error"},
		"search":      {"points", "tenant_points", "top_k", "requests", "indexed", "levels"},
		"rss":         {"backlog", "seconds", "drained", "drained_all", "docs_per_s", "peak_mib", "start_mib", "middle_mib", "end_mib", "acked", "stored", "count_ok"},
	} {
		for _, k := range keys {
			if _, ok := raw[stage][k]; !ok {
				t.Errorf("%s has no %q: %v", stage, k, raw[stage])
			}
		}
	}
	if raw["vectors"]["nats_floor_error"] != "nats floor exited: exit status 1" || raw["vectors"]["nats_floor_us_per_doc"] != nil {
		t.Errorf("a floor not measured: %v", raw["vectors"])
	}
	if backlog, _ := raw["pinned"]["vectors_b64_backlog"].(map[string]any); backlog["stream_filled_first"] != true || backlog["ratio_to_ceiling"] != 0.889 {
		t.Errorf("pinned drain from a filled stream: %v", backlog)
	}
	if live, _ := raw["pinned"]["vectors_b64"].(map[string]any); live["stream_filled_first"] != nil {
		t.Errorf("a live drain says stream_filled_first: %v", live)
	}
	if raw["text"]["ratio_to_ceiling"] != nil {
		t.Errorf("a ratio not computed is %v, want null", raw["text"]["ratio_to_ceiling"])
	}
}

// TestPinnedTargets checks the pinned ratios of the TARGETS table beside
// their drains from a filled stream: measured, failed, not run.
func TestPinnedTargets(t *testing.T) {
	r := sampleReport()
	p := r.Pinned
	p.Vectors = &Ingest{Docs: 10000, Body: "vector", Embedder: "hash", Seconds: 1.5, DocsPerS: 6667, RatioToCeiling: new(0.533)}
	p.VectorsBacklog = &Ingest{Docs: 10000, Body: "vector", Embedder: "hash", StreamFilledFirst: true, Error: "exact count 9999 points, want 10000",
		Seconds: 1, DocsPerS: 10000, Stored: 9999, RatioToCeiling: new(0.8)}
	p.Text = &Ingest{Docs: 10000, Body: "text", Embedder: "hash", Seconds: 1.25, DocsPerS: 8000, RatioToCeiling: new(0.64)}
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	out := squeeze(b.String())
	for _, want := range []string{
		"\npinned, vector_b64 / raw upserts on the same CPU 0.80 (stream filled first: 0.89) >= 0.9\n",
		"\npinned, JSON vector / raw upserts on the same CPU 0.53 (stream filled first: FAILED) >= 0.8\n",
		"\npinned, text + hash / raw upserts on the same CPU 0.64 >= 0.8\n",
		"\nragpipe, vector (JSON), stream filled first 1s 10000 docs/s 0.80 WRONG (9999) - - / - - FAILED: exact count 9999 points, want 10000\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

func TestReportErr(t *testing.T) {
	r := sampleReport()
	err := r.Err()
	if err == nil || err.Error() != "text: worker exited: exit status 1; last line: boom" {
		t.Fatalf("Err() = %v", err)
	}
	r.Text.Error = ""
	if err := r.Err(); err != nil {
		t.Fatalf("Err() = %v, want nil", err)
	}
}

func TestParseStages(t *testing.T) {
	for in, want := range map[string]string{
		"":                  "ceiling,vectors,text,search,builtin,pinned,rss",
		"rss,ceiling":       "ceiling,rss",
		" search ":          "text,search",
		"vectors,vectors":   "vectors",
		"text,search,rss":   "text,search,rss",
		"ceiling, vectors ": "ceiling,vectors",
	} {
		got, err := ParseStages(in)
		if err != nil || strings.Join(got, ",") != want {
			t.Errorf("ParseStages(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := ParseStages("ceiling,latency"); err == nil || !strings.Contains(err.Error(), `"latency"`) {
		t.Errorf("an unknown stage: %v", err)
	}
}
