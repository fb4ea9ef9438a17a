package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/ragpipe/ragpipe/config"
	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/migrate"
)

var migrateCommand = command{
	name:   "migrate",
	client: true,
	summary: "Copy collections between vector stores without re-embedding: the embedded store and Qdrant either way, or Qdrant to Qdrant. " +
		"Streams with bounded memory, resumes where an interrupted run stopped, and checks the points of every tenant at the end.",
	usage: "migrate --from STORE --to STORE [--collection NAME]... [flags]\n\n" +
		"  STORE is a Qdrant gRPC URL (http://host:6334, https:// for TLS; QDRANT_API_KEY applies to both sides)\n" +
		"  or an embedded store: the data directory of `ragpipe dev` (RAGPIPE_DATA_DIR, default ./ragpipe-data;\n" +
		"  stop dev first) or its vectors/ store.\n" +
		"  Collections created in a Qdrant target take RAGPIPE_SHARDS, RAGPIPE_REPLICATION_FACTOR,\n" +
		"  RAGPIPE_WRITE_CONSISTENCY and RAGPIPE_HNSW. Stop the workers writing to the source first.\n" +
		"  A collection keeps its generation: the store collection serving it in the source (e.g. docs__g2, the\n" +
		"  target of the alias docs) is created under the same name in the target, behind the alias.",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		m := &migrator{}
		fs.StringVar(&m.from, "from", "", "source store (required)")
		fs.StringVar(&m.to, "to", "", "target store (required)")
		fs.Func("collection", "collection to copy (repeatable; default: all)", func(s string) error {
			m.collections = append(m.collections, s)
			return nil
		})
		fs.IntVar(&m.pageSize, "page-size", 256, "points read and written at a time")
		fs.StringVar(&m.state, "state", "", "progress file for resuming (default: .ragpipe-migrate-<hash of --from and --to>.json here)")
		return m.run
	},
}

type migrator struct {
	from, to, state string
	collections     []string
	pageSize        int
}

func (m *migrator) run(ctx context.Context, env *environment, args []string) error {
	if m.from == "" || m.to == "" || len(args) > 0 {
		return errors.New("want --from STORE --to STORE and no other arguments; see --help")
	}
	if m.from == m.to {
		return errors.New("--from and --to name the same store")
	}
	if m.state == "" {
		sum := sha256.Sum256([]byte(m.from + "\n" + m.to))
		m.state = ".ragpipe-migrate-" + hex.EncodeToString(sum[:6]) + ".json"
	}
	src, err := openStore(ctx, env, m.from, "--from")
	if err != nil {
		return err
	}
	defer src.close()
	dst, err := openStore(ctx, env, m.to, "--to")
	if err != nil {
		return err
	}
	defer dst.close()
	var bar *progressbar.ProgressBar
	progress := func(collection string, copied, total int) {
		if bar == nil || bar.GetMax() != total {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(env.stderr),
				progressbar.OptionSetDescription(collection), progressbar.OptionShowCount(),
				progressbar.OptionShowIts(), progressbar.OptionClearOnFinish())
		}
		_ = bar.Set(copied)
	}
	if f, ok := env.stderr.(*os.File); !ok || !isatty.IsTerminal(f.Fd()) {
		progress = nil
	}
	reports, err := migrate.Run(ctx, migrate.Config{
		Source: src.source, Target: dst.target, Collections: m.collections, PageSize: m.pageSize,
		StateFile: m.state, Progress: progress, Logger: env.log,
	})
	if bar != nil {
		_ = bar.Finish()
	}
	printReports(env, reports)
	if errors.Is(err, context.Canceled) {
		return fmt.Errorf("run the same command again to resume (progress in %s): %w", m.state, err)
	}
	return err
}

// migrationStore is a store opened by migrate, in the roles the migrate
// package declares: the --from side is read as its Source, the --to side
// written as its Target.
type migrationStore struct {
	source migrate.Source
	target migrate.Target
	close  func() error
}

// openStore opens a migration side: a Qdrant URL or an embedded store directory.
func openStore(ctx context.Context, env *environment, spec, flagName string) (migrationStore, error) {
	if strings.Contains(spec, "://") {
		host, port, tls, ok := config.ParseQdrantURL(spec)
		if !ok {
			return migrationStore{}, fmt.Errorf("%s %s: want http://host[:port] or https://host[:port]", flagName, spec)
		}
		cfg := *env.cfg
		cfg.Qdrant.Host, cfg.Qdrant.Port, cfg.Qdrant.TLS = host, port, tls
		q, err := newQdrant(ctx, &cfg, env.log)
		if err != nil {
			return migrationStore{}, err
		}
		return migrationStore{source: q, target: q, close: q.Close}, nil
	}
	dir, err := embeddedStoreDir(spec, flagName == "--from")
	if err != nil {
		return migrationStore{}, fmt.Errorf("%s %s: %w", flagName, spec, err)
	}
	l, err := localstore.Open(ctx, localstore.Config{Dir: dir, NoKeywords: !env.cfg.Keywords, Logger: env.log})
	if err != nil {
		return migrationStore{}, err
	}
	return migrationStore{source: l, target: l, close: l.Close}, nil
}

// embeddedStoreDir returns the embedded store that dir names: dir itself
// when it holds one (or, for a target, is empty or missing), or its
// vectors/ store when dir is the data directory of `ragpipe dev`
// (RAGPIPE_DATA_DIR, holding nats/ and vectors/).
func embeddedStoreDir(dir string, source bool) (string, error) {
	entries, err := os.ReadDir(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist) && !source:
		return dir, nil // a new target store
	case err != nil:
		return "", err
	}
	names := map[string]bool{}
	for _, e := range entries {
		names[e.Name()] = e.IsDir()
	}
	switch _, locked := names[storeLockFile]; {
	case locked || len(entries) == 0 && !source:
		return dir, nil
	case names[devVectorsDir]:
		vectors := filepath.Join(dir, devVectorsDir)
		if _, err := os.Stat(filepath.Join(vectors, storeLockFile)); err != nil {
			return "", fmt.Errorf("%s holds no embedded store (%w)", vectors, err)
		}
		return vectors, nil
	case names[devNATSDir]:
		return "", errors.New("a `ragpipe dev` data directory without an embedded store (vectors/): " +
			"dev ran with QDRANT_URL set, so its data is in that Qdrant")
	case len(entries) == 0:
		return "", errors.New("an empty directory, not an embedded store")
	}
	return "", errors.New("neither an embedded store nor the data directory of `ragpipe dev` " +
		"(RAGPIPE_DATA_DIR, which holds nats/ and vectors/); a Qdrant URL starts with http:// or https://")
}

// Names in the data directory of `ragpipe dev` and in an embedded store.
const (
	devVectorsDir = "vectors" // the embedded store under RAGPIPE_DATA_DIR
	devNATSDir    = "nats"    // the embedded NATS server's JetStream store
	storeLockFile = "LOCK"    // every embedded store directory holds it once opened
)

// printReports prints, per collection and tenant, the points in source and target.
func printReports(env *environment, reports []migrate.Report) {
	if len(reports) == 0 {
		return
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "COLLECTION\tTENANT\tSOURCE\tTARGET\t")
	for _, r := range reports {
		tenants := maps.Clone(r.Source)
		maps.Copy(tenants, r.Target)
		users := slices.Sorted(maps.Keys(tenants))
		for _, u := range users {
			mark := ""
			if r.Source[u] != r.Target[u] {
				mark = "MISMATCH"
			}
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%s\n", r.Collection.Name, u, r.Source[u], r.Target[u], mark)
		}
		resumed := ""
		if r.Resumed {
			resumed = ", resumed"
		}
		fmt.Fprintf(tw, "%s\t(all)\tcopied %d points in this run%s, %s to %s\t\t\n", r.Collection.Name, r.Copied, resumed, r.From, r.To)
	}
	_ = tw.Flush()
}
