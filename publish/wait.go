package publish

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/pipeline"
)

// MaxStatusDocs is the most documents one status request names (CONTRACT §5b).
const MaxStatusDocs = 1000

// DocStatus is what a search can find of one document now (CONTRACT §5b).
type DocStatus struct {
	DocID   string
	Stored  bool
	Version uint64 // the stored version, when Stored
}

// StatusSource answers status requests (rag.status.<user_id>.<collection>).
type StatusSource interface {
	// Status returns the status of docIDs (1 to MaxStatusDocs) in
	// userID's collection, in request order. A collection that does not
	// exist stores nothing.
	Status(ctx context.Context, userID, collection string, docIDs []string) ([]DocStatus, error)
}

// WaitConfig configures Wait; zero fields take the documented defaults.
type WaitConfig struct {
	// Status is asked what is searchable. Required.
	Status StatusSource
	// Timeout bounds the wait. Default 5m.
	Timeout time.Duration
	// MaxPoll is the longest pause between two rounds of status requests;
	// the first rounds follow each other faster. Default 1s.
	MaxPoll time.Duration
	// Progress, when set, is called after every round with the documents
	// settled (searchable or failed) and the documents published.
	Progress func(settled, total int)
}

// WaitReport is the outcome of Wait.
type WaitReport struct {
	Documents  int       // documents the run published
	Searchable int       // of them, searchable as published (or overtaken by a newer version)
	Failures   []Failure // events that will never be searchable: dead-lettered
	Pending    []string  // user/collection/doc_id of the documents neither searchable nor failed when the wait ended
}

// Errors of Wait.
var (
	ErrFailed   = errors.New("events were dead-lettered")
	ErrTimedOut = errors.New("wait timed out")
)

// Wait blocks until every document published so far is searchable at the
// version its newest publish of the run got, or failed, or cfg.Timeout or
// ctx ends; the Publisher must track (Config.Track). A document counts as
// searchable once the status says it is stored with that version or a
// newer one, or, for a delete, not stored (or stored at a newer version)
// once a worker has processed the delete: not stored alone could also mean
// an older upsert still queued, which would show up before the delete
// removes it. (Where the streams cannot be read, not stored is enough.)
// An event fails when the worker dead-letters it (read from RAG_DLQ) or
// when the decoder refuses it, as the worker will. It returns nil when
// everything is searchable; else an error wrapping ErrFailed, ErrTimedOut
// or ctx's error, with the report saying which.
func (p *Publisher) Wait(ctx context.Context, cfg WaitConfig) (WaitReport, error) {
	if p.track == nil || cfg.Status == nil {
		return WaitReport{}, errors.New("publish: Wait needs Config.Track and a status source")
	}
	cfg.Timeout = cmp.Or(cfg.Timeout, 5*time.Minute)
	cfg.MaxPoll = cmp.Or(cfg.MaxPoll, time.Second)
	p.Flush()
	t := p.track
	watch, err := p.watch(ctx)
	if err != nil {
		p.cfg.Logger.Warn().Err(err).Msg("dead letters cannot be read: an event that fails keeps the wait going until its timeout")
	} else {
		defer watch.stop()
	}
	waitCtx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	pending := t.allTargets()
	total := len(pending)
	var lastErr error
	for delay := 20 * time.Millisecond; ; delay = min(delay*3/2, cfg.MaxPoll) {
		for _, dl := range watch.take() {
			t.deadLettered(dl)
		}
		t.dropFailed(pending)
		if err := p.poll(waitCtx, cfg.Status, pending); err != nil {
			if lastErr == nil || lastErr.Error() != err.Error() {
				p.cfg.Logger.Warn().Err(err).Msg("status request failed; will retry")
			}
			lastErr = err
		}
		if cfg.Progress != nil {
			cfg.Progress(total-len(pending), total)
		}
		if len(pending) == 0 || waitCtx.Err() != nil {
			break
		}
		select {
		case <-waitCtx.Done():
		case <-watch.woken():
		case <-time.After(delay):
		}
	}
	report := t.report(total, pending)
	switch {
	case len(pending) > 0 && ctx.Err() != nil:
		return report, ctx.Err()
	case len(pending) > 0:
		err := fmt.Errorf("%w: %d of %d documents not searchable after %s", ErrTimedOut, len(pending), total, cfg.Timeout)
		if lastErr != nil {
			err = fmt.Errorf("%w (last status error: %v)", err, lastErr)
		}
		return report, err
	case len(report.Failures) > 0:
		return report, fmt.Errorf("%d %w", len(report.Failures), ErrFailed)
	}
	return report, nil
}

// watch starts reading the dead letters of the run.
func (p *Publisher) watch(ctx context.Context) (*deadLetterWatch, error) {
	if p.dlqErr != nil {
		return nil, p.dlqErr
	}
	return watchDeadLetters(ctx, p.js, p.dlqFrom)
}

// poll asks for the status of the pending documents, MaxStatusDocs at a
// time, and removes those that are searchable. It returns the last error.
func (p *Publisher) poll(ctx context.Context, status StatusSource, pending map[docKey]target) error {
	groups := map[[2]string][]string{}
	for k := range pending {
		g := [2]string{k.user, k.collection}
		groups[g] = append(groups[g], k.doc)
	}
	var lastErr error
	for g, docs := range groups {
		slices.Sort(docs)
		for batch := range slices.Chunk(docs, MaxStatusDocs) {
			if ctx.Err() != nil {
				return lastErr
			}
			got, err := status.Status(ctx, g[0], g[1], batch)
			if err != nil {
				lastErr = fmt.Errorf("status of %s/%s: %w", g[0], g[1], err)
				continue
			}
			var unsure []docKey // deletes not stored: settled once they left the stream
			for _, s := range got {
				k := docKey{g[0], g[1], s.DocID}
				switch t, ok := pending[k]; {
				case !ok || !t.searchable(s):
				case t.op == pipeline.OpDelete && !s.Stored:
					unsure = append(unsure, k)
				default:
					delete(pending, k)
				}
			}
			p.dropProcessed(ctx, pending, unsure)
		}
	}
	return lastErr
}

// dropProcessed removes from pending the documents of keys (all of one
// tenant's collection) whose target event a worker has processed: it left
// RAG_INGEST (the stream keeps an event until a worker acknowledges or
// terminates it) and no event of the collection waits in RAG_PARKED (where
// a failing collection's events are retried apart). When the streams cannot
// be read, it says so once and removes them all.
func (p *Publisher) dropProcessed(ctx context.Context, pending map[docKey]target, keys []docKey) {
	if len(keys) == 0 {
		return
	}
	first, err := p.firstQueued(ctx)
	if err == nil {
		var parked bool
		if parked, err = p.parked(ctx, keys[0].user, keys[0].collection); err == nil && parked {
			return
		}
	}
	for _, k := range keys {
		seq := pending[k].seq
		if err == nil && seq >= first {
			_, err = p.ingest.GetMsg(ctx, seq)
			if err == nil {
				continue // still queued
			}
			if errors.Is(err, jetstream.ErrMsgNotFound) {
				err = nil
			}
		}
		if err != nil && p.streamErr == nil {
			p.streamErr = err
			p.cfg.Logger.Warn().Err(err).Msg("the ingest streams cannot be read: a delete counts as done once the document is not stored")
		}
		delete(pending, k)
	}
}

// firstQueued returns the first sequence RAG_INGEST still holds (past its
// last when it holds none), or the error that stopped reading it before.
func (p *Publisher) firstQueued(ctx context.Context) (uint64, error) {
	if p.streamErr != nil {
		return 0, p.streamErr
	}
	var err error
	if p.ingest == nil {
		if p.ingest, err = p.js.Stream(ctx, ingestStream); err != nil {
			return 0, err
		}
	}
	info, err := p.ingest.Info(ctx)
	if err != nil {
		return 0, err
	}
	if info.State.Msgs == 0 {
		return info.State.LastSeq + 1, nil
	}
	return info.State.FirstSeq, nil
}

// parked reports whether RAG_PARKED holds events of userID's collection.
func (p *Publisher) parked(ctx context.Context, userID, collection string) (bool, error) {
	if p.parkedStream == nil {
		s, err := p.js.Stream(ctx, parkedStream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return false, nil // no collection ever failed
		}
		if err != nil {
			return false, err
		}
		p.parkedStream = s
	}
	_, err := p.parkedStream.GetLastMsgForSubject(ctx, p.cfg.Prefix+".parked."+userID+"."+collection)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return false, nil
	}
	return err == nil, err
}

// searchable reports whether status s shows the target's publish: stored
// at its version or a newer one; for a delete, not stored (or newer).
func (t target) searchable(s DocStatus) bool {
	if t.op == pipeline.OpDelete {
		return !s.Stored || s.Version > t.version
	}
	return s.Stored && s.Version >= t.version
}
