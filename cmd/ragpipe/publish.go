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
	"github.com/ragpipe/ragpipe/search"
)

var publishCommand = command{
	name:    "publish",
	client:  true,
	summary: "Publish files, directories (one document per file, doc_id = relative path) or JSON lines (one event per line, '-' for stdin) as ingest events.",
	usage: "publish --user USER --collection NAME [--wait] [flags] PATH...\n\n" +
		"  Every publish gets its own Nats-Msg-Id, so JetStream drops only a retry of the same publish:\n" +
		"  publishing a file again, even unchanged, always stores it again with a newer version.\n\n" +
		"  With --wait, publish returns only when every document it published is searchable at the\n" +
		"  version its publish got (a delete: no longer stored), asking the search service (rag.status)\n" +
		"  until then; it exits non-zero with the reason when an event is dead-lettered, and when\n" +
		"  --wait-timeout passes first. It needs a running searcher (or `ragpipe dev`).",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		p := &publishCmd{meta: map[string]any{}}
		fs.StringVar(&p.user, "user", "", "tenant (`user_id`) to publish for; JSON lines may name their own")
		fs.StringVar(&p.collection, "collection", "", "collection to publish to; JSON lines may name their own")
		fs.StringVar(&p.op, "op", "upsert", "operation for file documents: upsert or delete")
		fs.BoolVar(&p.jsonl, "jsonl", false, "read every PATH as JSON lines, one event per line (implied for .jsonl and .ndjson files)")
		fs.BoolVar(&p.wait, "wait", false, "return only when everything published is searchable, or failed (dead-lettered)")
		fs.DurationVar(&p.waitTimeout, "wait-timeout", 5*time.Minute, "with --wait: the longest wait, after the last publish")
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
	jsonl, wait          bool
	waitTimeout          time.Duration
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
	if c.waitTimeout <= 0 {
		return fmt.Errorf("--wait-timeout %s: want a positive duration", c.waitTimeout)
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
		JSONLines: c.jsonl, Track: c.wait, Logger: env.log,
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
	case c.wait:
		return c.waitSearchable(ctx, env, p, &search.Client{Conn: nc, Prefix: env.cfg.SubjectPrefix})
	}
	return nil
}

// waitSearchable waits until what p published is searchable or failed, and
// prints the outcome.
func (c *publishCmd) waitSearchable(ctx context.Context, env *environment, p *publish.Publisher, client *search.Client) error {
	var bar *progressbar.ProgressBar
	progress := func(settled, total int) {
		if bar == nil {
			bar = progressbar.NewOptions(total, progressbar.OptionSetWriter(env.stderr),
				progressbar.OptionSetDescription("waiting until searchable"), progressbar.OptionShowCount(),
				progressbar.OptionClearOnFinish())
		}
		_ = bar.Set(settled)
	}
	if !isTerminal(env) {
		progress = nil
	}
	start := time.Now()
	report, err := p.Wait(ctx, publish.WaitConfig{Status: statusSource{client}, Timeout: c.waitTimeout, Progress: progress})
	if bar != nil {
		_ = bar.Finish()
	}
	fmt.Fprintf(env.stdout, "waited %s: %d of %d documents searchable, %d events failed\n",
		time.Since(start).Round(time.Millisecond), report.Searchable, report.Documents, len(report.Failures))
	for i, f := range report.Failures {
		if i == maxListed {
			fmt.Fprintf(env.stdout, "... and %d more failed\n", len(report.Failures)-i)
			break
		}
		fmt.Fprintf(env.stdout, "failed: %s doc_id=%q: %s\n", f.Where, f.DocID, f.Reason)
	}
	for i, d := range report.Pending {
		if i == maxListed {
			fmt.Fprintf(env.stdout, "... and %d more not searchable yet\n", len(report.Pending)-i)
			break
		}
		fmt.Fprintf(env.stdout, "not searchable yet: %s\n", d)
	}
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(env.stdout, "interrupted while waiting: the events were published; the documents above were not searchable yet")
		return nil
	case errors.Is(err, publish.ErrFailed):
		return fmt.Errorf("%w (ragpipe dlq lists them)", err)
	}
	return err
}

// maxListed is the most failed or pending documents publish --wait lists.
const maxListed = 20

// statusSource asks the search service what is searchable, for publish --wait.
type statusSource struct{ client *search.Client }

func (s statusSource) Status(ctx context.Context, userID, collection string, docIDs []string) ([]publish.DocStatus, error) {
	reply, err := s.client.Status(ctx, userID, collection, search.StatusRequest{DocIDs: docIDs})
	var se *search.Error
	switch {
	case errors.As(err, &se) && se.Code == search.CodeNotFound: // no such collection yet: nothing stored
		out := make([]publish.DocStatus, len(docIDs))
		for i, id := range docIDs {
			out[i].DocID = id
		}
		return out, nil
	case err != nil:
		return nil, err
	}
	out := make([]publish.DocStatus, len(reply.Docs))
	for i, d := range reply.Docs {
		out[i] = publish.DocStatus{DocID: d.DocID, Stored: d.Stored, Version: d.Version}
	}
	return out, nil
}

// isTerminal reports whether the command's stderr is a terminal, where
// progress bars are drawn.
func isTerminal(env *environment) bool {
	f, ok := env.stderr.(*os.File)
	return ok && isatty.IsTerminal(f.Fd())
}
