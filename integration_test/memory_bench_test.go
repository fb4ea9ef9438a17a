package integration_test

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ragpipe/ragpipe/internal/checkfor"
)

// BenchmarkWorkerMemory drains a backlog of 5,000 events of about 900 KB
// each (4.5 GB: a text stored whole, with a precomputed 8-dimensional
// vector, so one point each) with one `ragpipe worker` process, and reports
// its peak resident memory (VmHWM) and the drain's rate. A worker holds at
// most 32 MiB of events (worker.Config.MaxHeldBytes), not MaxAckPending
// (1,280) of them. Run it with:
//
//	go test -run '^$' -bench WorkerMemory -benchtime 1x ./integration_test
func BenchmarkWorkerMemory(b *testing.B) {
	for range b.N {
		benchWorkerMemory(b, 5000, 900_000)
	}
}

func benchWorkerMemory(b *testing.B, n, size int) {
	b.StopTimer()
	s := newSystem(b, "RAGPIPE_EMBEDDER=hash", "RAGPIPE_COLLECTIONS=big:8:cosine")
	s.createStreams()
	r := rand.New(rand.NewPCG(4, 4))
	filler := text(r, size)
	start := time.Now()
	for from := 0; from < n; from += 100 { // a hundred at a time: the backlog does not fit in the test's memory
		events := make([]event, 0, 100)
		for i := from; i < min(from+100, n); i++ {
			body := fmt.Sprintf(`{"doc_id":"doc-%d","vector":[%d,1,1,1,1,1,1,1],"text":%q}`, i, i+1, filler[:size-100])
			events = append(events, event{raw: []byte(body), subject: "rag.ingest." + users[i%len(users)] + ".big"})
		}
		s.publish(events)
	}
	b.Logf("published %d events of %d KB in %v", n, size/1000, time.Since(start).Round(time.Millisecond))

	b.StartTimer()
	start = time.Now()
	w := s.startWorker()
	var peak uint64
	checkfor.Until(b, 30*time.Minute, "backlog drained", func() error {
		if hwm, err := peakRSS(w.cmd.Process.Pid); err == nil {
			peak = max(peak, hwm)
		}
		info, err := s.consumerInfo()
		if err != nil {
			return err
		}
		if info.NumPending+uint64(info.NumAckPending) > 0 {
			return fmt.Errorf("%d left", info.NumPending+uint64(info.NumAckPending))
		}
		return nil
	})
	took := time.Since(start)
	b.StopTimer()
	if hwm, err := peakRSS(w.cmd.Process.Pid); err == nil {
		peak = max(peak, hwm)
	}
	stored, err := s.count("big")
	if err != nil {
		b.Fatal(err)
	}
	if stored != uint64(n) {
		b.Fatalf("%d points stored, want %d", stored, n)
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(n)/took.Seconds(), "docs/s")
	b.ReportMetric(float64(n)*float64(size)/took.Seconds()/1e6, "MB/s")
	b.Logf("drained %d events of %d KB in %v: peak RSS %.1f MiB", n, size/1000, took.Round(time.Millisecond), float64(peak)/(1<<20))
}

// peakRSS reads the peak resident set (VmHWM) of process pid, in bytes.
func peakRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/%d/status", pid)
}
