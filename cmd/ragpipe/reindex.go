package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/pipeline"
)

var reindexCommand = command{
	name:   "reindex",
	client: true,
	summary: "Rebuild a collection with another embedder, dimensions, chunking or layout, or with keyword vectors turned on or off, with zero downtime: " +
		"the workers build the next generation from what is stored while events and searches go on, check it, and switch to it; " +
		"the previous generation is kept, written, for --rollback until --drop-previous.",
	usage: "reindex --collection NAME [--embedder PROFILE|default] [--dims N] [--distance D] [--chunk-size N] [--chunk-overlap N]\n" +
		"                [--shards N] [--replication N] [--no-switch] [--detach] [--json]\n" +
		"       ragpipe reindex --collection NAME --switch | --rollback | --drop-previous | --abort | --status [--json]\n\n" +
		"  Workers carry out the job: at least one `ragpipe worker` or `ragpipe dev` must run. A new profile's\n" +
		"  RAGPIPE_EMBEDDER_<PROFILE>_* settings must be in the environment of every worker and searcher.\n" +
		"  Settings left unset are the serving generation's. The new generation has keyword vectors or not as\n" +
		"  the workers' RAGPIPE_KEYWORDS says: with no setting given, the build turns them on or off alone, and\n" +
		"  fails with \"nothing to change\" when the serving generation already has what the workers create.\n" +
		"  The command follows the job until it is done (exit 0) or failed (exit 1, with the checks' report);\n" +
		"  Ctrl-C leaves it to the workers, and running the same command again follows it again.\n" +
		"  --no-switch builds and checks, then leaves the new generation ready (written, not serving); --switch\n" +
		"  checks it again and switches when you choose: on a Qdrant cluster an alias switch under heavy writes\n" +
		"  stalls every collection of a node until its requests in flight finish.",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		r := &reindexer{fs: fs}
		fs.StringVar(&r.collection, "collection", "", "ragpipe collection to rebuild (required)")
		fs.StringVar(&r.embedder, "embedder", "", "embedder profile of the new generation; default for RAGPIPE_EMBEDDER")
		fs.IntVar(&r.target.Dims, "dims", 0, "dimensions of the new generation (required with another embedder)")
		fs.StringVar((*string)(&r.target.Distance), "distance", "", "distance of the new generation: cosine, dot, euclid or manhattan")
		fs.IntVar(&r.target.ChunkSize, "chunk-size", 0, "largest chunk of the new generation, in characters")
		fs.IntVar(&r.target.ChunkOverlap, "chunk-overlap", 0, "overlap of consecutive chunks of the new generation, in characters")
		fs.Func("shards", "shards of the new generation (Qdrant)", uintFlag(&r.target.Shards))
		fs.Func("replication", "replication factor of the new generation (Qdrant)", uintFlag(&r.target.ReplicationFactor))
		fs.BoolVar(&r.noSwitch, "no-switch", false, "build and check the new generation, but leave the switch to --switch")
		fs.BoolVar(&r.switchNow, "switch", false, "check the generation a --no-switch build left ready again and switch to it")
		fs.BoolVar(&r.rollback, "rollback", false, "switch back to the previous generation")
		fs.BoolVar(&r.dropPrevious, "drop-previous", false, "delete the previous generation (no rollback afterwards)")
		fs.BoolVar(&r.abort, "abort", false, "stop the build and delete the generation being built")
		fs.BoolVar(&r.status, "status", false, "print the collection's generations and job, and exit")
		fs.BoolVar(&r.detach, "detach", false, "write the job and exit without following it")
		fs.BoolVar(&r.json, "json", false, "print the final state as one JSON object")
		return r.run
	},
}

func uintFlag(p *uint32) func(string) error {
	return func(s string) error {
		n, err := strconv.ParseUint(s, 10, 32)
		if err != nil || n == 0 {
			return errors.New("want a whole number >= 1")
		}
		*p = uint32(n)
		return nil
	}
}

type reindexer struct {
	fs                                    *flag.FlagSet
	collection, embedder                  string
	target                                generation.Generation
	rollback, dropPrevious, abort, status bool
	switchNow, noSwitch, detach, json     bool
	given                                 []string
	action                                generation.Action
}

// settingFlags maps the flags of a build's settings to Job.Given's names.
var settingFlags = map[string]string{
	"embedder": generation.SetEmbedder, "dims": generation.SetDims, "distance": generation.SetDistance,
	"chunk-size": generation.SetChunkSize, "chunk-overlap": generation.SetChunkOverlap,
	"shards": generation.SetShards, "replication": generation.SetReplication,
}

// parse checks the flags and settles the action and the given settings.
func (r *reindexer) parse(args []string) error {
	r.fs.Visit(func(f *flag.Flag) {
		if g, ok := settingFlags[f.Name]; ok {
			r.given = append(r.given, g)
		}
	})
	actions := 0
	for _, on := range []bool{r.switchNow, r.rollback, r.dropPrevious, r.abort, r.status} {
		if on {
			actions++
		}
	}
	switch {
	case len(args) > 0:
		return fmt.Errorf("unexpected arguments %q; see --help", args)
	case r.collection == "":
		return errors.New("want --collection NAME; see --help")
	case !pipeline.ValidCollection(r.collection):
		return fmt.Errorf("--collection %s: not a collection name", pipeline.ShortQuote(r.collection))
	case actions > 1:
		return errors.New("want at most one of --switch, --rollback, --drop-previous, --abort and --status")
	case actions == 1 && (len(r.given) > 0 || r.noSwitch):
		return errors.New("the new generation's settings and --no-switch go with a build only, not with --switch, --rollback, --drop-previous, --abort or --status")
	case r.target.Distance != "" && !r.target.Distance.Valid():
		return fmt.Errorf("--distance %s: want cosine, dot, euclid or manhattan", r.target.Distance)
	case r.target.ChunkSize < 0 || r.target.ChunkOverlap < 0:
		return errors.New("--chunk-size and --chunk-overlap: want >= 0")
	}
	for _, g := range r.given {
		if g == generation.SetDims && r.target.Dims < 1 {
			return fmt.Errorf("--dims %d: want >= 1", r.target.Dims)
		}
		if g == generation.SetChunkSize && r.target.ChunkSize < 1 {
			return fmt.Errorf("--chunk-size %d: want >= 1", r.target.ChunkSize)
		}
	}
	if r.embedder != "default" {
		r.target.Embedder = r.embedder
	}
	switch {
	case r.switchNow:
		r.action = generation.Switch
	case r.rollback:
		r.action = generation.Rollback
	case r.dropPrevious:
		r.action = generation.DropPrevious
	case r.abort:
		r.action = generation.Abort
	case !r.status:
		r.action = generation.Build
	}
	return nil
}

func (r *reindexer) run(ctx context.Context, env *environment, args []string) error {
	if err := r.parse(args); err != nil {
		return err
	}
	nc, js, err := connectJetStream(ctx, env.cfg.NATS, "ragpipe-reindex", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	reg, err := generation.Open(ctx, js, generation.Config{Replicas: env.cfg.Worker.StreamReplicas, Logger: env.log})
	if err != nil {
		return err
	}
	defer reg.Close()
	if r.status {
		st, ok, err := reg.Current(ctx, r.collection)
		if err != nil {
			return err
		}
		if !ok {
			st = generation.State{Collection: r.collection}
		}
		return r.print(env.stdout, st)
	}
	var id string
	attached := false
	_, err = reg.Update(ctx, r.collection, func(s *generation.State, _ bool) error {
		job, same, err := r.job(s)
		if err != nil {
			return err
		}
		if id, attached = job.ID, same; same {
			return generation.ErrNoChange
		}
		s.Collection, s.Job = r.collection, job
		return nil
	})
	if err != nil {
		return err
	}
	switch {
	case r.detach:
		what := "written"
		if attached {
			what = "already running"
		}
		fmt.Fprintf(env.stderr, "reindex %s: %s job %s %s; the workers carry it out. Follow it with `ragpipe reindex --collection %s --status`.\n",
			r.collection, r.action, id, what, r.collection)
		return nil
	case attached:
		fmt.Fprintf(env.stderr, "reindex %s: following the %s job %s already running\n", r.collection, r.action, id)
	default:
		fmt.Fprintf(env.stderr, "reindex %s: %s job %s written; waiting for a worker\n", r.collection, r.action, id)
	}
	return r.follow(ctx, env, reg, id)
}

// job returns the Job the command asks for in state s, or the running one
// it is the same request as (same true); or why it is refused.
func (r *reindexer) job(s *generation.State) (*generation.Job, bool, error) {
	running := s.Job
	if running.Active() {
		switch {
		case running.Action == r.action && (r.action != generation.Build || r.sameBuild(running)):
			return running, true, nil
		case r.action == generation.Abort && running.Action == generation.Build:
		default:
			return nil, false, fmt.Errorf("a %s job is running (phase %s): follow it with --status, or stop a build with --abort", running.Action, running.Phase)
		}
	}
	job := &generation.Job{ID: newJobID(), Action: r.action, Phase: generation.Waiting, Requested: time.Now()}
	switch r.action {
	case generation.Build:
		switch {
		case s.Building != nil && running != nil && running.Phase == generation.Ready:
			return nil, false, fmt.Errorf("generation %s is built and ready: --switch to it or --abort it first", s.Building.Name)
		case s.Building != nil:
			return nil, false, fmt.Errorf("generation %s is left by a build that did not finish: --abort it first", s.Building.Name)
		case s.Previous != nil:
			return nil, false, fmt.Errorf("the previous generation %s is kept for a rollback: --drop-previous it first (or --rollback)", s.Previous.Name)
		}
		if s.Serving.Name != "" {
			target := generation.Fill(r.target, r.given, s.Serving)
			if target.Dims == 0 {
				return nil, false, fmt.Errorf("give --dims N, the new embedder's dimensions (serving %s: %s)", s.Serving.Name, describe(s.Serving))
			}
			if target.ChunkSize > 0 && target.ChunkOverlap >= target.ChunkSize {
				return nil, false, fmt.Errorf("chunk overlap %d with chunk size %d: want an overlap below the size", target.ChunkOverlap, target.ChunkSize)
			}
		}
		t := r.target
		job.Target, job.Given, job.NoSwitch = &t, r.given, r.noSwitch
	case generation.Switch:
		if s.Building == nil {
			return nil, false, fmt.Errorf("collection %s has no generation being built to switch to", r.collection)
		}
		t := *s.Building
		job.Target = &t
	case generation.Rollback, generation.DropPrevious:
		if s.Previous == nil {
			return nil, false, fmt.Errorf("collection %s has no previous generation", r.collection)
		}
	case generation.Abort:
		switch {
		case running.Active():
			if running.Target != nil && running.Target.Name != "" {
				t := *running.Target
				job.Target = &t
			}
		case s.Building == nil:
			return nil, false, fmt.Errorf("collection %s has no generation being built", r.collection)
		}
	}
	return job, false, nil
}

// sameBuild reports whether the running build j has the settings asked.
func (r *reindexer) sameBuild(j *generation.Job) bool {
	if j.Target == nil || len(j.Given) != len(r.given) {
		return false
	}
	asked := generation.Fill(r.target, r.given, generation.Generation{})
	had := generation.Fill(*j.Target, j.Given, generation.Generation{})
	asked.Name, asked.Number = had.Name, had.Number
	return asked == had
}

func newJobID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	return time.Now().UTC().Format("20060102T150405Z") + "-" + hex.EncodeToString(b)
}

// logEvery is the least time between two progress lines when stderr is no
// terminal (a log); a line is printed only when the progress changed.
const logEvery = 10 * time.Second

// article is "a" or "an", as word needs.
func article(word string) string {
	if word != "" && strings.ContainsRune("aeiou", rune(word[0])) {
		return "an"
	}
	return "a"
}

// follow shows the progress of Job id until it ends or ctx does.
func (r *reindexer) follow(ctx context.Context, env *environment, reg *generation.Registry, id string) error {
	bar := newBar(env)
	defer bar.finish()
	var phase generation.Phase
	var problem string
	var lastCopied int64
	lastAt, since := time.Now(), time.Now()
	rate := 0.0
	warned := false
	var printed string // the progress line last printed when stderr is no terminal
	var printedAt time.Time
	t := time.NewTicker(250 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			bar.finish()
			fmt.Fprintf(env.stderr, "reindex %s: left to the workers, who carry on. Follow it with `ragpipe reindex --collection %s --status`; stop it with `--abort`.\n",
				r.collection, r.collection)
			return nil
		case <-t.C:
		}
		st, ok := reg.Cached(r.collection)
		if !ok || st.Job == nil || st.Job.ID != id {
			st, ok, _ = reg.Current(ctx, r.collection)
		}
		switch {
		case !ok || st.Job == nil:
			continue
		case st.Job.ID != id:
			bar.finish()
			return fmt.Errorf("the job was replaced by %s %s job %s", article(string(st.Job.Action)), st.Job.Action, st.Job.ID)
		}
		j := st.Job
		if j.Phase != phase {
			phase = j.Phase
			bar.finish()
			fmt.Fprintf(env.stderr, "reindex %s: %s\n", r.collection, phaseLine(st))
		}
		if j.Error != "" && j.Error != problem && j.Active() {
			problem = j.Error // a problem that comes and goes is said once
			fmt.Fprintf(env.stderr, "reindex %s: %s\n", r.collection, j.Error)
		}
		if j.Phase == generation.Waiting && !warned && time.Since(since) > 10*time.Second {
			warned = true
			fmt.Fprintf(env.stderr, "reindex %s: no worker has taken the job yet: at least one `ragpipe worker` or `ragpipe dev` must run\n", r.collection)
		}
		if j.Phase == generation.Copying {
			if dt := time.Since(lastAt).Seconds(); dt >= 1 {
				rate = float64(j.Copied-lastCopied) / dt
				lastCopied, lastAt = j.Copied, time.Now()
			}
			if bar.on {
				bar.set(fmt.Sprintf("%s: %d documents, %.0f/s", r.collection, j.Copied, rate), int(j.Points), int(max(j.Total, j.Points, 1)))
			} else if line := fmt.Sprintf("%d documents (%d of %d points) copied", j.Copied, j.Points, j.Total); line != printed && time.Since(printedAt) >= logEvery {
				printed, printedAt = line, time.Now()
				fmt.Fprintf(env.stderr, "reindex %s: %s, %.0f documents/s\n", r.collection, line, rate)
			}
		}
		if j.Active() {
			continue
		}
		bar.finish()
		if err := r.print(env.stdout, st); err != nil {
			return err
		}
		if j.Phase == generation.Failed {
			return fmt.Errorf("the %s job failed: %s", j.Action, j.Error)
		}
		return nil
	}
}

// phaseLine says what the phase of st's Job means.
func phaseLine(st generation.State) string {
	j := st.Job
	switch j.Phase {
	case generation.Waiting:
		return "waiting for a worker to take the job"
	case generation.Creating:
		return "creating the new generation"
	case generation.Copying:
		return fmt.Sprintf("copying %s into %s (%d points)", st.Serving.Name, nameOf(st.Building), j.Total)
	case generation.Checking:
		if j.Action == generation.Switch {
			return fmt.Sprintf("checking %s against %s again", nameOf(st.Building), st.Serving.Name)
		}
		return fmt.Sprintf("checking %s against %s (%d documents copied)", nameOf(st.Building), st.Serving.Name, j.Copied)
	case generation.Ready:
		return fmt.Sprintf("%s is built and checked, not switched: workers keep writing it; `ragpipe reindex --collection %s --switch` switches to it",
			nameOf(st.Building), st.Collection)
	case generation.Switching:
		return "switching"
	}
	return string(j.Phase)
}

func nameOf(g *generation.Generation) string {
	if g == nil {
		return "-"
	}
	return g.Name
}

// print writes st: its generations, its job and the job's report.
func (r *reindexer) print(w io.Writer, st generation.State) error {
	if r.json {
		return json.NewEncoder(w).Encode(st)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "collection %s\n", st.Collection)
	if st.Serving.Name == "" {
		fmt.Fprintf(tw, "  no generations yet: served by the store collection %s with the configured embedder\n", st.Collection)
	}
	for _, g := range []struct {
		what string
		gen  *generation.Generation
	}{{"serving", &st.Serving}, {"building", st.Building}, {"previous", st.Previous}} {
		if g.gen != nil && g.gen.Name != "" {
			fmt.Fprintf(tw, "  %s\t%s\t%s\n", g.what, g.gen.Name, describe(*g.gen))
		}
	}
	if j := st.Job; j != nil {
		if j.Action == generation.Build {
			fmt.Fprintf(tw, "  job\t%s %s\t%s, %d documents (%d of %d points) copied\n", j.Action, j.ID, j.Phase, j.Copied, j.Points, j.Total)
		} else {
			fmt.Fprintf(tw, "  job\t%s %s\t%s\n", j.Action, j.ID, j.Phase)
		}
		if j.Error != "" {
			fmt.Fprintf(tw, "  error\t%s\n", j.Error)
		}
		if j.Phase == generation.Ready {
			fmt.Fprintf(tw, "  ready\t%s is built and checked; --switch switches to it, --abort drops it\n", nameOf(st.Building))
		}
		if rep := j.Report; rep != nil {
			fmt.Fprintf(tw, "  tenant\tdocuments (serving / new)\tpoints (serving / new, new documents' chunks)\n")
			for _, t := range rep.Tenants {
				fmt.Fprintf(tw, "  %s\t%d / %d\t%d / %d, %d\n", t.UserID, t.FromDocs, t.ToDocs, t.FromPoints, t.ToPoints, t.ToChunks)
			}
			for _, m := range rep.Mismatches {
				fmt.Fprintf(tw, "  differs\t%s\n", m)
			}
			fmt.Fprintf(tw, "  sample searches\t%d of %d found their document\n", rep.Answered, rep.Searches)
			if rep.SwitchTook > 0 {
				fmt.Fprintf(tw, "  switch took\t%s\n", roundDuration(rep.SwitchTook))
			}
		}
	}
	return tw.Flush()
}

// describe is g's settings in a few words.
func describe(g generation.Generation) string {
	emb := g.Embedder
	if emb == "" {
		emb = "default"
	}
	s := fmt.Sprintf("embedder %s, %d dims, %s, chunks of %d overlapping by %d", emb, g.Dims, g.Distance, g.ChunkSize, g.ChunkOverlap)
	if g.Shards > 0 || g.ReplicationFactor > 0 {
		s += fmt.Sprintf(", %d shards, replication %d", g.Shards, g.ReplicationFactor)
	}
	return s
}

// roundDuration rounds d to three significant figures at most: 20.5ms,
// 1.23s, 312µs.
func roundDuration(d time.Duration) time.Duration {
	for unit := time.Duration(1); unit < time.Hour; unit *= 10 {
		if d < 1000*unit {
			return d.Round(unit)
		}
	}
	return d.Round(time.Second)
}
