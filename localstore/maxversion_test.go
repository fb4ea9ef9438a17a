package localstore_test

import "context"

// MaxVersion lets the contract suite's MaxVersion test read the reopened
// store.
func (r *reopeningStore) MaxVersion(ctx context.Context, collection string) (uint64, error) {
	return r.s.MaxVersion(ctx, collection)
}
