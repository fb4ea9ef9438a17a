package localstore

import "context"

// MaxVersion returns the highest version of any point in collection, 0 when
// it holds none, as the Qdrant store's MaxVersion does. It scans the
// collection's points in memory, under the read lock; nothing is read from
// disk. An unknown collection is an error wrapping
// pipeline.ErrUnknownCollection.
func (s *Store) MaxVersion(ctx context.Context, collection string) (uint64, error) {
	var top uint64
	err := s.read(ctx, collection, func(c *coll) error {
		for _, p := range c.st.points {
			top = max(top, p.version)
		}
		return nil
	})
	return top, err
}
