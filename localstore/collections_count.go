package localstore

import "context"

// CollectionNames returns the names of the ragpipe collections in the
// store, as Collections lists them (generations are not counted): what the
// ingest stage counts against RAGPIPE_MAX_COLLECTIONS.
func (s *Store) CollectionNames(ctx context.Context) ([]string, error) {
	colls, err := s.Collections(ctx)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(colls))
	for i, c := range colls {
		names[i] = c.Name
	}
	return names, nil
}
