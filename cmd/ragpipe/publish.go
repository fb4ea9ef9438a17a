package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/mattn/go-isatty"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/schollz/progressbar/v3"

	"github.com/ragpipe/ragpipe/pipeline"
)

var publishCommand = command{
	name:    "publish",
	client:  true,
	summary: "Publish files, directories (one document per file, doc_id = relative path) or JSON lines (one event per line, '-' for stdin) as ingest events.",
	usage:   "publish --user USER --collection NAME [flags] PATH...",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		p := &publisher{meta: map[string]any{}}
		fs.StringVar(&p.user, "user", "", "tenant (`user_id`) to publish for; JSON lines may name their own")
		fs.StringVar(&p.collection, "collection", "", "collection to publish to; JSON lines may name their own")
		fs.StringVar(&p.op, "op", "upsert", "operation for file documents: upsert or delete")
		fs.BoolVar(&p.jsonl, "jsonl", false, "read every PATH as JSON lines, one event per line (implied for .jsonl and .ndjson files)")
		fs.Func("meta", "metadata `key=value` added to file documents (repeatable)", func(s string) error {
			k, v, ok := strings.Cut(s, "=")
			if !ok || k == "" {
				return errors.New("want key=value")
			}
			p.meta[k] = v
			return nil
		})
		return p.run
	},
}

// publisher publishes documents and JSON lines as ingest events.
type publisher struct {
	user, collection, op string
	jsonl                bool
	meta                 map[string]any

	js                                  jetstream.JetStream
	prefix                              string
	maxBytes                            int
	stored, duplicates, skipped, failed atomic.Int64
	acks                                sync.WaitGroup // one per event awaiting its acknowledgement
	bar                                 *progressbar.ProgressBar
}

func (p *publisher) run(ctx context.Context, env *environment, paths []string) error {
	if len(paths) == 0 {
		return errors.New("no PATH given; see --help")
	}
	if p.op != string(pipeline.OpUpsert) && p.op != string(pipeline.OpDelete) {
		return fmt.Errorf("--op %q: want upsert or delete", p.op)
	}
	if p.user != "" && !pipeline.ValidUserID(p.user) {
		return fmt.Errorf("--user %q: want 1-128 characters of A-Z a-z 0-9 _ -", p.user)
	}
	if p.collection != "" && !pipeline.ValidCollection(p.collection) {
		return fmt.Errorf("--collection %q: want 1-64 characters of a-z 0-9 _ -, starting with a letter", p.collection)
	}
	connectCtx, cancel := context.WithTimeout(ctx, clientConnectTimeout)
	defer cancel()
	nc, err := connectNATS(connectCtx, env.cfg.NATS, "ragpipe-publish", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	// Every acknowledgement arrives or times out, so the summary is complete.
	if p.js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(512),
		jetstream.WithPublishAsyncTimeout(30*time.Second)); err != nil {
		return err
	}
	go func() { // a signal also ends a read from stdin
		<-ctx.Done()
		os.Stdin.Close()
	}()
	p.prefix, p.maxBytes = env.cfg.SubjectPrefix, env.cfg.MaxEventBytes
	if f, ok := env.stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		p.bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(env.stderr),
			progressbar.OptionSetDescription("publishing"), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionClearOnFinish())
	}
	start := time.Now()
	var sendErr error
	for _, path := range paths {
		if sendErr = p.publishPath(ctx, env, path); sendErr != nil {
			break
		}
	}
	p.acks.Wait() // what was sent is accounted for, whatever stopped the loop
	if p.bar != nil {
		_ = p.bar.Finish()
	}
	elapsed := time.Since(start)
	total := p.stored.Load() + p.duplicates.Load() + p.failed.Load()
	fmt.Fprintf(env.stdout, "published %d events in %s (%.0f/s): %d stored, %d duplicates dropped, %d skipped, %d failed\n",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(),
		p.stored.Load(), p.duplicates.Load(), p.skipped.Load(), p.failed.Load())
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(env.stdout, "interrupted: the events above were sent and acknowledged; the rest were not sent")
		return nil
	case sendErr != nil:
		return sendErr
	case p.failed.Load() > 0:
		return fmt.Errorf("%d events were not stored by JetStream", p.failed.Load())
	}
	return nil
}

// publishPath publishes one command-line PATH.
func (p *publisher) publishPath(ctx context.Context, env *environment, path string) error {
	if path == "-" {
		return p.publishLines(ctx, env, "stdin", os.Stdin)
	}
	info, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return p.publishFile(ctx, env, path, filepath.ToSlash(filepath.Clean(path)))
	}
	return filepath.WalkDir(path, func(file string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if strings.HasPrefix(d.Name(), ".") && file != path {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(path, file)
		if err != nil {
			return err
		}
		return p.publishFile(ctx, env, file, filepath.ToSlash(rel))
	})
}

// publishFile publishes a file as one document, or as JSON lines.
func (p *publisher) publishFile(ctx context.Context, env *environment, file, docID string) error {
	if ext := filepath.Ext(file); p.jsonl || ext == ".jsonl" || ext == ".ndjson" {
		f, err := os.Open(file)
		if err != nil {
			return err
		}
		defer f.Close()
		return p.publishLines(ctx, env, file, f)
	}
	if p.user == "" || p.collection == "" {
		return errors.New("--user and --collection are required to publish files")
	}
	event := map[string]any{"op": p.op, "doc_id": docID}
	if p.op == string(pipeline.OpUpsert) {
		text, err := os.ReadFile(file)
		if err != nil {
			return err
		}
		if !utf8.Valid(text) {
			p.skip(env, file, "not UTF-8 text")
			return nil
		}
		event["text"] = string(text)
		if len(p.meta) > 0 {
			event["metadata"] = p.meta
		}
	}
	body, err := json.Marshal(event)
	if err != nil {
		return err
	}
	return p.publish(ctx, env, file, p.user, p.collection, body)
}

// publishLines publishes every non-blank line of r as one event. The subject
// comes from the line's user_id and collection, else from the flags.
func (p *publisher) publishLines(ctx context.Context, env *environment, name string, r io.Reader) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), p.maxBytes+1)
	for n := 1; sc.Scan() && ctx.Err() == nil; n++ {
		line := sc.Bytes()
		if len(strings.TrimSpace(string(line))) == 0 {
			continue
		}
		var head struct {
			UserID     string `json:"user_id"`
			Collection string `json:"collection"`
		}
		where := fmt.Sprintf("%s:%d", name, n)
		if err := json.Unmarshal(line, &head); err != nil {
			p.skip(env, where, "not a JSON object: "+err.Error())
			continue
		}
		user, coll := cmp.Or(head.UserID, p.user), cmp.Or(head.Collection, p.collection)
		if user == "" || coll == "" {
			p.skip(env, where, "no user_id or collection: give --user and --collection or put them in the line")
			continue
		}
		if err := p.publish(ctx, env, where, user, coll, line); err != nil {
			return err
		}
	}
	if err := sc.Err(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("%s: %w (a line longer than RAGPIPE_MAX_EVENT_BYTES?)", name, err)
	}
	return nil
}

// publish sends one event asynchronously; its acknowledgement is counted when
// it arrives. The Nats-Msg-Id is a hash of subject and body, so JetStream
// drops an identical republish within its duplicate window.
func (p *publisher) publish(ctx context.Context, env *environment, where, user, collection string, body []byte) error {
	if len(body) > p.maxBytes {
		p.skip(env, where, fmt.Sprintf("event is %d bytes, more than RAGPIPE_MAX_EVENT_BYTES=%d", len(body), p.maxBytes))
		return nil
	}
	if !pipeline.ValidUserID(user) || !pipeline.ValidCollection(collection) {
		p.skip(env, where, fmt.Sprintf("invalid user_id %q or collection %q", user, collection))
		return nil
	}
	msg := nats.NewMsg(p.prefix + ".ingest." + user + "." + collection)
	msg.Data = body
	sum := sha256.Sum256(append([]byte(msg.Subject+"\n"), body...))
	msg.Header.Set(jetstream.MsgIDHeader, hex.EncodeToString(sum[:16]))
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
	p.acks.Go(func() {
		select {
		case ack := <-future.Ok():
			if ack.Duplicate {
				p.duplicates.Add(1)
			} else {
				p.stored.Add(1)
			}
		case err := <-future.Err():
			p.failed.Add(1)
			env.log.Error().Err(err).Str("source", where).Msg("publish failed")
		}
		if p.bar != nil {
			_ = p.bar.Add(1)
		}
	})
	return nil
}

func (p *publisher) skip(env *environment, where, reason string) {
	p.skipped.Add(1)
	env.log.Warn().Str("source", where).Str("reason", reason).Msg("skipped")
}
