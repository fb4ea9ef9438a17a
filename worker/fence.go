package worker

import (
	"context"
	"errors"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrLeaseLost is the cause of a processing context cancelled because
// JetStream may already have handed its events to another worker.
var ErrLeaseLost = errors.New("lease lost: no keep-alive confirmed within the ack wait; the events are left for redelivery")

// renew restarts the leases of msgs, still held, from sent.
func (h *held) renew(msgs []jetstream.Msg, sent time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range msgs {
		if hm, ok := h.msgs[m]; ok {
			hm.started = sent
			h.msgs[m] = hm
		}
	}
	close(h.renewed)
	h.renewed = make(chan struct{})
}

// expiry returns when the first lease of ds may end, and the channel closed
// at the next renewal.
func (h *held) expiry(ds []*delivery) (time.Time, <-chan struct{}) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var first time.Time
	for _, d := range ds {
		if hm, ok := h.msgs[d.msg]; ok && (first.IsZero() || hm.started.Before(first)) {
			first = hm.started
		}
	}
	if first.IsZero() { // none held: nothing to fence
		return time.Time{}, h.renewed
	}
	return first.Add(h.lease), h.renewed
}

// fence returns the context the events of ds are processed with: it is
// cancelled, with cause ErrLeaseLost, once a lease of theirs may have ended.
//
// JetStream redelivers a message AckWait after it last heard of it (its
// delivery or an InProgress). A worker cut off from NATS for longer keeps
// running, and without a fence its writes could reach the store after
// another worker processed the redelivery and a newer version was written:
// a late write of an older version inserts the chunk indexes the newer one
// does not have, which nothing would remove (see package lww). A lease
// starts when the message is received or when a keep-alive is confirmed by
// the server (measured from before it was sent, so never later than the
// server's own timer), and is trusted for a third less than AckWait: a
// write must be sent before then, and so reaches the store at least that
// margin before the server can redeliver.
func (h *held) fence(ctx context.Context, ds []*delivery) (context.Context, context.CancelFunc) {
	fenced, cancel := context.WithCancelCause(ctx)
	go func() {
		for {
			at, renewed := h.expiry(ds)
			if at.IsZero() {
				return
			}
			t := time.NewTimer(time.Until(at))
			select {
			case <-fenced.Done():
				t.Stop()
				return
			case <-renewed:
				t.Stop()
			case <-t.C:
				cancel(ErrLeaseLost)
				return
			}
		}
	}()
	return fenced, func() { cancel(context.Canceled) }
}
