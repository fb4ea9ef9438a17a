package localstore

import (
	"context"

	"github.com/ragpipe/ragpipe/pipeline"
)

// CreateWithoutKeywords creates collection c under exactly its name
// without keyword vectors, as storetest.WithoutKeywords asks: the state of
// a collection created before them, whatever Config.NoKeywords says.
func (s *Store) CreateWithoutKeywords(ctx context.Context, c pipeline.Collection) error {
	c.Keywords = false
	return s.createExact(ctx, c)
}
