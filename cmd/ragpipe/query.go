package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/search"
)

var queryCommand = command{
	name:    "query",
	summary: "Search a tenant's collection and print the hits (score, document, snippet), or list its documents with --list.",
	usage:   "query --user USER [--collection NAME] [--mode hybrid|dense|keyword] [--top-k N] [--filter key=value]... [--json] TEXT...\n       ragpipe query --user USER [--collection NAME] --list [--limit N] [--cursor C | --all] [--json]",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		q := &querier{filter: map[string]any{}}
		fs.StringVar(&q.user, "user", "", "tenant (`user_id`) to search; required")
		fs.StringVar(&q.collection, "collection", "documents", "collection to search")
		fs.StringVar(&q.mode, "mode", "", "how to rank hits, `mode`: hybrid (dense and keyword results fused), dense or keyword; "+
			"default hybrid where the collection has keyword vectors, else dense")
		fs.IntVar(&q.topK, "top-k", pipeline.DefaultTopK, "most hits to return (1-100)")
		fs.Func("filter", "metadata condition `key=value` (repeatable; a key repeated matches any of its values; "+
			"value is JSON when it parses as a number, boolean or \"string\", else a string)", q.addFilter)
		fs.Func("score-threshold", "drop hits scoring below this `score`", func(s string) error {
			var f float32
			if _, err := fmt.Sscan(s, &f); err != nil {
				return errors.New("want a number")
			}
			q.threshold = &f
			return nil
		})
		fs.BoolVar(&q.json, "json", false, "print the reply as JSON instead of a table")
		fs.BoolVar(&q.list, "list", false, "list the tenant's documents instead of searching")
		fs.IntVar(&q.limit, "limit", pipeline.DefaultLimit, "with --list: documents per page (1-1000)")
		fs.StringVar(&q.cursor, "cursor", "", "with --list: the page to start at, from a previous list")
		fs.BoolVar(&q.all, "all", false, "with --list: follow the cursors to the last page")
		fs.DurationVar(&q.timeout, "timeout", search.DefaultClientTimeout, "how long to wait for NATS and for each reply")
		fs.StringVar(&q.inbox, "inbox-prefix", "", "reply subject prefix; default _INBOX.<user>, the inbox a tenant's NATS user may subscribe to (deploy/nats)")
		return q.run
	},
}

// querier sends one search (or a list) and prints the reply.
type querier struct {
	user, collection string
	mode             string
	topK             int
	filter           map[string]any
	threshold        *float32
	json, list, all  bool
	limit            int
	cursor, inbox    string
	timeout          time.Duration
}

// addFilter records one --filter key=value.
func (q *querier) addFilter(s string) error {
	key, raw, ok := strings.Cut(s, "=")
	if !ok || key == "" {
		return errors.New("want key=value")
	}
	var v any = raw
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.UseNumber()
	var parsed any
	if err := dec.Decode(&parsed); err == nil && !dec.More() {
		switch parsed.(type) {
		case json.Number, bool, string:
			v = parsed
		}
	}
	switch prev := q.filter[key].(type) {
	case nil:
		q.filter[key] = v
	case []any:
		q.filter[key] = append(prev, v)
	default:
		q.filter[key] = []any{prev, v}
	}
	return nil
}

func (q *querier) run(ctx context.Context, env *environment, args []string) error {
	switch {
	case !pipeline.ValidUserID(q.user):
		return fmt.Errorf("--user %q: want 1-128 characters of A-Z a-z 0-9 _ -", q.user)
	case !pipeline.ValidCollection(q.collection):
		return fmt.Errorf("--collection %q: want 1-64 characters of a-z 0-9 _ -, starting with a letter", q.collection)
	case q.list && len(args) > 0:
		return errors.New("--list takes no query text")
	case !q.list && strings.TrimSpace(strings.Join(args, " ")) == "":
		return errors.New("no query text given; see --help")
	case q.list && q.mode != "":
		return errors.New("--mode applies to searches, not to --list")
	case !slices.Contains([]pipeline.SearchMode{pipeline.ModeAuto, pipeline.ModeHybrid, pipeline.ModeDense, pipeline.ModeKeyword}, pipeline.SearchMode(q.mode)):
		return fmt.Errorf("--mode %q: want hybrid, dense or keyword", q.mode)
	case q.topK < 1 || q.topK > pipeline.MaxTopK:
		return fmt.Errorf("--top-k %d: want 1-%d", q.topK, pipeline.MaxTopK)
	case q.limit < 1 || q.limit > pipeline.MaxLimit:
		return fmt.Errorf("--limit %d: want 1-%d", q.limit, pipeline.MaxLimit)
	case q.timeout <= 0:
		return errors.New("--timeout must be > 0")
	}
	log := env.log
	if log.GetLevel() == zerolog.InfoLevel { // connection chatter is not output
		log = log.Level(zerolog.WarnLevel)
	}
	connectCtx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	nc, err := connectNATS(connectCtx, env.cfg.NATS, "ragpipe-query", log)
	if err != nil {
		return err
	}
	defer nc.Close()
	inbox := q.inbox
	if inbox == "" {
		inbox = "_INBOX." + q.user
	}
	client := &search.Client{Conn: nc, Prefix: env.cfg.SubjectPrefix, InboxPrefix: inbox}
	if q.list {
		return q.runList(ctx, env.stdout, client)
	}
	req := search.SearchRequest{Query: strings.Join(args, " "), Mode: q.mode, TopK: q.topK, ScoreThreshold: q.threshold}
	if len(q.filter) > 0 {
		req.Filter = q.filter
	}
	reqCtx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	reply, err := client.Search(reqCtx, q.user, q.collection, req)
	if err != nil {
		return err
	}
	if q.json {
		return printJSON(env.stdout, reply)
	}
	return printHits(env.stdout, reply)
}

func (q *querier) runList(ctx context.Context, w io.Writer, client *search.Client) error {
	all := &search.ListReply{Docs: []pipeline.Doc{}}
	cursor := q.cursor
	for {
		reqCtx, cancel := context.WithTimeout(ctx, q.timeout)
		page, err := client.List(reqCtx, q.user, q.collection, search.ListRequest{Limit: q.limit, Cursor: cursor})
		cancel()
		if err != nil {
			return err
		}
		all.Docs = append(all.Docs, page.Docs...)
		all.NextCursor, all.TookMS = page.NextCursor, all.TookMS+page.TookMS
		if !q.all || page.NextCursor == "" {
			break
		}
		cursor = page.NextCursor
	}
	if q.json {
		return printJSON(w, all)
	}
	return printDocs(w, all)
}

func printJSON(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(w, "%s\n", data)
	return err
}

// printHits prints a table of score, document and snippet.
func printHits(w io.Writer, reply *search.SearchReply) error {
	if len(reply.Hits) == 0 {
		_, err := fmt.Fprintf(w, "no hits (%.1f ms)\n", reply.TookMS)
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCORE\tDOC\tSNIPPET")
	for _, h := range reply.Hits {
		doc := h.DocID
		if h.ChunkIndex > 0 {
			doc = fmt.Sprintf("%s#%d", doc, h.ChunkIndex)
		}
		fmt.Fprintf(tw, "%.4f\t%s\t%s\n", h.Score, oneLineText(doc, 60), oneLineText(h.Text, 80))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d hits in %.1f ms\n", len(reply.Hits), reply.TookMS)
	return err
}

// printDocs prints a table of the listed documents.
func printDocs(w io.Writer, reply *search.ListReply) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "DOC\tVERSION\tCHUNKS\tMETADATA")
	for _, d := range reply.Docs {
		meta, err := json.Marshal(d.Metadata)
		if err != nil {
			return err
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\n", oneLineText(d.DocID, 60), d.Version, d.ChunkCount, oneLineText(string(meta), 60))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "%d documents\n", len(reply.Docs))
	if err == nil && reply.NextCursor != "" {
		_, err = fmt.Fprintf(w, "more: --cursor %s (or --all)\n", reply.NextCursor)
	}
	return err
}

// oneLineText collapses whitespace (tabs and newlines would break the table)
// and cuts s to at most n runes.
func oneLineText(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return strings.TrimSpace(string(r[:n-1])) + "…"
}
