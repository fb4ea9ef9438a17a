package search

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// ErrNoSearcher reports that no search service answers the subject.
var ErrNoSearcher = errors.New("no search service is running")

// DefaultClientTimeout bounds a Client request whose context has no
// deadline. It exceeds the service's default Timeout, so that the service's
// own 503 arrives before the client gives up.
const DefaultClientTimeout = 10 * time.Second

// Client sends search, list and status requests to the search service;
// `ragpipe query` and `ragpipe publish --wait` use it. It is safe for concurrent use.
type Client struct {
	// Conn is the connection requests are sent on. Required.
	Conn *nats.Conn
	// Prefix is the subject prefix. Default "rag".
	Prefix string
	// InboxPrefix, when set, is the prefix of reply subjects: each request
	// waits on InboxPrefix.<unique id> with a subscription of its own. A
	// tenant whose NATS permissions allow only its own inbox (deploy/nats:
	// _INBOX.<user_id>) sets it. Default: the connection's inbox.
	InboxPrefix string
}

// Search sends req on <prefix>.search.<userID>.<collection> and waits for
// the reply until ctx ends (DefaultClientTimeout without a deadline). An
// error reply is returned as *Error; no searcher as ErrNoSearcher.
func (c *Client) Search(ctx context.Context, userID, collection string, req SearchRequest) (*SearchReply, error) {
	var reply SearchReply
	if err := c.call(ctx, "search", userID, collection, req, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// List sends req on <prefix>.list.<userID>.<collection>; see Search.
func (c *Client) List(ctx context.Context, userID, collection string, req ListRequest) (*ListReply, error) {
	var reply ListReply
	if err := c.call(ctx, "list", userID, collection, req, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

// Status sends req on <prefix>.status.<userID>.<collection>, asking which of
// up to MaxStatusDocs documents are stored, with what version; see Search.
func (c *Client) Status(ctx context.Context, userID, collection string, req StatusRequest) (*StatusReply, error) {
	var reply StatusReply
	if err := c.call(ctx, "status", userID, collection, req, &reply); err != nil {
		return nil, err
	}
	return &reply, nil
}

func (c *Client) call(ctx context.Context, kind, userID, collection string, req, reply any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("%s request: %w", kind, err)
	}
	prefix := c.Prefix
	if prefix == "" {
		prefix = "rag"
	}
	subject := prefix + "." + kind + "." + userID + "." + collection
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultClientTimeout)
		defer cancel()
	}
	msg, err := c.request(ctx, subject, body)
	switch {
	case errors.Is(err, nats.ErrNoResponders):
		return fmt.Errorf("%s: %w", subject, ErrNoSearcher)
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s: no reply in time: %w", subject, err)
	case err != nil:
		return fmt.Errorf("%s: %w", subject, err)
	}
	if e := replyError(msg); e != nil {
		return e
	}
	if err := json.Unmarshal(msg.Data, reply); err != nil {
		return fmt.Errorf("%s: undecodable reply: %w", subject, err)
	}
	return nil
}

// request sends body on subject and returns the reply.
func (c *Client) request(ctx context.Context, subject string, body []byte) (*nats.Msg, error) {
	if c.InboxPrefix == "" {
		return c.Conn.RequestWithContext(ctx, subject, body)
	}
	inbox := c.InboxPrefix + "." + strings.TrimPrefix(nats.NewInbox(), nats.InboxPrefix)
	sub, err := c.Conn.SubscribeSync(inbox)
	if err != nil {
		return nil, err
	}
	defer func() { _ = sub.Unsubscribe() }()
	if err := c.Conn.PublishRequest(subject, inbox, body); err != nil {
		return nil, err
	}
	msg, err := sub.NextMsgWithContext(ctx)
	if err != nil {
		return nil, err
	}
	// The server answers a request nobody subscribes to with a bodiless
	// status 503 message (nats.go's Request does the same check).
	if len(msg.Data) == 0 && msg.Header.Get("Status") == "503" {
		return nil, nats.ErrNoResponders
	}
	return msg, nil
}

// replyError returns the *Error an error reply carries, or nil.
func replyError(msg *nats.Msg) *Error {
	code := msg.Header.Get(micro.ErrorCodeHeader)
	if code == "" {
		return nil
	}
	e := &Error{Message: msg.Header.Get(micro.ErrorHeader)}
	e.Code, _ = strconv.Atoi(code)
	var body errorBody
	if json.Unmarshal(msg.Data, &body) == nil && body.Error != "" {
		e.Message = body.Error
	}
	return e
}
