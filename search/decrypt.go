package search

import (
	"context"

	"github.com/ragpipe/ragpipe/pipeline"
)

// TenantKey is one tenant's key of encryption at rest, as the search needs
// it; keyring.TenantKey implements it. Its methods must be safe for
// concurrent use and must not block.
type TenantKey interface {
	// Open returns the clear text of the stored text of chunk chunkIndex of
	// document docID in collection, or an error when it was not sealed for
	// that point under this key.
	Open(collection, docID string, chunkIndex int, stored string) (string, error)
	// TermID is the keyword vector index of a term (a lowercased, stemmed
	// word) keyed by the tenant, as the chunks were indexed.
	TermID(term []byte) uint32
}

// tenantKey returns the key of userID, nil when encryption is off or the
// tenant has none.
func (s *Service) tenantKey(ctx context.Context, j job, userID, collection string) (TenantKey, *Error) {
	if s.cfg.Keys == nil {
		return nil, nil
	}
	key, err := s.cfg.Keys(ctx, userID)
	if err != nil {
		return nil, s.failure(j, target{name: collection}, "read the tenant's key", err)
	}
	return key, nil
}

// queryKeywords is the keyword vector of a search's text: with encryption
// at rest, of the tenant's keyed term ids, and nil for a tenant without a
// key, whose chunks no term can match.
func (s *Service) queryKeywords(text string, key TenantKey) *pipeline.SparseVector {
	switch {
	case s.cfg.Keys == nil:
		return pipeline.QueryKeywords(text)
	case key == nil:
		return nil
	}
	return pipeline.QueryKeywordsWith(text, key.TermID)
}

// open replaces the stored texts of hits with their clear texts, with
// encryption at rest. A hit whose text does not open (a ciphertext moved to
// another point, a text stored before encryption was on, a tenant forgotten
// while its points are being erased, or no key at all) is left out, and the
// request logs how many were: a reply never carries a text that is not the
// one sealed for its point.
func (s *Service) open(j job, collection string, key TenantKey, hits []pipeline.Hit) []pipeline.Hit {
	if s.cfg.Keys == nil {
		return hits
	}
	kept := hits[:0]
	var (
		dropped int
		first   error
	)
	for _, h := range hits {
		if key == nil {
			dropped++
			continue
		}
		text, err := key.Open(collection, h.DocID, h.ChunkIndex, h.Text)
		if err != nil {
			if first == nil {
				first = err
			}
			dropped++
			continue
		}
		h.Text = text
		kept = append(kept, h)
	}
	if dropped > 0 {
		ev := s.log.Warn().Str("subject", j.msg.Subject).Int("left_out", dropped)
		if first != nil {
			ev = ev.AnErr("first", first)
		} else {
			ev = ev.Str("reason", "the tenant has no key")
		}
		ev.Msg("hits whose text does not decrypt left out of the reply")
	}
	return kept
}
