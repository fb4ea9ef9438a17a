package embedder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/internal/retry"
	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// Config configures a remote embedder (NewOpenAI, NewOllama, NewTEI). Zero
// fields take the documented defaults.
type Config struct {
	// URL is the service's base URL, required: for OpenAI with or without the
	// trailing /v1 (https://api.openai.com/v1, http://vllm:8000), for Ollama
	// and TEI the server root (http://ollama:11434).
	URL string
	// Model names the model; required for OpenAI and Ollama. TEI serves one
	// model and is not sent it, but it still names the vectors (Identity):
	// set it to the served model so that changing models re-embeds.
	Model string
	// APIKey, when set, is sent as a bearer token. It never appears in logs
	// or errors.
	APIKey string
	// Dimensions is the length of the model's vectors, the dimensions of the
	// collections it embeds for; required.
	Dimensions int
	// SendDimensions asks an OpenAI model for vectors of Dimensions (the
	// request's dimensions field: text-embedding-3 and later models shorten
	// their vectors). Other providers ignore it.
	SendDimensions bool
	// Truncate lets Ollama and TEI cut a text longer than the model's context
	// instead of refusing it. OpenAI ignores it. Default false.
	Truncate bool

	// BatchSize is the most texts one request carries. Default 32 (TEI's
	// default --max-client-batch-size).
	BatchSize int
	// Concurrency is the most requests in flight at once, over all calls to
	// Embed. Default 4.
	Concurrency int
	// Timeout bounds each request. Default 30s.
	Timeout time.Duration
	// MaxRetryTime bounds how long one request keeps being retried after
	// rate limits (429), server errors (5xx) and timeouts: no wait starts
	// that would end later, a Retry-After's included. The caller's context
	// bounds it as well. Default 60s.
	MaxRetryTime time.Duration
	// RetryInitialInterval is the first wait between attempts; later waits
	// double up to RetryMaxInterval, each drawn at random between half and
	// all of its value (internal/retry). A Retry-After from the server takes
	// the place of the computed wait. Defaults 500ms and 10s.
	RetryInitialInterval, RetryMaxInterval time.Duration

	// Name labels logs and metrics: the embedder profile. Default "default".
	Name string
	// Client sends the requests. Default: a client of its own, keeping up to
	// Concurrency idle connections.
	Client *http.Client
	// Logger receives retries. The zero Logger discards everything.
	Logger zerolog.Logger
	// Metrics, when set, records batch sizes and retries.
	Metrics *telemetry.Metrics
}

func (c *Config) setDefaults() {
	defInt := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defInt(&c.BatchSize, 32)
	defInt(&c.Concurrency, 4)
	defDur(&c.Timeout, 30*time.Second)
	defDur(&c.MaxRetryTime, 60*time.Second)
	defDur(&c.RetryInitialInterval, 500*time.Millisecond)
	defDur(&c.RetryMaxInterval, 10*time.Second)
	if c.Name == "" {
		c.Name = "default"
	}
	if c.Client == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = c.Concurrency // keep every connection of the pool alive
		c.Client = &http.Client{Transport: t}
	}
}

// api is what differs between the providers.
type api struct {
	kind     string // openai, ollama or tei
	endpoint string // the URL requests are posted to
	// request returns the body of a request embedding texts.
	request func(cfg *Config, texts []string) any
	// vectors reads the n vectors, in the order of the texts, from a
	// successful answer's body.
	vectors func(body []byte, n int) ([][]float32, error)
}

// Remote is an embedder behind an HTTP API: OpenAI-compatible, Ollama or TEI.
// Embed splits the texts into requests of at most BatchSize texts, sends up to
// Concurrency requests at once over all calls, and retries rate limits, server
// errors, timeouts and network failures with exponential backoff and jitter,
// honouring Retry-After for every request of the embedder. A request refused
// with 400, 413 or 422 is split to find the texts the service refuses (see
// Embed). Other refusals that retrying cannot fix (401, 403, 404, an answer
// that does not fit the API) fail at once with an error for which
// pipeline.IsMisconfigured is true. A Remote is safe for concurrent use.
type Remote struct {
	cfg   Config
	api   api
	slots chan struct{} // one per request in flight
	log   zerolog.Logger

	mu          sync.Mutex
	pausedUntil time.Time // no request starts before, as a Retry-After asked

	splitWarned atomic.Bool // a refusal that splitting resolved has been logged
}

// newRemote validates cfg and returns the embedder speaking a.
func newRemote(cfg Config, a api) (*Remote, error) {
	cfg.setDefaults()
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		return nil, fmt.Errorf("embedder %s: URL %q must be http:// or https:// with a host", a.kind, redactURL(cfg.URL))
	case cfg.Dimensions <= 0:
		return nil, fmt.Errorf("embedder %s: dimensions %d must be positive", a.kind, cfg.Dimensions)
	case cfg.Model == "" && a.kind != "tei":
		return nil, fmt.Errorf("embedder %s: a model is required", a.kind)
	}
	return &Remote{
		cfg:   cfg,
		api:   a,
		slots: make(chan struct{}, cfg.Concurrency),
		log: cfg.Logger.With().Str("component", "embedder").Str("embedder", cfg.Name).
			Str("kind", a.kind).Logger(),
	}, nil
}

// joinURL appends path to the base URL, without doubling the slash.
func joinURL(base, path string) string { return strings.TrimRight(base, "/") + path }

// Dimensions is the length of every vector Embed returns.
func (r *Remote) Dimensions() int { return r.cfg.Dimensions }

// Identity names the provider and the model, such as
// "openai/text-embedding-3-small".
func (r *Remote) Identity() string { return r.api.kind + "/" + r.cfg.Model }

// Embed returns one vector per text, in order. It blocks until every request
// has been answered, one has failed for good, or ctx ends.
//
// When the service refuses texts of a request (400, 413 or 422: an input
// longer than the model's context, say), Embed sends each half of the
// request again, and so on until every refused text stands alone: a text
// refused among n costs at most 2·log2(n) more requests. It then returns the
// vectors of the other texts and a *pipeline.BatchError holding, at the
// index of each refused text, a permanent error with the service's reason
// (nil elsewhere). Before a lone text is held refused in a call whose
// requests the service all refused, a short text of Embed's own is sent
// once: a service that refuses that too refuses the deployment's settings,
// not the texts, and the error is a misconfiguration.
//
// Any other failure returns no vectors and the first error. It does not
// check the vectors' length: the caller knows what the collection needs.
func (r *Remote) Embed(ctx context.Context, texts []string) ([][]float32, error) {
	c := &call{r: r, out: make([][]float32, len(texts)), refused: make([]error, len(texts))}
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(r.cfg.Concurrency)
	for start := 0; start < len(texts); start += r.cfg.BatchSize {
		batch := texts[start:min(start+r.cfg.BatchSize, len(texts))]
		g.Go(func() error { return c.embed(gctx, batch, start) })
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	if slices.ContainsFunc(c.refused, func(err error) bool { return err != nil }) {
		return c.out, &pipeline.BatchError{Op: "embedder", Collection: r.cfg.Name, Errs: c.refused}
	}
	return c.out, nil
}

// embedBatch sends one request for texts, retrying as the type documents.
// It returns nil, a *retry.Error when transient failures outlasted the
// retries, or the refusal that retrying cannot fix.
func (r *Remote) embedBatch(ctx context.Context, texts []string) ([][]float32, error) {
	body, err := json.Marshal(r.api.request(&r.cfg, texts))
	if err != nil {
		return nil, &answerError{fmt.Errorf("encode request: %w", err)}
	}
	if m := r.cfg.Metrics; m != nil {
		m.EmbedBatchSize.WithLabelValues(r.cfg.Name).Observe(float64(len(texts)))
	}
	var vectors [][]float32
	p := retry.Policy{
		Initial:    r.cfg.RetryInitialInterval,
		Max:        r.cfg.RetryMaxInterval,
		MaxElapsed: r.cfg.MaxRetryTime,
		ShouldRetry: func(err error) bool {
			_, ok := retryable(err)
			return ok
		},
		OnRetry: func(attempt int, err error, wait time.Duration) {
			if m := r.cfg.Metrics; m != nil {
				reason, _ := retryable(err)
				m.EmbedRetries.WithLabelValues(r.cfg.Name, reason).Inc()
			}
			r.log.Warn().Err(err).Int("texts", len(texts)).Int("attempt", attempt).Dur("retry_in", wait).
				Msg("embedding request failed, retrying")
		},
	}
	err = p.Do(ctx, func(ctx context.Context) error {
		var err error
		vectors, err = r.attempt(ctx, body, len(texts))
		return r.serverWait(err)
	})
	return vectors, err
}

// failed turns what embedBatch returned into Embed's error: transient when
// the retries gave up, else a misconfiguration.
func (r *Remote) failed(err error) error {
	if errors.As(err, new(*retry.Error)) {
		return fmt.Errorf("%s: %w", r, err)
	}
	return pipeline.Misconfigured(fmt.Errorf("%s: %w", r, err))
}

// String names the embedder and its endpoint for errors, without secrets.
func (r *Remote) String() string {
	return fmt.Sprintf("embedder %s (%s %s)", r.cfg.Name, r.api.kind, redactURL(r.api.endpoint))
}

// attempt sends one request, waiting first for a slot and for any pause a
// Retry-After asked for.
func (r *Remote) attempt(ctx context.Context, body []byte, n int) ([][]float32, error) {
	if err := retry.Sleep(ctx, r.pausedFor()); err != nil {
		return nil, err
	}
	select {
	case r.slots <- struct{}{}:
		defer func() { <-r.slots }()
	case <-ctx.Done():
		return nil, context.Cause(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, r.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.api.endpoint, bytes.NewReader(body))
	if err != nil {
		return nil, &answerError{err}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "ragpipe")
	if r.cfg.APIKey != "" {
		req.Header.Set("Authorization", "Bearer "+r.cfg.APIKey)
	}
	resp, err := r.cfg.Client.Do(req)
	if err != nil {
		return nil, r.redact(err)
	}
	defer resp.Body.Close()
	// Far above any real answer: a vector of JSON numbers takes about
	// 20 bytes per dimension.
	limit := int64(64<<20) + int64(n)*int64(r.cfg.Dimensions)*64
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	switch {
	case err != nil:
		return nil, r.redact(err)
	case resp.StatusCode < 200 || resp.StatusCode > 299:
		msg, code, param := errorDetail(data)
		return nil, &statusError{
			status:     resp.StatusCode,
			message:    r.redactString(msg),
			code:       code,
			param:      param,
			retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), time.Now()),
		}
	case int64(len(data)) > limit:
		return nil, &answerError{fmt.Errorf("answer larger than %d bytes", limit)}
	}
	vectors, err := r.api.vectors(data, n)
	if err != nil {
		return nil, &answerError{err}
	}
	return vectors, nil
}

// redact removes the API key from err's message, in case a service or proxy
// echoes it. The error is flattened to its message when it had to change.
func (r *Remote) redact(err error) error {
	if msg := r.redactString(err.Error()); msg != err.Error() {
		return errors.New(msg)
	}
	return err
}

// redactString replaces the API key in s.
func (r *Remote) redactString(s string) string {
	if r.cfg.APIKey == "" {
		return s
	}
	return strings.ReplaceAll(s, r.cfg.APIKey, "REDACTED")
}

// statusError is an HTTP answer other than 2xx.
type statusError struct {
	status      int
	message     string        // the service's explanation
	code, param string        // OpenAI's error code and parameter, "" if none
	retryAfter  time.Duration // what Retry-After asked for, 0 if nothing
}

func (e *statusError) Error() string {
	msg := fmt.Sprintf("%d %s: %s", e.status, http.StatusText(e.status), e.message)
	if e.code != "" {
		msg += " (" + e.code + ")"
	}
	return msg
}

// answerError is a request that cannot be built or an answer that does not fit
// the API: a wrong URL, a proxy's page, another service.
type answerError struct{ err error }

func (e *answerError) Error() string { return "unexpected answer: " + e.err.Error() }

func (e *answerError) Unwrap() error { return e.err }

// retryable is the one place that decides whether a failed attempt may
// succeed if repeated, and the reason it is counted under. Retried: 408,
// 424 (TEI's model backend failed), 425, 429 and 5xx answers, timeouts and
// network failures. Anything else the service refuses (400 bad request, 401
// and 403 key refused, 404 unknown model or wrong URL, 413 too large, 422
// input refused) and answers that do not fit the API are not: retrying
// cannot help (refusesInput tells which may be the texts' fault).
func retryable(err error) (reason string, ok bool) {
	var status *statusError
	var netErr net.Error
	switch {
	case errors.As(err, &status):
		s := status.status
		return strconv.Itoa(s), s == http.StatusRequestTimeout || s == http.StatusFailedDependency ||
			s == http.StatusTooEarly || s == http.StatusTooManyRequests || s >= 500
	case errors.As(err, new(*answerError)):
		return "", false
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return "timeout", true
	default:
		return "network", true
	}
}

// refusesInput reports whether err is a refusal that may be the fault of
// some texts of the request rather than of the settings: 400, 413 or 422
// (OpenAI and Ollama answer 400 for an input too long, TEI 413 or 422),
// unless the body names a setting, as OpenAI's code and param do.
func refusesInput(err error) bool {
	status, ok := errors.AsType[*statusError](err)
	if !ok {
		return false
	}
	switch status.status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
	default:
		return false
	}
	switch {
	case status.code == "model_not_found", status.code == "invalid_api_key":
		return false
	case status.param == "model", status.param == "dimensions", status.param == "encoding_format":
		return false
	}
	return true
}

// parseRetryAfter reads a Retry-After header, in seconds or as an HTTP date;
// 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(strings.TrimSpace(v)); err == nil {
		return time.Duration(max(s, 0)) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// errorDetail extracts the service's explanation from an error body:
// OpenAI's {"error": {"message": "...", "code": "...", "param": "..."}},
// Ollama's and TEI's {"error": "..."}, else the start of the body.
func errorDetail(body []byte) (msg, code, param string) {
	var shape struct {
		Error json.RawMessage `json:"error"`
	}
	if json.Unmarshal(body, &shape) == nil && len(shape.Error) > 0 {
		var text string
		if json.Unmarshal(shape.Error, &text) == nil {
			return text, "", ""
		}
		var obj struct {
			Message string `json:"message"`
			Code    any    `json:"code"` // a string, a number or null
			Param   string `json:"param"`
		}
		if json.Unmarshal(shape.Error, &obj) == nil && obj.Message != "" {
			code, _ := obj.Code.(string)
			return obj.Message, code, obj.Param
		}
	}
	msg = strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	if msg == "" {
		return "(no message)", "", ""
	}
	return msg, "", ""
}

// serverWait marks a retryable refusal with the wait its Retry-After asked
// for, so that the retry policy honours it, and pauses every request of the
// embedder for as long.
func (r *Remote) serverWait(err error) error {
	refused, ok := errors.AsType[*statusError](err)
	if _, transient := retryable(err); !ok || !transient || refused.retryAfter <= 0 {
		return err
	}
	r.pause(refused.retryAfter)
	return retry.After(refused.retryAfter, err)
}

// pause keeps every request of the embedder from starting for d.
func (r *Remote) pause(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if until := time.Now().Add(d); until.After(r.pausedUntil) {
		r.pausedUntil = until
	}
}

// pausedFor is how long requests must still wait, 0 if they need not.
func (r *Remote) pausedFor() time.Duration {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Until(r.pausedUntil)
}

// redactURL hides the password of a URL's userinfo.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}
