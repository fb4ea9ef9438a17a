package search

import (
	"encoding/json"
	"fmt"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
)

// The service answers the NATS micro discovery protocol ($SRV.PING,
// $SRV.INFO, $SRV.STATS) itself, with the reply types of nats.go's micro
// package, rather than through micro.AddService. micro measures an
// endpoint's requests, errors and processing time around its handler, which
// it calls serially on the endpoint's one subscription: a service answering
// from a shared pool of handlers could only report the hand-off to the pool
// (no errors, no time), and one subscription per handler would let a slow
// request hold up the requests the server routed to its subscription while
// other handlers idle. Here every endpoint counts each request from its
// arrival to its reply, error replies included, which is what `nats micro
// stats` shows.

// endpointStats are an endpoint's counters in $SRV.STATS.
type endpointStats struct {
	requests   int           // answered
	errors     int           // answered with an error reply
	lastError  string        // "<code>:<message>", as micro reports it
	processing time.Duration // summed from arrival to reply
}

// endpointData is the data of an endpoint in $SRV.STATS: this replica's
// handlers.
type endpointData struct {
	InFlight    int64 `json:"in_flight"`   // requests held by a handler now
	Concurrency int   `json:"concurrency"` // handlers, shared by the endpoints
}

// record counts one answered request of e that took took; errMsg is the
// error reply's "<code>:<message>", or "" for a success.
func (s *Service) record(e endpoint, took time.Duration, errMsg string) {
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	st := &s.stats[e]
	st.requests++
	st.processing += took
	if errMsg != "" {
		st.errors++
		st.lastError = errMsg
	}
}

func (s *Service) identity() micro.ServiceIdentity {
	return micro.ServiceIdentity{Name: ServiceName, ID: s.id, Version: Version, Metadata: map[string]string{"prefix": s.cfg.Prefix}}
}

// Info is the service's $SRV.INFO answer: id, version and endpoints.
func (s *Service) Info() micro.Info {
	info := micro.Info{ServiceIdentity: s.identity(), Type: micro.InfoResponseType, Description: description}
	for e := range numEndpoints {
		info.Endpoints = append(info.Endpoints, micro.EndpointInfo{
			Name: e.String(), Subject: s.subject(e, "*", "*"), QueueGroup: queueGroup,
			Metadata: maps.Clone(endpointMetadata),
		})
	}
	return info
}

// Stats is the service's $SRV.STATS answer: each endpoint's requests, error
// replies and processing time, from each request's arrival to its reply.
func (s *Service) Stats() micro.Stats {
	st := micro.Stats{ServiceIdentity: s.identity(), Type: micro.StatsResponseType, Started: s.started}
	for e := range numEndpoints {
		data, _ := json.Marshal(endpointData{InFlight: s.inFlight[e].Load(), Concurrency: s.cfg.Concurrency})
		s.statsMu.Lock()
		c := s.stats[e]
		s.statsMu.Unlock()
		es := &micro.EndpointStats{
			Name: e.String(), Subject: s.subject(e, "*", "*"), QueueGroup: queueGroup,
			NumRequests: c.requests, NumErrors: c.errors, LastError: c.lastError,
			ProcessingTime: c.processing, Data: data,
		}
		if c.requests > 0 {
			es.AverageProcessingTime = c.processing / time.Duration(c.requests)
		}
		st.Endpoints = append(st.Endpoints, es)
	}
	return st
}

// subscribeDiscovery answers PING, INFO and STATS on the subjects that
// address every service, the ragpipe-search services, and this instance.
func (s *Service) subscribeDiscovery() error {
	verbs := []struct {
		verb   micro.Verb
		answer func() any
	}{
		{micro.PingVerb, func() any { return micro.Ping{ServiceIdentity: s.identity(), Type: micro.PingResponseType} }},
		{micro.InfoVerb, func() any { return s.Info() }},
		{micro.StatsVerb, func() any { return s.Stats() }},
	}
	for _, v := range verbs {
		for _, target := range [][2]string{{"", ""}, {ServiceName, ""}, {ServiceName, s.id}} {
			subject, err := micro.ControlSubject(v.verb, target[0], target[1])
			if err != nil {
				return err
			}
			sub, err := s.cfg.Conn.Subscribe(subject, func(m *nats.Msg) {
				if m.Reply == "" {
					return
				}
				data, err := json.Marshal(v.answer())
				if err == nil {
					err = m.Respond(data)
				}
				if err != nil {
					s.log.Warn().Err(err).Str("subject", m.Subject).Msg("could not answer a discovery request")
				}
			})
			if err != nil {
				return fmt.Errorf("subscribe to %s: %w", subject, err)
			}
			s.discovery = append(s.discovery, sub)
		}
	}
	return nil
}
