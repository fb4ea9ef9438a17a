package embedder_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// providers builds each remote embedder against a fake of its API.
var providers = []struct {
	api string
	new func(embedder.Config) (*embedder.Remote, error)
}{
	{embedtest.OpenAI, embedder.NewOpenAI},
	{embedtest.Ollama, embedder.NewOllama},
	{embedtest.TEI, embedder.NewTEI},
}

// setup starts a fake of api and an embedder for it. cfg's URL is a path
// relative to the fake's; its model, dimensions and fast retries are filled
// in unless set.
func setup(t *testing.T, api string, newRemote func(embedder.Config) (*embedder.Remote, error), fake embedtest.Config, cfg embedder.Config) (*embedtest.Server, *embedder.Remote) {
	t.Helper()
	fake.API = api
	if fake.Dims == 0 {
		fake.Dims = 8
	}
	srv := embedtest.Start(t, fake)
	cfg.URL = srv.URL + cfg.URL
	if cfg.Model == "" {
		cfg.Model = "test-model"
	}
	if cfg.Dimensions == 0 {
		cfg.Dimensions = fake.Dims
	}
	if cfg.RetryInitialInterval == 0 {
		cfg.RetryInitialInterval, cfg.RetryMaxInterval = 10*time.Millisecond, 50*time.Millisecond
	}
	r, err := newRemote(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return srv, r
}

func texts(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("text number %d", i)
	}
	return out
}

// checkVectors asserts that vectors are the fake's vectors of in, in order.
func checkVectors(t *testing.T, in []string, vectors [][]float32, dims int) {
	t.Helper()
	if len(vectors) != len(in) {
		t.Fatalf("%d vectors for %d texts", len(vectors), len(in))
	}
	for i, text := range in {
		if !reflect.DeepEqual(vectors[i], embedtest.Vector(text, dims)) {
			t.Fatalf("vector %d is not the vector of %q", i, text)
		}
	}
}

func batchSizes(srv *embedtest.Server) []int {
	var sizes []int
	for _, r := range srv.Requests() {
		sizes = append(sizes, len(r.Texts))
	}
	slices.Sort(sizes)
	return sizes
}

func TestBatching(t *testing.T) {
	for _, p := range providers {
		for _, tt := range []struct {
			texts int
			want  []int // request sizes, sorted
		}{
			{0, nil},
			{1, []int{1}},
			{4, []int{4}},
			{5, []int{1, 4}},
			{8, []int{4, 4}},
			{10, []int{2, 4, 4}},
		} {
			t.Run(fmt.Sprintf("%s/%d", p.api, tt.texts), func(t *testing.T) {
				srv, r := setup(t, p.api, p.new, embedtest.Config{MaxBatch: 4}, embedder.Config{BatchSize: 4})
				in := texts(tt.texts)
				vectors, err := r.Embed(t.Context(), in)
				if err != nil {
					t.Fatal(err)
				}
				checkVectors(t, in, vectors, 8)
				if got := batchSizes(srv); !slices.Equal(got, tt.want) {
					t.Errorf("request sizes %v, want %v", got, tt.want)
				}
			})
		}
	}
}

// TestConcurrency: however many calls run at once, no more than Concurrency
// requests are in flight, and every call gets its own vectors.
func TestConcurrency(t *testing.T) {
	for _, p := range providers {
		t.Run(p.api, func(t *testing.T) {
			srv, r := setup(t, p.api, p.new, embedtest.Config{}, embedder.Config{BatchSize: 2, Concurrency: 3})
			for range 12 {
				srv.Fail(embedtest.Fault{Delay: 50 * time.Millisecond})
			}
			var wg sync.WaitGroup
			for call := range 4 {
				wg.Go(func() {
					in := texts(6)
					for i := range in {
						in[i] += fmt.Sprint(" of call ", call)
					}
					vectors, err := r.Embed(t.Context(), in)
					if err != nil {
						t.Error(err)
						return
					}
					checkVectors(t, in, vectors, 8)
				})
			}
			wg.Wait()
			if n := srv.MaxInFlight(); n != 3 {
				t.Errorf("%d requests in flight at most, want 3", n)
			}
		})
	}
}

// TestTransientFailuresRetried: 429 with Retry-After (the wait is honoured),
// 500 and a timeout are retried until the request succeeds, and counted.
func TestTransientFailuresRetried(t *testing.T) {
	for _, p := range providers {
		for _, tt := range []struct {
			name     string
			fault    embedtest.Fault
			reason   string
			minWait  time.Duration
			canceled bool
		}{
			{"429 Retry-After", embedtest.Fault{Status: 429, RetryAfter: "1"}, "429", time.Second, false},
			{"500", embedtest.Fault{Status: 500}, "500", 0, false},
			{"503", embedtest.Fault{Status: 503}, "503", 0, false},
			{"timeout", embedtest.Fault{Delay: 5 * time.Second}, "timeout", 0, true},
		} {
			t.Run(p.api+"/"+tt.name, func(t *testing.T) {
				metrics := telemetry.NewMetrics()
				srv, r := setup(t, p.api, p.new, embedtest.Config{},
					embedder.Config{Timeout: 300 * time.Millisecond, Name: "prof", Metrics: metrics})
				srv.Fail(tt.fault)
				in := texts(3)
				vectors, err := r.Embed(t.Context(), in)
				if err != nil {
					t.Fatal(err)
				}
				checkVectors(t, in, vectors, 8)
				reqs := srv.Requests()
				if len(reqs) != 2 {
					t.Fatalf("%d requests, want 2", len(reqs))
				}
				if wait := reqs[1].At.Sub(reqs[0].At); wait < tt.minWait {
					t.Errorf("retried after %s, want at least %s", wait, tt.minWait)
				}
				if reqs[0].Canceled != tt.canceled {
					t.Errorf("first request canceled: %v, want %v", reqs[0].Canceled, tt.canceled)
				}
				if n := testutil.ToFloat64(metrics.EmbedRetries.WithLabelValues("prof", tt.reason)); n != 1 {
					t.Errorf("%v retries counted for %s, want 1", n, tt.reason)
				}
			})
		}
	}
}

// TestRetryAfterPausesEveryRequest: while one request waits out a
// Retry-After, the embedder's other requests do not start either.
func TestRetryAfterPausesEveryRequest(t *testing.T) {
	srv, r := setup(t, embedtest.OpenAI, embedder.NewOpenAI, embedtest.Config{}, embedder.Config{BatchSize: 1, Concurrency: 1})
	srv.Fail(embedtest.Fault{Status: 429, RetryAfter: "1"})
	start := time.Now()
	if _, err := r.Embed(t.Context(), texts(3)); err != nil {
		t.Fatal(err)
	}
	reqs := srv.Requests()
	if len(reqs) != 4 {
		t.Fatalf("%d requests, want 4", len(reqs))
	}
	for _, req := range reqs[1:] {
		if wait := req.At.Sub(start); wait < time.Second {
			t.Errorf("a request started %s after the 429, before its Retry-After of 1s", wait)
		}
	}
}

// TestGivesUp: a service that keeps failing transiently makes Embed fail after
// MaxRetryTime with an error that is neither permanent nor a
// misconfiguration, and a Retry-After beyond MaxRetryTime is not waited for.
func TestGivesUp(t *testing.T) {
	for _, p := range providers {
		t.Run(p.api, func(t *testing.T) {
			srv, r := setup(t, p.api, p.new, embedtest.Config{}, embedder.Config{MaxRetryTime: 300 * time.Millisecond})
			for range 100 {
				srv.Fail(embedtest.Fault{Status: 502})
			}
			_, err := r.Embed(t.Context(), texts(1))
			if err == nil || pipeline.IsMisconfigured(err) || pipeline.IsPermanent(err) || !strings.Contains(err.Error(), "gave up") {
				t.Fatalf("err = %v, want a transient error after retries", err)
			}
			if n := len(srv.Requests()); n < 2 {
				t.Errorf("%d requests, want retries", n)
			}
		})
	}
	t.Run("Retry-After too long", func(t *testing.T) {
		srv, r := setup(t, embedtest.TEI, embedder.NewTEI, embedtest.Config{}, embedder.Config{MaxRetryTime: time.Second})
		srv.Fail(embedtest.Fault{Status: 429, RetryAfter: "3600"})
		start := time.Now()
		_, err := r.Embed(t.Context(), texts(1))
		if err == nil || pipeline.IsMisconfigured(err) || time.Since(start) > 5*time.Second {
			t.Fatalf("err = %v after %s, want a transient error at once", err, time.Since(start))
		}
	})
}

// TestMisconfigured: refusals no retry can fix fail at once, as
// misconfigurations (the worker then waits instead of dead-lettering), with
// the status and the service's message but never the API key.
func TestMisconfigured(t *testing.T) {
	for _, p := range providers {
		for _, tt := range []struct {
			name string
			fake embedtest.Config
			cfg  embedder.Config
			want string
		}{
			{"401 wrong key", embedtest.Config{Key: "sk-right"}, embedder.Config{APIKey: "sk-wrong-secret"}, "401 Unauthorized"},
			{"401 no key", embedtest.Config{Key: "sk-right"}, embedder.Config{}, "401 Unauthorized"},
			{"404 wrong path", embedtest.Config{}, embedder.Config{URL: "/nowhere"}, "404 Not Found"},
		} {
			t.Run(p.api+"/"+tt.name, func(t *testing.T) {
				srv, r := setup(t, p.api, p.new, tt.fake, tt.cfg)
				_, err := r.Embed(t.Context(), texts(3))
				if !pipeline.IsMisconfigured(err) || pipeline.IsPermanent(err) {
					t.Fatalf("err = %v, want a misconfiguration", err)
				}
				if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "secret") {
					t.Errorf("err = %q, want it to contain %q and no key", err, tt.want)
				}
				if n := len(srv.Requests()); n > 1 {
					t.Errorf("%d requests, want no retry", n)
				}
			})
		}
	}
	for _, p := range providers[:2] { // TEI takes no model
		t.Run(p.api+"/404 unknown model", func(t *testing.T) {
			_, r := setup(t, p.api, p.new, embedtest.Config{Model: "served"}, embedder.Config{Model: "other"})
			_, err := r.Embed(t.Context(), texts(1))
			if !pipeline.IsMisconfigured(err) || !strings.Contains(err.Error(), "404 Not Found") || !strings.Contains(err.Error(), "other") {
				t.Fatalf("err = %v, want a misconfiguration naming the model", err)
			}
		})
	}
}

// TestBadAnswers: answers that do not fit the API are misconfigurations.
func TestBadAnswers(t *testing.T) {
	for _, tt := range []struct {
		name, api, body string
	}{
		{"openai repeated index", embedtest.OpenAI, `{"data":[{"index":0,"embedding":[1]},{"index":0,"embedding":[2]}]}`},
		{"openai index out of range", embedtest.OpenAI, `{"data":[{"index":0,"embedding":[1]},{"index":2,"embedding":[2]}]}`},
		{"openai too few", embedtest.OpenAI, `{"data":[{"index":0,"embedding":[1]}]}`},
		{"openai empty embedding", embedtest.OpenAI, `{"data":[{"index":0,"embedding":[]},{"index":1,"embedding":[2]}]}`},
		{"ollama too many", embedtest.Ollama, `{"embeddings":[[1],[2],[3]]}`},
		{"tei html", embedtest.TEI, `<html>proxy login</html>`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			newRemote := map[string]func(embedder.Config) (*embedder.Remote, error){
				embedtest.OpenAI: embedder.NewOpenAI, embedtest.Ollama: embedder.NewOllama, embedtest.TEI: embedder.NewTEI,
			}[tt.api]
			r, err := newRemote(embedder.Config{URL: srv.URL, Model: "m", Dimensions: 1})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := r.Embed(t.Context(), texts(2)); !pipeline.IsMisconfigured(err) {
				t.Fatalf("err = %v, want a misconfiguration", err)
			}
		})
	}
}

// TestKeyNeverShown: a service that echoes the key does not get it into errors.
func TestKeyNeverShown(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
		fmt.Fprintf(w, `{"error":{"message":"key %s has no access"}}`, strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "))
	}))
	defer srv.Close()
	r, err := embedder.NewOpenAI(embedder.Config{URL: "http://user:url-secret@" + strings.TrimPrefix(srv.URL, "http://"), Model: "m", Dimensions: 1, APIKey: "sk-very-secret"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = r.Embed(t.Context(), texts(1))
	if !pipeline.IsMisconfigured(err) || !strings.Contains(err.Error(), "403 Forbidden: key REDACTED has no access") ||
		strings.Contains(err.Error(), "secret") {
		t.Fatalf("err = %v", err)
	}
}

// TestOpenAIRequest: the base URL may end in /v1 or not; the request carries
// the bearer key, the model, float encoding and, when asked, the dimensions;
// answers in any order are placed by index.
func TestOpenAIRequest(t *testing.T) {
	for _, suffix := range []string{"", "/", "/v1", "/v1/"} {
		for _, send := range []bool{false, true} {
			t.Run(fmt.Sprintf("%q dimensions=%v", suffix, send), func(t *testing.T) {
				srv := embedtest.Start(t, embedtest.Config{API: embedtest.OpenAI, Dims: 16, Key: "sk-k", Model: "text-embedding-3-small", Reverse: true})
				r, err := embedder.NewOpenAI(embedder.Config{URL: srv.URL + suffix, Model: "text-embedding-3-small",
					APIKey: "sk-k", Dimensions: 4, SendDimensions: send})
				if err != nil {
					t.Fatal(err)
				}
				in := texts(5)
				vectors, err := r.Embed(t.Context(), in)
				if !send {
					// The model's own 16 dimensions come back: the caller checks them.
					if err != nil || len(vectors[0]) != 16 {
						t.Fatalf("err %v, %d dimensions, want 16", err, len(vectors[0]))
					}
					return
				}
				if err != nil {
					t.Fatal(err)
				}
				checkVectors(t, in, vectors, 4)
				body := srv.Requests()[0].Body
				if body["model"] != "text-embedding-3-small" || body["encoding_format"] != "float" || body["dimensions"] != float64(4) {
					t.Errorf("request body %v", body)
				}
			})
		}
	}
}

func TestOllamaAndTEIRequests(t *testing.T) {
	for _, truncate := range []bool{false, true} {
		ollama, r := setup(t, embedtest.Ollama, embedder.NewOllama, embedtest.Config{}, embedder.Config{Model: "bge-m3", Truncate: truncate})
		if _, err := r.Embed(t.Context(), texts(2)); err != nil {
			t.Fatal(err)
		}
		if body := ollama.Requests()[0].Body; body["model"] != "bge-m3" || body["truncate"] != truncate {
			t.Errorf("ollama request %v", body)
		}
		tei, r := setup(t, embedtest.TEI, embedder.NewTEI, embedtest.Config{}, embedder.Config{Truncate: truncate})
		if _, err := r.Embed(t.Context(), texts(2)); err != nil {
			t.Fatal(err)
		}
		if body := tei.Requests()[0].Body; body["truncate"] != truncate || body["model"] != nil {
			t.Errorf("tei request %v", body)
		}
	}
}

func TestNewRemoteValidates(t *testing.T) {
	for _, tt := range []struct {
		name string
		new  func(embedder.Config) (*embedder.Remote, error)
		cfg  embedder.Config
		want string
	}{
		{"no URL", embedder.NewTEI, embedder.Config{Dimensions: 8}, "must be http:// or https://"},
		{"ftp URL", embedder.NewTEI, embedder.Config{URL: "ftp://a:pw@x", Dimensions: 8}, `"ftp://a:xxxxx@x"`},
		{"no dimensions", embedder.NewTEI, embedder.Config{URL: "http://x"}, "dimensions 0"},
		{"no model", embedder.NewOllama, embedder.Config{URL: "http://x", Dimensions: 8}, "a model is required"},
		{"openai no model", embedder.NewOpenAI, embedder.Config{URL: "http://x", Dimensions: 8}, "a model is required"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.new(tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
	r, err := embedder.NewOpenAI(embedder.Config{URL: "http://x", Model: "text-embedding-3-small", Dimensions: 1536})
	if err != nil {
		t.Fatal(err)
	}
	if r.Identity() != "openai/text-embedding-3-small" || r.Dimensions() != 1536 {
		t.Errorf("identity %q, dimensions %d", r.Identity(), r.Dimensions())
	}
}

// TestContextEnds: a cancelled call stops waiting at once.
func TestContextEnds(t *testing.T) {
	srv, r := setup(t, embedtest.OpenAI, embedder.NewOpenAI, embedtest.Config{}, embedder.Config{})
	srv.Fail(embedtest.Fault{Status: 429, RetryAfter: "30"})
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.Embed(ctx, texts(1))
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %s, want the context's error at once", err, time.Since(start))
	}
}
