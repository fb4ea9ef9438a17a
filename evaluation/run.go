// Package evaluation measures search quality: it ingests a corpus of real
// technical documentation into the embedded store the way ragpipe ingests
// documents, asks held-out questions whose answering documents are known,
// and scores how high each configuration (embedder and search mode) ranks
// them. testdata/README.md describes the corpus and the questions; `ragpipe
// eval` runs it and prints the figures.
package evaluation

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/localstore"
	"github.com/ragpipe/ragpipe/pipeline"
)

// Embedder turns texts into vectors of a fixed dimension; the embedders of
// package embedder implement it.
type Embedder interface {
	// Embed returns one vector per text, in order.
	Embed(ctx context.Context, texts []string) ([][]float32, error)
	// Dimensions is the length of every vector Embed returns.
	Dimensions() int
}

// Setup is one configuration evaluated: the embedder that embedded the
// corpus and embeds the questions, and the search mode.
type Setup struct {
	// Name is the setup's short name, as --only of `ragpipe eval` takes it.
	Name string `json:"name"`
	// Embedder names the embedder (a key of Config.Embedders). Keyword
	// searches do not embed the question, but run on that embedder's
	// collection.
	Embedder string              `json:"embedder"`
	Mode     pipeline.SearchMode `json:"mode"`
}

// Setups are the configurations evaluated by default; builtin-hybrid is
// ragpipe's default.
var Setups = []Setup{
	{Name: "hash", Embedder: "hash", Mode: pipeline.ModeDense},
	{Name: "keyword", Embedder: "hash", Mode: pipeline.ModeKeyword},
	{Name: "hash-hybrid", Embedder: "hash", Mode: pipeline.ModeHybrid},
	{Name: "builtin", Embedder: "builtin", Mode: pipeline.ModeDense},
	{Name: "builtin-hybrid", Embedder: "builtin", Mode: pipeline.ModeHybrid},
}

// Config configures Run; zero fields take the documented defaults.
type Config struct {
	// Embedders are the embedders by name. A setup whose embedder is not
	// here is reported as not available. Required: at least one.
	Embedders map[string]Embedder
	// Missing says, by embedder name, why an embedder is not available; it
	// is only reported.
	Missing map[string]string
	// Setups are the configurations to evaluate. Default: Setups.
	Setups []Setup
	// Corpus is the documents ingested. Default: Corpus().
	Corpus []Document
	// Questions are the questions asked. Default: Questions().
	Questions []Question
	// ChunkSize and ChunkOverlap chunk the documents, in characters.
	// Default: 2000 and 200, ragpipe's defaults.
	ChunkSize, ChunkOverlap int
	// TopChunks is how many chunks each search returns; the documents are
	// ranked by their best chunk among them. Default 30.
	TopChunks int
	// BatchSize is the most texts of one Embed call. Default 16.
	BatchSize int
	// Parallelism bounds the concurrent Embed calls and searches. Default
	// runtime.GOMAXPROCS(0).
	Parallelism int
	// Dir is the directory of the embedded store; it must not hold one.
	// Default: a temporary directory, removed when Run returns.
	Dir string
	// Progress receives a line as each step starts and ends. Default: none.
	Progress io.Writer
}

func (c *Config) setDefaults() error {
	if len(c.Embedders) == 0 {
		return errors.New("evaluation: no embedder")
	}
	if c.Setups == nil {
		c.Setups = Setups
	}
	var err error
	if c.Corpus == nil {
		if c.Corpus, err = Corpus(); err != nil {
			return err
		}
	}
	if c.Questions == nil {
		if c.Questions, err = Questions(); err != nil {
			return err
		}
	}
	if c.ChunkSize == 0 {
		c.ChunkSize, c.ChunkOverlap = 2000, 200
	}
	if c.TopChunks == 0 {
		c.TopChunks = 30
	}
	if c.BatchSize == 0 {
		c.BatchSize = 16
	}
	if c.Parallelism == 0 {
		c.Parallelism = runtime.GOMAXPROCS(0)
	}
	if c.Progress == nil {
		c.Progress = io.Discard
	}
	if c.TopChunks < 1 || c.TopChunks > pipeline.MaxTopK || c.BatchSize < 1 || c.Parallelism < 1 {
		return fmt.Errorf("evaluation: want top chunks 1-%d, batch size and parallelism >= 1", pipeline.MaxTopK)
	}
	return nil
}

// tenant owns every document of the evaluation.
const tenant = "eval"

// Run ingests the corpus once per embedder the setups name, asks every
// question of every setup and returns the report. A setup whose embedder is
// missing is reported as not available; one whose searches fail is
// reported with its error, and Run returns that error too, after the other
// setups. It blocks until done or ctx ends.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	chunker, err := pipeline.NewChunker(cfg.ChunkSize, cfg.ChunkOverlap)
	if err != nil {
		return nil, fmt.Errorf("evaluation: %w", err)
	}
	if cfg.Dir == "" {
		if cfg.Dir, err = os.MkdirTemp("", "ragpipe-eval-"); err != nil {
			return nil, fmt.Errorf("evaluation: %w", err)
		}
		defer os.RemoveAll(cfg.Dir)
	}
	store, err := localstore.Open(ctx, localstore.Config{Dir: cfg.Dir})
	if err != nil {
		return nil, err
	}
	defer store.Close()

	r := &Report{Documents: len(cfg.Corpus), Questions: make(map[Kind]int), TopChunks: cfg.TopChunks, ChunkSize: cfg.ChunkSize, ChunkOverlap: cfg.ChunkOverlap}
	for _, q := range cfg.Questions {
		r.Questions[q.Kind]++
	}
	var errs []error
	ingested := make(map[string]*Ingest)
	for _, s := range cfg.Setups {
		res := Result{Setup: s}
		ing, ok := ingested[s.Embedder]
		if !ok {
			ing = &Ingest{Embedder: s.Embedder}
			if emb := cfg.Embedders[s.Embedder]; emb == nil {
				ing.Error = "not available"
				if why := cfg.Missing[s.Embedder]; why != "" {
					ing.Error += ": " + why
				}
			} else if err := ingest(ctx, cfg, store, chunker, emb, ing); err != nil {
				ing.Error = err.Error()
				errs = append(errs, err)
			}
			ingested[s.Embedder] = ing
			r.Ingests = append(r.Ingests, *ing)
		}
		if ing.Error != "" {
			res.Error = ing.Error
		} else if err := ask(ctx, cfg, store, cfg.Embedders[s.Embedder], &res); err != nil {
			res.Error = err.Error()
			errs = append(errs, fmt.Errorf("setup %s: %w", s.Name, err))
		}
		r.Results = append(r.Results, res)
	}
	return r, errors.Join(errs...)
}

// collection is the name of the collection of an embedder's vectors.
func collection(embedder string) string { return "eval_" + embedder }

// ingest chunks the corpus, embeds the chunks with emb and writes them, with
// their keyword vectors, to a new collection of store, as the ingest stage
// would write one version of each document.
func ingest(ctx context.Context, cfg Config, store *localstore.Store, chunker *pipeline.Chunker, emb Embedder, ing *Ingest) error {
	fmt.Fprintf(cfg.Progress, "eval: embedding the corpus with %s\n", ing.Embedder)
	start := time.Now()
	name := collection(ing.Embedder)
	c := pipeline.Collection{Name: name, Dims: emb.Dimensions(), Distance: pipeline.Cosine, Keywords: true}
	if err := store.EnsureCollection(ctx, c, true); err != nil {
		return err
	}
	writes := make([]pipeline.DocWrite, len(cfg.Corpus))
	var texts []string
	var points []*pipeline.Point
	for i, d := range cfg.Corpus {
		chunks := chunker.Split(d.Text)
		w := pipeline.DocWrite{UserID: tenant, DocID: d.ID, Version: 1, Points: make([]pipeline.Point, len(chunks))}
		for j, text := range chunks {
			w.Points[j] = pipeline.Point{
				ID: pipeline.PointID(tenant, d.ID, j), UserID: tenant, DocID: d.ID, ChunkIndex: j,
				ChunkCount: len(chunks), Text: text, Version: 1, Keywords: pipeline.Keywords(text),
			}
			texts = append(texts, text)
			points = append(points, &w.Points[j])
		}
		writes[i] = w
	}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Parallelism)
	for lo := 0; lo < len(texts); lo += cfg.BatchSize {
		hi := min(lo+cfg.BatchSize, len(texts))
		g.Go(func() error {
			vecs, err := emb.Embed(gctx, texts[lo:hi])
			if err != nil {
				return fmt.Errorf("embed with %s: %w", ing.Embedder, err)
			}
			for i, v := range vecs {
				points[lo+i].Vector = v
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	ing.Embed = Seconds(time.Since(start))
	if err := store.Apply(ctx, name, writes); err != nil {
		return fmt.Errorf("write the %s collection: %w", ing.Embedder, err)
	}
	ing.Chunks, ing.Took = len(texts), Seconds(time.Since(start))
	fmt.Fprintf(cfg.Progress, "eval: %s: %d chunks in %s\n", ing.Embedder, ing.Chunks, ing.Took)
	return nil
}

// ask searches every question of cfg with setup res.Setup and scores the
// answers into res.
func ask(ctx context.Context, cfg Config, store *localstore.Store, emb Embedder, res *Result) error {
	s := res.Setup
	fmt.Fprintf(cfg.Progress, "eval: asking %d questions of %s\n", len(cfg.Questions), s.Name)
	start := time.Now()
	res.Answers = make([]Answer, len(cfg.Questions))
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(cfg.Parallelism)
	for i, q := range cfg.Questions {
		g.Go(func() error {
			query := pipeline.Query{UserID: tenant, TopK: cfg.TopChunks, Mode: s.Mode}
			if s.Mode != pipeline.ModeKeyword {
				vecs, err := emb.Embed(gctx, []string{q.Text})
				if err != nil {
					return fmt.Errorf("embed question %s: %w", q.ID, err)
				}
				query.Vector = vecs[0]
			}
			if s.Mode != pipeline.ModeDense {
				query.Keywords = pipeline.QueryKeywords(q.Text)
			}
			hits, err := store.Search(gctx, collection(s.Embedder), query)
			if err != nil {
				return fmt.Errorf("question %s: %w", q.ID, err)
			}
			docs := DistinctDocs(hits)
			res.Answers[i] = Answer{Question: q.ID, Kind: q.Kind, Rank: Rank(docs, q.Docs), Docs: docs[:min(len(docs), 10)]}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	res.Search = Seconds(time.Since(start))
	ranks := make(map[Kind][]int)
	for _, a := range res.Answers {
		ranks[a.Kind] = append(ranks[a.Kind], a.Rank)
		ranks[""] = append(ranks[""], a.Rank)
	}
	res.All, res.Keyword, res.Paraphrase = Score(ranks[""]), Score(ranks[Keyword]), Score(ranks[Paraphrase])
	return nil
}

// missed returns the answers of res that rank no answering document in the
// top k, worst first.
func missed(res Result, k int) []Answer {
	var out []Answer
	for _, a := range res.Answers {
		if a.Rank == 0 || a.Rank > k {
			out = append(out, a)
		}
	}
	slices.SortStableFunc(out, func(a, b Answer) int { return rankOrder(b.Rank) - rankOrder(a.Rank) })
	return out
}

// rankOrder orders ranks from best to worst, no rank last.
func rankOrder(r int) int {
	if r == 0 {
		return 1 << 30
	}
	return r
}
