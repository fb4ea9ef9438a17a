package worker

import (
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// held is the set of messages received and not yet settled. keepAlive tells
// JetStream that they are in progress, so that a message waiting behind busy
// batches, or in a batch retrying a slow store or embedder, is never
// redelivered meanwhile. It is safe for concurrent use.
type held struct {
	mu   sync.Mutex
	msgs map[jetstream.Msg]struct{}
}

func (h *held) add(m jetstream.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.msgs == nil {
		h.msgs = make(map[jetstream.Msg]struct{})
	}
	h.msgs[m] = struct{}{}
}

func (h *held) remove(msgs []jetstream.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		delete(h.msgs, m)
	}
}

// keepAlive sends InProgress for every held message at each interval until
// the returned function is called.
func (h *held) keepAlive(interval time.Duration) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				h.mu.Lock()
				msgs := slices.Collect(maps.Keys(h.msgs))
				h.mu.Unlock()
				for _, m := range msgs {
					_ = m.InProgress()
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
