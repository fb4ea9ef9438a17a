// Package embedtest serves fake embedding services for tests. Each speaks one
// provider's documented HTTP API: OpenAI's POST /v1/embeddings, Ollama's POST
// /api/embed or text-embeddings-inference's POST /embed, with their request
// and answer shapes and their error bodies. Faults (rate limits, server
// errors, slow answers) can be scripted, inputs over a length refused as the
// provider refuses an input longer than the model's context, and every
// request is recorded.
//
// These are the only fakes in ragpipe's tests: the real services are remote
// or need models and GPUs.
package embedtest

import (
	"cmp"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

// The APIs a Server speaks.
const (
	OpenAI = "openai"
	Ollama = "ollama"
	TEI    = "tei"
)

// Config configures a Server.
type Config struct {
	API  string // OpenAI, Ollama or TEI
	Dims int    // length of the vectors, unless an OpenAI request asks for its dimensions
	// Key, when set, is the only bearer token accepted; other requests get 401.
	Key string
	// Model, when set, is the only model accepted (OpenAI, Ollama); others get 404.
	Model string
	// MaxBatch, when set, refuses requests of more texts: 413 for TEI
	// (its --max-client-batch-size), 400 otherwise.
	MaxBatch int
	// Reverse returns OpenAI's data in reverse order; each item keeps its index.
	Reverse bool
	// MaxInputChars, when set, refuses a request holding a text of more
	// characters, as the provider refuses an input longer than the model's
	// context: OpenAI 400 context_length_exceeded, Ollama 400 and TEI 413
	// validation. Ollama and TEI accept it when the request asks to truncate.
	MaxInputChars int
	// NoDimensions refuses an OpenAI request carrying "dimensions" with 400,
	// as OpenAI answers for a model that cannot shorten its vectors.
	NoDimensions bool
}

// Fault scripts the answer to one request.
type Fault struct {
	Status     int           // answer with this status and the API's error body
	RetryAfter string        // Retry-After header of that answer
	Delay      time.Duration // hold the request this long, then answer it normally
}

// Request is one request the server received.
type Request struct {
	At       time.Time
	Texts    []string
	Body     map[string]any // the decoded JSON body
	Header   http.Header
	Status   int // the status answered
	Canceled bool
}

// Server is a fake embedding service. It is safe for concurrent use.
type Server struct {
	// URL is the base URL to configure the embedder with: the server root
	// (for OpenAI without /v1).
	URL string

	mu          sync.Mutex
	cfg         Config
	faults      []Fault
	requests    []Request
	inFlight    int
	maxInFlight int
}

// Start runs a Server on a loopback port until the test ends.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	s := &Server{cfg: cfg}
	mux := http.NewServeMux()
	switch cfg.API {
	case OpenAI:
		mux.HandleFunc("POST /v1/embeddings", s.handle)
	case Ollama:
		mux.HandleFunc("POST /api/embed", s.handle)
	case TEI:
		mux.HandleFunc("POST /embed", s.handle)
	default:
		t.Fatalf("embedtest: unknown API %q", cfg.API)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	s.URL = srv.URL
	return s
}

// Fail scripts the answers to the next requests, one fault each.
func (s *Server) Fail(faults ...Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, faults...)
}

// SetKey changes the accepted API key.
func (s *Server) SetKey(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.Key = key
}

// Requests returns every request received so far, in order of arrival.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.requests)
}

// MaxInFlight is the most requests the server has held at once.
func (s *Server) MaxInFlight() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.maxInFlight
}

// Texts returns the texts of every request answered with vectors.
func (s *Server) Texts() []string {
	var texts []string
	for _, r := range s.Requests() {
		if r.Status == http.StatusOK {
			texts = append(texts, r.Texts...)
		}
	}
	return texts
}

// Vector is the vector the server returns for text: deterministic, unit length.
func Vector(text string, dims int) []float32 {
	h := fnv.New64a()
	h.Write([]byte(text))
	r := rand.New(rand.NewPCG(h.Sum64(), 1))
	v := make([]float32, dims)
	var sum float64
	for i := range v {
		x := r.NormFloat64()
		v[i] = float32(x)
		sum += x * x
	}
	norm := float32(math.Sqrt(sum))
	for i := range v {
		v[i] /= norm
	}
	return v
}

// handle answers one request as the configured API would.
func (s *Server) handle(w http.ResponseWriter, r *http.Request) {
	body, bodyErr := io.ReadAll(r.Body) // before any delay: the server notices a client leaving only then
	var fault Fault
	s.mu.Lock()
	cfg := s.cfg
	if len(s.faults) > 0 {
		fault, s.faults = s.faults[0], s.faults[1:]
	}
	s.inFlight++
	s.maxInFlight = max(s.maxInFlight, s.inFlight)
	n := len(s.requests) // recorded on arrival, completed below
	s.requests = append(s.requests, Request{At: time.Now(), Header: r.Header.Clone()})
	s.mu.Unlock()
	var req Request
	record := func() { // before answering, so that the client sees it once answered
		s.mu.Lock()
		defer s.mu.Unlock()
		s.inFlight--
		req.At, req.Header = s.requests[n].At, s.requests[n].Header
		s.requests[n] = req
	}

	if fault.Delay > 0 {
		select {
		case <-time.After(fault.Delay):
		case <-r.Context().Done():
			req.Canceled = true
			record()
			return
		}
	}
	answer := func(status int, body any) {
		req.Status = status
		record()
		w.Header().Set("Content-Type", "application/json")
		if fault.RetryAfter != "" {
			w.Header().Set("Retry-After", fault.RetryAfter)
		}
		w.WriteHeader(status)
		if body != nil {
			_ = json.NewEncoder(w).Encode(body)
		}
	}
	refuse := func(status int, code, msg string) { answer(status, errorBody(cfg.API, status, code, msg)) }

	if fault.Status != 0 {
		refuse(fault.Status, "", http.StatusText(fault.Status))
		return
	}
	if cfg.Key != "" && r.Header.Get("Authorization") != "Bearer "+cfg.Key {
		refuse(http.StatusUnauthorized, "invalid_api_key", "Incorrect API key provided.")
		return
	}
	if err := cmp.Or(bodyErr, json.Unmarshal(body, &req.Body)); err != nil {
		refuse(http.StatusBadRequest, "", "body is not JSON: "+err.Error())
		return
	}
	field := map[string]string{OpenAI: "input", Ollama: "input", TEI: "inputs"}[cfg.API]
	texts, ok := stringList(req.Body[field])
	if !ok || len(texts) == 0 {
		refuse(http.StatusBadRequest, "", fmt.Sprintf("%q must be a non-empty array of strings", field))
		return
	}
	req.Texts = texts
	if status, code, msg := cfg.refusal(req.Body, texts); status != 0 {
		refuse(status, code, msg)
		return
	}
	dims := cfg.Dims
	if d, ok := req.Body["dimensions"].(float64); ok && cfg.API == OpenAI {
		dims = int(d)
	}
	vectors := make([][]float32, len(texts))
	for i, t := range texts {
		vectors[i] = Vector(t, dims)
	}
	switch cfg.API {
	case OpenAI:
		type item struct {
			Object    string    `json:"object"`
			Embedding []float32 `json:"embedding"`
			Index     int       `json:"index"`
		}
		data := make([]item, len(vectors))
		for i, v := range vectors {
			data[i] = item{Object: "embedding", Embedding: v, Index: i}
		}
		if cfg.Reverse {
			slices.Reverse(data)
		}
		answer(http.StatusOK, map[string]any{"object": "list", "data": data, "model": req.Body["model"],
			"usage": map[string]int{"prompt_tokens": len(texts), "total_tokens": len(texts)}})
	case Ollama:
		answer(http.StatusOK, map[string]any{"model": req.Body["model"], "embeddings": vectors,
			"total_duration": 1000, "load_duration": 10, "prompt_eval_count": len(texts)})
	case TEI:
		answer(http.StatusOK, vectors)
	}
}

// stringList reads a JSON array of strings.
func stringList(v any) ([]string, bool) {
	list, ok := v.([]any)
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, isString := e.(string)
		if !isString {
			return nil, false
		}
		out = append(out, s)
	}
	return out, ok
}

// refusal is the error answer, if any, that the configured API gives a
// well-formed request with body holding texts: its status, OpenAI's error
// code and the message.
func (cfg Config) refusal(body map[string]any, texts []string) (status int, code, msg string) {
	model, _ := body["model"].(string)
	truncate, set := body["truncate"].(bool)
	truncate = truncate || !set && cfg.API == Ollama // Ollama truncates unless told not to
	_, dimensions := body["dimensions"]
	switch {
	case cfg.API != TEI && (model == "" || cfg.Model != "" && model != cfg.Model):
		if cfg.API == OpenAI {
			return http.StatusNotFound, "model_not_found", fmt.Sprintf("The model `%s` does not exist or you do not have access to it.", model)
		}
		return http.StatusNotFound, "", fmt.Sprintf("model %q not found, try pulling it first", model)
	case cfg.MaxBatch > 0 && len(texts) > cfg.MaxBatch:
		status := http.StatusBadRequest
		if cfg.API == TEI {
			status = http.StatusRequestEntityTooLarge
		}
		return status, "", fmt.Sprintf("batch size %d > maximum allowed batch size %d", len(texts), cfg.MaxBatch)
	case cfg.API == OpenAI && cfg.NoDimensions && dimensions:
		return http.StatusBadRequest, "", "This model does not support specifying dimensions."
	}
	if cfg.MaxInputChars <= 0 || truncate && cfg.API != OpenAI {
		return 0, "", ""
	}
	for _, t := range texts {
		n := utf8.RuneCountInString(t)
		if n <= cfg.MaxInputChars {
			continue
		}
		switch cfg.API {
		case OpenAI:
			return http.StatusBadRequest, "context_length_exceeded", fmt.Sprintf("This model's maximum context length is %d tokens, however you requested %d tokens (%d in your prompt; 0 for the completion). Please reduce your prompt; or completion length.", cfg.MaxInputChars, n, n)
		case Ollama:
			return http.StatusBadRequest, "", "the input length exceeds the context length"
		default:
			return http.StatusRequestEntityTooLarge, "", fmt.Sprintf("`inputs` must have less than %d tokens. Given: %d", cfg.MaxInputChars+1, n)
		}
	}
	return 0, "", ""
}

// errorBody is the body of an error answer in the API's documented shape:
// OpenAI's {"error": {"message", "type", "param", "code"}}, TEI's {"error",
// "error_type"} (the type follows from the status), Ollama's {"error"}.
func errorBody(api string, status int, code, msg string) any {
	switch api {
	case OpenAI:
		kind := "invalid_request_error"
		switch {
		case status == http.StatusTooManyRequests:
			kind, code = "requests", cmp.Or(code, "rate_limit_exceeded")
		case status >= 500:
			kind = "server_error"
		}
		var c any
		if code != "" {
			c = code
		}
		return map[string]any{"error": map[string]any{"message": msg, "type": kind, "param": nil, "code": c}}
	case TEI:
		if status == http.StatusUnauthorized {
			return nil // TEI's API-key check answers with an empty body
		}
		kind := map[int]string{
			http.StatusBadRequest: "empty", http.StatusRequestEntityTooLarge: "validation",
			http.StatusUnprocessableEntity: "tokenizer", http.StatusFailedDependency: "backend",
			http.StatusTooManyRequests: "overloaded", http.StatusServiceUnavailable: "unhealthy",
		}[status]
		return map[string]any{"error": msg, "error_type": cmp.Or(kind, "backend")}
	default:
		return map[string]any{"error": msg}
	}
}
