package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/internal/cputime"
	"github.com/ragpipe/ragpipe/worker"
)

// The NATS floor: once a drain is done, its events are published again to
// a stream of their own and consumed by a process that does nothing but
// acknowledge each one, with the worker's consumer settings. Its CPU per
// event is what the NATS client alone costs, a floor under the worker's.

// FloorChildArg, as the first argument of `ragpipe bench`, makes the
// process the NATS floor's consumer (RunFloorChild) instead of a bench: an
// internal mode the bench starts itself, not meant to be run by hand.
const FloorChildArg = "internal-nats-floor"

const (
	// floorReady starts the line the floor's consumer writes once it is
	// about to consume; floorCPUKey precedes, on it, the CPU time in
	// microseconds the process had used by then.
	floorReady  = "nats floor: consuming"
	floorCPUKey = "cpu_us_before="
	// floorConsumer is the durable consumer of the floor's stream.
	floorConsumer = "bench-floor"
	// floorSettle bounds how long the floor's consumer may show events
	// outstanding once the process that acknowledged them has exited.
	floorSettle = 10 * time.Second
)

// floorPlan is what the floor's stream and consumer are made with, taken
// from the drain's.
type floorPlan struct {
	// ingest is RAG_INGEST's configuration: the floor's stream has its
	// storage, retention, replicas and duplicates window.
	ingest jetstream.StreamConfig
	// consumer is the workers' consumer's configuration: the floor's
	// consumer has its ack policy, ack wait, MaxAckPending and MaxDeliver.
	consumer jetstream.ConsumerConfig
	// pullMaxBytes is the worker's jetstream.PullMaxBytes.
	pullMaxBytes int
}

// floor measures the NATS floor of drain d, which succeeded, with the
// events it published (bodies, to docs' users in collection), and records
// it in in. Its failure is recorded in in, never returned: the drain
// stands without it.
func (r *runner) floor(ctx context.Context, d drain, in *Ingest, w *child, docs []doc, collection string, bodies [][]byte) {
	start := time.Now()
	plan, err := r.floorPlan(ctx, w)
	var us float64
	if err == nil {
		us, err = r.natsFloor(ctx, plan, docs, collection, bodies)
	}
	switch {
	case err == nil:
		in.NATSFloorUsPerDoc = new(round(us, 1))
		r.progressf("%s: NATS client alone %.1f µs/doc (MaxAckPending %d, PullMaxBytes %d; took %s)", d.name, us,
			plan.consumer.MaxAckPending, plan.pullMaxBytes, time.Since(start).Round(time.Millisecond))
	case ctx.Err() != nil: // interrupted: the run says so
	default:
		in.NATSFloorError = strings.Join(strings.Fields(err.Error()), " ")
		r.progressf("%s: NATS client alone not measured: %v", d.name, err)
	}
}

// floorPlan reads RAG_INGEST's and the workers' consumer's configuration,
// and the worker's pull size from its ready line (w's).
func (r *runner) floorPlan(ctx context.Context, w *child) (floorPlan, error) {
	var plan floorPlan
	s, err := r.js.Stream(ctx, worker.IngestStream)
	if err != nil {
		return plan, fmt.Errorf("stream %s: %w", worker.IngestStream, err)
	}
	plan.ingest = s.CachedInfo().Config
	info, err := r.consumerInfo(ctx)
	if err != nil {
		return plan, err
	}
	plan.consumer = info.Config
	var ready struct {
		PullMaxBytes int `json:"pull_max_bytes"`
	}
	line := w.log.readyLine()
	if err := json.Unmarshal([]byte(line), &ready); err != nil || ready.PullMaxBytes < 1 {
		return plan, fmt.Errorf("the worker's ready line names no pull_max_bytes: %s", line)
	}
	plan.pullMaxBytes = ready.PullMaxBytes
	return plan, nil
}

// natsFloor publishes bodies to a fresh stream made like RAG_INGEST, on
// subjects of its own, runs the floor's consumer (this binary, bench
// FloorChildArg) until it has acknowledged them all, and returns its CPU
// time (user and system, from its resource usage once it has exited, less
// what it had used before consuming) per event, in microseconds. The
// stream is deleted before it returns.
func (r *runner) natsFloor(ctx context.Context, plan floorPlan, docs []doc, collection string, bodies [][]byte) (float64, error) {
	name := "RAG_BENCH_FLOOR_" + r.id
	prefix := r.cfg.Prefix + ".bench_floor_" + r.id
	in := plan.ingest
	stream, err := r.js.CreateStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "ragpipe bench: a drain's events again, for the NATS floor",
		Subjects:    []string{prefix + ".>"},
		Storage:     in.Storage, Retention: in.Retention, Replicas: in.Replicas, Duplicates: in.Duplicates,
	})
	if err != nil {
		return 0, fmt.Errorf("create stream %s: %w", name, err)
	}
	defer r.deleteStream(ctx, name)
	c := plan.consumer
	consumer, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{
		Durable: floorConsumer, FilterSubject: prefix + ".>",
		AckPolicy: c.AckPolicy, AckWait: c.AckWait, MaxAckPending: c.MaxAckPending, MaxDeliver: c.MaxDeliver,
	})
	if err != nil {
		return 0, fmt.Errorf("create consumer %s: %w", floorConsumer, err)
	}
	if _, err := r.publishAll(ctx, docs, bodies, func(user string) string { return prefix + "." + user + "." + collection }); err != nil {
		return 0, err
	}

	cmd := exec.Command(r.cfg.Executable, "bench", FloorChildArg, name, floorConsumer,
		strconv.Itoa(len(bodies)), strconv.Itoa(plan.pullMaxBytes))
	cmd.Env = append(slices.Clone(r.cfg.Env), "NATS_URL="+r.cfg.NATSURL)
	child, err := r.startProcess(ctx, "nats floor", cmd, floorReady)
	if err != nil {
		return 0, err
	}
	defer child.stop() // when failing; it has exited otherwise
	before, err := parseFloorReady(child.log.readyLine())
	if err != nil {
		return 0, err
	}
	timer := time.NewTimer(stallTimeout)
	defer timer.Stop()
	select {
	case <-child.done:
	case <-ctx.Done():
		return 0, ctx.Err()
	case <-timer.C:
		return 0, fmt.Errorf("nats floor did not acknowledge %d events within %s; last line: %s", len(bodies), stallTimeout, child.log.last())
	}
	if child.err != nil {
		return 0, child.exitError()
	}
	if err := settled(ctx, consumer, floorSettle); err != nil {
		return 0, fmt.Errorf("nats floor exited (last line: %s), but %w", child.log.last(), err)
	}
	ps := cmd.ProcessState
	used := ps.UserTime() + ps.SystemTime() - before
	return used.Seconds() / float64(len(bodies)) * 1e6, nil
}

// floorText renders the NATS floor for a note: "NATS client alone 14.2
// µs/doc", why it was not measured, or "" for a drain that does not
// measure it.
func (in *Ingest) floorText() string {
	switch {
	case in.NATSFloorUsPerDoc != nil:
		return fmt.Sprintf("NATS client alone %.1f µs/doc", *in.NATSFloorUsPerDoc)
	case in.NATSFloorError != "":
		return "NATS client alone not measured: " + in.NATSFloorError
	}
	return ""
}

// settled polls consumer until it has nothing outstanding, for at most
// within (floorSettle in the bench): the server applies acknowledgements it
// has received a moment later. It returns ctx's error when ctx ends first.
func settled(ctx context.Context, consumer jetstream.Consumer, within time.Duration) error {
	wait, cancel := context.WithTimeout(ctx, within)
	defer cancel()
	var n uint64
	err := poll(wait, drainPoll, nil, func() (bool, error) {
		info, err := consumer.Info(wait)
		if err != nil {
			return false, fmt.Errorf("consumer %s: %w", floorConsumer, err)
		}
		n = outstanding(info)
		return n == 0, nil
	})
	if err != nil && err == wait.Err() && ctx.Err() == nil { // the wait ran out (Info's errors are wrapped)
		return fmt.Errorf("%d events still not acknowledged after %s", n, within)
	}
	return err
}

// parseFloorReady returns the CPU time the floor's consumer had used
// before consuming, from its ready line.
func parseFloorReady(line string) (time.Duration, error) {
	_, v, ok := strings.Cut(line, floorCPUKey)
	us, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if !ok || err != nil || us < 0 {
		return 0, fmt.Errorf("nats floor's ready line names no CPU time: %q", line)
	}
	return time.Duration(us) * time.Microsecond, nil
}

// deleteStream deletes stream, with its consumers, even when ctx has
// ended.
func (r *runner) deleteStream(ctx context.Context, stream string) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
	defer cancel()
	if err := r.js.DeleteStream(ctx, stream); err != nil {
		r.progressf("delete stream %s: %v", stream, err)
	}
}

// CheckFloorChildArgs reports whether args are RunFloorChild's, so that a
// caller can refuse them before connecting to NATS.
func CheckFloorChildArgs(args []string) error {
	_, _, err := parseFloorArgs(args)
	return err
}

// parseFloorArgs reads RunFloorChild's arguments: STREAM CONSUMER EVENTS
// PULL_MAX_BYTES.
func parseFloorArgs(args []string) (events, pull int, err error) {
	if len(args) != 4 {
		return 0, 0, fmt.Errorf("%s: want STREAM CONSUMER EVENTS PULL_MAX_BYTES, got %q", FloorChildArg, args)
	}
	events, err1 := strconv.Atoi(args[2])
	pull, err2 := strconv.Atoi(args[3])
	if err1 != nil || err2 != nil || events < 1 || pull < 1 {
		return 0, 0, fmt.Errorf("%s: EVENTS %q and PULL_MAX_BYTES %q must be positive integers", FloorChildArg, args[2], args[3])
	}
	return events, pull, nil
}

// RunFloorChild is the NATS floor's consumer, run by `ragpipe bench
// FloorChildArg STREAM CONSUMER EVENTS PULL_MAX_BYTES` (args are those after
// FloorChildArg) on nc: it consumes CONSUMER of STREAM with
// jetstream.PullMaxBytes(PULL_MAX_BYTES), acknowledges every message and
// does nothing else. It writes to out a line starting floorReady with the
// CPU time used so far just before consuming, and returns once EVENTS
// messages are acknowledged and the acknowledgements flushed, or when ctx
// ends.
func RunFloorChild(ctx context.Context, nc *nats.Conn, args []string, out io.Writer) error {
	events, pull, err := parseFloorArgs(args)
	if err != nil {
		return err
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("%s: %w", FloorChildArg, err)
	}
	consumer, err := js.Consumer(ctx, args[0], args[1])
	if err != nil {
		return fmt.Errorf("%s: consumer %s of %s: %w", FloorChildArg, args[1], args[0], err)
	}
	before, err := cputime.Self()
	if err != nil {
		return fmt.Errorf("%s: %w", FloorChildArg, err)
	}
	fmt.Fprintf(out, "%s; %s%d\n", floorReady, floorCPUKey, before.Microseconds())

	var acked atomic.Int64
	all := make(chan struct{})
	failed := make(chan error, 1)
	// The handler runs on one goroutine, a message at a time.
	cc, err := consumer.Consume(func(m jetstream.Msg) {
		if err := m.Ack(); err != nil {
			select {
			case failed <- err:
			default:
			}
		}
		if acked.Add(1) == int64(events) {
			close(all)
		}
	},
		jetstream.PullMaxBytes(pull),
		jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
			fmt.Fprintf(out, "nats floor: consume: %v\n", err)
		}))
	if err != nil {
		return fmt.Errorf("%s: consume: %w", FloorChildArg, err)
	}
	defer cc.Stop()
	select {
	case <-all:
	case err := <-failed:
		return fmt.Errorf("%s: ack: %w", FloorChildArg, err)
	case <-ctx.Done():
		return fmt.Errorf("%s: stopped after acknowledging %d of %d: %w", FloorChildArg, acked.Load(), events, ctx.Err())
	}
	cc.Stop()
	select {
	case err := <-failed:
		return fmt.Errorf("%s: ack: %w", FloorChildArg, err)
	default:
	}
	if err := nc.FlushTimeout(stallTimeout); err != nil {
		return fmt.Errorf("%s: flush the acknowledgements: %w", FloorChildArg, err)
	}
	fmt.Fprintf(out, "nats floor: acknowledged %d\n", events)
	return nil
}
