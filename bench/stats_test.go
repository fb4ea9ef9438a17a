package bench

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	ms := func(vs ...int) []time.Duration {
		out := make([]time.Duration, len(vs))
		for i, v := range vs {
			out[i] = time.Duration(v) * time.Millisecond
		}
		return out
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, c := range []struct {
		values []time.Duration
		p      float64
		want   time.Duration
	}{
		{nil, 50, 0},
		{ms(7), 50, 7 * time.Millisecond},
		{ms(7), 99, 7 * time.Millisecond},
		{ms(1, 2), 50, 1 * time.Millisecond}, // rank ceil(1) = 1
		{ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{ms(1, 2, 3, 4, 5), 50, 3 * time.Millisecond},
		{ms(hundred...), 50, 50 * time.Millisecond},
		{ms(hundred...), 99, 99 * time.Millisecond},
		{ms(hundred...), 100, 100 * time.Millisecond},
		{ms(hundred[:10]...), 99, 10 * time.Millisecond}, // rank ceil(9.9) = 10
		{ms(1, 2, 3), 0.1, 1 * time.Millisecond},         // at least rank 1
	} {
		if got := percentile(c.values, c.p); got != c.want {
			t.Errorf("percentile(%v, %v) = %v, want %v", c.values, c.p, got, c.want)
		}
	}
}

func TestLatencies(t *testing.T) {
	var calls atomic.Int64
	seen := make([]atomic.Bool, 50)
	lat, err := latencies(context.Background(), 4, 50, func(_ context.Context, i int) error {
		calls.Add(1)
		if seen[i].Swap(true) {
			t.Errorf("request %d sent twice", i)
		}
		time.Sleep(time.Duration(i%3) * time.Millisecond)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if calls.Load() != 50 || len(lat) != 50 || !slices.IsSorted(lat) || lat[0] <= 0 {
		t.Fatalf("%d calls, latencies %v", calls.Load(), lat)
	}

	boom := errors.New("boom")
	_, err = latencies(context.Background(), 8, 1000, func(_ context.Context, i int) error {
		if i == 10 {
			return boom
		}
		return nil
	})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v, want boom", err)
	}
}

func TestMillisAndRound(t *testing.T) {
	if got := millis3(1234567 * time.Nanosecond); got != 1.235 {
		t.Errorf("millis3 = %v, want 1.235", got)
	}
	if got := round(2.0/3, 2); got != 0.67 {
		t.Errorf("round = %v, want 0.67", got)
	}
	if got := mib(80 << 20); got != 80 {
		t.Errorf("mib = %v, want 80", got)
	}
}

func TestParseStatus(t *testing.T) {
	const status = `Name:	ragpipe
State:	S (sleeping)
VmPeak:	 2054036 kB
VmHWM:	   90112 kB
VmRSS:	   81920 kB
Threads:	9
`
	m, err := parseStatus(strings.NewReader(status))
	if err != nil {
		t.Fatal(err)
	}
	if m.rss != 81920*1024 || m.peak != 90112*1024 {
		t.Fatalf("parsed %+v", m)
	}
	if _, err := parseStatus(strings.NewReader("Name:\tzombie\nState:\tZ (zombie)\n")); err == nil {
		t.Error("a status without memory lines parsed")
	}
	if _, err := parseStatus(strings.NewReader("VmRSS:\t12 MB\nVmHWM:\t1 kB\n")); err == nil {
		t.Error("a status in other units parsed")
	}
}

func TestCPU(t *testing.T) {
	if self, err := processCPU(0); err != nil || self < 0 {
		t.Errorf("processCPU(self) = %v, %v", self, err)
	}
	qdrant, worker := 1.5, 0.25
	if got := cpuText(&CPU{Qdrant: &qdrant, Worker: &worker, Bench: 2}); got != "1.50 / 0.25 / 2.00" {
		t.Errorf("cpuText = %q", got)
	}
	if got := cpuText(&CPU{Bench: 2}); got != "- / - / 2.00" {
		t.Errorf("cpuText without qdrant and worker = %q", got)
	}
	sum := (*CPU)(nil).plus(&CPU{Qdrant: new(1.0), Worker: new(0.5), Bench: 2}).plus(&CPU{Qdrant: new(0.5), Bench: 1})
	if got := cpuText(sum); got != "1.50 / - / 3.00" {
		t.Errorf("sum = %q, want a process absent from one measurement absent from the sum", got)
	}
}

func TestPickSamples(t *testing.T) {
	s := func(sec, mib, drained int) sample {
		return sample{at: time.Duration(sec) * time.Second, rss: uint64(mib) << 20, drained: drained}
	}
	samples := []sample{s(0, 10, 0), s(1, 30, 0), s(2, 60, 100), s(5, 62, 400), s(6, 64, 500), s(10, 63, 900)}
	first, middle, last := pickSamples(samples)
	if first != samples[2] || middle != samples[4] || last != samples[5] {
		t.Fatalf("picked %v, %v, %v", first, middle, last)
	}
	// Nothing acknowledged yet: from the first sample.
	first, middle, last = pickSamples(samples[:2])
	if first != samples[0] || middle != samples[0] || last != samples[1] {
		t.Fatalf("picked %v, %v, %v", first, middle, last)
	}
	first, middle, last = pickSamples(samples[:1])
	if first != samples[0] || middle != samples[0] || last != samples[0] {
		t.Fatalf("picked %v, %v, %v", first, middle, last)
	}
}

func TestLineLog(t *testing.T) {
	l := newLineLog("worker consuming")
	if got := l.last(); got != "(no output)" {
		t.Errorf("last of nothing = %q", got)
	}
	for _, p := range []string{`{"message":"starting"}` + "\n" + `{"mess`, `age":"worker `, `consuming"}`} {
		if _, err := l.Write([]byte(p)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case <-l.seen:
		t.Fatal("marked before the line was complete")
	default:
	}
	if _, err := l.Write([]byte("\n{\"message\":\"worker consuming\"}\n")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-l.seen:
	default:
		t.Fatal("not marked")
	}
	if got := l.last(); got != `{"message":"worker consuming"}` {
		t.Errorf("last = %q", got)
	}
}

func TestPhases(t *testing.T) {
	in := &Ingest{CPU: &CPU{Qdrant: new(3.2)}}
	in.phases(800*time.Millisecond, 4*time.Second, &CPU{Qdrant: new(0.2)})
	if in.PublishSeconds != 0.8 || *in.QdrantCoresPublishing != 0.25 || *in.QdrantCoresAfter != 0.94 {
		t.Errorf("phases: publish %v s, Qdrant %v cores meanwhile, %v after; want 0.8, 0.25, 0.94",
			in.PublishSeconds, *in.QdrantCoresPublishing, *in.QdrantCoresAfter)
	}
	in = &Ingest{CPU: &CPU{}} // Qdrant not started by the bench
	in.phases(800*time.Millisecond, 4*time.Second, &CPU{})
	if in.QdrantCoresPublishing != nil || in.QdrantCoresAfter != nil {
		t.Error("phases without Qdrant's CPU: want no Qdrant figures")
	}
}

// TestPoll checks each way poll ends: step done or failing, the child
// exiting, ctx ending.
func TestPoll(t *testing.T) {
	steps := 0
	done := func() (bool, error) { steps++; return steps == 3, nil }
	if err := poll(t.Context(), time.Millisecond, nil, done); err != nil || steps != 3 {
		t.Errorf("poll until done: %v after %d steps, want nil after 3", err, steps)
	}
	boom := errors.New("boom")
	if err := poll(t.Context(), time.Millisecond, nil, func() (bool, error) { return false, boom }); err != boom {
		t.Errorf("poll with a failing step: %v, want boom", err)
	}
	never := func() (bool, error) { return false, nil }
	w := &child{name: "worker", log: newLineLog("ready"), done: make(chan struct{})}
	close(w.done)
	if err := poll(t.Context(), time.Hour, w, never); err == nil || !strings.HasPrefix(err.Error(), "worker exited unexpectedly") {
		t.Errorf("poll after the child exited: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := poll(ctx, time.Hour, nil, never); err != context.Canceled {
		t.Errorf("poll after ctx ended: %v, want context.Canceled", err)
	}
}
