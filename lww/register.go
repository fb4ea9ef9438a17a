package lww

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// RegisterStream is the JetStream stream holding the per-document version register.
const RegisterStream = "RAG_VERSIONS"

// Register is the per-document version register (Versions) kept in
// the JetStream stream RAG_VERSIONS: one subject per document, one message per
// subject holding the newest claimed version. Claims are compare-and-set
// publishes (expected last sequence per subject). Reads must see every claim
// acknowledged before them: on a replicated stream they go to the stream
// leader, one request per document (direct gets, which any replica may
// answer, are disabled); on a stream of one replica, whose one server is the
// leader, one direct get reads up to 1,023 documents at once. The requests
// of one call are pipelined (ClaimMany, Latest). It is safe for concurrent
// use.
//
// The register keeps one small message per document ever seen, deleted ones
// included: that is what stops a stale upsert from resurrecting a deleted
// document.
type Register struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string // subject prefix of register entries, "<prefix>.version."
	// batched is true while the stream has one replica and allows direct
	// gets: reads of many documents take one request. It turns false for
	// good when that stops being so (checked every recheckBatched) or when a
	// direct get is answered otherwise than by the stream's one server.
	batched atomic.Bool
	checked atomic.Int64 // unix nanoseconds of the last check of the stream's replicas

	// firsts leans positive while most claims are of documents the
	// register has never seen (a bulk load), negative while most are not:
	// see Claim.
	firsts atomic.Int32
}

// firstsBound bounds Register.firsts, so that it follows a change of
// workload within that many claims.
const firstsBound = 32

// NewRegister creates the RAG_VERSIONS stream when missing and returns the
// register. prefix is the ragpipe subject prefix; replicas the stream's
// replica count.
func NewRegister(ctx context.Context, js jetstream.JetStream, prefix string, replicas int) (*Register, error) {
	subjects := prefix + ".version.>"
	stream, err := createStream(ctx, js, jetstream.StreamConfig{
		Name:              RegisterStream,
		Description:       "ragpipe: newest version of every document",
		Subjects:          []string{subjects},
		Storage:           jetstream.FileStorage,
		Replicas:          max(replicas, 1),
		MaxMsgsPerSubject: 1,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       replicas <= 1,
	})
	if err != nil {
		return nil, err
	}
	cfg := stream.CachedInfo().Config
	if cfg.AllowDirect && cfg.Replicas > 1 {
		return nil, fmt.Errorf("stream %s has %d replicas and allows direct gets, which any replica may answer: "+
			"reads of the version register would miss recent claims; set allow_direct to false on it", RegisterStream, cfg.Replicas)
	}
	r := &Register{js: js, stream: stream, prefix: prefix + ".version."}
	if cfg.AllowDirect {
		// Every batched read also asks for this entry, so that every answer
		// carries the name of the stream that gave it.
		_, err := js.Publish(ctx, r.prefix+markerKey, nil, jetstream.WithExpectLastSequencePerSubject(0))
		if err != nil && !isWrongLastSequence(err) {
			return nil, fmt.Errorf("version register: %w", err)
		}
	}
	r.batched.Store(cfg.AllowDirect)
	r.checked.Store(time.Now().UnixNano())
	return r, nil
}

// recheckBatched is how often a register reading in batches checks that its
// stream still has one replica (an operator may scale it up in place).
const recheckBatched = 5 * time.Second

// errDirectGet is a direct get answered otherwise than a one-replica
// stream's server answers it: by a mirror, or by a server without batched
// direct gets (before 2.11).
var errDirectGet = errors.New("version register: unexpected direct get answer")

// markerKey is a register entry that is no document (collection names start
// with a letter): batched reads ask for it to learn which stream answers.
const markerKey = "_ragpipe"

// numPendingHeader counts, in a batched direct get's end-of-batch message,
// the messages the batch left out.
const numPendingHeader = "Nats-Num-Pending"

// learn moves firsts towards the outcome of one claim: first is whether the
// register had no entry for the document.
func (r *Register) learn(first bool) {
	for {
		n := r.firsts.Load()
		next := n - 1
		if first {
			next = n + 1
		}
		if next > firstsBound || next < -firstsBound || r.firsts.CompareAndSwap(n, next) {
			return
		}
	}
}

// Latest implements Versions.
func (r *Register) Latest(ctx context.Context, keys []string) ([]uint64, error) {
	versions, _, errs := r.readMany(ctx, prefixed(r.prefix, keys), maxLeaderReads)
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return versions, nil
}

// maxLeaderReads bounds the unanswered reads of Latest from a stream leader.
const maxLeaderReads = 64

// readMany returns the version recorded on each of subjects and the sequence
// of its message, zeros where there is none, and the error of each read.
// While the stream has one replica and allows direct gets, one direct get
// reads up to maxDirectBatch subjects; otherwise each subject is read from
// the stream leader, at most inFlight reads unanswered.
func (r *Register) readMany(ctx context.Context, subjects []string, inFlight int) (versions, seqs []uint64, errs []error) {
	versions, seqs = make([]uint64, len(subjects)), make([]uint64, len(subjects))
	if r.stillBatched(ctx) {
		err := r.readBatches(ctx, subjects, versions, seqs)
		if !errors.Is(err, errDirectGet) {
			errs = make([]error, len(subjects))
			for i := range errs {
				errs[i] = err
			}
			return versions, seqs, errs
		}
		r.batched.Store(false) // read from the leader from now on
	}
	errs = r.exchange(ctx, len(subjects), inFlight, func(i int, reply string) error {
		req, err := json.Marshal(struct {
			LastBySubject string `json:"last_by_subj"`
		}{subjects[i]})
		if err != nil {
			return err
		}
		return r.js.Conn().PublishRequest(jetstream.DefaultAPIPrefix+"STREAM.MSG.GET."+RegisterStream, reply, req)
	}, func(i int, msg *nats.Msg) (err error) {
		if noResponders(msg) {
			return nats.ErrNoResponders
		}
		versions[i], seqs[i], err = parseMsgGet(msg.Data)
		return err
	})
	for i, err := range errs {
		if err != nil {
			errs[i] = fmt.Errorf("version register: read %s: %w", subjects[i], err)
		}
	}
	return versions, seqs, errs
}

// stillBatched reports whether reads may still be batched, checking the
// stream's configuration when it was last checked recheckBatched ago.
func (r *Register) stillBatched(ctx context.Context) bool {
	if !r.batched.Load() {
		return false
	}
	last := r.checked.Load()
	if time.Since(time.Unix(0, last)) < recheckBatched || !r.checked.CompareAndSwap(last, time.Now().UnixNano()) {
		return true
	}
	info, err := r.stream.Info(ctx)
	if err == nil && (info.Config.Replicas > 1 || !info.Config.AllowDirect) {
		r.batched.Store(false)
	}
	return r.batched.Load()
}

// readBatches reads the versions and sequences of subjects into versions and
// seqs with direct gets, maxDirectBatch subjects at a time.
func (r *Register) readBatches(ctx context.Context, subjects []string, versions, seqs []uint64) error {
	for lo := 0; lo < len(subjects); lo += maxDirectBatch {
		hi := min(lo+maxDirectBatch, len(subjects))
		if err := r.directGet(ctx, subjects[lo:hi], versions[lo:hi], seqs[lo:hi]); err != nil {
			return err
		}
	}
	return nil
}

// maxDirectBatch is the most keys read by one direct get: the server answers
// at most 1,024 subjects, one of them the marker.
const maxDirectBatch = 1023

// directGet reads the version and sequence of the last message on each of
// subjects into versions and seqs (0 where there is none) with one direct
// get. The stream has one replica, so its server is the leader and sees
// every acknowledged claim.
func (r *Register) directGet(ctx context.Context, subjects []string, versions, seqs []uint64) error {
	asked := make([]string, 1, len(subjects)+1)
	asked[0] = r.prefix + markerKey
	// index holds the first index in subjects of each subject asked for,
	// -1 for the marker; more the further ones of a subject asked for twice.
	index := make(map[string]int, len(subjects)+1)
	index[asked[0]] = -1
	var more map[string][]int
	for i, subject := range subjects {
		switch at, ok := index[subject]; {
		case !ok:
			asked = append(asked, subject)
			index[subject] = i
		case at < 0:
			index[subject] = i // the marker subject itself: asked already
		default:
			if more == nil {
				more = make(map[string][]int)
			}
			more[subject] = append(more[subject], i)
		}
	}
	req := directGetRequest(asked)
	nc := r.js.Conn()
	inbox := nc.NewInbox()
	answers, err := subscribeReplies(nc, inbox, len(asked)+1) // and the end of the batch
	if err != nil {
		return fmt.Errorf("version register: %w", err)
	}
	defer answers.stop()
	if err := nc.PublishRequest(jetstream.DefaultAPIPrefix+"DIRECT.GET."+RegisterStream, inbox, req); err != nil {
		return fmt.Errorf("version register: %w", err)
	}
	ctx, cancel := r.bounded(ctx)
	defer cancel()
	for answered := 0; ; answered++ {
		msg, err := answers.next(ctx, nil)
		if err != nil {
			return fmt.Errorf("version register: direct get of %d entries: %w", len(subjects), err)
		}
		switch status := msg.Header.Get("Status"); {
		case status == "204" && msg.Header.Get(numPendingHeader) == "0": // the end of the batch
			return nil
		case status != "": // including 404: the marker entry exists
			return fmt.Errorf("%w: status %s %s, %s %q after %d answers", errDirectGet,
				status, msg.Header.Get("Description"), numPendingHeader, msg.Header.Get(numPendingHeader), answered)
		case msg.Header.Get(jetstream.StreamHeader) != RegisterStream:
			// A mirror with mirror_direct answers direct gets too, from
			// its own, possibly late, copy.
			return fmt.Errorf("%w: answered by stream %q", errDirectGet, msg.Header.Get(jetstream.StreamHeader))
		}
		subject := msg.Header.Get(jetstream.SubjectHeader)
		at, ok := index[subject]
		switch {
		case !ok:
			return fmt.Errorf("version register: direct get answered for %q, not asked for", subject)
		case at < 0:
			continue // the marker
		}
		v, err := strconv.ParseUint(string(msg.Data), 10, 64)
		if err != nil {
			return fmt.Errorf("version register: entry %s holds %q: %w", subject, msg.Data, err)
		}
		seq, err := strconv.ParseUint(msg.Header.Get(jetstream.SequenceHeader), 10, 64)
		if err != nil {
			return fmt.Errorf("%w: entry %s without a sequence", errDirectGet, subject)
		}
		versions[at], seqs[at] = v, seq
		for _, i := range more[subject] {
			versions[i], seqs[i] = v, seq
		}
	}
}

// directGetRequest is the body of a direct get of the last messages on
// subjects, all in one batch: what encoding/json makes of it, written
// without reflection when no subject needs escaping in JSON.
func directGetRequest(subjects []string) []byte {
	n := len(`{"multi_last":[],"batch":}`) + 20
	for _, s := range subjects {
		n += len(s) + 3
	}
	req := append(make([]byte, 0, n), `{"multi_last":[`...)
	for i, s := range subjects {
		if i > 0 {
			req = append(req, ',')
		}
		for j := range len(s) {
			if c := s[j]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
				req, _ = json.Marshal(struct {
					MultiLast []string `json:"multi_last"`
					Batch     int      `json:"batch"`
				}{subjects, len(subjects)})
				return req // a []string always marshals
			}
		}
		req = append(append(append(req, '"'), s...), '"')
	}
	return append(strconv.AppendInt(append(req, `],"batch":`...), int64(len(subjects)), 10), '}')
}

// bounded gives a request without a deadline the JetStream client's
// default timeout, as the client's own calls have.
func (r *Register) bounded(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, r.js.Options().DefaultTimeout)
}

// parseMsgGet returns the version and sequence a stream leader's answer to
// a read holds (STREAM.MSG.GET, never a direct get, which a
// replica or a mirror may answer from a late copy), zeros when there is
// no entry.
func parseMsgGet(data []byte) (version, seq uint64, err error) {
	var resp struct {
		Message *struct {
			Data []byte `json:"data"` // base64 in JSON
			Seq  uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(data, &resp); err != nil {
		return 0, 0, err
	}
	switch {
	case resp.Error != nil && resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound:
		return 0, 0, nil
	case resp.Error != nil:
		return 0, 0, resp.Error
	case resp.Message == nil:
		return 0, 0, errors.New("empty answer")
	}
	version, err = strconv.ParseUint(string(resp.Message.Data), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("entry holds %q: %w", resp.Message.Data, err)
	}
	return version, resp.Message.Seq, nil
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// createStream creates the stream of cfg, or returns it as it is when it
// exists: an existing stream is left as its operator configured it.
func createStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		s, err = js.Stream(ctx, cfg.Name)
	}
	if err != nil {
		return nil, fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
