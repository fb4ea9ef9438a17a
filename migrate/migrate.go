// Package migrate copies collections between vector stores (the embedded
// store and Qdrant, either way, or Qdrant to Qdrant) without re-embedding:
// points are copied with their vectors, keyword vectors and payload.
//
// A point without a keyword vector (one of a collection created before
// them) gets one computed from its text (pipeline.Keywords), so that a
// copy into a target with keyword vectors, such as a collection the copy
// creates, answers keyword and hybrid searches; a target without them
// drops it.
//
// A copy streams page by page, so memory stays bounded by two pages however
// large the collection. After each page is durable in the target, the source
// cursor is saved to a state file; a copy interrupted at any point resumes
// from the last saved page. Writing a page again is harmless (point ids are
// deterministic), so a rerun is idempotent. At the end, the number of points
// of every tenant is compared between source and target.
//
// A collection keeps its generation: the source's ragpipe name is resolved
// to the store collection serving it (its alias' target, or the collection
// itself when it is plain), and the target gets a collection of that same
// name behind the alias of the ragpipe name (see Place), so that a
// generation State (RAG_GENERATIONS) naming it holds in the target too.
//
// The copy is of a collection at rest: stop the workers writing to the source
// (or accept that events processed meanwhile must be replayed), as the final
// count check will report.
package migrate

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Source is a store collections are copied from.
type Source interface {
	// Collections lists the store's collections.
	Collections(ctx context.Context) ([]pipeline.Collection, error)
	// Scroll returns up to limit points, with vectors and keyword vectors,
	// after the cursor ("" for the start), and the next cursor ("" after
	// the last page).
	Scroll(ctx context.Context, collection, after string, limit int) ([]pipeline.Point, string, error)
	// Count returns the number of points of each tenant.
	Count(ctx context.Context, collection string) (map[string]int, error)
	// AliasTarget returns the collection the alias name points at; "" when
	// name is not an alias.
	AliasTarget(ctx context.Context, name string) (string, error)
	// Describe returns an existing collection's dimensions, distance and
	// keyword vectors.
	Describe(ctx context.Context, collection string) (pipeline.Collection, error)
}

// Target is a store collections are copied to.
type Target interface {
	Generations
	// Upsert stores points as they are, keyword vectors only where the
	// collection has them; it returns once they are durable.
	Upsert(ctx context.Context, collection string, points []pipeline.Point) error
	// Count returns the number of points of each tenant.
	Count(ctx context.Context, collection string) (map[string]int, error)
}

// Config configures Run; zero fields take the documented defaults.
type Config struct {
	Source Source // required
	Target Target // required
	// Collections to copy; all of the source's when empty.
	Collections []string
	// PageSize is the number of points read and written at a time, default 256.
	PageSize int
	// StateFile records progress so that an interrupted copy resumes; it is
	// removed when every collection has been copied and checked. Required.
	StateFile string
	// Progress, when set, is called after every page with the points copied
	// so far in this run and the source's total.
	Progress func(collection string, copied, total int)
	// Serving, when set, names the store collection serving a ragpipe
	// collection according to its generation State, "" when it has none
	// (Registry.Current). It overrides the source's alias, which lags the
	// State while an adopted plain collection awaits --drop-previous.
	Serving func(ctx context.Context, collection string) (string, error)
	Logger  zerolog.Logger
}

// Report is the outcome of copying one collection.
type Report struct {
	Collection pipeline.Collection
	// Source and target store collections: the generation copied and the
	// one written (the same name unless the target has a plain collection
	// of the ragpipe name).
	From, To string
	Copied   int            // points written in this run
	Resumed  bool           // the copy continued an interrupted one
	Source   map[string]int // points per tenant in the source
	Target   map[string]int // points per tenant in the target afterwards
}

// ErrCountMismatch reports a copy whose target does not hold exactly the
// source's number of points for every tenant.
var ErrCountMismatch = errors.New("point counts differ between source and target")

// state is the content of the state file: the progress of each collection.
type state map[string]progress

// progress is the source cursor after the last page stored in the target, or done.
type progress struct {
	From   string `json:"from,omitempty"` // the source's store collection
	Cursor string `json:"cursor"`
	Done   bool   `json:"done"`
}

// Run copies the collections and checks their counts. It blocks until done
// or ctx ends; on interruption the state file keeps the progress.
func Run(ctx context.Context, cfg Config) ([]Report, error) {
	if cfg.Source == nil || cfg.Target == nil || cfg.StateFile == "" {
		return nil, errors.New("migrate: Source, Target and StateFile are required")
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = 256
	}
	st, err := loadState(cfg.StateFile)
	if err != nil {
		return nil, err
	}
	colls, err := collections(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var reports []Report
	for _, c := range colls {
		r, err := copyCollection(ctx, cfg, st, c)
		if err != nil {
			return reports, fmt.Errorf("migrate %q: %w", c.Name, err)
		}
		reports = append(reports, r)
	}
	for _, r := range reports {
		if !maps.Equal(r.Source, r.Target) {
			return reports, fmt.Errorf("migrate %q: %w: source %v, target %v", r.Collection.Name, ErrCountMismatch, r.Source, r.Target)
		}
	}
	if err := os.Remove(cfg.StateFile); err != nil && !errors.Is(err, os.ErrNotExist) {
		return reports, err
	}
	return reports, nil
}

// collections resolves the collections to copy.
func collections(ctx context.Context, cfg Config) ([]pipeline.Collection, error) {
	all, err := cfg.Source.Collections(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: list source collections: %w", err)
	}
	if len(cfg.Collections) == 0 {
		return all, nil
	}
	var out []pipeline.Collection
	for _, name := range cfg.Collections {
		i := slices.IndexFunc(all, func(c pipeline.Collection) bool { return c.Name == name })
		if i < 0 {
			return nil, fmt.Errorf("migrate: the source has no collection %q", name)
		}
		out = append(out, all[i])
	}
	return out, nil
}

// copyCollection copies one collection from where the state says it stopped.
func copyCollection(ctx context.Context, cfg Config, st state, c pipeline.Collection) (Report, error) {
	from, err := Serving(ctx, cfg.Source, c.Name, cfg.Serving)
	if err != nil {
		return Report{}, err
	}
	log := cfg.Logger.With().Str("collection", c.Name).Str("generation", from).Logger()
	if p := st[c.Name]; p.From != "" && p.From != from {
		log.Warn().Str("was", p.From).Msg("the source serves another generation since the interrupted copy; copying it from the start")
		st[c.Name] = progress{}
	}
	if from != c.Name { // its own settings: Config.Serving may name another than the listed name's
		d, err := cfg.Source.Describe(ctx, from)
		if err != nil {
			return Report{}, fmt.Errorf("describe %q: %w", from, err)
		}
		c.Dims, c.Distance, c.Keywords = d.Dims, d.Distance, d.Keywords
	}
	r := Report{Collection: c, From: from, Resumed: st[c.Name].Cursor != "" || st[c.Name].Done}
	src, err := cfg.Source.Count(ctx, from)
	if err != nil {
		return r, fmt.Errorf("count source: %w", err)
	}
	r.Source = src
	total := 0
	for _, n := range src {
		total += n
	}
	if r.To, err = Place(ctx, cfg.Target, c, from, log); err != nil {
		return r, err
	}
	if !st[c.Name].Done {
		log.Info().Int("points", total).Bool("resumed", r.Resumed).Str("to", r.To).Msg("copying")
		if r.Copied, err = copyPages(ctx, cfg, st, c.Name, r.From, r.To, total); err != nil {
			return r, err
		}
	}
	if r.Target, err = cfg.Target.Count(ctx, r.To); err != nil {
		return r, fmt.Errorf("count target: %w", err)
	}
	return r, nil
}

// copyPages streams pages from source to target: one page is read while the
// previous one is written. After each page is stored, the cursor is saved.
func copyPages(ctx context.Context, cfg Config, st state, name, from, to string, total int) (int, error) {
	type page struct {
		points []pipeline.Point
		next   string
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	pages := make(chan page, 1)
	readErr := make(chan error, 1)
	go func() {
		defer close(pages)
		cursor := st[name].Cursor
		for {
			pts, next, err := cfg.Source.Scroll(ctx, from, cursor, cfg.PageSize)
			if err != nil {
				readErr <- fmt.Errorf("read source after %q: %w", cursor, err)
				return
			}
			select {
			case pages <- page{pts, next}:
			case <-ctx.Done():
				return
			}
			if next == "" {
				return
			}
			cursor = next
		}
	}()
	copied := 0
	for p := range pages {
		addKeywords(p.points)
		if len(p.points) > 0 {
			if err := cfg.Target.Upsert(ctx, to, p.points); err != nil {
				return copied, fmt.Errorf("write target: %w", err)
			}
		}
		copied += len(p.points)
		st[name] = progress{From: from, Cursor: p.next, Done: p.next == ""}
		if err := saveState(cfg.StateFile, st); err != nil {
			return copied, err
		}
		if cfg.Progress != nil {
			cfg.Progress(name, copied, total)
		}
	}
	select {
	case err := <-readErr:
		return copied, err
	default:
		return copied, ctx.Err()
	}
}

// addKeywords gives each point with text but no keyword vector the keyword
// vector of its text.
func addKeywords(points []pipeline.Point) {
	for i := range points {
		if p := &points[i]; p.Keywords == nil && p.Text != "" {
			p.Keywords = pipeline.Keywords(p.Text)
		}
	}
}

func loadState(path string) (state, error) {
	st := state{}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, &st); err != nil {
		return nil, fmt.Errorf("migrate: state file %s is damaged (delete it to start over): %w", path, err)
	}
	return st, nil
}

// saveState replaces the state file atomically.
func saveState(path string, st state) error {
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".migrate-state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
