package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/erase"
	"github.com/ragpipe/ragpipe/keyring"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
)

var forgetCommand = command{
	name:   "forget",
	client: true,
	summary: "Erase a tenant everywhere: with encryption on, its data key first (its stored texts are unreadable at once), " +
		"then its waiting and parked events, its points in every collection, its version register entries and its dead letters. " +
		"Prints the counts of each step; running it again is harmless, and the tenant starts afresh if it publishes again.",
	usage: "forget --user USER [--store STORE] [--settle DURATION] [--json]\n\n" +
		"  STORE is a Qdrant gRPC URL (http://host:6334, https:// for TLS) or an embedded store directory.\n" +
		"  Default: QDRANT_URL when set; else the embedded store of `ragpipe dev` in RAGPIPE_DATA_DIR when it has one\n" +
		"  (stop dev first: forget then runs dev's NATS server from the same directory); else the default QDRANT_URL.\n" +
		"  Workers may keep running: their waiting events of the tenant are purged before its points are deleted, and a\n" +
		"  final sweep (after --settle) deletes what they had in flight and wrote meanwhile. Events of the tenant\n" +
		"  published while forget runs are new data and may be stored afterwards: stop its publishers first to be sure.",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		f := &forgetter{}
		fs.StringVar(&f.user, "user", "", "tenant (user_id) to erase (required)")
		fs.StringVar(&f.store, "store", "", "vector store: a Qdrant URL or an embedded store directory (default: see above)")
		fs.DurationVar(&f.settle, "settle", 5*time.Second, "wait this long before the final sweep, so that the batches workers have in flight land first "+
			"(0: sweep at once; no wait on the data directory of a stopped ragpipe dev, where no worker runs)")
		fs.BoolVar(&f.json, "json", false, "print the counts as one JSON object")
		return f.run
	},
}

type forgetter struct {
	user, store string
	settle      time.Duration
	json        bool
}

func (f *forgetter) run(ctx context.Context, env *environment, args []string) error {
	switch {
	case len(args) > 0:
		return fmt.Errorf("unexpected arguments %q; see --help", args)
	case f.user == "":
		return errors.New("want --user USER; see --help")
	case !pipeline.ValidUserID(f.user):
		return fmt.Errorf("--user %s: want 1-128 characters of A-Z a-z 0-9 _ -", pipeline.ShortQuote(f.user))
	case f.settle < 0:
		return fmt.Errorf("--settle %s: want >= 0", f.settle)
	}
	cfg := env.cfg
	store, err := f.openStore(ctx, env)
	if err != nil {
		return err
	}
	defer store.close()
	natsCfg := cfg.NATS
	if store.devNATS != "" { // dev is stopped: run its NATS server, as dev would
		ns, err := startNATSServer(cfg.NATS, store.devNATS, env.log, storeEncryption(cfg.MasterKeys))
		if err != nil {
			return err
		}
		defer func() { ns.Shutdown(); ns.WaitForShutdown() }()
		natsCfg.URL = ns.ClientURL()
		f.settle = 0 // no worker runs: dev is stopped, and forget holds its store
	}
	nc, js, err := connectJetStream(ctx, natsCfg, "ragpipe-forget", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	register, err := lww.NewRegister(ctx, js, cfg.SubjectPrefix, cfg.Worker.StreamReplicas)
	if err != nil {
		return err
	}
	ecfg := erase.Config{
		JetStream: js, Store: store.Store, Versions: register, Prefix: cfg.SubjectPrefix, Settle: f.settle, Logger: env.log,
		Progress: func(line string) { fmt.Fprintf(env.stderr, "forget %s: %s\n", f.user, line) },
	}
	if cfg.MasterKeys != nil {
		keys, err := keyring.Open(ctx, js, cfg.MasterKeys, keyring.Config{Replicas: cfg.Worker.StreamReplicas})
		if err != nil {
			return err
		}
		defer keys.Close()
		ecfg.Keys = keys
	}
	fmt.Fprintf(env.stderr, "forget %s: store %s, NATS %s\n", f.user, store.where, nc.ConnectedUrlRedacted())
	r, err := erase.Forget(ctx, ecfg, f.user)
	if perr := f.print(env, r, store.where); perr != nil && err == nil {
		err = perr
	}
	if err != nil {
		return fmt.Errorf("stopped before the end, run it again to finish: %w", err)
	}
	return nil
}

// forgetStore is the store forget erases from.
type forgetStore struct {
	erase.Store
	close func() error
	where string
	// devNATS is the data directory of `ragpipe dev` whose NATS server
	// forget runs, when the store is dev's embedded one.
	devNATS string
}

// openStore opens --store, or the default store the usage describes.
func (f *forgetter) openStore(ctx context.Context, env *environment) (forgetStore, error) {
	cfg := env.cfg
	spec := f.store
	switch {
	case spec != "":
	case cfg.Qdrant.Explicit:
		spec = cfg.Qdrant.URL
	case isDir(filepath.Join(cfg.DataDir, devVectorsDir)):
		spec = cfg.DataDir
	default:
		spec = cfg.Qdrant.URL
	}
	if strings.Contains(spec, "://") {
		host, port, tls, ok := config.ParseQdrantURL(spec)
		if !ok {
			return forgetStore{}, fmt.Errorf("--store %s: want http://host[:port] or https://host[:port]", spec)
		}
		qcfg := *cfg
		qcfg.Qdrant.Host, qcfg.Qdrant.Port, qcfg.Qdrant.TLS = host, port, tls
		connectCtx, cancel := context.WithTimeout(ctx, clientConnectTimeout)
		defer cancel()
		q, err := newQdrant(connectCtx, &qcfg, env.log)
		if err != nil {
			return forgetStore{}, err
		}
		return forgetStore{Store: q, close: q.Close, where: "Qdrant at " + spec}, nil
	}
	dir, err := embeddedStoreDir(spec, true)
	if err != nil {
		return forgetStore{}, fmt.Errorf("--store %s: %w", spec, err)
	}
	l, err := localstore.Open(ctx, localstore.Config{Dir: dir, Logger: env.log, NoKeywords: !env.cfg.Keywords})
	if err != nil {
		return forgetStore{}, fmt.Errorf("%w (stop ragpipe dev first)", err)
	}
	s := forgetStore{Store: l, close: l.Close, where: "embedded store in " + dir}
	if data := filepath.Dir(dir); filepath.Base(dir) == devVectorsDir && isDir(filepath.Join(data, devNATSDir)) {
		s.devNATS = data
	}
	return s, nil
}

func isDir(path string) bool {
	st, err := os.Stat(path)
	return err == nil && st.IsDir()
}

// print writes the report to stdout: a table, or one JSON object.
func (f *forgetter) print(env *environment, r erase.Report, where string) error {
	if f.json {
		return json.NewEncoder(env.stdout).Encode(struct {
			erase.Report
			Store string `json:"store"`
		}{r, where})
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "tenant %s forgotten in the %s\n", r.UserID, where)
	key := map[string]string{
		erase.KeyDestroyed: "destroyed", erase.KeyNone: "none to destroy",
		erase.KeySkipped: "skipped: encryption is off",
	}[r.Key]
	fmt.Fprintf(tw, "  data key\t%s\n", key)
	fmt.Fprintf(tw, "  pending events\t%d\n", r.Pending)
	fmt.Fprintf(tw, "  parked events\t%d\n", r.Parked)
	for _, c := range slices.Sorted(maps.Keys(r.Points)) {
		fmt.Fprintf(tw, "  points in %s\t%d\n", c, r.Points[c])
	}
	fmt.Fprintf(tw, "  version entries\t%d\n", r.Versions)
	fmt.Fprintf(tw, "  dead letters\t%d\n", r.DeadLetters)
	late := r.TotalPoints()
	for _, n := range r.Points {
		late -= n
	}
	fmt.Fprintf(tw, "  written meanwhile\t%d points, %d version entries\n", late, r.LateVersions)
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(env.stdout, "Events of %s published while forget ran may still be stored; "+
		"stop its publishers and run forget again to be sure.\n", r.UserID)
	return err
}
