package backup

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"sync"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/migrate"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Target is the store a backup is restored into.
type Target interface {
	// Collections lists the store's collections.
	Collections(ctx context.Context) ([]pipeline.Collection, error)
	// Generations creates a collection and its generation (migrate.Place).
	migrate.Generations
	// Upsert stores points as they are; it returns once they are durable.
	Upsert(ctx context.Context, collection string, points []pipeline.Point) error
	// Count returns the number of points of each tenant.
	Count(ctx context.Context, collection string) (map[string]int, error)
}

// Versions is the version register a restore writes to (lww.Register):
// Claim records a version unless a version at least as high is recorded,
// Restore records one only where none is.
type Versions interface {
	Claim(ctx context.Context, key string, v uint64) (lww.Claimed, error)
	Restore(ctx context.Context, key string, v uint64) (bool, error)
}

// RestoreConfig configures Restore; zero fields take the documented
// defaults.
type RestoreConfig struct {
	Dir    string // the backup directory, required
	Target Target // required
	// Versions receives the register entries and every restored document's
	// version. Nil: the register is not restored.
	Versions Versions
	// ImportKey stores one wrapped data key record (keyring.Keyring.Import).
	// Nil: a backup holding keys is refused unless SkipKeys.
	ImportKey func(ctx context.Context, record json.RawMessage) error
	SkipKeys  bool
	// Collections to restore; all of the backup's when empty.
	Collections []string
	// StateFile records progress so that an interrupted restore resumes;
	// it is removed at the end. Required.
	StateFile string
	// PageSize is the number of points written at a time, default 256.
	PageSize int
	// Writers is the number of pages written at once, default 4.
	Writers int
	// Concurrency bounds the register writes in flight per page, default 32.
	Concurrency int
	// Progress, when set, is called after every page with the points
	// restored so far and the backup's total.
	Progress func(collection string, done, total int)
	Logger   zerolog.Logger
}

// RestoreReport is the outcome of restoring one collection.
type RestoreReport struct {
	Collection string
	Restored   int            // points written in this run
	Resumed    bool           // the restore continued an interrupted one
	Backup     map[string]int // points per tenant in the backup
	Target     map[string]int // points per tenant in the target afterwards
	Register   int            // register entries restored in this run
}

// ErrCountMismatch reports a restore whose target does not hold exactly the
// backup's number of points for every tenant.
var ErrCountMismatch = errors.New("point counts differ between backup and target")

// restoreState is the content of the state file.
type restoreState struct {
	Started  map[string]bool `json:"started"`  // collections created by this restore
	Segments map[string]bool `json:"segments"` // files restored
	Keys     bool            `json:"keys"`
}

// Restore brings the backup in cfg.Dir back into cfg.Target, which must not
// hold any point in the backup's collections (Restore refuses otherwise, with
// ErrNotEmpty), and returns the per-tenant counts of both. It checks every
// file against the manifest before it writes anything. Collections are
// created with the target's layout and keyword vectors, each under the
// generation the manifest names behind the alias of its name
// (migrate.Place); points are written
// as they are (points without keyword vectors get those of their texts).
// With Versions, every restored document's version is claimed, then the
// backup's register entries are restored where the register has none: those
// of documents deleted before the backup read them. A backed-up document's
// entry is its restored version even when the backup's register held a newer
// one (the document changed after it was read): an entry above the stored
// version would have the next event of the document, however old, prune it.
// So last-version-wins holds for events published afterwards and for late
// ones older than the backup. No entry already recorded is lowered: in a
// register that has moved past the backup (only the store was lost), a
// document changed after the backup keeps its newer entry, and the next
// event older than that entry prunes the restored version.
//
// Points are written as they are, whatever their version, so workers must
// not write to the target until the restore is done. It blocks until done
// or ctx ends; an interrupted restore resumes from its state file,
// rewriting at most one segment (writes are idempotent).
func Restore(ctx context.Context, cfg RestoreConfig) ([]RestoreReport, error) {
	if cfg.Dir == "" || cfg.Target == nil || cfg.StateFile == "" {
		return nil, errors.New("restore: Dir, Target and StateFile are required")
	}
	cfg.PageSize = cmp.Or(cfg.PageSize, 256)
	cfg.Concurrency = cmp.Or(cfg.Concurrency, 32)
	cfg.Writers = cmp.Or(cfg.Writers, 4)
	var m Manifest
	if err := readJSON(filepath.Join(cfg.Dir, manifestFile), &m); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("restore: %s holds no finished backup (no %s)", cfg.Dir, manifestFile)
		}
		return nil, fmt.Errorf("restore: %w", err)
	}
	if m.Format != FormatVersion {
		return nil, fmt.Errorf("restore: backup format %d, this ragpipe reads %d", m.Format, FormatVersion)
	}
	colls, err := chosen(m, cfg.Collections)
	if err != nil {
		return nil, err
	}
	if m.Keys != nil && cfg.ImportKey == nil && !cfg.SkipKeys {
		return nil, errors.New("restore: the backup holds wrapped data keys: configure the keyring " +
			"(RAGPIPE_ENCRYPTION_KEY_FILE) to restore them, or skip them knowingly")
	}
	if err := verifyAll(cfg.Dir, m, colls); err != nil {
		return nil, fmt.Errorf("restore: %w", err)
	}
	st := restoreState{Started: map[string]bool{}, Segments: map[string]bool{}}
	if err := readJSON(cfg.StateFile, &st); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("restore: %w (delete it to start over)", err)
	}
	r := &restorer{cfg: cfg, st: st, total: 0}
	for _, c := range colls {
		r.total += c.Points()
	}
	if err := r.prepare(ctx, colls); err != nil {
		return nil, err
	}
	var reports []RestoreReport
	for _, c := range colls {
		rep, err := r.collection(ctx, c)
		if err != nil {
			return reports, fmt.Errorf("restore %q: %w", c.Name, err)
		}
		reports = append(reports, rep)
	}
	if m.Keys != nil && cfg.ImportKey != nil && !r.st.Keys {
		if err := readLines(cfg.Dir, m.Keys.Name, func(rec *json.RawMessage) error { return cfg.ImportKey(ctx, *rec) }); err != nil {
			return reports, fmt.Errorf("restore keys: %w", err)
		}
		r.st.Keys = true
		if err := writeJSON(cfg.StateFile, r.st); err != nil {
			return reports, err
		}
	}
	for _, rep := range reports {
		if !maps.Equal(rep.Backup, rep.Target) {
			return reports, fmt.Errorf("restore %q: %w: backup %v, target %v", rep.Collection, ErrCountMismatch, rep.Backup, rep.Target)
		}
	}
	if err := os.Remove(cfg.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return reports, err
	}
	return reports, nil
}

// chosen returns the manifest's collections named, all when names is empty.
func chosen(m Manifest, names []string) ([]Collection, error) {
	if len(names) == 0 {
		return m.Collections, nil
	}
	var out []Collection
	for _, name := range names {
		i := slices.IndexFunc(m.Collections, func(c Collection) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("restore: the backup has no collection %q", name)
		}
		out = append(out, m.Collections[i])
	}
	return out, nil
}

// verifyAll checks every file of colls and the keys against the manifest.
func verifyAll(dir string, m Manifest, colls []Collection) error {
	var files []File
	for _, c := range colls {
		files = append(files, c.Segments...)
		if c.Register != nil {
			files = append(files, *c.Register)
		}
	}
	if m.Keys != nil {
		files = append(files, *m.Keys)
	}
	for _, f := range files {
		if err := verify(dir, f); err != nil {
			return err
		}
	}
	return nil
}

type restorer struct {
	cfg     RestoreConfig
	st      restoreState
	resumed map[string]bool   // collections an earlier run began
	into    map[string]string // the store collection written, by collection
	total   int
	done    int
}

// prepare refuses targets holding points in any collection not started by
// this restore, then creates the collections.
func (r *restorer) prepare(ctx context.Context, colls []Collection) error {
	have, err := r.cfg.Target.Collections(ctx)
	if err != nil {
		return fmt.Errorf("restore: list target collections: %w", err)
	}
	r.resumed = map[string]bool{}
	r.resumed, r.into = map[string]bool{}, map[string]string{}
	for _, c := range colls {
		r.resumed[c.Name] = r.st.Started[c.Name]
		if r.st.Started[c.Name] {
			continue
		}
		names := []string{c.store()} // a generation is never listed, but may exist
		if slices.ContainsFunc(have, func(h pipeline.Collection) bool { return h.Name == c.Name }) {
			names = append(names, c.Name)
		}
		for _, name := range names {
			probe := pipeline.Collection{Name: name, Dims: c.Dims, Distance: c.Distance}
			if err := r.cfg.Target.EnsureCollection(ctx, probe, false); errors.Is(err, pipeline.ErrUnknownCollection) {
				continue
			}
			counts, err := r.cfg.Target.Count(ctx, name)
			if err != nil {
				return fmt.Errorf("restore: count target %q: %w", name, err)
			}
			if n := sum(counts); n > 0 {
				return fmt.Errorf("restore: target collection %q holds %d points: %w; restore only into an empty collection "+
					"(delete it first, or restore into another store)", name, n, ErrNotEmpty)
			}
		}
	}
	for _, c := range colls {
		pc := pipeline.Collection{Name: c.Name, Dims: c.Dims, Distance: c.Distance, Embedder: c.Embedder, Keywords: true}
		into, err := migrate.Place(ctx, r.cfg.Target, pc, c.store(), r.cfg.Logger.With().Str("collection", c.Name).Logger())
		if err != nil {
			return fmt.Errorf("restore: create %q: %w", c.Name, err)
		}
		r.into[c.Name] = into
		if !r.st.Started[c.Name] {
			r.st.Started[c.Name] = true
			if err := writeJSON(r.cfg.StateFile, r.st); err != nil {
				return err
			}
		}
	}
	return nil
}

func sum(counts map[string]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// collection restores one collection's segments and register entries, then
// counts the target.
func (r *restorer) collection(ctx context.Context, c Collection) (RestoreReport, error) {
	rep := RestoreReport{Collection: c.Name, Backup: map[string]int{}, Resumed: r.resumed[c.Name]}
	for u, t := range c.Tenants {
		rep.Backup[u] = t.Points
	}
	for _, f := range c.Segments {
		if r.st.Segments[f.Name] {
			r.done += f.Points
			continue
		}
		n, err := r.segment(ctx, c.Name, f)
		rep.Restored += n
		if err != nil {
			return rep, err
		}
		r.st.Segments[f.Name] = true
		if err := writeJSON(r.cfg.StateFile, r.st); err != nil {
			return rep, err
		}
	}
	if c.Register != nil && r.cfg.Versions != nil && !r.st.Segments[c.Register.Name] {
		n, err := r.register(ctx, c.Register.Name)
		rep.Register = n
		if err != nil {
			return rep, err
		}
		r.st.Segments[c.Register.Name] = true
		if err := writeJSON(r.cfg.StateFile, r.st); err != nil {
			return rep, err
		}
	}
	counts, err := r.cfg.Target.Count(ctx, r.into[c.Name])
	if err != nil {
		return rep, fmt.Errorf("count target: %w", err)
	}
	rep.Target = counts
	return rep, nil
}

// segment writes one segment's documents, a page of points at a time,
// Writers pages at once, claiming each page's document versions once the
// page is durable. It returns when every page is written or one failed.
func (r *restorer) segment(ctx context.Context, collection string, f File) (int, error) {
	var (
		page     []pipeline.Point
		versions []registerLine
		mu       sync.Mutex
		written  int
	)
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Writers)
	flush := func() {
		if len(page) == 0 {
			return
		}
		page, versions := page, versions
		g.Go(func() error {
			if err := r.cfg.Target.Upsert(ctx, r.into[collection], page); err != nil {
				return fmt.Errorf("write target: %w", err)
			}
			if err := r.claim(ctx, versions); err != nil {
				return err
			}
			mu.Lock()
			defer mu.Unlock()
			written += len(page)
			r.done += len(page)
			if r.cfg.Progress != nil {
				r.cfg.Progress(collection, r.done, r.total)
			}
			return nil
		})
	}
	err := readLines(r.cfg.Dir, f.Name, func(d *docLine) error {
		if err := ctx.Err(); err != nil {
			return err // a write failed
		}
		pts, err := d.points()
		if err != nil {
			return fmt.Errorf("%s: %w: %w", f.Name, ErrCorrupt, err)
		}
		for i := range pts {
			if p := &pts[i]; p.Keywords == nil && p.Text != "" {
				p.Keywords = pipeline.Keywords(p.Text)
			}
		}
		page = append(page, pts...)
		versions = append(versions, registerLine{Key: lww.Key(collection, d.UserID, d.DocID), Version: d.Version})
		if len(page) >= r.cfg.PageSize {
			flush()
			page, versions = nil, nil
		}
		return nil
	})
	if err == nil {
		flush()
	}
	if werr := g.Wait(); werr != nil {
		err = werr
	}
	return written, err
}

// register restores the entries of a register file where the register has
// none.
func (r *restorer) register(ctx context.Context, name string) (int, error) {
	var batch []registerLine
	n := 0
	err := readLines(r.cfg.Dir, name, func(e *registerLine) error {
		batch = append(batch, *e)
		if len(batch) < 1024 {
			return nil
		}
		n += len(batch)
		err := r.record(ctx, batch, r.cfg.Versions.Restore)
		batch = batch[:0]
		return err
	})
	if err == nil {
		n += len(batch)
		err = r.record(ctx, batch, r.cfg.Versions.Restore)
	}
	return n, err
}

// claim claims the versions in the register.
func (r *restorer) claim(ctx context.Context, entries []registerLine) error {
	if r.cfg.Versions == nil {
		return nil
	}
	return r.record(ctx, entries, func(ctx context.Context, key string, v uint64) (bool, error) {
		_, err := r.cfg.Versions.Claim(ctx, key, v)
		return false, err
	})
}

// record calls write for each entry, Concurrency at a time.
func (r *restorer) record(ctx context.Context, entries []registerLine, write func(context.Context, string, uint64) (bool, error)) error {
	if len(entries) == 0 {
		return nil
	}
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for _, e := range entries {
		g.Go(func() error {
			_, err := write(ctx, e.Key, e.Version)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return fmt.Errorf("version register: %w", err)
	}
	return nil
}
