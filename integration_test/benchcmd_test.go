package integration_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/bench"
	"github.com/ragpipe/ragpipe/internal/checkfor"
	"github.com/ragpipe/ragpipe/internal/qdranttest"
)

// benchCmd returns `ragpipe bench args...` with its own NATS and the Qdrant
// binary of the tests, in a temporary directory.
func benchCmd(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(binary, append([]string{"bench"}, args...)...)
	cmd.Env = append(os.Environ(), "QDRANT_BIN="+qdranttest.Binary(t))
	cmd.Dir = t.TempDir()
	return cmd
}

// TestBenchCommand runs every stage of `ragpipe bench` at small sizes, with
// the NATS server it embeds and a Qdrant process it starts, and checks its
// JSON report: every stage measured, exact counts right, rates and ratios
// computed, the worker's memory read. It runs the binary built without the
// race detector, whose figures are those a user gets; the tests below run
// the bench's orchestration under the detector.
func TestBenchCommand(t *testing.T) {
	usePlainBinary(t)
	cmd := benchCmd(t, "--docs", "300", "--backlog", "3000", "--backlog-time", "30s", "--searches", "50", "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ragpipe bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var r bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	if err := r.Err(); err != nil || r.Interrupted {
		t.Fatalf("report says %v (interrupted %t):\n%s", err, r.Interrupted, stdout.String())
	}
	if r.Ceiling == nil || r.Vectors == nil || r.Text == nil || r.Search == nil || r.RSS == nil {
		t.Fatalf("a stage is missing:\n%s", stdout.String())
	}
	if s := r.Settings; s.Docs != 300 || s.Dims != 1024 || s.QdrantVersion == "" || s.CPUs < 1 {
		t.Errorf("settings %+v", s)
	}

	c := r.Ceiling
	if len(c.Trials) != 9 || c.Best == nil || !c.Best.CountOK || c.Best.Stored != 300 || c.Best.PointsPerS <= 0 {
		t.Errorf("ceiling %+v", c)
	}
	for _, tr := range c.Trials {
		if !tr.CountOK || tr.Stored != 300 || tr.PointsPerS <= 0 || tr.PointsPerS > c.Best.PointsPerS {
			t.Errorf("ceiling trial %+v, best %+v", tr, *c.Best)
		}
	}
	for name, in := range map[string]*bench.Ingest{"vectors": r.Vectors, "text": r.Text} {
		if in.Docs != 300 || !in.CountOK || in.Stored != 300 || in.DocsPerS <= 0 || in.Seconds <= 0 || in.RatioToCeiling == nil {
			t.Errorf("%s: %+v", name, in)
			continue
		}
		if cpu := in.CPU; cpu == nil || cpu.Qdrant == nil || *cpu.Qdrant <= 0 || cpu.Worker == nil || *cpu.Worker <= 0 || cpu.Bench <= 0 {
			t.Errorf("%s: cpu seconds %+v, want each process's", name, cpu)
		}
		if want := in.DocsPerS / c.Best.PointsPerS; *in.RatioToCeiling < want-0.001 || *in.RatioToCeiling > want+0.001 {
			t.Errorf("%s: ratio %v, want %v", name, *in.RatioToCeiling, want)
		}
	}

	s := r.Search
	if s.Points != 300 || s.TenantPoints != 60 || s.Requests != 50 || len(s.Levels) != 2 {
		t.Errorf("search %+v", s)
	}
	for _, l := range s.Levels {
		for _, lat := range []bench.Latency{l.RagSearch, l.Qdrant, l.PassThrough, l.NATSPing} {
			if lat.P50Ms <= 0 || lat.P99Ms < lat.P50Ms || lat.CPU == nil || lat.CPU.Searcher == nil {
				t.Errorf("search at concurrency %d: %+v", l.Concurrency, l)
			}
		}
		if want := l.PassThrough.P50Ms - l.Qdrant.P50Ms; math.Abs(l.PassThroughOverheadMs-want) > 0.0015 {
			t.Errorf("search at concurrency %d: pass-through overhead %v, want %v", l.Concurrency, l.PassThroughOverheadMs, want)
		}
	}

	m := r.RSS
	if m.Backlog != 3000 || !m.DrainedAll || m.Drained != 3000 || m.DocsPerS <= 0 ||
		!m.CountOK || m.Acked != 3000 || m.Stored != 3000 || m.Samples < 1 {
		t.Errorf("rss %+v", m)
	}
	if m.PeakMiB <= 0 || m.StartMiB <= 0 || m.MiddleMiB <= 0 || m.EndMiB <= 0 || m.PeakMiB < m.EndMiB {
		t.Errorf("rss memory %+v", m)
	}
}

// TestBenchCommandInterrupted: SIGINT while the worker drains the backlog
// stops the run with exit 0 and a line saying so, after stopping the worker
// and removing Qdrant's storage.
func TestBenchCommandInterrupted(t *testing.T) {
	cmd := benchCmd(t, "--only", "rss", "--backlog", "50000", "--backlog-time", "1m")
	var stdout bytes.Buffer
	stderr := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() { _ = cmd.Process.Kill() })

	draining := regexp.MustCompile(`backlog of \d+ events published[^\n]*\n(?:.*\n)*bench: worker started \(pid (\d+)\)`)
	var pid int
	checkfor.Until(t, 60*time.Second, "worker draining", func() error {
		m := draining.FindStringSubmatch(stderr.String())
		if m == nil {
			return errors.New("not yet")
		}
		pid, _ = strconv.Atoi(m[1])
		return nil
	})
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("still running 60s after SIGINT:\n%s", stderr.String())
	}
	lines := strings.Split(strings.TrimSpace(stderr.String()), "\n")
	if last := lines[len(lines)-1]; !strings.Contains(last, "interrupted") {
		t.Errorf("last line %q does not say interrupted", last)
	}
	if !strings.Contains(stdout.String(), "interrupted") {
		t.Errorf("report does not say interrupted:\n%s", stdout.String())
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("worker %d still exists: %v", pid, err)
	}
	storage := regexp.MustCompile(`storage in (\S+)\)`).FindStringSubmatch(stderr.String())
	if storage == nil {
		t.Fatalf("no Qdrant storage named:\n%s", stderr.String())
	}
	if _, err := os.Stat(storage[1]); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Qdrant storage %s remains: %v", storage[1], err)
	}
}

// TestBenchCommandUsage: --help explains the stages and where Qdrant comes
// from; a bad stage is refused with one line.
func TestBenchCommandUsage(t *testing.T) {
	code, out := run(t, nil, "bench", "--help")
	for _, want := range []string{"ceiling", "vectors", "text", "search", "rss", "QDRANT_BIN", "install-qdrant.sh", "--qdrant-url", "--nats-url"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("bench --help: exit %d, output lacks %q", code, want)
		}
	}
	code, out = run(t, nil, "bench", "--only", "ceiling,warp")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); code == 0 || len(lines) != 1 || !strings.Contains(out, "warp") {
		t.Errorf("bench --only ceiling,warp: exit %d, want non-zero and one line:\n%s", code, out)
	}
}

// TestBenchCommandCleansUp: against a Qdrant it did not start (--qdrant-url),
// the bench removes every collection its stages created, generations and
// aliases alike: a collection ragpipe creates is an alias of its generation.
func TestBenchCommandCleansUp(t *testing.T) {
	node := qdranttest.Start(t)
	cmd := benchCmd(t, "--only", "ceiling,text", "--docs", "50", "--qdrant-url", node.URL(), "--json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ragpipe bench: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	var r bench.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil || r.Err() != nil || r.Ceiling == nil || r.Text == nil {
		t.Fatalf("report (%v):\n%s", err, stdout.String())
	}
	s := attach(t, "", node)
	collections, err := s.qc.ListCollections(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	aliases, err := s.qc.ListAliases(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var left []string
	for _, c := range collections {
		if strings.HasPrefix(c, "bench_") {
			left = append(left, c)
		}
	}
	for _, a := range aliases {
		if strings.HasPrefix(a.GetAliasName(), "bench_") {
			left = append(left, "alias "+a.GetAliasName())
		}
	}
	if len(left) > 0 {
		t.Errorf("the bench left %v in Qdrant", left)
	}
}
