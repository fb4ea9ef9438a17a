package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"maps"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/ragpipe/ragpipe/backup"
)

var restoreCommand = command{
	name:   "restore",
	client: true,
	summary: "Bring a backup back into an empty store: the embedded store, a single Qdrant node or a cluster with another layout. " +
		"Checks every file first, resumes where an interrupted run stopped, and compares the points of every tenant at the end.",
	usage: "restore --from DIR --to STORE [--collection NAME]... [flags]\n\n" +
		"  STORE is a Qdrant gRPC URL (http://host:6334, https:// for TLS) or an embedded store: the data directory\n" +
		"  of `ragpipe dev` (new, or stopped: its embedded NATS is started here for the version register) or a bare\n" +
		"  store directory. Collections are created with the target's RAGPIPE_SHARDS, RAGPIPE_REPLICATION_FACTOR,\n" +
		"  RAGPIPE_WRITE_CONSISTENCY and RAGPIPE_HNSW; a target collection holding points is refused. Each is\n" +
		"  created under the generation the backup was read from (e.g. docs__g2) behind the alias of its name.\n" +
		"  The version register goes to NATS_URL (or the dev data directory's NATS); no entry is lowered. Wrapped\n" +
		"  data keys are restored with RAGPIPE_ENCRYPTION_KEY_FILE set to a key file holding their master key.\n" +
		"  Start the workers once the restore is done: it writes points as they are, over anything written meanwhile.",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		r := &restoreRun{}
		fs.StringVar(&r.from, "from", "", "backup directory (required)")
		fs.StringVar(&r.to, "to", "", "target store (required)")
		collectionFlag(fs, &r.collections, "restore")
		fs.IntVar(&r.pageSize, "page-size", 256, "points written at a time")
		fs.StringVar(&r.state, "state", "", "progress file for resuming (default: .ragpipe-restore-<hash of --from and --to>.json here)")
		fs.BoolVar(&r.register, "register", true, "restore the version register (needs NATS)")
		fs.BoolVar(&r.skipKeys, "skip-keys", false, "restore a backup holding wrapped data keys without them")
		return r.run
	},
}

type restoreRun struct {
	from, to, state    string
	collections        []string
	pageSize           int
	register, skipKeys bool
}

func (r *restoreRun) run(ctx context.Context, env *environment, args []string) error {
	if r.from == "" || r.to == "" || len(args) > 0 {
		return errors.New("want --from DIR --to STORE and no other arguments; see --help")
	}
	if r.state == "" {
		sum := sha256.Sum256([]byte(r.from + "\n" + r.to))
		r.state = ".ragpipe-restore-" + hex.EncodeToString(sum[:6]) + ".json"
	}
	store, err := openOperationStore(ctx, env, r.to, "--to", r.register)
	if err != nil {
		return err
	}
	defer store.close()
	target, ok := store.store.(backup.Target)
	if !ok {
		return errors.New("this store cannot be restored into")
	}
	cfg := backup.RestoreConfig{
		Dir: r.from, Target: target, Collections: r.collections, StateFile: r.state, PageSize: r.pageSize,
		SkipKeys: r.skipKeys, Logger: env.log,
	}
	if store.register != nil {
		cfg.Versions = store.register
	}
	if store.keys != nil {
		cfg.ImportKey = importKey(store.keys, env.log)
	}
	bar := newBar(env)
	cfg.Progress = bar.set
	start := time.Now()
	reports, err := backup.Restore(ctx, cfg)
	bar.finish()
	printRestore(env, reports, time.Since(start))
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("run the same command again to resume (progress in %s): %w", r.state, err)
	}
	return err
}

// printRestore prints, per collection and tenant, the points in the backup
// and in the target.
func printRestore(env *environment, reports []backup.RestoreReport, took time.Duration) {
	if len(reports) == 0 {
		return
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLLECTION\tTENANT\tBACKUP\tTARGET\t")
	restored := 0
	for _, r := range reports {
		tenants := maps.Clone(r.Backup)
		maps.Copy(tenants, r.Target)
		for _, u := range slices.Sorted(maps.Keys(tenants)) {
			mark := ""
			if r.Backup[u] != r.Target[u] {
				mark = "MISMATCH"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Collection, u, r.Backup[u], r.Target[u], mark)
		}
		resumed := ""
		if r.Resumed {
			resumed = ", resumed"
		}
		fmt.Fprintf(tw, "%s\t(all)\trestored %d points and %d register entries in this run%s\t\t\n",
			r.Collection, r.Restored, r.Register, resumed)
		restored += r.Restored
	}
	_ = tw.Flush()
	fmt.Fprintf(env.stdout, "restored %d points in %.1fs: %.0f points/s\n", restored, took.Seconds(), float64(restored)/took.Seconds())
}
