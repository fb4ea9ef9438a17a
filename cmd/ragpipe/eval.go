package main

import (
	"context"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/embedder/builtin"
	"github.com/ragpipe/ragpipe/evaluation"
)

var evalCommand = command{
	name:   "eval",
	client: true,
	summary: "Measure search quality on a held-out evaluation: 105 Go standard-library package documents and 160 " +
		"questions (80 asking with the answer's own terms, 80 paraphrases that avoid them; evaluation/testdata/README.md). " +
		"Each setup's embedder embeds the corpus, chunked at RAGPIPE_CHUNK_SIZE and RAGPIPE_CHUNK_OVERLAP, into an embedded " +
		"store in a temporary directory, with keyword vectors; each question is searched for its top --top chunks, and " +
		"the documents are ranked by their best chunk. Prints hit@1, hit@5, hit@10 and MRR overall, for paraphrases and " +
		"for keyword questions, as markdown tables, or JSON with --json. No server is needed. " +
		"The hash and keyword setups take about a second; the builtin ones add the embedding of the corpus's 1,000 chunks " +
		"by the builtin model, about half a minute on two cores. A setup whose embedder is not available is reported so; " +
		"exits 1 when a setup failed.",
	usage: "eval [--only SETUPS] [--json] [--misses K]\n\n" +
		"  Setups (all by default):\n" +
		"    hash            the hash embedder, dense search\n" +
		"    keyword         keyword search alone (BM25 keyword vectors)\n" +
		"    hash-hybrid     the hash embedder and keyword search, fused by reciprocal rank\n" +
		"    builtin         the builtin semantic embedder, dense search\n" +
		"    builtin-hybrid  the builtin embedder and keyword search fused: ragpipe's default",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		o := &evalOptions{}
		names := make([]string, len(evaluation.Setups))
		for i, s := range evaluation.Setups {
			names[i] = s.Name
		}
		fs.StringVar(&o.only, "only", strings.Join(names, ","), "comma-separated setups to evaluate")
		fs.BoolVar(&o.json, "json", false, "print the report as JSON, with every question's answer, instead of tables")
		fs.IntVar(&o.misses, "misses", 0, "also list, per setup, the questions not answered in the first K documents")
		fs.IntVar(&o.top, "top", 30, "chunks each search returns (1-100)")
		return func(ctx context.Context, env *environment, args []string) error { return runEval(ctx, env, *o, args) }
	},
}

type evalOptions struct {
	only        string
	json        bool
	misses, top int
}

func runEval(ctx context.Context, env *environment, o evalOptions, args []string) error {
	if len(args) > 0 {
		return fmt.Errorf("unexpected argument %q", args[0])
	}
	var setups []evaluation.Setup
	for name := range strings.SplitSeq(o.only, ",") {
		i := slices.IndexFunc(evaluation.Setups, func(s evaluation.Setup) bool { return s.Name == strings.TrimSpace(name) })
		if i < 0 {
			return fmt.Errorf("--only: unknown setup %q", name)
		}
		setups = append(setups, evaluation.Setups[i])
	}
	hash, err := embedder.NewHash(1024)
	if err != nil {
		return err
	}
	semantic, err := builtin.New(builtin.Config{Dimensions: 1024})
	if err != nil {
		return err
	}
	questions, err := evaluation.Questions()
	if err != nil {
		return err
	}
	report, runErr := evaluation.Run(ctx, evaluation.Config{
		Embedders: map[string]evaluation.Embedder{"hash": hash, "builtin": semantic},
		Setups:    setups, Questions: questions, TopChunks: o.top,
		ChunkSize: env.cfg.ChunkSize, ChunkOverlap: env.cfg.ChunkOverlap, Progress: env.stderr,
	})
	if report == nil {
		return runErr
	}
	write := report.WriteTable
	if o.json {
		write = report.WriteJSON
	}
	if err := write(env.stdout); err != nil {
		return err
	}
	if o.misses > 0 && !o.json {
		if err := report.WriteMisses(env.stdout, questions, o.misses); err != nil {
			return err
		}
	}
	return runErr
}
