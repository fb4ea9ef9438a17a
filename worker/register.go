package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/ragpipe/ragpipe/pipeline"
)

// RegisterStream is the JetStream stream holding the per-document version register.
const RegisterStream = "RAG_VERSIONS"

// Register is the per-document version register (pipeline.Versions) kept in
// the JetStream stream RAG_VERSIONS: one subject per document, one message per
// subject holding the newest claimed version. Claims are compare-and-set
// publishes (expected last sequence per subject). Reads must see every claim
// acknowledged before them: on a replicated stream they go to the stream
// leader, one request per document (direct gets, which any replica may
// answer, are disabled); on a stream of one replica, whose one server is the
// leader, one direct get reads up to 1,024 documents at once. It is safe for
// concurrent use.
//
// The register keeps one small message per document ever seen, deleted ones
// included: that is what stops a stale upsert from resurrecting a deleted
// document.
type Register struct {
	js     jetstream.JetStream
	stream jetstream.Stream
	prefix string // subject prefix of register entries, "<prefix>.version."
	// batched is true when the stream has one replica and allows direct
	// gets: reads of many documents take one request.
	batched bool

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
	stream, err := ensureStream(ctx, js, jetstream.StreamConfig{
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
	return &Register{js: js, stream: stream, prefix: prefix + ".version.", batched: cfg.AllowDirect}, nil
}

// Claim implements pipeline.Versions. A claim costs a read and a
// compare-and-set publish; while most documents are new to the register, it
// first tries the publish alone, expecting no entry, which costs one round
// trip for a new document and one extra for a known one.
func (r *Register) Claim(ctx context.Context, key string, v uint64) (pipeline.Claimed, error) {
	subject := r.prefix + key
	value := strconv.AppendUint(nil, v, 10)
	if r.firsts.Load() >= 0 {
		_, err := r.js.Publish(ctx, subject, value, jetstream.WithExpectLastSequencePerSubject(0))
		if err == nil {
			r.learn(true)
			return pipeline.Claimed{Held: true, Latest: v, First: true}, nil
		}
		if !isWrongLastSequence(err) {
			return pipeline.Claimed{}, fmt.Errorf("version register: %w", err)
		}
	}
	for attempt := 0; ; attempt++ {
		cur, seq, err := r.read(ctx, subject)
		if err != nil {
			return pipeline.Claimed{}, err
		}
		if attempt == 0 {
			r.learn(seq == 0)
		}
		if cur >= v {
			return pipeline.Claimed{Held: cur == v, Latest: cur}, nil
		}
		_, err = r.js.Publish(ctx, subject, value, jetstream.WithExpectLastSequencePerSubject(seq))
		if err == nil {
			return pipeline.Claimed{Held: true, Latest: v, First: seq == 0}, nil
		}
		if !isWrongLastSequence(err) {
			return pipeline.Claimed{}, fmt.Errorf("version register: %w", err)
		}
		// Another worker claimed this document meanwhile: read again.
	}
}

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

// Latest implements pipeline.Versions.
func (r *Register) Latest(ctx context.Context, keys []string) ([]uint64, error) {
	versions := make([]uint64, len(keys))
	if r.batched {
		for lo := 0; lo < len(keys); lo += maxDirectBatch {
			hi := min(lo+maxDirectBatch, len(keys))
			if err := r.readMany(ctx, keys[lo:hi], versions[lo:hi]); err != nil {
				return nil, err
			}
		}
		return versions, nil
	}
	var g errgroup.Group
	g.SetLimit(64)
	for i, key := range keys {
		g.Go(func() (err error) {
			versions[i], _, err = r.read(ctx, r.prefix+key)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return nil, err
	}
	return versions, nil
}

// maxDirectBatch is the most subjects the server answers in one direct get.
const maxDirectBatch = 1024

// readMany reads the versions of keys into versions (0 where there is none)
// with one direct get of the last message of each key's subject. The stream
// has one replica, so its server is the leader and sees every acknowledged
// claim.
func (r *Register) readMany(ctx context.Context, keys []string, versions []uint64) error {
	subjects := make([]string, 0, len(keys))
	index := make(map[string][]int, len(keys)) // a key may be asked for twice
	for i, key := range keys {
		subject := r.prefix + key
		if index[subject] == nil {
			subjects = append(subjects, subject)
		}
		index[subject] = append(index[subject], i)
	}
	req, err := json.Marshal(struct {
		MultiLast []string `json:"multi_last"`
		Batch     int      `json:"batch"`
	}{subjects, len(subjects)})
	if err != nil {
		return fmt.Errorf("version register: %w", err)
	}
	nc := r.js.Conn()
	inbox := nc.NewRespInbox()
	sub, err := nc.SubscribeSync(inbox)
	if err != nil {
		return fmt.Errorf("version register: %w", err)
	}
	defer sub.Unsubscribe()
	if err := nc.PublishRequest(jetstream.DefaultAPIPrefix+"DIRECT.GET."+RegisterStream, inbox, req); err != nil {
		return fmt.Errorf("version register: %w", err)
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.js.Options().DefaultTimeout)
		defer cancel()
	}
	for {
		msg, err := sub.NextMsgWithContext(ctx)
		if err != nil {
			return fmt.Errorf("version register: direct get of %d entries: %w", len(keys), err)
		}
		switch status := msg.Header.Get("Status"); status {
		case "":
		case "204", "404": // the end of the batch; none of the subjects has an entry
			return nil
		default:
			return fmt.Errorf("version register: direct get of %d entries: status %s %s", len(keys), status, msg.Header.Get("Description"))
		}
		subject := msg.Header.Get(jetstream.SubjectHeader)
		at, ok := index[subject]
		if !ok {
			return fmt.Errorf("version register: direct get answered for %q, not asked for", subject)
		}
		v, err := strconv.ParseUint(string(msg.Data), 10, 64)
		if err != nil {
			return fmt.Errorf("version register: entry %s holds %q: %w", subject, msg.Data, err)
		}
		for _, i := range at {
			versions[i] = v
		}
	}
}

// read returns the version recorded on subject and the sequence of its
// message, zeros when there is none.
func (r *Register) read(ctx context.Context, subject string) (version, seq uint64, err error) {
	msg, err := r.stream.GetLastMsgForSubject(ctx, subject)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("version register: %w", err)
	}
	version, err = strconv.ParseUint(string(msg.Data), 10, 64)
	if err != nil {
		return 0, 0, fmt.Errorf("version register: entry %s holds %q: %w", subject, msg.Data, err)
	}
	return version, msg.Sequence, nil
}

func isWrongLastSequence(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) &&
		(apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
			apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// ensureStream returns the stream named in cfg, creating it when missing. An
// existing stream is left as its operator configured it.
func ensureStream(ctx context.Context, js jetstream.JetStream, cfg jetstream.StreamConfig) (jetstream.Stream, error) {
	s, err := js.Stream(ctx, cfg.Name)
	if err == nil {
		return s, nil
	}
	if !errors.Is(err, jetstream.ErrStreamNotFound) {
		return nil, fmt.Errorf("look up stream %s: %w", cfg.Name, err)
	}
	s, err = js.CreateStream(ctx, cfg)
	if errors.Is(err, jetstream.ErrStreamNameAlreadyInUse) {
		return js.Stream(ctx, cfg.Name) // another replica created it first
	}
	if err != nil {
		return nil, fmt.Errorf("create stream %s: %w", cfg.Name, err)
	}
	return s, nil
}
