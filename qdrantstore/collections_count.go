package qdrantstore

import "context"

// CollectionNames returns the name of every collection in Qdrant, ragpipe's
// or not, with one request: what the ingest stage counts against
// RAGPIPE_MAX_COLLECTIONS. It retries transient failures for up to
// MaxRetryTime.
func (q *Store) CollectionNames(ctx context.Context) ([]string, error) {
	var names []string
	err := q.retry(ctx, "list", "", func(ctx context.Context) (err error) {
		names, err = q.client.ListCollections(ctx)
		return err
	})
	return names, err
}
