package main

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"
	"github.com/schollz/progressbar/v3"

	"github.com/ragpipe/ragpipe/backup"
	"github.com/ragpipe/ragpipe/generation"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
)

var backupCommand = command{
	name:   "backup",
	client: true,
	summary: "Write a restorable backup of collections to a directory while workers run: every document whole at one version, " +
		"with vectors, keyword vectors and payload, the version register and the manifest. " +
		"Streams with bounded memory, resumes when run again after an interruption.",
	usage: "backup --to DIR [--collection NAME]... [--from STORE] [flags]\n\n" +
		"  DIR must be missing, empty, or hold an unfinished backup of the same collections (which is resumed).\n" +
		"  STORE defaults to QDRANT_URL; an embedded store is the data directory of `ragpipe dev` (stop dev first:\n" +
		"  its embedded NATS is started here to read the version register) or its vectors/ store.\n" +
		"  The version register is read from NATS_URL (RAG_VERSIONS); --register=false leaves it out.\n" +
		"  Each collection is read from the store collection serving it (the generation RAG_GENERATIONS names,\n" +
		"  else its alias' target), which the manifest records and a restore recreates behind the alias.\n" +
		"  With RAGPIPE_ENCRYPTION_KEY_FILE, the tenants' wrapped data keys are backed up too (never the master key).",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		b := &backupRun{}
		fs.StringVar(&b.to, "to", "", "backup directory (required)")
		fs.StringVar(&b.from, "from", "", "store to back up (default: QDRANT_URL)")
		collectionFlag(fs, &b.collections, "back up")
		fs.IntVar(&b.pageSize, "page-size", 256, "documents read at a time")
		fs.IntVar(&b.segmentPoints, "segment-points", 50_000, "points per segment file, at most what an interrupted backup redoes")
		fs.BoolVar(&b.register, "register", true, "back up the version register (needs NATS)")
		return b.run
	},
}

type backupRun struct {
	to, from    string
	collections []string
	pageSize    int
	register    bool
	// segmentPoints is backup.Config.SegmentPoints.
	segmentPoints int
}

func (b *backupRun) run(ctx context.Context, env *environment, args []string) error {
	if b.to == "" || len(args) > 0 {
		return errors.New("want --to DIR and no other arguments; see --help")
	}
	store, err := openOperationStore(ctx, env, b.from, "--from", b.register)
	if err != nil {
		return err
	}
	defer store.close()
	src, ok := store.store.(backup.Source)
	if !ok {
		return errors.New("this store cannot be backed up")
	}
	cfg := backup.Config{
		Source: src, Dir: b.to, Collections: b.collections, PageSize: b.pageSize, SegmentPoints: b.segmentPoints,
		RagpipeVersion: ragpipeVersion(), Embedders: map[string]string{}, Logger: env.log,
	}
	for _, c := range env.cfg.Collections {
		cfg.Embedders[c.Name] = embedderName(env, c.Embedder)
	}
	if store.register != nil {
		cfg.Register = store.register.Export
	}
	if store.generations != nil {
		cfg.Serving = servingGeneration(store.generations)
	}
	if store.keys != nil {
		cfg.Keys = exportKeys(store.keys)
	}
	bar := newBar(env)
	cfg.Progress = bar.set
	start := time.Now()
	m, err := backup.Backup(ctx, cfg)
	bar.finish()
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("run the same command again to resume (progress in %s): %w", filepath.Join(b.to, "checkpoint.json"), err)
	}
	if err != nil {
		return err
	}
	points, docs := 0, 0
	for _, c := range m.Collections {
		for _, t := range c.Tenants {
			points += t.Points
			docs += t.Documents
		}
		fmt.Fprintf(env.stdout, "%s\t%s\t%d tenants\t%d points\t%d segments\t%d register entries\t%d skipped\n",
			c.Name, cmp.Or(c.Generation, c.Name), len(c.Tenants), c.Points(), len(c.Segments), entries(c.Register), c.Skipped)
	}
	secs := time.Since(start).Seconds()
	fmt.Fprintf(env.stdout, "backup of %d documents, %d points in %s: %.1fs, %.0f points/s in this run\n",
		docs, points, b.to, secs, float64(points)/secs)
	return nil
}

// collectionFlag registers the repeatable --collection flag.
func collectionFlag(fs *flag.FlagSet, names *[]string, verb string) {
	fs.Func("collection", "collection to "+verb+" (repeatable; default: all)", func(s string) error {
		*names = append(*names, s)
		return nil
	})
}

func entries(f *backup.File) int {
	if f == nil {
		return 0
	}
	return f.Entries
}

// embedderName names the embedder of a collection's profile ("" for the
// default embedder): its kind and model.
func embedderName(env *environment, profile string) string {
	e := env.cfg.Embedder
	if p, ok := env.cfg.Profiles[profile]; ok && profile != "" {
		e = p
	}
	name := e.Kind
	if e.Model != "" {
		name += ":" + e.Model
	}
	if profile != "" {
		name = profile + "=" + name
	}
	return name
}

// ragpipeVersion is the module version the binary was built from.
func ragpipeVersion() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		return info.Main.Version
	}
	return "unknown"
}

// operationStore is a store opened by backup or restore, with the version
// register that goes with it.
type operationStore struct {
	store    any // *qdrantstore.Store or *localstore.Store
	register *lww.Register
	// generations, opened read-only for a backup's source, names the
	// generations serving the collections.
	generations *generation.Registry
	keys        *keyring.Keyring // nil without RAGPIPE_ENCRYPTION_KEY_FILE
	close       func()
}

// openOperationStore opens spec (a Qdrant URL, an embedded store or the
// data directory of `ragpipe dev`; "" is QDRANT_URL) and, with register,
// the version register: from the embedded NATS of a dev data directory,
// started here, else from NATS_URL.
func openOperationStore(ctx context.Context, env *environment, spec, flagName string, register bool) (operationStore, error) {
	var (
		s       operationStore
		devDir  string
		closers []func()
	)
	s.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	switch {
	case spec == "":
		q, err := newQdrant(ctx, env.cfg, env.log)
		if err != nil {
			return s, err
		}
		s.store, closers = q, append(closers, func() { q.Close() })
	case strings.Contains(spec, "://"):
		m, err := openStore(ctx, env, spec, flagName)
		if err != nil {
			return s, err
		}
		s.store, closers = m.source, append(closers, func() { m.close() })
	default:
		dir, dev, err := devDataDir(spec, flagName == "--from")
		if err != nil {
			return s, fmt.Errorf("%s %s: %w", flagName, spec, err)
		}
		if dev {
			devDir = spec
		}
		l, err := localstore.Open(ctx, localstore.Config{Dir: dir, NoKeywords: !env.cfg.Keywords, Logger: env.log})
		if err != nil {
			return s, err
		}
		s.store, closers = l, append(closers, func() { l.Close() })
	}
	if !register {
		return s, nil
	}
	cfg := env.cfg.NATS
	if devDir != "" {
		ns, err := startNATSServer(cfg, devDir, env.log, storeEncryption(env.cfg.MasterKeys))
		if err != nil {
			s.close()
			return s, fmt.Errorf("the embedded NATS of %s (is `ragpipe dev` still running?): %w", devDir, err)
		}
		closers = append(closers, func() { ns.Shutdown(); ns.WaitForShutdown() })
		cfg.URL = ns.ClientURL()
	}
	nc, err := connectNATS(ctx, cfg, "ragpipe-"+strings.TrimPrefix(flagName, "--"), env.log)
	if err != nil {
		s.close()
		return s, err
	}
	closers = append(closers, nc.Close)
	js, err := jetstream.New(nc)
	if err == nil {
		s.register, err = lww.NewRegister(ctx, js, env.cfg.SubjectPrefix, env.cfg.Worker.StreamReplicas)
	}
	if err != nil {
		s.close()
		return s, fmt.Errorf("version register: %w", err)
	}
	if flagName == "--from" {
		if s.generations, err = generation.Open(ctx, js, generation.Config{ReadOnly: true, Logger: env.log}); err != nil {
			s.close()
			return s, fmt.Errorf("generations: %w", err)
		}
		closers = append(closers, func() { s.generations.Close() })
	}
	if env.cfg.MasterKeys != nil {
		if s.keys, err = keyring.Open(ctx, js, env.cfg.MasterKeys, keyring.Config{Replicas: env.cfg.Worker.StreamReplicas}); err != nil {
			s.close()
			return s, err
		}
		closers = append(closers, func() { s.keys.Close() })
	}
	return s, nil
}

// servingGeneration is backup.Config.Serving of a Registry: the store
// collection its State names as serving, read from the bucket's leader;
// "" without a State or a serving generation in it.
func servingGeneration(reg *generation.Registry) func(context.Context, string) (string, error) {
	return func(ctx context.Context, collection string) (string, error) {
		s, _, err := reg.Current(ctx, collection)
		return s.Serving.Name, err
	}
}

// exportKeys is backup.Config.Keys of a keyring: its records as JSON.
func exportKeys(k *keyring.Keyring) func(context.Context, func(json.RawMessage) error) error {
	return func(ctx context.Context, fn func(json.RawMessage) error) error {
		return k.Export(ctx, func(rec keyring.Record) error {
			data, err := json.Marshal(rec)
			if err != nil {
				return err
			}
			return fn(data)
		})
	}
}

// importKey is backup.RestoreConfig.ImportKey of a keyring. A tenant
// forgotten in the target keeps its tombstone: its restored points stay
// unreadable, as forget intended.
func importKey(k *keyring.Keyring, log zerolog.Logger) func(context.Context, json.RawMessage) error {
	return func(ctx context.Context, data json.RawMessage) error {
		var rec keyring.Record
		if err := json.Unmarshal(data, &rec); err != nil {
			return fmt.Errorf("key record: %w", err)
		}
		err := k.Import(ctx, rec)
		if errors.Is(err, keyring.ErrForgotten) {
			log.Warn().Str("user_id", rec.Tenant).Msg("tenant forgotten in the target: its key is not restored")
			return nil
		}
		return err
	}
}

// devDataDir resolves an embedded store directory: the vectors/ store of a
// `ragpipe dev` data directory (dev is true), which a restore target that is
// missing or empty becomes, or a bare store directory.
func devDataDir(dir string, source bool) (store string, dev bool, err error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) && !source || err == nil && len(entries) == 0 && !source {
		return filepath.Join(dir, devVectorsDir), true, nil
	}
	if _, err := os.Stat(filepath.Join(dir, devNATSDir)); err == nil {
		return filepath.Join(dir, devVectorsDir), true, nil
	}
	store, err = embeddedStoreDir(dir, source)
	return store, false, err
}

// progressBar draws the progress of a backup or restore on stderr when it
// is a terminal, and otherwise (a job's log) writes a line every
// progressEvery.
type progressBar struct {
	env  *environment
	bar  *progressbar.ProgressBar
	on   bool
	last time.Time
}

// progressEvery is how often progress is written to a stderr that is not a
// terminal.
const progressEvery = 10 * time.Second

func newBar(env *environment) *progressBar {
	f, ok := env.stderr.(*os.File)
	return &progressBar{env: env, on: ok && isatty.IsTerminal(f.Fd())}
}

func (p *progressBar) set(collection string, done, total int) {
	if !p.on {
		if time.Since(p.last) >= progressEvery {
			p.last = time.Now()
			fmt.Fprintf(p.env.stderr, "%s: %d of %d points\n", collection, done, total)
		}
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(p.env.stderr),
			progressbar.OptionShowCount(), progressbar.OptionShowIts(), progressbar.OptionSetItsString("points"),
			progressbar.OptionThrottle(100*time.Millisecond), progressbar.OptionClearOnFinish())
	}
	p.bar.Describe(collection)
	if done > p.bar.GetMax() {
		p.bar.ChangeMax(done)
	}
	_ = p.bar.Set(done)
}

func (p *progressBar) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
