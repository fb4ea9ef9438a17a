package telemetry

import (
	"context"
	"sort"
	"sync"
)

// Readiness is what /readyz reports: first the start-up step in progress
// (connecting to NATS, to Qdrant, ...), then, once the process has started,
// its named checks. A process serves /readyz from its first moment, so that
// an orchestrator sees it alive but not ready while it waits for its
// dependencies. It is safe for concurrent use.
type Readiness struct {
	mu     sync.RWMutex
	step   string           // the start-up step in progress; "" once started
	checks map[string]Check // by name, once started
}

// NewReadiness returns a Readiness that reports step as not ready.
func NewReadiness(step string) *Readiness { return &Readiness{step: step} }

// Step records the start-up step in progress, which /readyz names.
func (r *Readiness) Step(step string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step = step
}

// Started ends start-up: from now on /readyz passes when every check does.
func (r *Readiness) Started(checks map[string]Check) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.step, r.checks = "", checks
}

// failures runs the checks and returns one line per failing one, sorted;
// during start-up the one line names the step in progress. A nil Readiness
// is always ready.
func (r *Readiness) failures(ctx context.Context) []string {
	if r == nil {
		return nil
	}
	r.mu.RLock()
	step, checks := r.step, r.checks
	r.mu.RUnlock()
	if step != "" {
		return []string{"starting: " + step}
	}
	var failed []string
	for name, check := range checks {
		if err := check(ctx); err != nil {
			failed = append(failed, name+": "+err.Error())
		}
	}
	sort.Strings(failed)
	return failed
}
