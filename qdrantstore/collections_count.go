package qdrantstore

import "context"

// CollectionNames returns the names ragpipe knows Qdrant's collections by,
// its own or not, sorted: every alias (a ragpipe collection created since
// generations exist is the alias of its serving generation), every
// collection no alias points at, but no generation x__gN of a name x that
// exists. It is what the ingest stage counts against RAGPIPE_MAX_COLLECTIONS,
// and Collections lists. It takes two requests and retries transient
// failures for up to MaxRetryTime each.
func (q *Store) CollectionNames(ctx context.Context) ([]string, error) {
	collections, aliases, err := q.listing(ctx)
	if err != nil {
		return nil, err
	}
	return ragpipeNames(collections, aliases), nil
}
