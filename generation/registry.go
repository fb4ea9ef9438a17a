package generation

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/textproto"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Config configures a Registry; zero fields take the documented defaults.
type Config struct {
	// Replicas of the bucket, as the version register's. Default 1.
	Replicas int
	// ReadOnly opens the bucket without creating it, for a process that may
	// only read it (the searcher): a bucket that cannot be opened yet
	// (missing, or refused by the server's permissions) is tried again in
	// the background until it can, and until then the Registry has no
	// States. Update fails. Default false: Open creates the bucket when it
	// is missing and fails when it cannot.
	ReadOnly bool
	// Logger receives a line for every State change seen. The zero Logger
	// discards them.
	Logger zerolog.Logger
}

// Registry reads and updates the States of Bucket. It keeps the newest
// State of every collection, watched, for the many reads that need no more
// (Cached), and reads the bucket's stream leader when a read must see every
// update made before it began (Current). It is safe for concurrent use.
type Registry struct {
	js       jetstream.JetStream
	readOnly bool
	log      zerolog.Logger
	ctx      context.Context // ends with Close
	stop     context.CancelFunc
	done     chan struct{} // closed once the watch (or the wait for the bucket) has ended
	getSub   string        // the stream's message-get API subject

	kv atomic.Pointer[jetstream.KeyValue] // nil until the bucket is open

	mu     sync.RWMutex
	states map[string]State  // by collection
	seen   map[string]uint64 // the newest revision applied, deletes included
}

// ErrNoChange, returned by Update's function, leaves the State as it is.
var ErrNoChange = errors.New("no change")

// Open creates the bucket when it is missing (but with Config.ReadOnly)
// and returns once the States present are loaded; the watch runs until
// Close.
func Open(ctx context.Context, js jetstream.JetStream, cfg Config) (*Registry, error) {
	replicas := max(cfg.Replicas, 1)
	if replicas > 5 {
		return nil, fmt.Errorf("generations: %d replicas: want 1 to 5", replicas)
	}
	r := &Registry{
		js: js, readOnly: cfg.ReadOnly, log: cfg.Logger, done: make(chan struct{}),
		getSub: apiPrefix(js) + "STREAM.MSG.GET.KV_" + Bucket,
		states: make(map[string]State), seen: make(map[string]uint64),
	}
	r.ctx, r.stop = context.WithCancel(context.WithoutCancel(ctx))
	var err error
	if cfg.ReadOnly {
		if err = r.bind(ctx); err != nil {
			r.log.Warn().Err(err).Msg("generations: bucket " + Bucket + " cannot be read yet; every collection is served by its own name until it can")
			go r.bindLater()
			return r, nil
		}
		return r, nil
	}
	kv, err := js.CreateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      Bucket,
		Description: "ragpipe: the generations of each collection",
		History:     1,
		Replicas:    replicas,
		Storage:     jetstream.FileStorage,
	})
	if errors.Is(err, jetstream.ErrBucketExists) {
		kv, err = js.KeyValue(ctx, Bucket)
	}
	if err == nil {
		err = r.watch(ctx, kv)
	}
	if err != nil {
		r.stop()
		return nil, fmt.Errorf("generations: bucket %s: %w", Bucket, err)
	}
	return r, nil
}

// bind opens the existing bucket and watches it.
func (r *Registry) bind(ctx context.Context) error {
	kv, err := r.js.KeyValue(ctx, Bucket)
	if err != nil {
		return err
	}
	return r.watch(ctx, kv)
}

// bindLater tries bind again, less and less often, until it succeeds or
// the Registry is closed.
func (r *Registry) bindLater() {
	wait := time.Second
	for {
		select {
		case <-r.ctx.Done():
			close(r.done)
			return
		case <-time.After(wait):
		}
		ctx, cancel := context.WithTimeout(r.ctx, 10*time.Second)
		err := r.bind(ctx)
		cancel()
		if err == nil {
			r.log.Info().Msg("generations: bucket " + Bucket + " open; collections follow their generations")
			return
		}
		wait = min(2*wait, 30*time.Second)
	}
}

// watch starts the watch of kv and waits until the initial values are
// loaded; from then on the watch closes r.done when it ends.
func (r *Registry) watch(ctx context.Context, kv jetstream.KeyValue) error {
	wctx, stop := context.WithCancel(r.ctx)
	w, err := kv.WatchAll(wctx)
	if err != nil {
		stop()
		return fmt.Errorf("watch: %w", err)
	}
	loaded, ended := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(ended)
		r.follow(w, loaded)
	}()
	select {
	case <-loaded:
		r.kv.Store(&kv)
		go func() { <-ended; stop(); close(r.done) }()
		return nil
	case <-ended:
		err = errors.New("the watch ended before the States were loaded")
	case <-ctx.Done():
		err = ctx.Err()
	}
	stop()
	<-ended
	return fmt.Errorf("load: %w", err)
}

// apiPrefix is the subject prefix of js's API requests.
func apiPrefix(js jetstream.JetStream) string {
	o := js.Options()
	switch {
	case o.Domain != "":
		return "$JS." + o.Domain + ".API."
	case o.APIPrefix != "":
		return o.APIPrefix
	}
	return jetstream.DefaultAPIPrefix
}

// follow applies every entry of the bucket to the cache until the watch
// ends; loaded is closed once the initial values are in.
func (r *Registry) follow(w jetstream.KeyWatcher, loaded chan struct{}) {
	defer func() { _ = w.Stop() }()
	initial := true
	for e := range w.Updates() {
		if e == nil {
			if initial {
				initial = false
				close(loaded)
			}
			continue
		}
		if e.Operation() != jetstream.KeyValuePut {
			r.apply(e.Key(), State{}, false, e.Revision(), initial)
			continue
		}
		s, err := decode(e.Key(), e.Value(), e.Revision())
		if err != nil {
			r.log.Error().Err(err).Str("collection", e.Key()).Uint64("revision", e.Revision()).
				Msg("generations: unreadable State ignored")
			continue
		}
		r.apply(e.Key(), s, true, e.Revision(), initial)
	}
}

// apply caches s as collection's State (or drops it, exists false) unless a
// newer revision is cached already, and logs the change.
func (r *Registry) apply(collection string, s State, exists bool, rev uint64, initial bool) {
	r.mu.Lock()
	if rev <= r.seen[collection] {
		r.mu.Unlock()
		return
	}
	r.seen[collection] = rev
	prev, had := r.states[collection]
	if exists {
		r.states[collection] = s
	} else {
		delete(r.states, collection)
	}
	r.mu.Unlock()
	ev := r.log.Info()
	if initial || (had && exists && sameStep(prev, s)) {
		ev = r.log.Debug() // a checkpoint or heartbeat
	}
	ev = ev.Str("collection", collection).Uint64("revision", rev)
	if !exists {
		ev.Msg("generations: State deleted")
		return
	}
	ev = ev.Str("serving", s.Serving.Name)
	if s.Building != nil {
		ev = ev.Str("building", s.Building.Name)
	}
	if s.Previous != nil {
		ev = ev.Str("previous", s.Previous.Name)
	}
	if s.Job != nil {
		ev = ev.Str("job", s.Job.ID).Str("action", string(s.Job.Action)).Str("phase", string(s.Job.Phase))
	}
	ev.Msg("generations: State seen")
}

// sameStep reports whether a and b have the same generations and the same
// Job in the same phase: b is a checkpoint of a.
func sameStep(a, b State) bool {
	name := func(g *Generation) string {
		if g == nil {
			return ""
		}
		return g.Name
	}
	step := func(j *Job) [2]string {
		if j == nil {
			return [2]string{}
		}
		return [2]string{j.ID, string(j.Phase)}
	}
	return a.Serving.Name == b.Serving.Name && name(a.Building) == name(b.Building) &&
		name(a.Previous) == name(b.Previous) && step(a.Job) == step(b.Job)
}

// Cached returns the newest State of collection the watch has seen; ok is
// false when it has none. It never blocks.
func (r *Registry) Cached(collection string) (s State, ok bool) {
	r.mu.RLock()
	s, ok = r.states[collection]
	r.mu.RUnlock()
	return s.clone(), ok
}

// All returns every cached State, sorted by collection.
func (r *Registry) All() []State {
	r.mu.RLock()
	all := make([]State, 0, len(r.states))
	for _, s := range r.states {
		all = append(all, s.clone())
	}
	r.mu.RUnlock()
	slices.SortFunc(all, func(a, b State) int { return strings.Compare(a.Collection, b.Collection) })
	return all
}

// Current returns collection's State as the bucket's stream leader has it:
// every update made before the call began is seen. ok is false when it has
// none. It asks the leader through the JetStream API, never with a direct
// get, which any replica may answer from a late copy.
func (r *Registry) Current(ctx context.Context, collection string) (s State, ok bool, err error) {
	s, ok, _, err = r.read(ctx, collection)
	return s, ok, err
}

// read returns collection's State from the stream leader and the revision
// of its key's last entry: the State's, or the deletion's when it was
// deleted (ok false); 0 when the key never had one.
func (r *Registry) read(ctx context.Context, collection string) (s State, ok bool, rev uint64, err error) {
	if !pipeline.ValidCollection(collection) {
		return State{}, false, 0, fmt.Errorf("generations: collection %s: not a collection name", pipeline.ShortQuote(collection))
	}
	req, err := json.Marshal(struct {
		LastBySubject string `json:"last_by_subj"`
	}{"$KV." + Bucket + "." + collection})
	if err != nil {
		return State{}, false, 0, err
	}
	if _, has := ctx.Deadline(); !has {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, r.js.Options().DefaultTimeout)
		defer cancel()
	}
	msg, err := r.js.Conn().RequestWithContext(ctx, r.getSub, req)
	if err != nil {
		return State{}, false, 0, fmt.Errorf("generations: read %s: %w", collection, err)
	}
	var resp struct {
		Message *struct {
			Header []byte `json:"hdrs"` // base64 in JSON
			Data   []byte `json:"data"`
			Seq    uint64 `json:"seq"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(msg.Data, &resp); err != nil {
		return State{}, false, 0, fmt.Errorf("generations: read %s: %w", collection, err)
	}
	switch {
	case resp.Error != nil && (resp.Error.ErrorCode == jetstream.JSErrCodeMessageNotFound ||
		resp.Error.ErrorCode == jetstream.JSErrCodeStreamNotFound): // no State yet
		return State{}, false, 0, nil
	case resp.Error != nil:
		return State{}, false, 0, fmt.Errorf("generations: read %s: %w", collection, resp.Error)
	case resp.Message == nil:
		return State{}, false, 0, fmt.Errorf("generations: read %s: empty answer", collection)
	}
	m := resp.Message
	if deleted(m.Header) {
		return State{}, false, m.Seq, nil
	}
	s, err = decode(collection, m.Data, m.Seq)
	return s, err == nil, m.Seq, err
}

// deleted reports whether the headers of a key-value entry, in their wire
// form, mark a deletion or a purge.
func deleted(hdrs []byte) bool {
	if len(hdrs) == 0 {
		return false
	}
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(hdrs)))
	if _, err := tp.ReadLine(); err != nil { // NATS/1.0
		return false
	}
	h, _ := tp.ReadMIMEHeader()
	op := h.Get("KV-Operation")
	return op == "DEL" || op == "PURGE"
}

// decode reads a State stored under collection at revision rev.
func decode(collection string, data []byte, rev uint64) (State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return State{}, fmt.Errorf("generations: State of %s at revision %d: %w", collection, rev, err)
	}
	s.Collection, s.Revision = collection, rev
	return s, nil
}

// Update applies fn to collection's current State (the zero State with
// only Collection set, exists false, when it has none) and stores the
// result if no one else updated it meanwhile, reading and applying again
// otherwise: fn may run several times and must depend on nothing but s.
// fn returning ErrNoChange leaves the State as it is and Update returns it
// with a nil error; any other error is returned as it is. The State
// returned carries its new Revision, and Cached returns it (or a newer one)
// once Update has returned.
func (r *Registry) Update(ctx context.Context, collection string, fn func(s *State, exists bool) error) (State, error) {
	if r.readOnly {
		return State{}, fmt.Errorf("generations: update %s: the registry is read-only", collection)
	}
	kv := *r.kv.Load()
	for attempt := 0; ; attempt++ {
		s, exists, rev, err := r.read(ctx, collection)
		if err != nil {
			return State{}, err
		}
		if !exists {
			s = State{Collection: collection}
		}
		if err := fn(&s, exists); errors.Is(err, ErrNoChange) {
			return s, nil
		} else if err != nil {
			return State{}, err
		}
		s.Collection = collection
		data, err := json.Marshal(s)
		if err != nil {
			return State{}, fmt.Errorf("generations: State of %s: %w", collection, err)
		}
		var newRev uint64
		if rev == 0 {
			newRev, err = kv.Create(ctx, collection, data)
		} else {
			newRev, err = kv.Update(ctx, collection, data, rev)
		}
		if err == nil {
			s.Revision = newRev
			r.apply(collection, s.clone(), true, newRev, false)
			return s, nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) && !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			return State{}, fmt.Errorf("generations: update %s: %w", collection, err)
		}
		// Another process updated it first: read it again after a short,
		// random wait, so that contenders do not keep colliding.
		wait := time.Duration(rand.Int64N(int64(time.Millisecond) << min(attempt, 6)))
		select {
		case <-ctx.Done():
			return State{}, fmt.Errorf("generations: update %s: %w", collection, ctx.Err())
		case <-time.After(wait):
		}
	}
}

// clone returns a copy of s that shares no pointer with it.
func (s State) clone() State {
	if s.Building != nil {
		b := *s.Building
		s.Building = &b
	}
	if s.Previous != nil {
		p := *s.Previous
		s.Previous = &p
	}
	if s.Job != nil {
		j := *s.Job
		if j.Target != nil {
			t := *j.Target
			j.Target = &t
		}
		if j.Report != nil {
			rep := *j.Report
			rep.Tenants = slices.Clone(rep.Tenants)
			rep.Mismatches = slices.Clone(rep.Mismatches)
			j.Report = &rep
		}
		s.Job = &j
	}
	return s
}

// Close stops the watch; the Registry must not be used afterwards.
func (r *Registry) Close() error {
	r.stop()
	<-r.done
	return nil
}
