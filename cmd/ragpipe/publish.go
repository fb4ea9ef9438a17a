package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/publish"
)

var publishCommand = command{
	name:    "publish",
	client:  true,
	summary: "Publish files, directories (one document per file, doc_id = relative path) or JSON lines (one event per line, '-' for stdin) as ingest events.",
	usage: "publish --user USER --collection NAME [flags] PATH...\n\n" +
		"  Every publish gets its own Nats-Msg-Id, so JetStream drops only a retry of the same publish:\n" +
		"  publishing a file again, even unchanged, always stores it again with a newer version.",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		p := &publishCmd{meta: map[string]any{}}
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

// publishCmd is `ragpipe publish`: flags, progress and summary around a
// publish.Publisher.
type publishCmd struct {
	user, collection, op string
	jsonl                bool
	meta                 map[string]any
}

func (c *publishCmd) run(ctx context.Context, env *environment, paths []string) error {
	if len(paths) == 0 {
		return errors.New("no PATH given; see --help")
	}
	if c.op != string(pipeline.OpUpsert) && c.op != string(pipeline.OpDelete) {
		return fmt.Errorf("--op %q: want upsert or delete", c.op)
	}
	if c.user != "" && !pipeline.ValidUserID(c.user) {
		return fmt.Errorf("--user %q: want 1-128 characters of A-Z a-z 0-9 _ -", c.user)
	}
	if c.collection != "" && !pipeline.ValidCollection(c.collection) {
		return fmt.Errorf("--collection %q: want 1-64 characters of a-z 0-9 _ -, starting with a letter", c.collection)
	}
	connectCtx, cancel := context.WithTimeout(ctx, clientConnectTimeout)
	defer cancel()
	nc, err := connectNATS(connectCtx, env.cfg.NATS, "ragpipe-publish", env.log)
	if err != nil {
		return err
	}
	defer nc.Close()
	go func() { // a signal also ends a read from stdin
		<-ctx.Done()
		os.Stdin.Close()
	}()
	var bar *progressbar.ProgressBar
	if isTerminal(env) {
		bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(env.stderr),
			progressbar.OptionSetDescription("publishing"), progressbar.OptionShowCount(),
			progressbar.OptionShowIts(), progressbar.OptionClearOnFinish())
	}
	p, err := publish.New(ctx, publish.Config{
		Conn: nc, Prefix: env.cfg.SubjectPrefix, MaxEventBytes: env.cfg.MaxEventBytes,
		UserID: c.user, Collection: c.collection, Op: pipeline.Op(c.op), Metadata: c.meta,
		JSONLines: c.jsonl, Logger: env.log,
		Acked: func() {
			if bar != nil {
				_ = bar.Add(1)
			}
		},
	})
	if err != nil {
		return err
	}
	start := time.Now()
	var sendErr error
	for _, path := range paths {
		if sendErr = p.Path(ctx, path); sendErr != nil {
			break
		}
	}
	p.Flush() // what was sent is accounted for, whatever stopped the loop
	if bar != nil {
		_ = bar.Finish()
	}
	elapsed := time.Since(start)
	n := p.Counts()
	total := n.Stored + n.Duplicates + n.Failed
	fmt.Fprintf(env.stdout, "published %d events in %s (%.0f/s): %d stored, %d duplicates dropped, %d skipped, %d failed\n",
		total, elapsed.Round(time.Millisecond), float64(total)/elapsed.Seconds(), n.Stored, n.Duplicates, n.Skipped, n.Failed)
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(env.stdout, "interrupted: the events above were sent and acknowledged; the rest were not sent")
		return nil
	case sendErr != nil:
		return sendErr
	case n.Failed > 0:
		return fmt.Errorf("%d events were not stored by JetStream", n.Failed)
	}
	return nil
}

// isTerminal reports whether the command's stderr is a terminal, where
// progress bars are drawn.
func isTerminal(env *environment) bool {
	f, ok := env.stderr.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}
