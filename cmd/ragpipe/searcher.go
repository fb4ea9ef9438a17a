package main

import (
	"context"
	"flag"
	"time"

	"github.com/ragpipe/ragpipe/telemetry"
)

var searcherCommand = command{
	name:    "searcher",
	summary: "Answer search, list and status requests (NATS micro service ragpipe-search on <prefix>.search.<user_id>.<collection>, <prefix>.list.<user_id>.<collection> and <prefix>.status.<user_id>.<collection>). Run as many replicas as you like.",
	usage:   "searcher [flags]",
	flags: func(fs *flag.FlagSet) func(context.Context, *environment, []string) error {
		o := &searchOptions{}
		searchFlags(fs, o)
		return func(ctx context.Context, env *environment, _ []string) error { return runSearcher(ctx, env, *o) }
	},
}

// searchFlags registers the search service's flags (searcher and dev).
func searchFlags(fs *flag.FlagSet, o *searchOptions) {
	fs.IntVar(&o.concurrency, "concurrency", 32, "search requests handled at once by this replica")
	fs.DurationVar(&o.timeout, "timeout", 5*time.Second, "deadline of one search request, from its arrival to its reply (retries of an unavailable store included); clients should wait longer")
	fs.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "on SIGINT/SIGTERM, how long to wait for the search requests in flight")
}

// searcherName is the searcher's NATS connection name.
const searcherName = "ragpipe-searcher"

func runSearcher(ctx context.Context, env *environment, o searchOptions) error {
	if err := o.validate(); err != nil {
		return err
	}
	step, open := openQdrant(ctx, env)
	s, q, err := startService(ctx, env, searcherName, step, open)
	if err != nil {
		return err
	}
	defer s.Close()
	svc, err := startSearch(ctx, env, s, qdrantRoles(q, 0), o) // 0: it ingests nothing, so defers no indexing
	if err != nil {
		return err
	}
	s.ready.Started(map[string]telemetry.Check{"nats": natsReady(s.nc), "qdrant": q.Health})
	<-ctx.Done()
	if err := stopSearch(ctx, env, svc, o); err != nil {
		return err
	}
	env.log.Info().Msg("stopped")
	return nil
}
