package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
	"github.com/ragpipe/ragpipe/telemetry"
)

// Identity of the NATS micro service, as $SRV.PING, $SRV.INFO and $SRV.STATS
// report it.
const (
	ServiceName = "ragpipe-search"
	Version     = "0.3.0" // semver of the request and reply formats this service speaks
	description = "ragpipe tenant-scoped vector search: <prefix>.search.<user_id>.<collection>, <prefix>.list.<user_id>.<collection> and <prefix>.status.<user_id>.<collection>"
)

// Config configures a Service; zero fields take the documented defaults.
type Config struct {
	// Conn is the connection the service subscribes and replies on. Required.
	Conn *nats.Conn
	// Index is the vector store searched. Required.
	Index Index
	// Embedder returns the embedder of a collection, the one its documents
	// were embedded with; queries are embedded with it. It must return an
	// embedder for any collection name. Required unless Serving is set, which
	// takes its place.
	Embedder func(collection string) Embedder
	// Serving returns the generation serving a ragpipe collection (the name
	// in subjects): the store collection that Index calls name and the
	// embedder of its points, for queries and the dimensions of a search by
	// vector. fresh asks for the generation as its source of truth holds it
	// now rather than a cached one; the service asks so once when a
	// generation it was given turns out not to exist (dropped meanwhile).
	// A permanent or misconfiguration error (pipeline.IsPermanent,
	// pipeline.IsMisconfigured: a generation this process cannot serve,
	// such as one naming an embedder it lacks) is answered 500 with its
	// reason, any other 503. It must be safe for concurrent use and should
	// not block when fresh is false. Default nil: every collection is served
	// by the store collection of its own name and Embedder.
	Serving func(ctx context.Context, collection string, fresh bool) (Serving, error)
	// Prefix is the subject prefix. Default "rag".
	Prefix string
	// Concurrency is how many requests are handled at once. Default 32.
	Concurrency int
	// Queue is how many received requests may wait for a free handler; more
	// wait unread in the subscriptions' pending buffers, where their deadline
	// has not started yet. Default 1024.
	Queue int
	// Timeout bounds one request from its arrival to its reply, including
	// the wait for a free handler and the retries of an unavailable store;
	// a request that runs out of time is answered 503. Clients should wait
	// longer than this for a reply. Default 5s.
	Timeout time.Duration
	// Keys, when set, means chunk texts are stored encrypted (encryption at
	// rest): it returns a tenant's key without ever creating one, nil with a
	// nil error for a tenant that has none (never published, or forgotten),
	// and blocks until done or ctx ends. Search hits are returned with their
	// texts opened, those that do not open left out; the query's keyword
	// vector takes the tenant's keyed term ids, so that a tenant without a
	// key finds nothing by keyword. An error is answered as a store error.
	// Default nil: texts are returned as stored.
	Keys func(ctx context.Context, tenant string) (TenantKey, error)
	// Metrics, when set, counts requests by collection and code and times
	// searches; a collection found to exist is admitted to the bounded
	// collection label (telemetry.Metrics.AdmitCollection).
	Metrics *telemetry.Metrics
	// Logger receives a line per store failure (503 at warn, 500 at error)
	// and, at debug, one per request. The zero Logger discards everything.
	Logger zerolog.Logger
}

func (c *Config) setDefaults() error {
	if c.Prefix == "" {
		c.Prefix = "rag"
	}
	if c.Concurrency == 0 {
		c.Concurrency = 32
	}
	if c.Queue == 0 {
		c.Queue = 1024
	}
	if c.Timeout == 0 {
		c.Timeout = 5 * time.Second
	}
	var errs []error
	if c.Conn == nil {
		errs = append(errs, errors.New("no NATS connection"))
	}
	if c.Index == nil {
		errs = append(errs, errors.New("no index"))
	}
	if c.Embedder == nil && c.Serving == nil {
		errs = append(errs, errors.New("no embedder"))
	}
	if c.Concurrency < 0 || c.Queue < 0 {
		errs = append(errs, fmt.Errorf("concurrency %d or queue %d is negative", c.Concurrency, c.Queue))
	}
	if c.Timeout < 0 {
		errs = append(errs, fmt.Errorf("timeout %s is negative", c.Timeout))
	}
	return errors.Join(errs...)
}

// endpoint is what a request asks for.
type endpoint int

const (
	searchEndpoint endpoint = iota
	listEndpoint
	statusEndpoint
	numEndpoints
)

var endpointNames = [numEndpoints]string{"search", "list", "status"}

func (e endpoint) String() string { return endpointNames[e] }

// queueGroup is the queue group of every endpoint: the replicas share the
// requests.
const queueGroup = "q"

// endpointMetadata is every endpoint's metadata in $SRV.INFO.
var endpointMetadata = map[string]string{"format": "CONTRACT §4, §5, §5b"}

// job is one request waiting for or held by a handler.
type job struct {
	endpoint endpoint
	msg      *nats.Msg
	start    time.Time // arrival: the request's deadline counts from here
}

// Service is the search service: the NATS micro service ragpipe-search with
// the endpoints search (<prefix>.search.*.*), list (<prefix>.list.*.*) and
// status (<prefix>.status.*.*), all in the queue group "q", so that any
// number of replicas share the requests. Its methods are safe for
// concurrent use.
//
// The tenant and collection of a request come from its subject only: the
// user_id condition of every store query is built from the subject's token,
// and a body that names another user is refused.
//
// Each endpoint's subscription stamps a request's arrival and queues it for
// a fixed pool of Concurrency handlers shared by the endpoints (blocking
// while Queue requests wait), so that a slow request holds up no other while
// a handler is free. Replies follow the micro error convention (headers
// Nats-Service-Error-Code and Nats-Service-Error, body {"error": "..."}).
// The service answers $SRV.PING, $SRV.INFO and $SRV.STATS itself
// (discovery.go), its statistics counting every request from arrival to
// reply.
type Service struct {
	cfg     Config
	log     zerolog.Logger
	base    context.Context // parent of request contexts: values only, never cancelled
	id      string          // this instance, in discovery
	started time.Time

	endpoints []*nats.Subscription // by endpoint
	discovery []*nats.Subscription

	mu      sync.RWMutex // held for reading by dispatch, for writing to close jobs
	closed  bool         // jobs is closed: Stop has handed out every request received
	jobs    chan job     // requests waiting for a handler
	workers sync.WaitGroup
	stop    sync.Once
	stopErr error

	inFlight [numEndpoints]atomic.Int64 // requests held by a handler, by endpoint
	statsMu  sync.Mutex
	stats    [numEndpoints]endpointStats

	// known holds the store collections seen to exist: a search embeds its
	// query only after its generation was found, and a 404 forgets it.
	known sync.Map
}

// Start subscribes the service on cfg.Conn and starts its handlers. ctx
// supplies values to request contexts; cancelling it does not stop the
// service (Stop does, after finishing the requests received).
func Start(ctx context.Context, cfg Config) (*Service, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("search: %w", err)
	}
	s := &Service{
		cfg:     cfg,
		log:     cfg.Logger.With().Str("component", "search").Logger(),
		base:    context.WithoutCancel(ctx),
		id:      strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix), // a NUID, as micro's ids
		started: time.Now().UTC(),
		jobs:    make(chan job, cfg.Queue),
	}
	for range cfg.Concurrency {
		s.workers.Go(s.work)
	}
	err := s.subscribe()
	if err == nil {
		// The subscriptions are sent, not yet known to the server: wait for
		// its answer to a ping, so that a request sent through that server
		// once Start returns finds the service (the other servers of a
		// cluster learn of the subscriptions shortly after).
		err = cfg.Conn.Flush()
	}
	if err != nil {
		for _, sub := range append(s.endpoints, s.discovery...) {
			_ = sub.Unsubscribe()
		}
		s.stopWorkers()
		return nil, fmt.Errorf("search: %w", err)
	}
	return s, nil
}

// subscribe subscribes the endpoints, then discovery.
func (s *Service) subscribe() error {
	for e := range numEndpoints {
		subject := s.subject(e, "*", "*")
		sub, err := s.cfg.Conn.QueueSubscribe(subject, queueGroup, func(m *nats.Msg) { s.dispatch(e, m) })
		if err != nil {
			return fmt.Errorf("subscribe to %s: %w", subject, err)
		}
		s.endpoints = append(s.endpoints, sub)
	}
	return s.subscribeDiscovery()
}

// Stop stops taking requests, answers every request already received (each
// is answered by its deadline at the latest), flushes the replies and
// returns. If ctx ends before the subscriptions have handed every received
// request to the queue, those not yet queued are answered 503 and Stop
// returns an error wrapping ctx's. Stopping twice is harmless; Stop does not
// close the connection.
func (s *Service) Stop(ctx context.Context) error {
	s.stop.Do(func() { s.stopErr = s.drain(ctx) })
	return s.stopErr
}

func (s *Service) drain(ctx context.Context) error {
	nc := s.cfg.Conn
	// Drain: the server routes no more requests here, and those it already
	// sent are still handed to dispatch.
	for _, sub := range s.endpoints {
		if err := sub.Drain(); err != nil && !errors.Is(err, nats.ErrConnectionClosed) {
			s.log.Warn().Err(err).Str("subject", sub.Subject).Msg("stopping the search service")
		}
	}
	var err error
	if !nc.IsClosed() {
		// After a flush the server has sent everything it routed here; the
		// barrier runs once every subscription has handed all of it out.
		_ = nc.FlushTimeout(timeLeft(ctx, 5*time.Second))
		handed := make(chan struct{})
		if nc.Barrier(func() { close(handed) }) == nil {
			select {
			case <-handed:
			case <-ctx.Done():
				err = fmt.Errorf("search: requests still arriving at shutdown: %w", ctx.Err())
			}
		}
	}
	s.stopWorkers()
	for _, sub := range s.discovery {
		_ = sub.Unsubscribe()
	}
	if !nc.IsClosed() {
		if ferr := nc.FlushTimeout(timeLeft(ctx, 5*time.Second)); ferr != nil && err == nil {
			err = fmt.Errorf("search: flush replies: %w", ferr)
		}
	}
	return err
}

// stopWorkers closes the queue, lets the handlers answer what it holds and
// waits for them; requests dispatched later are answered 503.
func (s *Service) stopWorkers() {
	s.mu.Lock()
	s.closed = true
	close(s.jobs)
	s.mu.Unlock()
	s.workers.Wait()
}

// timeLeft is ctx's remaining time, or def when it has no deadline.
func timeLeft(ctx context.Context, def time.Duration) time.Duration {
	if d, ok := ctx.Deadline(); ok {
		return max(time.Until(d), time.Millisecond)
	}
	return def
}

// subject is <prefix>.<endpoint>.<user>.<collection>.
func (s *Service) subject(e endpoint, user, collection string) string {
	return s.cfg.Prefix + "." + e.String() + "." + user + "." + collection
}

// dispatch receives a request of endpoint e: it queues it for the handlers,
// waiting while the queue is full.
func (s *Service) dispatch(e endpoint, msg *nats.Msg) {
	j := job{endpoint: e, msg: msg, start: time.Now()}
	if msg.Reply == "" {
		s.log.Debug().Str("subject", msg.Subject).Msg("request without a reply subject ignored")
		return
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.closed { // only when Stop gave up waiting for the subscriptions
		s.reply(j, "", nil, &Error{Code: CodeUnavailable, Message: "the search service is shutting down; retry"})
		return
	}
	s.jobs <- j
}

// work is one handler: it answers queued requests until the queue is closed
// and empty.
func (s *Service) work() {
	for j := range s.jobs {
		s.handle(j)
	}
}

// handle answers one request.
func (s *Service) handle(j job) {
	s.inFlight[j.endpoint].Add(1)
	defer s.inFlight[j.endpoint].Add(-1)
	ctx, cancel := context.WithDeadline(s.base, j.start.Add(s.cfg.Timeout))
	defer cancel()

	userID, collection, ok := pipeline.ParseSubject(s.cfg.Prefix, j.endpoint.String(), j.msg.Subject)
	if !ok {
		s.reply(j, "", nil, badRequest("subject %s: want %s, user_id 1-128 characters of A-Z a-z 0-9 _ -, collection 1-64 characters of a-z 0-9 _ - starting with a letter",
			pipeline.ShortQuote(j.msg.Subject), s.subject(j.endpoint, "<user_id>", "<collection>")))
		return
	}
	var (
		reply any
		e     *Error
	)
	switch j.endpoint {
	case searchEndpoint:
		reply, e = s.search(ctx, j, userID, collection)
	case listEndpoint:
		reply, e = s.list(ctx, j, userID, collection)
	default:
		reply, e = s.status(ctx, j, userID, collection)
	}
	s.reply(j, collection, reply, e)
}

func (s *Service) search(ctx context.Context, j job, userID, collection string) (*SearchReply, *Error) {
	p, e := decodeSearch(j.msg.Data, userID, collection)
	if e != nil {
		return nil, e
	}
	key, e := s.tenantKey(ctx, j, userID, collection)
	if e != nil {
		return nil, e
	}
	q := pipeline.Query{
		UserID: userID, Mode: p.mode, TopK: p.topK, Filter: p.filter, ScoreThreshold: p.threshold,
	}
	if p.mode != pipeline.ModeDense {
		q.Keywords = s.queryKeywords(p.query, key)
	}
	var hits []pipeline.Hit
	e = s.onServing(ctx, j, collection, func(t target) *Error {
		var e *Error
		hits, e = s.searchIn(ctx, j, t, &p, q)
		return e
	})
	if e != nil {
		return nil, e
	}
	hits = s.open(j, collection, key, hits)
	if hits == nil {
		hits = []pipeline.Hit{}
	}
	for i := range hits {
		if hits[i].Metadata == nil {
			hits[i].Metadata = noMetadata
		}
	}
	return &SearchReply{Hits: hits, TookMS: millis(time.Since(j.start))}, nil
}

// searchIn runs the search p in the generation of t: the query embedded,
// or the request's vector checked, with its embedder.
func (s *Service) searchIn(ctx context.Context, j job, t target, p *searchParams, q pipeline.Query) ([]pipeline.Hit, *Error) {
	vector := p.vector
	switch {
	case p.mode == pipeline.ModeKeyword: // no embedding: the store finds the words
	case vector != nil:
		if n := t.Embedder.Dimensions(); len(vector) != n {
			return nil, badRequest("vector: has %d dimensions, collection %q has %d", len(vector), t.name, n)
		}
	default:
		// Embedding may be a paid call: only for a collection that exists.
		if e := s.exists(ctx, j, t); e != nil {
			return nil, e
		}
		vs, err := t.Embedder.Embed(ctx, []string{p.query})
		if be, ok := errors.AsType[*pipeline.BatchError](err); ok && len(be.Errs) == 1 && be.Errs[0] != nil {
			// The embedding service refused this text, not the deployment.
			return nil, badRequest("query: the embedding service refused it: %s", be.Errs[0])
		}
		if err != nil {
			return nil, s.failure(j, t, "embed the query", err)
		}
		vector = vs[0]
	}
	q.Vector = vector
	hits, err := s.cfg.Index.Search(ctx, t.Collection, q)
	if err != nil {
		return nil, s.failure(j, t, "search", err)
	}
	return hits, nil
}

// exists answers 404 unless the store collection of t exists. One found is
// remembered, so that only the first search of a generation asks the store,
// and its ragpipe collection is admitted to the bounded collection label of
// the metrics.
func (s *Service) exists(ctx context.Context, j job, t target) *Error {
	if _, ok := s.known.Load(t.Collection); ok {
		return nil
	}
	ok, err := s.cfg.Index.CollectionExists(ctx, t.Collection)
	switch {
	case err != nil:
		return s.failure(j, t, "look up the collection", err)
	case !ok:
		return notFound(t.name)
	}
	s.known.Store(t.Collection, struct{}{})
	if m := s.cfg.Metrics; m != nil {
		m.AdmitCollection(t.name)
	}
	return nil
}

func (s *Service) list(ctx context.Context, j job, userID, collection string) (*ListReply, *Error) {
	limit, cursor, e := decodeList(j.msg.Data, userID, collection)
	if e != nil {
		return nil, e
	}
	var (
		docs []pipeline.Doc
		next string
	)
	e = s.onServing(ctx, j, collection, func(t target) *Error {
		var err error
		docs, next, err = s.cfg.Index.List(ctx, t.Collection, userID, limit, cursor)
		if err != nil {
			return s.failure(j, t, "list", err)
		}
		return nil
	})
	if e != nil {
		return nil, e
	}
	if docs == nil {
		docs = []pipeline.Doc{}
	}
	for i := range docs {
		if docs[i].Metadata == nil {
			docs[i].Metadata = noMetadata
		}
	}
	return &ListReply{Docs: docs, NextCursor: next, TookMS: millis(time.Since(j.start))}, nil
}

func notFound(collection string) *Error {
	return &Error{Code: CodeNotFound, Message: fmt.Sprintf("collection %q does not exist", collection)}
}

// failure turns a store or embedder error met for t into the error reply,
// logging what the reply does not tell: store details are not the
// caller's business.
func (s *Service) failure(j job, t target, what string, err error) *Error {
	var e *Error
	switch {
	case errors.Is(err, pipeline.ErrUnknownCollection):
		return notFound(t.name)
	case errors.Is(err, pipeline.ErrInvalidCursor):
		return badRequest("cursor: not a cursor that a list reply returned")
	case errors.Is(err, pipeline.ErrNoKeywords):
		return badRequest("mode: %s", pipeline.ErrNoKeywords)
	case !pipeline.IsPermanent(err):
		e = &Error{Code: CodeUnavailable, Message: fmt.Sprintf("could not %s: the vector store or embedder is unavailable; retry later", what)}
		if errors.Is(err, context.DeadlineExceeded) {
			e.Message = fmt.Sprintf("could not %s within %s: the vector store or embedder is unavailable or overloaded; retry later", what, s.cfg.Timeout)
		}
		logFailure(s.log.Warn(), j, t, e.Code, err)
	default:
		e = &Error{Code: CodeInternal, Message: fmt.Sprintf("could not %s: internal error", what)}
		logFailure(s.log.Error(), j, t, e.Code, err)
	}
	return e
}

// reply publishes the reply of j, counts it in the endpoint's statistics and
// the metrics, and records its latency. collection is "" when the subject
// was invalid.
func (s *Service) reply(j job, collection string, reply any, e *Error) {
	msg := &nats.Msg{Subject: j.msg.Reply}
	if e == nil {
		buf := replyBuffers.Get().(*[]byte)
		data, err := encodeReply(*buf, reply)
		defer func() { // the connection has copied data by then
			if cap(data) <= maxPooledReply {
				*buf = data[:0]
				replyBuffers.Put(buf)
			}
		}()
		switch {
		case err != nil:
			s.log.Error().Err(err).Str("subject", j.msg.Subject).Msg("encode reply")
			e = &Error{Code: CodeInternal, Message: "could not encode the reply: internal error"}
		case int64(len(data)) > s.cfg.Conn.MaxPayload():
			e = &Error{Code: CodeInternal, Message: fmt.Sprintf("the reply of %d bytes exceeds the NATS max payload of %d bytes; ask for fewer results",
				len(data), s.cfg.Conn.MaxPayload())}
		default:
			msg.Data = data
		}
	}
	code, errMsg := 200, ""
	if e != nil {
		code = e.Code
		text := strings.Join(strings.Fields(e.Message), " ") // one line: it is a header
		msg.Header = nats.Header{
			micro.ErrorCodeHeader: []string{strconv.Itoa(code)},
			micro.ErrorHeader:     []string{text},
		}
		msg.Data, _ = json.Marshal(errorBody{Error: text})
		errMsg = strconv.Itoa(code) + ":" + text
	}
	// Counted before the reply leaves, so that a caller holding its reply
	// finds it in $SRV.STATS.
	elapsed := time.Since(j.start)
	s.record(j.endpoint, elapsed, errMsg)
	if m := s.cfg.Metrics; m != nil {
		label := collection
		if label == "" {
			label = telemetry.InvalidCollection
		} else if code == 200 {
			m.AdmitCollection(collection) // it exists
		}
		m.SearchRequests.WithLabelValues(label, strconv.Itoa(code)).Inc()
		if j.endpoint == searchEndpoint {
			m.SearchSeconds.WithLabelValues(label).Observe(elapsed.Seconds())
		}
	}
	if err := s.cfg.Conn.PublishMsg(msg); err != nil {
		s.log.Warn().Err(err).Str("subject", j.msg.Subject).Msg("could not send the reply")
	}
	ev := s.log.Debug().Str("subject", j.msg.Subject).Int("code", code).Dur("took", elapsed)
	if e != nil {
		ev = ev.Str("error", e.Message)
	}
	ev.Msg("request answered")
}

// noMetadata is the metadata of a hit or document that has none, encoded
// {} rather than null; replies are only encoded, so one empty map serves
// them all and is never written.
var noMetadata = map[string]any{}

// millis is d in milliseconds, to the microsecond.
func millis(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
