// Package publish is the producer side of `ragpipe publish`: it publishes
// files (one document each), directories and JSON lines as ingest events
// (CONTRACT §2) and, when asked, waits until what it published is
// searchable or has failed.
//
// Every publish of a Publisher carries its own Nats-Msg-Id, the run's random
// id and the publish's index, and no other header: JetStream drops only a
// retry of the same publish (nats.go retries a publish that met no
// responders, during a leader election for example), never a later publish
// of the same bytes, so a document published, deleted and published again,
// or edited A → B → A, ends as the last publish says. The bytes of every
// event are copied before they are handed to the asynchronous publish, so
// that such a retry re-sends what was read, not what the reader's buffer
// holds by then.
package publish

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Config configures New; zero fields take the documented defaults.
type Config struct {
	// Conn is the NATS connection events are published on. Required.
	Conn *nats.Conn
	// Prefix is the subject prefix (RAGPIPE_SUBJECT_PREFIX). Default "rag".
	Prefix string
	// MaxEventBytes is the largest event published; a larger one is
	// skipped, as the worker would dead-letter it (RAGPIPE_MAX_EVENT_BYTES).
	// Default pipeline.DefaultMaxEventBytes.
	MaxEventBytes int
	// UserID and Collection are the tenant and collection of file
	// documents, and of JSON lines that name none. Files need both.
	// Default none.
	UserID, Collection string
	// Op is the operation of file documents. Default pipeline.OpUpsert.
	Op pipeline.Op
	// Metadata is added to file documents that are upserted. Default none.
	Metadata map[string]any
	// JSONLines reads every file as JSON lines, one event per line; files
	// named *.jsonl or *.ndjson always are. Default false.
	JSONLines bool
	// Stdin is read as JSON lines for the path "-". Default os.Stdin.
	Stdin io.Reader
	// Track records every acknowledged event and notes where the
	// dead-letter stream stands, so that Wait can follow the events.
	// Default false.
	Track bool
	// MaxPending is the most publishes awaiting their acknowledgement;
	// more wait. Default 512.
	MaxPending int
	// AckTimeout is how long a publish waits for its acknowledgement
	// before it counts as failed. Default 30s.
	AckTimeout time.Duration
	// Acked, when set, is called once per published event when its
	// acknowledgement (or failure) arrives, from several goroutines; a
	// progress bar counts with it. Default none.
	Acked func()
	// Logger receives skipped lines and failed publishes. Default: the
	// zero Logger, which discards everything.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.Prefix == "" {
		c.Prefix = "rag"
	}
	if c.MaxEventBytes == 0 {
		c.MaxEventBytes = pipeline.DefaultMaxEventBytes
	}
	if c.Op == "" {
		c.Op = pipeline.OpUpsert
	}
	if c.Stdin == nil {
		c.Stdin = os.Stdin
	}
	if c.MaxPending == 0 {
		c.MaxPending = 512
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 30 * time.Second
	}
	var errs []error
	if c.Conn == nil {
		errs = append(errs, errors.New("a NATS connection is required"))
	}
	if c.Op != pipeline.OpUpsert && c.Op != pipeline.OpDelete {
		errs = append(errs, fmt.Errorf("op %q: want upsert or delete", c.Op))
	}
	if c.UserID != "" && !pipeline.ValidUserID(c.UserID) {
		errs = append(errs, fmt.Errorf("user %q: want 1-128 characters of A-Z a-z 0-9 _ -", c.UserID))
	}
	if c.Collection != "" && !pipeline.ValidCollection(c.Collection) {
		errs = append(errs, fmt.Errorf("collection %q: want 1-64 characters of a-z 0-9 _ -, starting with a letter", c.Collection))
	}
	if c.MaxEventBytes < 0 || c.MaxPending < 0 || c.AckTimeout < 0 {
		errs = append(errs, errors.New("max event bytes, max pending and ack timeout must not be negative"))
	}
	return errors.Join(errs...)
}

// Counts are the outcomes of a Publisher's events so far.
type Counts struct {
	Stored     int64 // acknowledged by JetStream
	Duplicates int64 // acknowledged as a duplicate of an earlier attempt of the same publish
	Skipped    int64 // not published: not an event, too large, no tenant or collection
	Failed     int64 // not acknowledged: refused by JetStream or timed out
}

// Publisher publishes events. Its methods may be called from several
// goroutines, but Wait by one at a time; Flush waits for the
// acknowledgements of everything published before it.
type Publisher struct {
	cfg Config
	js  jetstream.JetStream
	run string // random id of this run, the first part of every Nats-Msg-Id
	n   atomic.Uint64

	stored, duplicates, skipped, failed atomic.Int64
	acks                                sync.WaitGroup // one per event awaiting its acknowledgement

	track   *tracker // nil unless cfg.Track
	dlqFrom uint64   // first RAG_DLQ sequence Wait reads; 0: dead letters cannot be followed
	dlqErr  error    // why dlqFrom is 0

	ingest, parkedStream jetstream.Stream // RAG_INGEST and RAG_PARKED, read by Wait
	streamErr            error            // why they cannot be read
}

// New returns a Publisher. With cfg.Track it also reads where the
// dead-letter stream stands (one request), so that Wait sees every dead
// letter of the events published afterwards.
func New(ctx context.Context, cfg Config) (*Publisher, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	js, err := jetstream.New(cfg.Conn, jetstream.WithPublishAsyncMaxPending(cfg.MaxPending),
		jetstream.WithPublishAsyncTimeout(cfg.AckTimeout))
	if err != nil {
		return nil, fmt.Errorf("publish: %w", err)
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id) // never fails (crypto/rand)
	p := &Publisher{cfg: cfg, js: js, run: hex.EncodeToString(id)}
	if cfg.Track {
		p.track = newTracker()
		p.dlqFrom, p.dlqErr = deadLetterStart(ctx, js, cfg.Prefix)
	}
	return p, nil
}

// Publish publishes body as one event on the ingest subject of userID and
// collection, without waiting for its acknowledgement; where names the
// event's source in logs and reports. body is copied: the caller may reuse
// it at once. An event too large or with an invalid tenant or collection is
// skipped and logged. Publish blocks while MaxPending publishes await their
// acknowledgement; it fails when ctx ends first or the publish cannot be
// sent.
func (p *Publisher) Publish(ctx context.Context, where, userID, collection string, body []byte) error {
	if len(body) > p.cfg.MaxEventBytes {
		p.skip(where, fmt.Sprintf("event is %d bytes, more than RAGPIPE_MAX_EVENT_BYTES=%d", len(body), p.cfg.MaxEventBytes))
		return nil
	}
	if !pipeline.ValidUserID(userID) || !pipeline.ValidCollection(collection) {
		p.skip(where, fmt.Sprintf("invalid user_id %q or collection %q", userID, collection))
		return nil
	}
	msg := p.message(p.cfg.Prefix+".ingest."+userID+"."+collection, body)
	future, err := p.js.PublishMsgAsync(msg)
	for errors.Is(err, jetstream.ErrTooManyStalledMsgs) { // JetStream is slower than us: wait, then go on
		select {
		case <-p.js.PublishAsyncComplete():
		case <-ctx.Done():
			return ctx.Err()
		}
		future, err = p.js.PublishMsgAsync(msg)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	p.acks.Go(func() { p.settle(where, msg, future) })
	return nil
}

// message builds the message of one publish: a copy of body, because
// nats.go re-sends the message itself when it retries, after the caller
// may have reused body; and only the header the contract names, a
// Nats-Msg-Id of its own.
func (p *Publisher) message(subject string, body []byte) *nats.Msg {
	msg := nats.NewMsg(subject)
	msg.Data = slices.Clone(body)
	msg.Header.Set(jetstream.MsgIDHeader, "ragpipe-publish-"+p.run+"-"+strconv.FormatUint(p.n.Add(1), 10))
	return msg
}

// settle waits for one publish's acknowledgement and counts it.
func (p *Publisher) settle(where string, msg *nats.Msg, future jetstream.PubAckFuture) {
	select {
	case ack := <-future.Ok():
		if ack.Duplicate {
			p.duplicates.Add(1)
		} else {
			p.stored.Add(1)
		}
		if p.track != nil {
			p.track.add(p.decodeConfig(), where, msg, ack.Sequence)
		}
	case err := <-future.Err():
		p.failed.Add(1)
		p.cfg.Logger.Error().Err(err).Str("source", where).Msg("publish failed")
	}
	if p.cfg.Acked != nil {
		p.cfg.Acked()
	}
}

func (p *Publisher) decodeConfig() pipeline.DecodeConfig {
	return pipeline.DecodeConfig{Prefix: p.cfg.Prefix, MaxEventBytes: p.cfg.MaxEventBytes}
}

// Flush blocks until every event published so far is acknowledged or has
// failed (at most AckTimeout after its publish).
func (p *Publisher) Flush() { p.acks.Wait() }

// Counts returns the outcomes so far; after Flush they are complete.
func (p *Publisher) Counts() Counts {
	return Counts{Stored: p.stored.Load(), Duplicates: p.duplicates.Load(), Skipped: p.skipped.Load(), Failed: p.failed.Load()}
}

func (p *Publisher) skip(where, reason string) {
	p.skipped.Add(1)
	p.cfg.Logger.Warn().Str("source", where).Str("reason", reason).Msg("skipped")
}
