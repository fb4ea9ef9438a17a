package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

const (
	// samplePeriod is how often the worker's memory and progress are read.
	samplePeriod = 100 * time.Millisecond
	// reportPeriod is how often the drain's progress is told.
	reportPeriod = 10 * time.Second
)

// rss publishes the backlog, then starts one worker and samples its memory
// until it has drained the backlog or the backlog time has passed; then it
// stops the worker and checks that exactly the acknowledged events are
// stored.
func (r *runner) rss(ctx context.Context) (*RSS, error) {
	res := &RSS{Backlog: r.cfg.Backlog}
	if err := r.checkIdle(ctx); err != nil {
		return res, err
	}
	collection := r.collection(StageRSS)
	defer r.cleanup(ctx, collection)
	if err := r.ensureConsumer(ctx, collection); err != nil {
		return res, err
	}
	if err := r.publishBacklog(ctx, collection); err != nil {
		return res, err
	}

	started := time.Now()
	w, err := r.startWorker(ctx, collection, embedderHash)
	if err != nil {
		return res, err
	}
	defer w.stop() // when failing; its result is checked below otherwise
	samples, peak, err := r.sampleDrain(ctx, w, started)
	if len(samples) > 0 {
		end := samples[len(samples)-1]
		res.Seconds = round(end.at.Seconds(), 3)
		res.Drained = end.drained
		res.DrainedAll = end.drained == r.cfg.Backlog
		res.DocsPerS = round(float64(end.drained)/end.at.Seconds(), 1)
		res.PeakMiB = mib(peak)
		res.Samples = len(samples)
		first, middle, last := pickSamples(samples)
		res.StartMiB, res.MiddleMiB, res.EndMiB = mib(first.rss), mib(middle.rss), mib(last.rss)
	}
	if err != nil {
		return res, err
	}
	r.progressf("rss: drained %d of %d in %s; peak RSS %.1f MiB", res.Drained, res.Backlog,
		time.Duration(res.Seconds*float64(time.Second)).Round(time.Millisecond), res.PeakMiB)

	if err := w.stop(); err != nil {
		return res, err
	}
	info, err := r.consumerInfo(ctx)
	if err != nil {
		return res, err
	}
	res.Acked = uint64(r.cfg.Backlog) - outstanding(info)
	if res.Stored, err = r.count(ctx, collection); err != nil {
		return res, err
	}
	res.CountOK = res.Stored == res.Acked
	if !res.CountOK {
		return res, fmt.Errorf("exact count %d points, but %d events were acknowledged", res.Stored, res.Acked)
	}
	return res, nil
}

// ensureConsumer makes sure the streams and the workers' consumer exist, so
// that a backlog can be published before any worker runs: when they do not,
// it runs a worker for collection until it consumes.
func (r *runner) ensureConsumer(ctx context.Context, collection string) error {
	_, err := r.consumerInfo(ctx)
	switch {
	case err == nil:
		return nil
	case !errors.Is(err, jetstream.ErrStreamNotFound) && !errors.Is(err, jetstream.ErrConsumerNotFound):
		return err
	}
	w, err := r.startWorker(ctx, collection, embedderHash)
	if err != nil {
		return err
	}
	return w.stop()
}

// publishBacklog publishes the backlog's events for collection: about
// backlogChars characters of text each, spread over the tenants.
func (r *runner) publishBacklog(ctx context.Context, collection string) error {
	pub, err := newPublisher(r.cfg.Conn)
	if err != nil {
		return err
	}
	rng := rand.New(rand.NewPCG(3, 4))
	n := r.cfg.Backlog
	start := time.Now()
	for i := range n {
		d := doc{user: tenants[i%len(tenants)], id: fmt.Sprintf("event-%08d", i), text: sentences(rng, backlogChars)}
		body, err := d.body(bodyText)
		if err != nil {
			return err
		}
		if err := pub.publish(r.subject(d.user, collection), body); err != nil {
			return err
		}
		if (i+1)%(max(n/10, 1)) == 0 {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			r.progressf("rss: published %d of %d events", i+1, n)
		}
	}
	if _, err := pub.wait(ctx); err != nil {
		return err
	}
	r.progressf("rss: backlog of %d events published in %s", n, time.Since(start).Round(time.Millisecond))
	return nil
}

// sample is one reading of the draining worker.
type sample struct {
	at      time.Duration // since the worker's start
	rss     uint64        // VmRSS, bytes
	drained int           // events acknowledged
}

// sampleDrain reads the worker's memory and the consumer's progress every
// samplePeriod until the backlog is drained or the backlog time has passed,
// and returns the samples and the peak resident set (VmHWM).
func (r *runner) sampleDrain(ctx context.Context, w *child, started time.Time) ([]sample, uint64, error) {
	var samples []sample
	var peak uint64
	told := time.Now()
	err := poll(ctx, samplePeriod, w, func() (bool, error) {
		mem, err := readMemory(w.pid())
		if err != nil {
			return false, err
		}
		info, err := r.consumerInfo(ctx)
		if err != nil {
			return false, err
		}
		s := sample{at: time.Since(started), rss: mem.rss, drained: r.cfg.Backlog - int(outstanding(info))}
		samples, peak = append(samples, s), max(peak, mem.peak)
		if s.drained >= r.cfg.Backlog || s.at >= r.cfg.BacklogTime {
			return true, nil
		}
		if time.Since(told) >= reportPeriod {
			told = time.Now()
			r.progressf("rss: %d of %d drained after %s, RSS %.1f MiB", s.drained, r.cfg.Backlog, s.at.Round(time.Second), mib(s.rss))
		}
		return false, nil
	})
	return samples, peak, err
}

// pickSamples returns the first sample taken after the first
// acknowledgement (the first sample when there is none), the one nearest
// the middle between it and the last, and the last.
func pickSamples(samples []sample) (first, middle, last sample) {
	i := max(slices.IndexFunc(samples, func(s sample) bool { return s.drained > 0 }), 0)
	first, last = samples[i], samples[len(samples)-1]
	mid := (first.at + last.at) / 2
	middle = first
	for _, s := range samples[i:] {
		if (s.at - mid).Abs() < (middle.at - mid).Abs() {
			middle = s
		}
	}
	return first, middle, last
}

// memory is a process's resident set, in bytes.
type memory struct {
	rss  uint64 // VmRSS: now
	peak uint64 // VmHWM: the highest so far
}

// readMemory reads the resident set of process pid from /proc (Linux).
func readMemory(pid int) (memory, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return memory{}, fmt.Errorf("worker memory: %w", err)
	}
	defer f.Close()
	m, err := parseStatus(f)
	if err != nil {
		return memory{}, fmt.Errorf("worker memory: /proc/%d/status: %w", pid, err)
	}
	return m, nil
}

// parseStatus reads VmRSS and VmHWM from the text of /proc/<pid>/status.
func parseStatus(r io.Reader) (memory, error) {
	var m memory
	found := 0
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		key, val, _ := strings.Cut(sc.Text(), ":")
		var dst *uint64
		switch key {
		case "VmRSS":
			dst = &m.rss
		case "VmHWM":
			dst = &m.peak
		default:
			continue
		}
		num, unit, _ := strings.Cut(strings.TrimSpace(val), " ")
		kb, err := strconv.ParseUint(num, 10, 64)
		if err != nil || unit != "kB" {
			return m, fmt.Errorf("%s: unexpected value %q", key, val)
		}
		*dst = kb * 1024
		found++
	}
	if err := sc.Err(); err != nil {
		return m, err
	}
	if found < 2 {
		return m, errors.New("no VmRSS and VmHWM (not Linux, or the process has exited)")
	}
	return m, nil
}

// mib returns bytes in MiB, rounded to 0.1.
func mib(bytes uint64) float64 { return round(float64(bytes)/(1<<20), 1) }
