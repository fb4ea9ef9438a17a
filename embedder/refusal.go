package embedder

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/ragpipe/ragpipe/pipeline"
)

// controlText is what Embed sends when the service refused texts and
// accepted none: short and plain, so that only the settings can make a
// service refuse it.
const controlText = "ragpipe"

// call is one Embed call: its results and what it learnt of the service.
type call struct {
	r       *Remote
	out     [][]float32 // the vectors, by text index
	refused []error     // the refused texts' errors, by text index

	accepted atomic.Bool // the service returned vectors for some request of the call

	mu      sync.Mutex
	checked bool
	verdict error // of the control request, once checked
}

// embed embeds texts, which start at index at of the call's texts. A
// refusal that may be the texts' fault is split (see Remote.Embed); the
// halves are sent one after the other.
func (c *call) embed(ctx context.Context, texts []string, at int) error {
	vectors, err := c.r.embedBatch(ctx, texts)
	switch {
	case err == nil:
		copy(c.out[at:], vectors)
		c.accepted.Store(true)
		return nil
	case !refusesInput(err):
		return c.r.failed(err)
	case len(texts) == 1:
		if err := c.settingsAccepted(ctx, err); err != nil {
			return err
		}
		c.refused[at] = pipeline.Permanent(fmt.Errorf("%s refused the text: %w", c.r, err))
		return nil
	}
	half := len(texts) / 2
	if err := c.embed(ctx, texts[:half], at); err != nil {
		return err
	}
	if err := c.embed(ctx, texts[half:], at+half); err != nil {
		return err
	}
	if !slices.ContainsFunc(c.refused[at:at+len(texts)], func(err error) bool { return err != nil }) &&
		c.r.splitWarned.CompareAndSwap(false, true) {
		c.r.log.Warn().Err(err).Int("texts", len(texts)).
			Msg("the embedding service refused a request but accepted each half of it: lower the embedder's batch size to what the service takes in one request (logged once)")
	}
	return nil
}

// settingsAccepted returns nil when the service accepted a request of the
// call or accepts controlText; refusal is the refusal of a lone text. If the
// service refuses controlText too, the fault is the settings' and the error
// a misconfiguration. The control request is sent at most once per call.
func (c *call) settingsAccepted(ctx context.Context, refusal error) error {
	if c.accepted.Load() {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.checked || c.accepted.Load() {
		return c.verdict
	}
	_, err := c.r.embedBatch(ctx, []string{controlText})
	switch {
	case err == nil:
		c.accepted.Store(true)
	case refusesInput(err):
		c.verdict = pipeline.Misconfigured(fmt.Errorf("%s refuses even a short text, so the settings are at fault: %w", c.r, refusal))
	default:
		c.verdict = c.r.failed(err)
	}
	c.checked = true
	return c.verdict
}
