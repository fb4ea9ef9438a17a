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
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/migrate"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Source is the store a backup reads.
type Source interface {
	// Collections lists the store's collections.
	Collections(ctx context.Context) ([]pipeline.Collection, error)
	// Count returns the number of points of each tenant.
	Count(ctx context.Context, collection string) (map[string]int, error)
	// List returns a page of userID's documents, as the search service's
	// list: each document that exists throughout a listing appears once.
	List(ctx context.Context, collection, userID string, limit int, cursor string) ([]pipeline.Doc, string, error)
	// DocumentPoints returns every stored point of the documents, all
	// versions present, with vectors and payload.
	DocumentPoints(ctx context.Context, collection, userID string, docIDs []string) ([]pipeline.Point, error)
	// AliasTarget returns the collection the alias name points at; "" when
	// name is not an alias.
	AliasTarget(ctx context.Context, name string) (string, error)
}

// describer is a Source that also reads a collection's layout
// (qdrantstore.Store.Describe); the manifest records it where available.
type describer interface {
	Describe(ctx context.Context, collection string) (pipeline.Collection, error)
}

// Config configures Backup; zero fields take the documented defaults.
type Config struct {
	Source Source // required
	// Dir is the backup directory: missing, empty, or holding the
	// checkpoint of the same backup interrupted. Required.
	Dir string
	// Collections to back up; all of the source's when empty.
	Collections []string
	// Register, when set, calls fn with every version register entry of a
	// collection (lww.Register.Export). Nil: the backup has no register.
	Register func(ctx context.Context, collection string, fn func(key string, version uint64) error) error
	// Keys, when set, calls fn with every tenant's wrapped data key record
	// (keyring.Keyring.Export, as JSON). Nil: the backup has no keys.
	Keys func(ctx context.Context, fn func(record json.RawMessage) error) error
	// Embedders names, per collection, the embedder that made its vectors.
	Embedders map[string]string
	// RagpipeVersion is recorded in the manifest.
	RagpipeVersion string
	// PageSize is the number of documents listed and read at a time,
	// default 256 (at most pipeline.MaxLimit).
	PageSize int
	// SegmentPoints is the number of points from which a segment file is
	// closed and the checkpoint saved, default 50,000: an interrupted
	// backup redoes at most that much.
	SegmentPoints int
	// Rereads is how many times a document with no whole version (a worker
	// is replacing or deleting it) is read again, 100 ms apart at first and
	// up to 1 s, before it is left out and counted in Collection.Skipped.
	// Default 30.
	Rereads int
	// Progress, when set, is called after every page with the points
	// written so far (resumed ones included) and the source's total at
	// the start.
	Progress func(collection string, done, total int)
	// Serving, when set, names the store collection serving a ragpipe
	// collection according to its generation State, "" when it has none
	// (Registry.Current); it overrides the store's alias, which lags the
	// State while an adopted plain collection awaits --drop-previous.
	Serving func(ctx context.Context, collection string) (string, error)
	Logger  zerolog.Logger
}

func (c *Config) setDefaults() error {
	c.PageSize = min(cmp.Or(c.PageSize, 256), pipeline.MaxLimit)
	c.SegmentPoints = cmp.Or(c.SegmentPoints, 50_000)
	c.Rereads = cmp.Or(c.Rereads, 30)
	if c.Source == nil || c.Dir == "" {
		return errors.New("backup: Source and Dir are required")
	}
	return nil
}

// checkpoint is the progress of an unfinished backup: the manifest so far,
// the collection being written with its closed segments, and where its
// listing stands after the last closed segment.
type checkpoint struct {
	Requested []string  `json:"requested"` // Config.Collections as given
	Manifest  Manifest  `json:"manifest"`  // collections done
	Todo      []string  `json:"todo"`      // collections to do, the current one first
	Current   *progress `json:"current,omitempty"`
	Written   int       `json:"written"` // points in closed segments
	Total     int       `json:"total"`
}

// progress is where the current collection stands.
type progress struct {
	Collection  Collection `json:"collection"`
	TenantsDone []string   `json:"tenants_done"`
	Tenant      string     `json:"tenant"` // listed up to Cursor
	Cursor      string     `json:"cursor"`
}

// Backup writes a backup of the source's collections to cfg.Dir while the
// store keeps changing, and returns its manifest. It blocks until done or
// ctx ends; an interrupted backup (even killed) resumes when run again with
// the same Dir and collections, redoing at most one segment.
//
// Each collection is read tenant by tenant, each tenant's documents a page
// at a time (List), then every point of the page's documents
// (DocumentPoints). A document is kept at the highest of its versions whose
// chunk_count chunks are all present; one with none whole (a write or
// delete in progress) is read again, then left out once Rereads is spent.
// A document deleted meanwhile is not in the backup. Tenants that appear
// while a collection is read are read before it is done. The backup is
// therefore consistent per document, not a snapshot of one instant: a
// document changed after its page was read is in it at its earlier version,
// including when the backup resumed after an interruption. The version
// register is read after a collection's points, so that it holds every
// backed-up version (claims precede writes), and the deletions made
// meanwhile.
func Backup(ctx context.Context, cfg Config) (*Manifest, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	b := &backuper{cfg: cfg, log: cfg.Logger}
	if err := b.start(ctx); err != nil {
		return nil, err
	}
	for len(b.cp.Todo) > 0 {
		if err := b.collection(ctx); err != nil {
			return nil, fmt.Errorf("backup %q: %w", b.cp.Todo[0], err)
		}
	}
	m := b.cp.Manifest
	if cfg.Keys != nil {
		f, err := b.keys(ctx)
		if err != nil {
			return nil, fmt.Errorf("backup keys: %w", err)
		}
		m.Keys = &f
	}
	m.Finished = time.Now().UTC()
	if err := writeJSON(filepath.Join(cfg.Dir, manifestFile), m); err != nil {
		return nil, err
	}
	return &m, os.Remove(filepath.Join(cfg.Dir, checkpointFile))
}

type backuper struct {
	cfg Config
	log zerolog.Logger
	cp  checkpoint
}

// ErrNotEmpty reports a backup directory or a restore target that already
// holds something else.
var ErrNotEmpty = errors.New("not empty")

// start loads the checkpoint of an interrupted backup, or begins one in an
// empty directory.
func (b *backuper) start(ctx context.Context) error {
	dir := b.cfg.Dir
	if _, err := os.Stat(filepath.Join(dir, manifestFile)); err == nil {
		return fmt.Errorf("backup: %s holds a finished backup: %w", dir, ErrNotEmpty)
	}
	err := readJSON(filepath.Join(dir, checkpointFile), &b.cp)
	if err == nil {
		if !slices.Equal(b.cp.Requested, b.cfg.Collections) {
			return fmt.Errorf("backup: %s holds an unfinished backup of collections %q, not %q: finish it or choose another directory",
				dir, b.cp.Requested, b.cfg.Collections)
		}
		b.log.Info().Strs("todo", b.cp.Todo).Int("written", b.cp.Written).Msg("resuming backup")
		return b.clean()
	}
	if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("backup: %w (delete the directory to start over)", err)
	}
	if entries, err := os.ReadDir(dir); err == nil && len(entries) > 0 {
		return fmt.Errorf("backup: %s: %w, and holds no unfinished backup", dir, ErrNotEmpty)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	colls, err := b.resolve(ctx)
	if err != nil {
		return err
	}
	b.cp = checkpoint{Requested: b.cfg.Collections, Manifest: Manifest{
		Format: FormatVersion, RagpipeVersion: b.cfg.RagpipeVersion, Started: time.Now().UTC(), Collections: []Collection{},
	}}
	for _, c := range colls {
		counts, err := b.cfg.Source.Count(ctx, c.Name)
		if err != nil {
			return fmt.Errorf("backup: count %q: %w", c.Name, err)
		}
		for _, n := range counts {
			b.cp.Total += n
		}
		b.cp.Todo = append(b.cp.Todo, c.Name)
		if b.cp.Current == nil {
			if b.cp.Current, err = b.newProgress(ctx, c); err != nil {
				return err
			}
		}
	}
	return b.save()
}

// resolve returns the collections to back up, by name.
func (b *backuper) resolve(ctx context.Context) ([]pipeline.Collection, error) {
	all, err := b.cfg.Source.Collections(ctx)
	if err != nil {
		return nil, fmt.Errorf("backup: list collections: %w", err)
	}
	slices.SortFunc(all, func(a, b pipeline.Collection) int { return cmp.Compare(a.Name, b.Name) })
	if len(b.cfg.Collections) == 0 {
		return all, nil
	}
	var out []pipeline.Collection
	for _, name := range b.cfg.Collections {
		i := slices.IndexFunc(all, func(c pipeline.Collection) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("backup: the store has no collection %q", name)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// newProgress begins collection c: the generation serving it, read from
// now on, and its layout where the source can read it.
func (b *backuper) newProgress(ctx context.Context, c pipeline.Collection) (*progress, error) {
	g, err := migrate.Serving(ctx, b.cfg.Source, c.Name, b.cfg.Serving)
	if err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if d, ok := b.cfg.Source.(describer); ok {
		described, err := d.Describe(ctx, g)
		if err != nil {
			return nil, fmt.Errorf("backup: describe %q: %w", c.Name, err)
		}
		described.Name = c.Name // the generation's settings, which an adopted plain collection's name may not have
		c = described
	}
	return &progress{Collection: Collection{
		Name: c.Name, Generation: g, Dims: c.Dims, Distance: c.Distance, Keywords: c.Keywords, Embedder: b.cfg.Embedders[c.Name],
		Layout:  Layout{Shards: c.Shards, ReplicationFactor: c.ReplicationFactor, WriteConsistency: c.WriteConsistency},
		Tenants: map[string]TenantCount{}, Segments: []File{},
	}}, nil
}

// clean removes what an interrupted run wrote after its last checkpoint:
// files of the current collection not in it, and directories of the
// collections not begun.
func (b *backuper) clean() error {
	for i, name := range b.cp.Todo {
		dir := filepath.Join(b.cfg.Dir, name)
		if i > 0 || b.cp.Current == nil {
			if err := os.RemoveAll(dir); err != nil {
				return err
			}
			continue
		}
		keep := map[string]bool{}
		for _, s := range b.cp.Current.Collection.Segments {
			keep[s.Name] = true
		}
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if name := filepath.Join(name, e.Name()); !keep[name] {
				if err := os.Remove(filepath.Join(b.cfg.Dir, name)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

func (b *backuper) save() error {
	return writeJSON(filepath.Join(b.cfg.Dir, checkpointFile), b.cp)
}

// segment is the open segment of the current collection and what it adds
// to the checkpoint once closed.
type segment struct {
	w       *lineWriter
	points  int
	tenants map[string]TenantCount
	skipped int
	pos     progress // the listing position after the segment's last page
}

// collection writes the current collection, from its checkpoint on.
func (b *backuper) collection(ctx context.Context) error {
	cur := b.cp.Current
	name, store := cur.Collection.Name, cur.Collection.store()
	seg := &segment{tenants: map[string]TenantCount{}, pos: *cur}
	seg.pos.TenantsDone = slices.Clone(cur.TenantsDone)
	defer func() {
		if seg.w != nil {
			seg.w.abort()
		}
	}()
	for {
		counts, err := b.cfg.Source.Count(ctx, store)
		if err != nil {
			return fmt.Errorf("count: %w", err)
		}
		todo := slices.DeleteFunc(slices.Sorted(maps.Keys(counts)), func(u string) bool {
			return slices.Contains(seg.pos.TenantsDone, u) || u == seg.pos.Tenant
		})
		if seg.pos.Tenant != "" {
			todo = append([]string{seg.pos.Tenant}, todo...)
		}
		if len(todo) == 0 {
			break
		}
		for _, user := range todo {
			if err := b.tenant(ctx, seg, user); err != nil {
				return fmt.Errorf("tenant %q: %w", user, err)
			}
		}
	}
	if err := b.closeSegment(seg); err != nil {
		return err
	}
	if b.cfg.Register != nil {
		f, err := b.register(ctx, name)
		if err != nil {
			return err
		}
		b.cp.Current.Collection.Register = &f
	}
	b.cp.Manifest.Collections = append(b.cp.Manifest.Collections, b.cp.Current.Collection)
	b.cp.Todo = b.cp.Todo[1:]
	b.cp.Current = nil
	if len(b.cp.Todo) > 0 {
		colls, err := b.resolveOne(ctx, b.cp.Todo[0])
		if err != nil {
			return err
		}
		if b.cp.Current, err = b.newProgress(ctx, colls); err != nil {
			return err
		}
	}
	return b.save()
}

func (b *backuper) resolveOne(ctx context.Context, name string) (pipeline.Collection, error) {
	all, err := b.cfg.Source.Collections(ctx)
	if err != nil {
		return pipeline.Collection{}, fmt.Errorf("list collections: %w", err)
	}
	i := slices.IndexFunc(all, func(c pipeline.Collection) bool { return c.Name == name })
	if i < 0 {
		return pipeline.Collection{}, fmt.Errorf("collection %q is gone", name)
	}
	return all[i], nil
}

// tenant writes the documents of user, page by page, closing segments as
// they fill up. The next page is listed while the current one is read and
// written.
func (b *backuper) tenant(ctx context.Context, seg *segment, user string) error {
	name := b.cp.Current.Collection.store()
	cursor := ""
	if seg.pos.Tenant == user {
		cursor = seg.pos.Cursor
	}
	type listing struct {
		docs []pipeline.Doc
		next string
		err  error
	}
	list := func(cursor string) <-chan listing {
		out := make(chan listing, 1)
		go func() {
			docs, next, err := b.cfg.Source.List(ctx, name, user, b.cfg.PageSize, cursor)
			out <- listing{docs, next, err}
		}()
		return out
	}
	pending := list(cursor)
	for {
		l := <-pending
		if l.err != nil {
			return fmt.Errorf("list: %w", l.err)
		}
		if l.next != "" {
			pending = list(l.next)
		}
		if err := b.page(ctx, seg, user, l.docs); err != nil {
			if l.next != "" {
				<-pending
			}
			return err
		}
		seg.pos.Tenant, seg.pos.Cursor = user, l.next
		if l.next == "" {
			seg.pos.Tenant = ""
			seg.pos.TenantsDone = append(seg.pos.TenantsDone, user)
		}
		if b.cfg.Progress != nil {
			b.cfg.Progress(name, b.cp.Written+seg.points, b.cp.Total)
		}
		if seg.points >= b.cfg.SegmentPoints {
			if err := b.closeSegment(seg); err != nil {
				if l.next != "" {
					<-pending
				}
				return err
			}
		}
		if l.next == "" {
			return nil
		}
	}
}

// closeSegment closes the open segment, if any, and saves the checkpoint
// with it and the listing position after it.
func (b *backuper) closeSegment(seg *segment) error {
	cur := b.cp.Current
	if seg.w != nil {
		f, err := seg.w.close()
		seg.w = nil
		if err != nil {
			return err
		}
		cur.Collection.Segments = append(cur.Collection.Segments, f)
	}
	for u, t := range seg.tenants {
		have := cur.Collection.Tenants[u]
		cur.Collection.Tenants[u] = TenantCount{Documents: have.Documents + t.Documents, Points: have.Points + t.Points}
	}
	cur.Collection.Skipped += seg.skipped
	cur.TenantsDone, cur.Tenant, cur.Cursor = slices.Clone(seg.pos.TenantsDone), seg.pos.Tenant, seg.pos.Cursor
	b.cp.Written += seg.points
	seg.points, seg.skipped, seg.tenants = 0, 0, map[string]TenantCount{}
	return b.save()
}

// register writes the collection's version register entries.
func (b *backuper) register(ctx context.Context, collection string) (File, error) {
	w, err := createLines(b.cfg.Dir, filepath.Join(collection, registerFile))
	if err != nil {
		return File{}, err
	}
	err = b.cfg.Register(ctx, collection, func(key string, v uint64) error {
		return w.add(registerLine{Key: key, Version: v})
	})
	if err != nil {
		w.abort()
		return File{}, fmt.Errorf("version register: %w", err)
	}
	return w.close()
}

// keys writes the tenants' wrapped data keys.
func (b *backuper) keys(ctx context.Context) (File, error) {
	w, err := createLines(b.cfg.Dir, keysFile)
	if err != nil {
		return File{}, err
	}
	if err := b.cfg.Keys(ctx, func(rec json.RawMessage) error { return w.add(rec) }); err != nil {
		w.abort()
		return File{}, err
	}
	return w.close()
}
