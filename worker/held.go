package worker

import (
	"context"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// held is the set of messages received and not yet settled, with their size
// in bytes. It bounds that size: admit waits while the set is full, so that a
// worker holds at most limit bytes of events whatever their size (one message
// is always admitted into an empty set, however large). keepAlive tells
// JetStream that the held messages are in progress, so that a message waiting
// behind busy batches, or in a batch retrying a slow store or embedder, is
// never redelivered meanwhile. It is safe for concurrent use.
type held struct {
	limit int           // bytes; 0: no bound
	lease time.Duration // how long a lease surely lasts after it starts (see fence)

	mu      sync.Mutex
	msgs    map[jetstream.Msg]heldMsg
	bytes   int
	freed   chan struct{} // closed, and replaced, when messages leave the set
	renewed chan struct{} // closed, and replaced, when leases are renewed
}

// heldMsg is what the set keeps of a message.
type heldMsg struct {
	size    int       // bytes
	started time.Time // start of its current lease
}

func newHeld(limit int, lease time.Duration) *held {
	return &held{
		limit: limit, lease: lease, msgs: make(map[jetstream.Msg]heldMsg),
		freed: make(chan struct{}), renewed: make(chan struct{}),
	}
}

// msgSize is what a message weighs in the held set: its body, subject and
// headers.
func msgSize(m jetstream.Msg) int {
	n := len(m.Data()) + len(m.Subject())
	for k, vs := range m.Headers() {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n
}

// admit adds m to the set, waiting while the set holds limit bytes or more
// and m does not fit. It returns false, without adding m, when ctx ends
// first.
func (h *held) admit(ctx context.Context, m jetstream.Msg) bool {
	n := msgSize(m)
	for {
		h.mu.Lock()
		if h.bytes == 0 || h.limit <= 0 || h.bytes+n <= h.limit {
			h.msgs[m] = heldMsg{size: n, started: time.Now()}
			h.bytes += n
			h.mu.Unlock()
			return true
		}
		freed := h.freed
		h.mu.Unlock()
		select {
		case <-freed:
		case <-ctx.Done():
			return false
		}
	}
}

// remove takes settled messages out of the set; messages not in it are
// ignored.
func (h *held) remove(msgs ...jetstream.Msg) {
	h.mu.Lock()
	defer h.mu.Unlock()
	removed := false
	for _, m := range msgs {
		if hm, ok := h.msgs[m]; ok {
			delete(h.msgs, m)
			h.bytes -= hm.size
			removed = true
		}
	}
	if removed {
		close(h.freed)
		h.freed = make(chan struct{})
	}
}

// size returns the number of messages held and their bytes.
func (h *held) size() (msgs, bytes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.msgs), h.bytes
}

// snapshot returns the messages held now.
func (h *held) snapshot() []jetstream.Msg {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Collect(maps.Keys(h.msgs))
}

// keepAlive sends InProgress for every held message at each interval until
// the returned function is called. When confirm (a round trip to the server)
// then succeeds, the server has restarted the messages' ack timers, and
// their leases are renewed from the moment before they were sent.
func (h *held) keepAlive(interval time.Duration, confirm func() error) (stop func()) {
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
				sent, msgs := time.Now(), h.snapshot()
				for _, m := range msgs {
					_ = m.InProgress()
				}
				if confirm() == nil {
					h.renew(msgs, sent)
				}
			}
		}
	})
	return func() { close(done); wg.Wait() }
}
