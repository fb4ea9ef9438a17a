package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/ragpipe/ragpipe/bench"
	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/internal/qdrantproc"
)

var benchCommand = command{
	name:   "bench",
	client: true,
	summary: "Measure ingestion and search side by side with what Qdrant itself absorbs, in one run. " +
		"Prints a table, or JSON with --json. Exits 0 when every stage succeeded, 1 when one failed (the report says which and why), " +
		"0 when interrupted by SIGINT or SIGTERM, after stopping the processes it started.",
	usage: "bench [--only STAGES] [--json] [flags]\n\n" +
		"  Stages, in this order (all by default; progress goes to stderr, the report to stdout):\n" +
		"    ceiling  raw Qdrant upserts (wait=true) of --docs points of 1024 dimensions with ragpipe's payload, into\n" +
		"             collections created as ragpipe creates them, for batch 256, 512, 1024 x 1, 2, 4 in parallel,\n" +
		"             a fresh collection each; the best points/s is the ceiling\n" +
		"    vectors  one `ragpipe worker` process ingests --docs events carrying their vectors (~900 chars of text,\n" +
		"             one chunk, 5 tenants), timed from the first publish to the last acknowledgement; then the\n" +
		"             points are counted exactly; docs/s, the ratio to the ceiling, Qdrant's and the worker's CPU\n" +
		"             per document, how long publishing took and how busy Qdrant was meanwhile and after;\n" +
		"             twice: vectors as JSON arrays (vector), then as base64 (vector_b64). After each drain, the\n" +
		"             NATS floor (\"NATS client alone\", µs/doc): the same events, published again to a stream of\n" +
		"             their own, consumed by a process of this binary that only acknowledges each one, with the\n" +
		"             worker's consumer settings (MaxAckPending, pull size); its CPU per event is what the NATS\n" +
		"             client alone costs, under the worker's (nats_floor_us_per_doc in --json)\n" +
		"    text     the same with text only, embedded by the hash embedder, with its NATS floor\n" +
		"    search   rag.search requests to one `ragpipe searcher` process against raw Qdrant Query calls with the\n" +
		"             same tenant filter, on the text stage's collection (selecting search runs text too), once\n" +
		"             Qdrant has indexed it: p50 and p99 at concurrency 1 and 8, --searches requests each, with\n" +
		"             each process's CPU per request, beside a bare NATS round trip to the searcher ($SRV.PING)\n" +
		"             and the pass-through: the raw Query's bytes sent over NATS to a process of this binary\n" +
		"             that forwards them to Qdrant and Qdrant's answer back, decoding and encoding nothing, the\n" +
		"             least any search service reached over NATS costs (pass_through in --json)\n" +
		"    builtin  --builtin-docs text events embedded by the builtin semantic embedder: chunks/s per core\n" +
		"             of the worker (skipped, with a note, when this build has no builtin embedder)\n" +
		"    pinned   Qdrant alone on one CPU, this process (publisher, embedded NATS) and the worker on another\n" +
		"             (Linux, 2 CPUs or more, the Qdrant the bench starts): the ceiling, then vector_b64, vector\n" +
		"             and text drains, each against that ceiling. After each, the same documents again into a fresh\n" +
		"             collection from a stream filled first (\"stream filled first\"): every event published and\n" +
		"             acknowledged by the stream while no worker consumes, then one worker started and timed from\n" +
		"             its ready line to the last acknowledgement, the points counted exactly; its ratio to the\n" +
		"             ceiling (beside the drain's in TARGETS), CPU per document and Qdrant's busy cores show the\n" +
		"             rate once the publisher no longer shares the worker's CPU (vectors_b64_backlog,\n" +
		"             vectors_backlog and text_backlog of pinned in --json)\n" +
		"    rss      --backlog events of ~200 chars are published, then one worker drains them for at most\n" +
		"             --backlog-time; its peak resident memory (VmHWM), samples at start, middle and end, the\n" +
		"             drain rate, and an exact count of what was acknowledged\n\n" +
		"  NATS: without --nats-url, a NATS server with JetStream embedded in this process, on a free loopback\n" +
		"  port, storing in a temporary directory. With --nats-url, that server: its RAG_INGEST stream must have\n" +
		"  nothing pending, and the bench purges its own events and version entries from it afterwards.\n" +
		"  Qdrant: without --qdrant-url, a Qdrant process on free loopback ports with a temporary storage, stopped\n" +
		"  and removed at the end; its binary is $QDRANT_BIN, else qdrant on the PATH, else the one\n" +
		"  scripts/install-qdrant.sh caches in ${XDG_CACHE_HOME:-$HOME/.cache}/ragpipe/qdrant-" + qdrantproc.Version + "/qdrant.\n" +
		"  With --qdrant-url (gRPC, QDRANT_URL form; QDRANT_API_KEY applies), that Qdrant. NATS_URL and QDRANT_URL\n" +
		"  are not used. Every collection is fresh (bench_<run id>_<stage>) and deleted when its stage is done.\n\n" +
		"  The worker and searcher processes are this binary; they take their settings from the environment below,\n" +
		"  except NATS_URL, QDRANT_URL, RAGPIPE_COLLECTIONS, RAGPIPE_EMBEDDER (hash; builtin in the builtin stage),\n" +
		"  RAGPIPE_HTTP_ADDR (a free port)\n" +
		"  and RAGPIPE_LOG_LEVEL (info), which the bench sets. Collections are made with RAGPIPE_HNSW, RAGPIPE_SHARDS\n" +
		"  and the other layout settings. Quick run: --only ceiling,vectors,text --docs 2000.",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		o := &benchOptions{}
		fs.StringVar(&o.only, "only", strings.Join(bench.Stages, ","), "comma-separated stages to run")
		fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of a table")
		fs.IntVar(&o.docs, "docs", 10_000, "documents of the ceiling, vectors, text, pinned and search stages")
		fs.IntVar(&o.builtinDocs, "builtin-docs", 1_000, "documents of the builtin stage (at most --docs)")
		fs.IntVar(&o.searches, "searches", 2_000, "search requests per path and concurrency")
		fs.IntVar(&o.backlog, "backlog", 1_000_000, "events of the rss stage")
		fs.DurationVar(&o.backlogTime, "backlog-time", 5*time.Minute, "longest the rss stage drains")
		fs.StringVar(&o.natsURL, "nats-url", "", "NATS to use instead of an embedded server")
		fs.StringVar(&o.qdrantURL, "qdrant-url", "", "Qdrant (gRPC) to use instead of starting one")
		return func(ctx context.Context, env *environment, args []string) error { return runBench(ctx, env, *o, args) }
	},
}

type benchOptions struct {
	only, natsURL, qdrantURL string
	json                     bool
	docs, searches, backlog  int
	builtinDocs              int
	backlogTime              time.Duration
}

func runBench(ctx context.Context, env *environment, o benchOptions, args []string) (err error) {
	if len(args) > 0 {
		switch args[0] {
		case bench.FloorChildArg:
			return runFloorChild(ctx, env, args[1:])
		case bench.SearchFloorChildArg:
			return runSearchFloorChild(ctx, env, args[1:])
		}
		return fmt.Errorf("unexpected argument %q", args[0])
	}
	stages, err := bench.ParseStages(o.only)
	if err != nil {
		return fmt.Errorf("--only: %w", err)
	}
	if o.docs < 1 || o.builtinDocs < 1 || o.searches < 1 || o.backlog < 1 || o.backlogTime <= 0 {
		return errors.New("--docs, --builtin-docs, --searches, --backlog and --backlog-time must be > 0")
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("locate the ragpipe binary: %w", err)
	}
	defer func() { // the servers fail as they stop: say what stopped them
		if err != nil && ctx.Err() != nil && !errors.Is(err, context.Canceled) {
			err = fmt.Errorf("interrupted: %w", ctx.Err())
		}
	}()
	cfg := *env.cfg // the servers of this run replace the configured ones
	settings := bench.Settings{HNSW: cfg.HNSW, NATS: o.natsURL, Qdrant: o.qdrantURL}
	if o.natsURL == "" {
		stop, err := benchNATS(env, &cfg.NATS)
		if err != nil {
			return err
		}
		defer stop()
		settings.NATS = "embedded nats-server " + server.VERSION
	} else {
		cfg.NATS.URL = o.natsURL
	}
	qdrantPID := 0
	if o.qdrantURL == "" {
		pid, stop, err := benchQdrant(ctx, env, &cfg.Qdrant)
		if err != nil {
			return err
		}
		defer stop()
		qdrantPID = pid
		settings.Qdrant = "process"
	} else if err := setQdrantURL(&cfg.Qdrant, o.qdrantURL); err != nil {
		return fmt.Errorf("--qdrant-url: %w", err)
	}

	connectCtx, cancel := context.WithTimeout(ctx, clientConnectTimeout)
	defer cancel()
	nc, err := connectNATS(connectCtx, cfg.NATS, "ragpipe-bench", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	store, err := newQdrant(ctx, &cfg, env.log)
	if err != nil {
		return err
	}
	defer store.Close()

	report, runErr := bench.Run(ctx, bench.Config{
		Executable: exe, Env: os.Environ(), NATSURL: cfg.NATS.URL, QdrantURL: cfg.Qdrant.URL,
		Conn: nc, Store: store, QdrantPID: qdrantPID, Prefix: cfg.SubjectPrefix, PurgeNATS: o.natsURL != "",
		Stages: stages, Docs: o.docs, BuiltinDocs: o.builtinDocs, Searches: o.searches, Backlog: o.backlog, BacklogTime: o.backlogTime,
		Settings: settings, Progress: env.stderr,
	})
	write := report.WriteTable
	if o.json {
		write = report.WriteJSON
	}
	if err := write(env.stdout); err != nil {
		return errors.Join(runErr, fmt.Errorf("write report: %w", err))
	}
	return runErr
}

// runFloorChild is the NATS floor's consumer, a process the bench starts
// itself as `ragpipe bench internal-nats-floor ...` (bench.FloorChildArg);
// the help does not list it. It connects as the worker does.
func runFloorChild(ctx context.Context, env *environment, args []string) error {
	if err := bench.CheckFloorChildArgs(args); err != nil {
		return err
	}
	return withChildConn(ctx, env, "ragpipe-bench-nats-floor", func(nc *nats.Conn) error {
		return bench.RunFloorChild(ctx, nc, args, env.stdout)
	})
}

// runSearchFloorChild is the search floor, a process the bench starts
// itself as `ragpipe bench internal-search-floor SUBJECT`
// (bench.SearchFloorChildArg); the help does not list it. It connects to
// NATS and to Qdrant as the searcher does: the same gRPC connections,
// settings and credentials, checked before it serves.
func runSearchFloorChild(ctx context.Context, env *environment, args []string) error {
	if err := bench.CheckSearchFloorChildArgs(args); err != nil {
		return err
	}
	store, err := newQdrant(ctx, env.cfg, env.log)
	if err != nil {
		return err
	}
	defer store.Close()
	return withChildConn(ctx, env, "ragpipe-bench-search-floor", func(nc *nats.Conn) error {
		return bench.RunSearchFloorChild(ctx, nc, store.Client(), args, env.stdout)
	})
}

// withChildConn runs run on a NATS connection named name, made as every
// ragpipe client makes it, and closes it after.
func withChildConn(ctx context.Context, env *environment, name string, run func(nc *nats.Conn) error) error {
	connectCtx, cancel := context.WithTimeout(ctx, clientConnectTimeout)
	defer cancel()
	nc, err := connectNATS(connectCtx, env.cfg.NATS, name, env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	return run(nc)
}

// benchNATS starts the embedded NATS server on a free loopback port, storing
// in a temporary directory, and points cfg at it. stop shuts it down and
// removes the directory.
func benchNATS(env *environment, cfg *config.NATS) (stop func(), err error) {
	dir, err := os.MkdirTemp("", "ragpipe-bench-nats-")
	if err != nil {
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	ports, err := qdrantproc.FreePorts(1)
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("embedded NATS: %w", err)
	}
	cfg.URL = fmt.Sprintf("nats://127.0.0.1:%d", ports[0])
	ns, err := startNATSServer(*cfg, dir, env.log)
	if err != nil {
		os.RemoveAll(dir)
		return nil, err
	}
	fmt.Fprintf(env.stderr, "bench: embedded NATS server at %s\n", ns.ClientURL())
	return func() {
		ns.Shutdown()
		ns.WaitForShutdown()
		os.RemoveAll(dir)
	}, nil
}

// benchQdrant starts a Qdrant process on free loopback ports with a
// temporary storage, points cfg at it and returns its process id. stop
// stops it and removes its directory.
func benchQdrant(ctx context.Context, env *environment, cfg *config.Qdrant) (pid int, stop func(), err error) {
	bin, err := qdrantproc.Find()
	if err != nil {
		return 0, nil, fmt.Errorf("%w, or pass --qdrant-url", err)
	}
	dir, err := os.MkdirTemp("", "ragpipe-bench-qdrant-")
	if err != nil {
		return 0, nil, fmt.Errorf("qdrant: %w", err)
	}
	logf := func(format string, args ...any) { fmt.Fprintf(env.stderr, "bench: "+format+"\n", args...) }
	node, err := qdrantproc.New(qdrantproc.Config{Bin: bin, Dir: dir, Logf: logf})
	if err == nil {
		err = node.Start(ctx, nil)
	}
	if err != nil {
		os.RemoveAll(dir)
		return 0, nil, fmt.Errorf("start qdrant %s: %w", bin, err)
	}
	logf("qdrant %s at %s (storage in %s)", bin, node.URL(), dir)
	stop = func() {
		if err := node.Stop(); err != nil {
			logf("stop qdrant: %v", err)
		}
		os.RemoveAll(dir)
	}
	if err := setQdrantURL(cfg, node.URL()); err != nil {
		stop()
		return 0, nil, err
	}
	return node.Pid(), stop, nil
}

// setQdrantURL points cfg at the Qdrant of url, in QDRANT_URL form.
func setQdrantURL(cfg *config.Qdrant, url string) error {
	host, port, tls, ok := config.ParseQdrantURL(url)
	if !ok {
		return fmt.Errorf("%q: want http(s)://host[:port]", url)
	}
	cfg.URL, cfg.Host, cfg.Port, cfg.TLS = url, host, port, tls
	return nil
}
