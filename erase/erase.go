// Package erase carries out ragpipe forget: it erases one tenant from
// everything ragpipe keeps, in an order chosen so that what it removes
// stays removed:
//
//  1. the tenant's data key, when encryption is on: its stored texts are
//     unreadable from that instant, in every replica and every backup;
//  2. its events waiting in RAG_INGEST, then its parked events in
//     RAG_PARKED: no worker fetches them afterwards to write its data back;
//  3. its points, in every collection of the store, one filtered delete
//     each, counted first;
//  4. its entries in the version register (RAG_VERSIONS), so that its next
//     events, whatever their versions, start afresh;
//  5. its dead letters in RAG_DLQ, the malformed subjects' ones that name
//     it included;
//  6. a sweep: its points and register entries once more, after
//     Config.Settle, catching what workers had in flight.
//
// Guarantees: run while nothing of the tenant is in flight, nothing of it
// remains. Workers may be running: an event a worker had already fetched
// when step 2 ran may still be written; the sweep deletes what lands before
// it, and events published while forget runs are the tenant's new data,
// stored afterwards. To be sure, stop the tenant's publishers (NATS
// permissions) and run forget again: a second run of a completed forget
// finds nothing.
package erase

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/lww"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/worker"
)

// Keys destroys tenants' data keys (keyring.Keyring).
type Keys interface {
	// Destroy erases the tenant's data key for good; destroyed is false
	// when it had no live key.
	Destroy(ctx context.Context, userID string) (destroyed bool, err error)
}

// Store is the vector store the tenant's points are deleted from
// (qdrantstore.Store, localstore.Store).
type Store interface {
	Collections(ctx context.Context) ([]pipeline.Collection, error)
	// EraseTenant deletes the tenant's points in collection and returns
	// how many it counted.
	EraseTenant(ctx context.Context, collection, userID string) (int, error)
}

// Versions is the version register (lww.Register).
type Versions interface {
	// Forget removes the tenant's entries and returns how many.
	Forget(ctx context.Context, userID string) (uint64, error)
}

// Config configures Forget.
type Config struct {
	JetStream jetstream.JetStream // required
	Store     Store               // required
	Versions  Versions            // required
	// Keys destroys the tenant's data key; nil when encryption is off,
	// and the key step is skipped.
	Keys Keys
	// Prefix is the subject prefix (RAGPIPE_SUBJECT_PREFIX). Default "rag".
	Prefix string
	// Settle is how long the sweep waits for writes workers had in flight.
	// Default 0: the sweep runs at once.
	Settle time.Duration
	// Progress, when set, is told a line of each step as it ends.
	Progress func(line string)
	// Logger logs each step. Default: none.
	Logger zerolog.Logger
}

// Key outcomes in Report.Key.
const (
	KeyDestroyed = "destroyed" // the tenant's live data key was destroyed
	KeyNone      = "none"      // encryption on, but no live key: never had one, or already forgotten
	KeySkipped   = "skipped"   // encryption off
)

// Report is what Forget removed, step by step.
type Report struct {
	UserID string `json:"user_id"`
	Key    string `json:"key"` // KeyDestroyed, KeyNone or KeySkipped
	// Pending and Parked count the events purged from RAG_INGEST and
	// RAG_PARKED.
	Pending uint64 `json:"pending"`
	Parked  uint64 `json:"parked"`
	// Points counts the points deleted, by collection (every collection of
	// the store, zeros included).
	Points      map[string]int `json:"points"`
	Versions    uint64         `json:"versions"`     // register entries removed
	DeadLetters uint64         `json:"dead_letters"` // dead letters removed
	// LatePoints and LateVersions are what the sweep found: written while
	// forget ran, by events workers had in flight.
	LatePoints   map[string]int `json:"late_points,omitempty"`
	LateVersions uint64         `json:"late_versions,omitempty"`
}

// TotalPoints is the number of points deleted in every collection, the
// sweep's included.
func (r Report) TotalPoints() int {
	n := 0
	for _, c := range r.Points {
		n += c
	}
	for _, c := range r.LatePoints {
		n += c
	}
	return n
}

// Forget erases userID as the package documentation says and reports the
// counts of each step. It stops at the first step that fails, returning the
// report so far: running it again completes the erasure.
func Forget(ctx context.Context, cfg Config, userID string) (Report, error) {
	r := Report{UserID: userID, Key: KeySkipped, Points: map[string]int{}}
	if cfg.JetStream == nil || cfg.Store == nil || cfg.Versions == nil {
		return r, errors.New("erase: JetStream, Store and Versions are required")
	}
	if !pipeline.ValidUserID(userID) {
		return r, fmt.Errorf("erase: user %s: want 1-128 characters of A-Z a-z 0-9 _ -", pipeline.ShortQuote(userID))
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "rag"
	}
	e := &eraser{cfg: cfg, user: userID, log: cfg.Logger.With().Str("user_id", userID).Logger()}
	err := e.key(ctx, &r)
	if err == nil {
		r.Pending, err = e.purge(ctx, worker.IngestStream, cfg.Prefix+".ingest."+userID+".>", "pending events")
	}
	if err == nil {
		r.Parked, err = e.purge(ctx, worker.ParkedStream, cfg.Prefix+".parked."+userID+".>", "parked events")
	}
	if err == nil {
		err = e.points(ctx, r.Points, true)
	}
	if err == nil {
		if r.Versions, err = e.versions(ctx); err == nil {
			e.done("versions", "%d register entries removed from %s", r.Versions, lww.RegisterStream)
		}
	}
	if err == nil {
		r.DeadLetters, err = e.deadLetters(ctx)
	}
	if err == nil {
		err = e.sweep(ctx, &r)
	}
	return r, err
}

// eraser is one run of Forget.
type eraser struct {
	cfg  Config
	user string
	log  zerolog.Logger
}

// done reports the end of a step.
func (e *eraser) done(step, format string, args ...any) {
	line := step + ": " + fmt.Sprintf(format, args...)
	e.log.Info().Str("step", step).Msg(line)
	if e.cfg.Progress != nil {
		e.cfg.Progress(line)
	}
}

func (e *eraser) key(ctx context.Context, r *Report) error {
	if e.cfg.Keys == nil {
		e.done("key", "skipped: encryption is off (RAGPIPE_ENCRYPTION_KEY_FILE unset)")
		return nil
	}
	destroyed, err := e.cfg.Keys.Destroy(ctx, e.user)
	if err != nil {
		return fmt.Errorf("destroy the data key: %w", err)
	}
	r.Key = KeyNone
	if destroyed {
		r.Key = KeyDestroyed
		e.done("key", "destroyed: the tenant's stored texts are unreadable from now on")
	} else {
		e.done("key", "none to destroy (never created, or already forgotten)")
	}
	return nil
}

// points deletes the tenant's points in every collection, counting them
// into counts, and reports each collection when verbose.
func (e *eraser) points(ctx context.Context, counts map[string]int, verbose bool) error {
	colls, err := e.cfg.Store.Collections(ctx)
	if err != nil {
		return fmt.Errorf("list the collections: %w", err)
	}
	for _, c := range colls {
		n, err := e.cfg.Store.EraseTenant(ctx, c.Name, e.user)
		if errors.Is(err, pipeline.ErrUnknownCollection) {
			continue // deleted meanwhile
		}
		if err != nil {
			return fmt.Errorf("delete the points in %q: %w", c.Name, err)
		}
		counts[c.Name] = n
		if verbose {
			e.done("points", "%d deleted in collection %s", n, c.Name)
		}
	}
	if len(colls) == 0 && verbose {
		e.done("points", "none (the store has no collection)")
	}
	return nil
}

func (e *eraser) versions(ctx context.Context) (uint64, error) {
	n, err := e.cfg.Versions.Forget(ctx, e.user)
	if err != nil {
		return 0, fmt.Errorf("remove the version register entries: %w", err)
	}
	return n, nil
}

// sweep deletes, after Settle, the points and register entries written
// while forget ran, and destroys the key again when a late write created
// one.
func (e *eraser) sweep(ctx context.Context, r *Report) error {
	if e.cfg.Settle > 0 {
		t := time.NewTimer(e.cfg.Settle)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	late := map[string]int{}
	if err := e.points(ctx, late, false); err != nil {
		return err
	}
	points := 0
	for c, n := range late {
		if n > 0 {
			r.LatePoints = late
			points += n
			e.log.Warn().Str("collection", c).Int("points", n).Msg("points written while forget ran were deleted")
		}
	}
	var err error
	if r.LateVersions, err = e.versions(ctx); err != nil {
		return err
	}
	if points == 0 && r.LateVersions == 0 {
		e.done("sweep", "nothing of the tenant was written meanwhile")
		return nil
	}
	e.done("sweep", "%d points and %d register entries written meanwhile (by events in flight) removed", points, r.LateVersions)
	if e.cfg.Keys != nil {
		if _, err := e.cfg.Keys.Destroy(ctx, e.user); err != nil {
			return fmt.Errorf("destroy a data key created while forget ran: %w", err)
		}
	}
	return nil
}
