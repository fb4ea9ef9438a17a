package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/ragpipe/ragpipe/pipeline"
)

// New creates the ingest and dead-letter streams and the consumer when they
// are missing, and returns a worker ready to Run. With cfg.VersionFloor it
// makes sure the ingest stream's sequences start above every stored
// version (ensureIngest); it fails with ErrBelowFloor when they cannot.
func New(ctx context.Context, cfg Config) (*Worker, error) {
	cfg.setDefaults()
	if cfg.JetStream == nil || cfg.Processor == nil || cfg.Metrics == nil {
		return nil, errors.New("worker: JetStream, Processor and Metrics are required")
	}
	if _, err := ensureStream(ctx, cfg.JetStream, jetstream.StreamConfig{
		Name:        DLQStream,
		Description: "ragpipe: events that can never succeed, with the reason",
		Subjects:    []string{cfg.Prefix + ".dlq.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.StreamReplicas,
	}); err != nil {
		return nil, err
	}
	ingest, checked, err := ensureIngest(ctx, cfg)
	if err != nil {
		return nil, err
	}
	var metadata map[string]string
	if checked != "" {
		metadata = map[string]string{floorCheckedKey: checked}
	}
	consumer, err := ingest.CreateOrUpdateConsumer(ctx, jetstream.ConsumerConfig{
		Durable:       ConsumerName,
		Description:   "ragpipe workers, shared by every replica",
		FilterSubject: cfg.Prefix + ".ingest.>",
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: cfg.MaxAckPending,
		// The worker counts attempts itself (NumDelivered) and dead-letters
		// the event, so JetStream must never silently stop redelivering.
		MaxDeliver: -1,
		Replicas:   0, // inherit the stream's
		Metadata:   metadata,
	})
	if err != nil {
		return nil, fmt.Errorf("create consumer %s: %w", ConsumerName, err)
	}
	return &Worker{
		cfg:      cfg,
		consumer: consumer,
		decode:   pipeline.DecodeConfig{Prefix: cfg.Prefix, MaxEventBytes: cfg.MaxEventBytes},
	}, nil
}

// ensureStream returns the stream named in cfg, creating it when missing. An
// existing stream is left as its operator configured it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, cfg.Name) // another replica created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return s, nil
}

// ingestConfig is the configuration of a created RAG_INGEST.
func ingestConfig(cfg Config) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        IngestStream,
		Description: "ragpipe: document events waiting to be indexed",
		Subjects:    []string{cfg.Prefix + ".ingest.>"},
		Storage:     jetstream.FileStorage,
		Replicas:    cfg.StreamReplicas,
		// Work queue: a message is removed once acknowledged, so the stream
		// holds exactly the backlog and nothing unprocessed ever ages out.
		Retention:  jetstream.WorkQueuePolicy,
		Duplicates: 2 * time.Minute,
	}
}

// ErrBelowFloor is the error of New when RAG_INGEST holds events whose
// sequences, their default versions, are not above the versions already
// stored, and the stream cannot be moved above them without losing them.
var ErrBelowFloor = errors.New("ingest stream below the version floor")

// floorCheckedKey, in the metadata of the consumer ragpipe-worker, holds
// the creation time of the RAG_INGEST found, or made, to start above the
// version floor. A stream created again (by an operator, even from a copy of
// the old configuration) has another creation time, and a new consumer.
// The mark is on the consumer, which every start updates anyway, because an
// update of the stream concurrent with another worker's consumer update
// trips a data race in nats-server 2.15.
const floorCheckedKey = "ragpipe_version_floor_checked"

// ensureIngest returns RAG_INGEST, creating it when missing, and the mark
// to record on the consumer once the stream is checked ("" without a
// VersionFloor). With a VersionFloor, an event's default version (its
// stream sequence) must outrank every version stored before the stream
// existed, or an update of a document stored earlier loses its claim and a
// delete removes nothing; so:
//
//   - a missing stream is created with its first sequence just above the
//     floor, atomically: no publish can come before it;
//   - an existing stream not yet checked (created by an operator, or by a
//     ragpipe without this check) whose next sequence is not above the
//     floor is raised, by a purge up to the floor, when it is empty, and
//     refused with ErrBelowFloor when it holds events, which a purge would
//     remove and which, left alone, would lose to stored versions;
//   - a checked stream is taken as it is, without computing the floor:
//     every version stored since it was checked came from its own events
//     (versions below its next sequence) or carries a version of its own.
//
// Workers starting together agree: creation is atomic, raising is
// idempotent, and the stream's state is read after the floor is computed,
// so that a worker whose floor includes a version claimed from the stream
// also sees that version's sequence in the stream and does not purge.
func ensureIngest(ctx context.Context, cfg Config) (jetstream.Stream, string, error) {
	js, scfg := cfg.JetStream, ingestConfig(cfg)
	if cfg.VersionFloor == nil {
		s, err := ensureStream(ctx, js, scfg)
		return s, "", err
	}
	s, err := js.Stream(ctx, IngestStream)
	if err == nil {
		if mark, checked := floorChecked(ctx, s); checked {
			return s, mark, nil
		}
	} else if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, "", fmt.Errorf("look up stream %s: %w", IngestStream, err)
	}
	floor, ferr := cfg.VersionFloor(ctx)
	if ferr != nil {
		return nil, "", fmt.Errorf("stream %s: version floor: %w", IngestStream, ferr)
	}
	if floor >= pipeline.MaxVersion {
		return nil, "", fmt.Errorf("stream %s: a version of %d is stored, which leaves stream sequences no room below %d, the largest version: %w",
			IngestStream, floor, uint64(pipeline.MaxVersion), ErrBelowFloor)
	}
	if err != nil { // missing
		if floor > 0 {
			scfg.FirstSeq = floor + 1
		}
		s, err = js.CreateStream(ctx, scfg)
		if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
			s, err = js.Stream(ctx, IngestStream) // another worker created it first: checked below
		}
		if err != nil {
			return nil, "", fmt.Errorf("create stream %s: %w", IngestStream, err)
		}
	}
	mark, err := raiseAbove(ctx, cfg, s, floor)
	if err != nil {
		return nil, "", err
	}
	return s, mark, nil
}

// floorChecked reports whether the consumer of s records s as checked, and
// the mark it records. A failed read counts as unchecked.
func floorChecked(ctx context.Context, s jetstream.Stream) (string, bool) {
	c, err := s.Consumer(ctx, ConsumerName)
	if err != nil {
		return "", false
	}
	mark := c.CachedInfo().Config.Metadata[floorCheckedKey]
	return mark, mark != "" && mark == createdStamp(s.CachedInfo())
}

func createdStamp(info *jetstream.StreamInfo) string {
	return info.Created.UTC().Format(time.RFC3339Nano)
}

// raiseAbove makes s's next sequence exceed floor when it does not, and
// returns the mark of a checked s.
func raiseAbove(ctx context.Context, cfg Config, s jetstream.Stream, floor uint64) (string, error) {
	info, err := s.Info(ctx)
	if err != nil {
		return "", fmt.Errorf("stream %s: %w", IngestStream, err)
	}
	next := info.State.LastSeq + 1
	log := cfg.Logger.With().Str("stream", IngestStream).Uint64("version_floor", floor).Logger()
	switch {
	case next > floor:
		log.Info().Uint64("next_seq", next).Msg("ingest stream checked: its sequences start above every stored version")
	case info.State.Msgs == 0:
		purged, err := purgeBelow(ctx, cfg.JetStream, floor+1)
		if err != nil {
			return "", fmt.Errorf("stream %s: raise its next sequence from %d to %d: %w", IngestStream, next, floor+1, err)
		}
		log.Warn().Uint64("next_seq", next).Uint64("raised_to", floor+1).
			Msg("ingest stream raised above every stored version: it was created without a first sequence above them")
		if purged > 0 {
			// Published between the read of the state and the purge.
			log.Error().Uint64("removed", purged).
				Msg("events published while the ingest stream was raised were removed with it: publish them again")
		}
	default:
		return "", fmt.Errorf("stream %s holds %d events and its next sequence, %d, is not above %d, the highest version "+
			"stored or claimed: without a version of their own they would lose to what is stored. It was created "+
			"again without a first sequence above that floor. Stop the producers, purge it up to sequence %d "+
			"(nats stream purge %s --seq %d, which removes the waiting events: publish them again), then start the worker: %w",
			IngestStream, info.State.Msgs, next, floor, floor+1, IngestStream, floor+1, ErrBelowFloor)
	}
	return createdStamp(info), nil
}

// purgeBelow removes RAG_INGEST's messages below seq; on an empty stream
// whose last sequence is below seq-1 it moves the next sequence to seq. It
// returns how many messages were removed, which the client's Purge does not.
func purgeBelow(ctx context.Context, js jetstream.JetStream, seq uint64) (uint64, error) {
	req, err := json.Marshal(struct {
		Seq uint64 `json:"seq"`
	}{seq})
	if err != nil {
		return 0, err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.PURGE."+IngestStream, req)
	if err != nil {
		return 0, err
	}
	var resp struct {
		Success bool                `json:"success"`
		Purged  uint64              `json:"purged"`
		Error   *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return 0, err
	}
	if resp.Error != nil {
		return 0, resp.Error
	}
	if !resp.Success {
		return 0, errors.New("purge not acknowledged")
	}
	return resp.Purged, nil
}
