package embedder_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/embedder"
	"github.com/ragpipe/ragpipe/internal/embedtest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// reasons are words of each provider's refusal of an input too long.
var reasons = map[string][]string{
	embedtest.OpenAI: {"400 Bad Request", "maximum context length is 40 tokens", "(context_length_exceeded)"},
	embedtest.Ollama: {"400 Bad Request", "the input length exceeds the context length"},
	embedtest.TEI:    {"413 Request Entity Too Large", "must have less than 41 tokens"},
}

// TestRefusedTexts: a service that refuses some texts of its requests as too
// long costs only those texts: Embed returns every other vector and, for
// each refused text, a permanent error with the provider's reason, within
// 2·log2(n) extra requests per refused text (plus one control request).
func TestRefusedTexts(t *testing.T) {
	const n, batch = 24, 8
	bad := []int{2, 9, 10, 23}
	for _, p := range providers {
		t.Run(p.api, func(t *testing.T) {
			srv, r := setup(t, p.api, p.new, embedtest.Config{MaxInputChars: 40}, embedder.Config{BatchSize: batch})
			in := texts(n)
			for _, i := range bad {
				in[i] = fmt.Sprintf("text number %d, %s", i, strings.Repeat("far too long ", 4))
			}
			vectors, err := r.Embed(t.Context(), in)
			be, ok := errors.AsType[*pipeline.BatchError](err)
			if !ok || len(be.Errs) != n || !pipeline.IsPermanent(err) || pipeline.IsMisconfigured(err) || len(vectors) != n {
				t.Fatalf("err = %v with %d vectors, want a permanent *pipeline.BatchError of %d errors and %d vectors", err, len(vectors), n, n)
			}
			for i, err := range be.Errs {
				if !slices.Contains(bad, i) {
					if err != nil || !reflect.DeepEqual(vectors[i], embedtest.Vector(in[i], 8)) {
						t.Errorf("text %d: err %v, or not its vector", i, err)
					}
					continue
				}
				if !pipeline.IsPermanent(err) || vectors[i] != nil {
					t.Fatalf("text %d: err %v, vector %v; want a permanent error and no vector", i, err, vectors[i])
				}
				for _, want := range reasons[p.api] {
					if !strings.Contains(err.Error(), want) {
						t.Errorf("text %d: %q does not say %q", i, err, want)
					}
				}
			}
			refused := len(bad)
			if extra, most := len(srv.Requests())-n/batch, refused*2*int(math.Log2(batch))+1; extra > most {
				t.Errorf("%d extra requests to find %d refused texts, want at most %d", extra, refused, most)
			}
		})
	}
}

// TestRefusedTextAlone: a lone text refused is the text's fault once the
// service accepts a short control text: one control request per call.
func TestRefusedTextAlone(t *testing.T) {
	srv, r := setup(t, embedtest.OpenAI, embedder.NewOpenAI, embedtest.Config{MaxInputChars: 40}, embedder.Config{})
	long := strings.Repeat("long ", 20)
	for round := range 2 {
		_, err := r.Embed(t.Context(), []string{long})
		if be, ok := errors.AsType[*pipeline.BatchError](err); !ok || len(be.Errs) != 1 || !pipeline.IsPermanent(be.Errs[0]) {
			t.Fatalf("err = %v, want the text refused", err)
		}
		if got := len(srv.Requests()); got != 2*(round+1) {
			t.Errorf("%d requests after %d calls, want the text and one control each", got, round+1)
		}
	}
}

// TestRefusedSettings: refusals that are the settings' fault are
// misconfigurations: at once when the body names a setting, else once a
// short control text is refused too, after at most 1+log2(n) requests.
func TestRefusedSettings(t *testing.T) {
	t.Run("dimensions not supported", func(t *testing.T) {
		srv, r := setup(t, embedtest.OpenAI, embedder.NewOpenAI, embedtest.Config{NoDimensions: true},
			embedder.Config{BatchSize: 8, SendDimensions: true})
		_, err := r.Embed(t.Context(), texts(8))
		if !pipeline.IsMisconfigured(err) || pipeline.IsPermanent(err) ||
			!strings.Contains(err.Error(), "does not support specifying dimensions") {
			t.Fatalf("err = %v, want a misconfiguration with the service's reason", err)
		}
		if got := len(srv.Requests()); got > 5 {
			t.Errorf("%d requests, want at most 5: halves down to one text, then the control", got)
		}
	})
	t.Run("param names a setting", func(t *testing.T) {
		var calls int
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			calls++
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":{"message":"Invalid value for 'model'.","type":"invalid_request_error","param":"model","code":null}}`))
		}))
		defer srv.Close()
		r, err := embedder.NewOpenAI(embedder.Config{URL: srv.URL, Model: "m", Dimensions: 1})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := r.Embed(t.Context(), texts(4)); !pipeline.IsMisconfigured(err) || calls != 1 {
			t.Fatalf("err = %v after %d requests, want a misconfiguration at once", err, calls)
		}
	})
}

// TestBatchTooLargeSplit: a service that takes fewer texts per request than
// the batch size has its requests split, and the embedder says once that
// the batch size is too large.
func TestBatchTooLargeSplit(t *testing.T) {
	for _, p := range providers {
		t.Run(p.api, func(t *testing.T) {
			var log bytes.Buffer
			srv, r := setup(t, p.api, p.new, embedtest.Config{MaxBatch: 2}, embedder.Config{BatchSize: 3, Logger: zerolog.New(&log)})
			for range 2 {
				in := texts(3)
				vectors, err := r.Embed(t.Context(), in)
				if err != nil {
					t.Fatal(err)
				}
				checkVectors(t, in, vectors, 8)
			}
			if got := batchSizes(srv); !slices.Equal(got, []int{1, 1, 2, 2, 3, 3}) {
				t.Errorf("request sizes %v, want each batch of 3 refused, then sent as 1 and 2", got)
			}
			if n := strings.Count(log.String(), "lower the embedder's batch size"); n != 1 {
				t.Errorf("the batch size is named %d times in the log, want once:\n%s", n, log.String())
			}
		})
	}
}

// TestTruncateAccepts: Ollama and TEI asked to truncate embed a text longer
// than the model's context.
func TestTruncateAccepts(t *testing.T) {
	for _, p := range providers[1:] {
		t.Run(p.api, func(t *testing.T) {
			_, r := setup(t, p.api, p.new, embedtest.Config{MaxInputChars: 10}, embedder.Config{Truncate: true})
			in := []string{strings.Repeat("long ", 10)}
			vectors, err := r.Embed(t.Context(), in)
			if err != nil {
				t.Fatal(err)
			}
			checkVectors(t, in, vectors, 8)
		})
	}
}
