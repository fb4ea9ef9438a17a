package embedder

// NewTEI returns an embedder for Hugging Face text-embeddings-inference: it
// posts {"inputs": [texts], "truncate": Truncate} to {URL}/embed and reads the
// answer, an array of vectors in input order. TEI refuses requests of more
// texts than its --max-client-batch-size (default 32) with 413: keep
// BatchSize at most that.
func NewTEI(cfg Config) (*Remote, error) {
	return newRemote(cfg, api{
		kind:     "tei",
		endpoint: joinURL(cfg.URL, "/embed"),
		request: func(cfg *Config, texts []string) any {
			return teiRequest{Inputs: texts, Truncate: cfg.Truncate}
		},
		vectors: inOrder(func(vectors [][]float32) [][]float32 { return vectors }),
	})
}

// teiRequest is the body of POST /embed.
type teiRequest struct {
	Inputs   []string `json:"inputs"`
	Truncate bool     `json:"truncate"`
}
