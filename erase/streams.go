package erase

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/ragpipe/ragpipe/worker"
)

// purge removes the messages of stream on subjects matching filter and
// returns how many the server removed: one atomic purge, counted by the
// server (the client's Purge does not return the count). A missing stream
// holds nothing.
func (e *eraser) purge(ctx context.Context, stream, filter, what string) (uint64, error) {
	req, err := json.Marshal(struct {
		Filter string `json:"filter"`
	}{filter})
	if err != nil {
		return 0, err
	}
	js := e.cfg.JetStream
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, js.Options().DefaultTimeout)
		defer cancel()
	}
	msg, err := js.Conn().RequestWithContext(ctx, jetstream.DefaultAPIPrefix+"STREAM.PURGE."+stream, req)
	if err != nil {
		return 0, fmt.Errorf("purge %s of %s: %w", what, stream, err)
	}
	var resp struct {
		Purged uint64              `json:"purged"`
		Error  *jetstream.APIError `json:"error"`
	}
	switch err := json.Unmarshal(msg.Data, &resp); {
	case err != nil:
		return 0, fmt.Errorf("purge %s of %s: %w", what, stream, err)
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound:
		e.done(what, "none (no stream %s)", stream)
		return 0, nil
	case resp.Error != nil:
		return 0, fmt.Errorf("purge %s of %s: %w", what, stream, resp.Error)
	}
	e.done(what, "%d purged from %s (%s)", resp.Purged, stream, filter)
	return resp.Purged, nil
}

// deadLetters removes the tenant's dead letters: those on its subjects,
// and those of events whose subject names it but was malformed (an invalid
// collection, a token too many), which are kept under
// <prefix>.dlq._invalid._invalid with the original subject in a header.
func (e *eraser) deadLetters(ctx context.Context) (uint64, error) {
	n, err := e.purge(ctx, worker.DLQStream, e.cfg.Prefix+".dlq."+e.user+".>", "dead letters")
	if err != nil {
		return 0, err
	}
	stream, err := e.cfg.JetStream.Stream(ctx, worker.DLQStream)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return n, nil
	}
	if err != nil {
		return n, fmt.Errorf("dead letters: %w", err)
	}
	ingest := e.cfg.Prefix + ".ingest." + e.user
	var seqs []uint64
	dl := worker.NewDeadLetters(e.cfg.JetStream, e.cfg.Prefix)
	err = dl.Each(ctx, dl.Filter("_invalid", "_invalid"), func(l worker.DeadLetter) error {
		if l.Subject == ingest || strings.HasPrefix(l.Subject, ingest+".") {
			seqs = append(seqs, l.Sequence)
		}
		return nil
	})
	if err != nil {
		return n, fmt.Errorf("dead letters of malformed subjects: %w", err)
	}
	for _, seq := range seqs {
		if err := stream.SecureDeleteMsg(ctx, seq); err != nil && !errors.Is(err, jetstream.ErrMsgNotFound) {
			return n, fmt.Errorf("delete dead letter %d: %w", seq, err)
		}
	}
	if len(seqs) > 0 {
		e.done("dead letters", "%d of malformed subjects naming the tenant deleted", len(seqs))
	}
	return n + uint64(len(seqs)), nil
}
