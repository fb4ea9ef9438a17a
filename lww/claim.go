package lww

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Claim implements Versions: ClaimMany of one key.
func (r *Register) Claim(ctx context.Context, key string, v uint64) (Claimed, error) {
	claims, errs := r.ClaimMany(ctx, []string{key}, []uint64{v}, 1)
	return claims[0], errs[0]
}

// ClaimMany implements BatchVersions. Each claim is a compare-and-set
// publish after a read; while most documents are new to the register, it
// first tries the publish alone, expecting no entry, which costs one round
// trip for a new document and one extra for a known one. Each step is
// taken for all the keys still open at once: the requests are pipelined,
// at most inFlight unanswered, with one reply subscription, so that the
// client writes many in one flush; a direct get reads many keys in one
// request where Latest would batch its reads. The publishes that find
// another claim first are read and tried again.
func (r *Register) ClaimMany(ctx context.Context, keys []string, versions []uint64, inFlight int) ([]Claimed, []error) {
	b := &claimBatch{r: r, subjects: prefixed(r.prefix, keys), versions: versions, expect: make([]uint64, len(keys)),
		claims: make([]Claimed, len(keys)), errs: make([]error, len(keys)), inFlight: inFlight}
	open := make([]int, len(keys)) // indexes of the keys whose claim is not settled
	for i := range keys {
		open[i] = i
	}
	if r.firsts.Load() >= 0 {
		open = b.publish(ctx, open)
		for _, c := range b.claims {
			if c.Held {
				r.learn(true)
			}
		}
	}
	for attempt := 0; len(open) > 0; attempt++ {
		subjects := make([]string, len(open))
		for j, i := range open {
			subjects[j] = b.subjects[i]
		}
		current, seqs, errs := r.readMany(ctx, subjects, inFlight)
		write := open[:0:0]
		for j, i := range open {
			switch {
			case errs[j] != nil:
				b.errs[i] = errs[j]
				continue
			case attempt == 0:
				r.learn(seqs[j] == 0)
			}
			if current[j] >= versions[i] {
				b.claims[i] = Claimed{Held: current[j] == versions[i], Latest: current[j]}
				continue
			}
			b.expect[i] = seqs[j]
			write = append(write, i)
		}
		open = b.publish(ctx, write)
	}
	return b.claims, b.errs
}

// claimBatch is the state of one ClaimMany: by index of its keys, the
// subject, the version claimed, the last sequence its publish expects, and
// the outcome.
type claimBatch struct {
	r                *Register
	subjects         []string
	versions, expect []uint64
	claims           []Claimed
	errs             []error
	inFlight         int
}

// publish publishes, for each index i of at, versions[i] on subjects[i]
// expecting expect[i], records which are held and which failed, and returns
// the others: those another claim came first to (wrong last sequence), to
// be read again.
func (b *claimBatch) publish(ctx context.Context, at []int) []int {
	var again []int
	for j, err := range b.publishMany(ctx, at) {
		i := at[j]
		switch {
		case err == nil:
			b.claims[i] = Claimed{Held: true, Latest: b.versions[i], First: b.expect[i] == 0}
		case isWrongLastSequence(err):
			again = append(again, i)
		default:
			b.errs[i] = fmt.Errorf("version register: %w", err)
		}
	}
	return again
}

// publishRetries and publishRetryWait are how often and after how long a
// publish answered "no responders" (a stream leader changing, say) is sent
// again, as the JetStream client does.
const (
	publishRetries   = jetstream.DefaultPubRetryAttempts
	publishRetryWait = jetstream.DefaultPubRetryWait
)

// publishMany publishes, for each i of at, versions[i] on subjects[i]
// expecting the subject's last sequence to be expect[i], and returns each
// publish's error, in the order of at.
func (b *claimBatch) publishMany(ctx context.Context, at []int) []error {
	errs := make([]error, len(at))
	if len(at) == 0 {
		return errs
	}
	msg := &nats.Msg{Header: nats.Header{jetstream.ExpectedLastSubjSeqHeader: {""}}}
	var value, seq []byte
	open := make([]int, len(at)) // indexes in at
	for j := range open {
		open[j] = j
	}
	for attempt := 0; ; attempt++ {
		sendErrs := b.r.exchange(ctx, len(open), b.inFlight, func(k int, reply string) error {
			i := at[open[k]]
			value = strconv.AppendUint(value[:0], b.versions[i], 10)
			seq = strconv.AppendUint(seq[:0], b.expect[i], 10)
			msg.Subject, msg.Reply, msg.Data = b.subjects[i], reply, value
			msg.Header[jetstream.ExpectedLastSubjSeqHeader][0] = string(seq)
			return b.r.js.Conn().PublishMsg(msg)
		}, func(k int, ack *nats.Msg) error {
			return pubAckError(ack)
		})
		var again []int
		for k, err := range sendErrs {
			errs[open[k]] = err
			if errors.Is(err, jetstream.ErrNoStreamResponse) {
				again = append(again, open[k])
			}
		}
		if len(again) == 0 || attempt == publishRetries {
			return errs
		}
		select {
		case <-ctx.Done():
			return errs
		case <-time.After(publishRetryWait):
		}
		open = again
	}
}

// pubAckPrefix begins every successful publish acknowledgement; an error
// answer begins with the error.
var pubAckPrefix = []byte(`{"stream":`)

// noResponders reports that msg is the server's answer to a request nobody
// took: no stream for a publish, no leader for a read.
func noResponders(msg *nats.Msg) bool {
	return len(msg.Data) == 0 && msg.Header.Get("Status") == "503"
}

// pubAckError returns the error a publish acknowledgement holds, nil for a
// success. A success is recognized by its first bytes; only other answers,
// errors mostly, are decoded.
func pubAckError(ack *nats.Msg) error {
	if bytes.HasPrefix(ack.Data, pubAckPrefix) && !bytes.Contains(ack.Data, []byte(`"error"`)) {
		return nil
	}
	if noResponders(ack) {
		return jetstream.ErrNoStreamResponse
	}
	var resp struct {
		Error  *jetstream.APIError `json:"error"`
		Stream string              `json:"stream"`
	}
	switch err := json.Unmarshal(ack.Data, &resp); {
	case err != nil:
		return jetstream.ErrInvalidJSAck
	case resp.Error != nil:
		return resp.Error
	case resp.Stream == "":
		return jetstream.ErrInvalidJSAck
	}
	return nil
}

// exchange sends n requests, each with its own reply subject under one
// inbox, at most window of them unanswered at a time, and returns the error
// of each: send's (which writes request k with reply as its reply subject),
// else recv's (which checks its answer), else the wait's. The requests go
// through the connection's buffer without waiting for each other, so the
// client writes many in one flush. When ctx has no deadline, the wait for
// an answer ends after the JetStream client's default timeout, as the
// client's own requests do.
func (r *Register) exchange(ctx context.Context, n, window int, send func(k int, reply string) error, recv func(k int, msg *nats.Msg) error) []error {
	errs := make([]error, n)
	if n == 0 {
		return errs
	}
	nc := r.js.Conn()
	inbox := nc.NewInbox()
	window = max(min(window, n), 1)
	answers, err := subscribeReplies(nc, inbox+".*", window)
	if err != nil {
		for k := range errs {
			errs[k] = err
		}
		return errs
	}
	defer answers.stop()
	var timer *time.Timer // restarted at every answer
	var expired <-chan time.Time
	idle := r.js.Options().DefaultTimeout
	if _, ok := ctx.Deadline(); !ok {
		timer = time.NewTimer(idle)
		defer timer.Stop()
		expired = timer.C
	}
	waiting := make([]bool, n)
	replies := replySubjects(inbox, n)
	sent, open := 0, 0
	for sent < n || open > 0 {
		for ; sent < n && open < window && ctx.Err() == nil; sent++ {
			if errs[sent] = send(sent, replies[sent]); errs[sent] == nil {
				waiting[sent] = true
				open++
			}
		}
		if open == 0 {
			if err := ctx.Err(); err != nil { // nothing is sent once ctx is done
				for k := sent; k < n; k++ {
					errs[k] = err
				}
				return errs
			}
			continue
		}
		msg, err := answers.next(ctx, expired)
		if err != nil {
			for k := range errs[:sent] {
				if waiting[k] {
					errs[k] = err
				}
			}
			for k := sent; k < n; k++ {
				errs[k] = err
			}
			return errs
		}
		k, err := strconv.Atoi(msg.Subject[min(len(inbox)+1, len(msg.Subject)):])
		if err != nil || k < 0 || k >= sent || !waiting[k] {
			continue // not an answer awaited
		}
		waiting[k] = false
		open--
		if timer != nil {
			timer.Reset(idle)
		}
		errs[k] = recv(k, msg)
	}
	return errs
}

// replySubjects returns the reply subjects of n requests, inbox.0 to
// inbox.<n-1>, all in one allocation.
func replySubjects(inbox string, n int) []string {
	var b strings.Builder
	b.Grow(n * (len(inbox) + 1 + len(strconv.Itoa(n))))
	var digits [20]byte
	out := make([]string, n)
	for k := range out {
		start := b.Len()
		b.WriteString(inbox)
		b.WriteByte('.')
		b.Write(strconv.AppendInt(digits[:0], int64(k), 10))
		out[k] = b.String()[start:]
	}
	return out
}

// replies is a subscription whose messages wait in a channel of the
// capacity its user needs: a synchronous subscription allocates the
// client's default, 65,536 slots, each time.
type replies struct {
	sub *nats.Subscription
	ch  chan *nats.Msg
}

// subscribeReplies subscribes to subject, keeping up to capacity messages
// unread; the client drops those beyond.
func subscribeReplies(nc *nats.Conn, subject string, capacity int) (*replies, error) {
	ch := make(chan *nats.Msg, capacity)
	sub, err := nc.ChanSubscribe(subject, ch)
	if err != nil {
		return nil, err
	}
	return &replies{sub: sub, ch: ch}, nil
}

// next returns the next message, or an error once ctx is done or expired
// delivers.
func (r *replies) next(ctx context.Context, expired <-chan time.Time) (*nats.Msg, error) {
	select {
	case msg := <-r.ch:
		return msg, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-expired:
		return nil, context.DeadlineExceeded
	}
}

func (r *replies) stop() {
	_ = r.sub.Unsubscribe() // only a closed connection fails it, which ends the subscription anyway
}
