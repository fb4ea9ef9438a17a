package search

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/ragpipe/ragpipe/pipeline"
)

// target is what a request addresses: the ragpipe collection of its
// subject, which replies, metrics and the collection label name, and the
// generation serving it, whose store collection Index calls name and whose
// embedder embeds queries.
type target struct {
	name string
	Serving
}

// onServing calls do with the generation serving collection. When do
// answers 404 for a generation whose store collection is not named like
// collection, that generation may have been dropped after a switch the
// cached State does not show yet: do is called once more with the
// generation the State's source of truth names, if that is another one.
// A 404 for a store collection named like collection (no State, or a
// collection that does not exist) is final, so that requests naming
// missing collections cost no read of the source of truth.
func (s *Service) onServing(ctx context.Context, j job, collection string, do func(target) *Error) *Error {
	t, e := s.serving(ctx, j, collection, false)
	if e != nil {
		return e
	}
	e = do(t)
	if e == nil || e.Code != CodeNotFound {
		return e
	}
	s.known.Delete(t.Collection)
	if s.cfg.Serving == nil || t.Collection == collection {
		return e
	}
	fresh, fe := s.serving(ctx, j, collection, true)
	if fe != nil {
		return fe
	}
	if fresh.Collection == t.Collection {
		return e
	}
	s.log.Info().Str("subject", j.msg.Subject).Str("generation", t.Collection).Str("serving", fresh.Collection).
		Msg("generation not found; the request goes to the one serving now")
	return do(fresh)
}

// serving returns the generation serving collection: Config.Serving's, or
// without it the store collection of that name and Config.Embedder's
// embedder. An error of Config.Serving is answered 500 with its reason when
// it is permanent or a misconfiguration, else 503.
func (s *Service) serving(ctx context.Context, j job, collection string, fresh bool) (target, *Error) {
	if s.cfg.Serving == nil {
		return target{name: collection, Serving: Serving{Collection: collection, Embedder: s.cfg.Embedder(collection)}}, nil
	}
	sv, err := s.cfg.Serving(ctx, collection, fresh)
	if err == nil && (sv.Collection == "" || sv.Embedder == nil) {
		err = pipeline.Permanent(fmt.Errorf("no store collection or embedder for collection %q", collection))
	}
	if err == nil {
		return target{name: collection, Serving: sv}, nil
	}
	e := &Error{Code: CodeUnavailable, Message: fmt.Sprintf("could not learn which generation serves collection %q: its state is unavailable; retry later", collection)}
	switch {
	case pipeline.IsPermanent(err), pipeline.IsMisconfigured(err):
		e = &Error{Code: CodeInternal, Message: fmt.Sprintf("collection %q cannot be served: %s", collection, err)}
	case errors.Is(err, context.DeadlineExceeded):
		e.Message = fmt.Sprintf("could not learn which generation serves collection %q within %s; retry later", collection, s.cfg.Timeout)
	}
	if e.Code == CodeInternal {
		logFailure(s.log.Error(), j, target{name: collection}, e.Code, err)
	} else {
		logFailure(s.log.Warn(), j, target{name: collection}, e.Code, err)
	}
	return target{}, e
}

// logFailure logs a failed request: its subject, and the store collection
// of its generation when that is not named like the subject's collection.
func logFailure(ev *zerolog.Event, j job, t target, code int, err error) {
	ev = ev.Err(err).Str("subject", j.msg.Subject).Int("code", code)
	if t.Collection != "" && t.Collection != t.name {
		ev = ev.Str("generation", t.Collection)
	}
	ev.Msg("request failed")
}
