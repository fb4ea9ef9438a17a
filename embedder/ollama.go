package embedder

import (
	"encoding/json"
	"fmt"
)

// NewOllama returns an embedder for Ollama: it posts {"model": Model,
// "input": [texts], "truncate": Truncate} to {URL}/api/embed and reads the
// vectors, in input order, from "embeddings".
func NewOllama(cfg Config) (*Remote, error) {
	return newRemote(cfg, api{
		kind:     "ollama",
		endpoint: joinURL(cfg.URL, "/api/embed"),
		request: func(cfg *Config, texts []string) any {
			return ollamaRequest{Model: cfg.Model, Input: texts, Truncate: cfg.Truncate}
		},
		vectors: inOrder(func(resp ollamaResponse) [][]float32 { return resp.Embeddings }),
	})
}

// ollamaRequest is the body of POST /api/embed.
type ollamaRequest struct {
	Model    string   `json:"model"`
	Input    []string `json:"input"`
	Truncate bool     `json:"truncate"`
}

// ollamaResponse is the part of the answer ragpipe reads.
type ollamaResponse struct {
	Embeddings [][]float32 `json:"embeddings"`
}

// inOrder returns the vectors function of an API whose JSON answer, of type
// T, holds the vectors in input order, as get finds them; it checks that
// there are n, none empty.
func inOrder[T any](get func(T) [][]float32) func(body []byte, n int) ([][]float32, error) {
	return func(body []byte, n int) ([][]float32, error) {
		var resp T
		if err := json.Unmarshal(body, &resp); err != nil {
			return nil, fmt.Errorf("not the API's answer: %w", err)
		}
		vectors := get(resp)
		if len(vectors) != n {
			return nil, fmt.Errorf("%d embeddings for %d inputs", len(vectors), n)
		}
		for i, v := range vectors {
			if len(v) == 0 {
				return nil, fmt.Errorf("embedding %d is empty", i)
			}
		}
		return vectors, nil
	}
}
