package embedder

import (
	"encoding/json"
	"fmt"
	"strings"
)

// NewOpenAI returns an embedder for an OpenAI-compatible embeddings API
// (OpenAI, vLLM, LocalAI, TEI's OpenAI route and others): it posts
// {"input": [texts], "model": Model} to {URL}/v1/embeddings (URL given with or
// without its /v1), with "dimensions" when SendDimensions is set and the API
// key as a bearer token, and places each returned vector by its "index", not
// by its position in the answer.
func NewOpenAI(cfg Config) (*Remote, error) {
	base := strings.TrimRight(cfg.URL, "/")
	if !strings.HasSuffix(base, "/v1") {
		base += "/v1"
	}
	return newRemote(cfg, api{
		kind:     "openai",
		endpoint: base + "/embeddings",
		request: func(cfg *Config, texts []string) any {
			req := openAIRequest{Input: texts, Model: cfg.Model, EncodingFormat: "float"}
			if cfg.SendDimensions {
				req.Dimensions = cfg.Dimensions
			}
			return req
		},
		vectors: openAIVectors,
	})
}

// openAIRequest is the body of POST /v1/embeddings.
type openAIRequest struct {
	Input          []string `json:"input"`
	Model          string   `json:"model"`
	EncodingFormat string   `json:"encoding_format"`
	Dimensions     int      `json:"dimensions,omitempty"`
}

// openAIResponse is the part of the answer ragpipe reads.
type openAIResponse struct {
	Data []struct {
		Index     int       `json:"index"`
		Embedding []float32 `json:"embedding"`
	} `json:"data"`
}

// openAIVectors places the n vectors of an answer by their index.
func openAIVectors(body []byte, n int) ([][]float32, error) {
	var resp openAIResponse
	if err := json.Unmarshal(body, &resp); err != nil {
		return nil, fmt.Errorf("not an embeddings list: %w", err)
	}
	if len(resp.Data) != n {
		return nil, fmt.Errorf("%d embeddings for %d inputs", len(resp.Data), n)
	}
	out := make([][]float32, n)
	for _, d := range resp.Data {
		if d.Index < 0 || d.Index >= n || out[d.Index] != nil {
			return nil, fmt.Errorf("embedding index %d out of range or repeated (%d inputs)", d.Index, n)
		}
		if len(d.Embedding) == 0 {
			return nil, fmt.Errorf("embedding %d is empty", d.Index)
		}
		out[d.Index] = d.Embedding
	}
	return out, nil
}
