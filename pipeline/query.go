package pipeline

import (
	"errors"
	"fmt"
	"math"
	"strings"
)

// Bounds of the requests (CONTRACT §4-5).
const (
	DefaultTopK  = 10   // hits returned when a search names no top_k
	MaxTopK      = 100  // largest top_k
	DefaultLimit = 100  // documents listed when a list request names no limit
	MaxLimit     = 1000 // largest list limit
)

// Query is one search, always scoped to one tenant.
type Query struct {
	UserID string    // the tenant, from the request subject; every hit belongs to it
	Vector []float32 // the query embedding; nil in ModeKeyword
	// Keywords holds the query's terms (QueryKeywords); nil in ModeDense.
	Keywords *SparseVector
	// Mode chooses dense, keyword or fused results; "" (ModeAuto) is
	// resolved by ModeFor.
	Mode SearchMode
	TopK int // most hits to return, 1-100
	// Filter holds metadata equality conditions: every key must match one
	// of its values (string, int64, float64 or bool).
	Filter map[string][]any
	// ScoreThreshold drops hits scoring below it when not nil.
	ScoreThreshold *float32
}

// SearchMode is how a search ranks chunks (CONTRACT §4).
type SearchMode string

// The search modes. A store answers ModeKeyword and ModeHybrid only for a
// collection with keyword vectors; otherwise it fails with ErrNoKeywords.
const (
	ModeAuto    SearchMode = ""        // hybrid where keyword vectors exist, else dense
	ModeHybrid  SearchMode = "hybrid"  // dense and keyword results fused by reciprocal rank
	ModeDense   SearchMode = "dense"   // the embedding alone
	ModeKeyword SearchMode = "keyword" // the keyword vector alone
)

// ModeFor is the mode a store runs q in, for a collection that has keyword
// vectors or not: q.Mode when set; else ModeHybrid where the collection has
// keyword vectors and q has keywords (a query of stop words only, or a search
// by vector, keeps its dense scores), else ModeDense.
func (q *Query) ModeFor(collectionKeywords bool) SearchMode {
	if q.Mode != ModeAuto {
		return q.Mode
	}
	if collectionKeywords && q.Keywords != nil && len(q.Keywords.Indices) > 0 {
		return ModeHybrid
	}
	return ModeDense
}

// Hybrid fusion, the same in every store: each of the dense and keyword
// searches returns PrefetchLimit(topK) candidates, and a chunk's fused score
// is the sum over both lists of weight/(RRFK + rank), rank counted from 1,
// the weight 1 for the dense list and KeywordWeight for the keyword list.
const RRFK = 60

// KeywordWeight is the keyword list's weight in hybrid fusion: counted twice,
// keyword matches of exact terms and identifiers are not outvoted by the
// dense list's near misses, while a chunk found by meaning alone still ranks
// (docs/SEARCH.md has the evaluation behind it).
const KeywordWeight = 2

// PrefetchLimit is how many candidates each side of a hybrid search returns
// before fusion: enough that a chunk ranked well by only one side survives.
func PrefetchLimit(topK int) int { return max(4*topK, 40) }

// ErrNoKeywords reports a keyword or hybrid search of a collection created
// without keyword vectors (before them, or with RAGPIPE_KEYWORDS=false); it
// is permanent (the request is refused, 400).
var ErrNoKeywords = Permanent(errors.New("the collection has no keyword vectors (created before them, or with RAGPIPE_KEYWORDS=false); search it with mode dense, or rebuild it with `ragpipe reindex --collection NAME` with the workers on RAGPIPE_KEYWORDS=true"))

// Hit is one matching chunk.
type Hit struct {
	DocID      string         `json:"doc_id"`
	ChunkIndex int            `json:"chunk_index"`
	Score      float32        `json:"score"`
	Text       string         `json:"text"`
	Metadata   map[string]any `json:"metadata"`
	Version    uint64         `json:"version"`
}

// Doc is one stored document of a tenant, as listed.
type Doc struct {
	DocID      string         `json:"doc_id"`
	Version    uint64         `json:"version"`
	ChunkCount int            `json:"chunk_count"`
	Metadata   map[string]any `json:"metadata"`
}

// ErrInvalidCursor reports a list cursor that no List call returned.
var ErrInvalidCursor = errors.New("invalid cursor")

// reservedKeys are the stored payload keys (CONTRACT §3) a filter may not
// name: filters address metadata only, and the tenant comes from the subject.
var reservedKeys = map[string]bool{
	"user_id": true, "doc_id": true, "version": true, "chunk_index": true,
	"chunk_count": true, "text": true,
}

// maxFilterKeyLen bounds a filter key, as a sanity limit.
const maxFilterKeyLen = 256

// ValidFilterKey says why key cannot name a metadata key in a filter, or
// returns "" when it can. Keys may not be one of the stored payload keys
// user_id, doc_id, version, chunk_index, chunk_count and text, and may not
// contain the path characters . [ ] " (metadata is flat).
func ValidFilterKey(key string) string {
	switch {
	case key == "":
		return "an empty key names no metadata key"
	case reservedKeys[key]:
		return fmt.Sprintf("key %q is not allowed: filters name metadata keys, and the tenant comes from the subject", key)
	case len(key) > maxFilterKeyLen:
		return fmt.Sprintf("key of %d bytes is longer than %d", len(key), maxFilterKeyLen)
	case strings.ContainsAny(key, `.[]"`):
		return fmt.Sprintf("key %s may not contain . [ ] or \" (metadata is flat)", ShortQuote(key))
	}
	return ""
}

// Validate reports what makes q unusable: an invalid tenant, no vector, a
// top_k out of 1-100, a bad filter key or value, a non-finite threshold.
// Stores call it before querying, so that no request can widen its scope.
func (q *Query) Validate() error {
	var errs []error
	if !ValidUserID(q.UserID) {
		errs = append(errs, fmt.Errorf("user_id %s: want 1-128 characters of A-Z a-z 0-9 _ -", ShortQuote(q.UserID)))
	}
	switch q.Mode {
	case ModeAuto, ModeHybrid, ModeDense:
		if len(q.Vector) == 0 {
			errs = append(errs, errors.New("no query vector"))
		}
	case ModeKeyword:
	default:
		errs = append(errs, fmt.Errorf("mode %s: want hybrid, dense or keyword", ShortQuote(string(q.Mode))))
	}
	if q.Keywords != nil {
		if err := q.Keywords.Check(); err != nil {
			errs = append(errs, fmt.Errorf("query keywords: %w", err))
		}
	}
	if q.TopK < 1 || q.TopK > MaxTopK {
		errs = append(errs, fmt.Errorf("top_k %d: want 1-%d", q.TopK, MaxTopK))
	}
	for key, values := range q.Filter {
		if problem := ValidFilterKey(key); problem != "" {
			errs = append(errs, fmt.Errorf("filter: %s", problem))
			continue
		}
		if len(values) == 0 {
			errs = append(errs, fmt.Errorf("filter %q: no values", key))
		}
		for _, v := range values {
			switch v := v.(type) {
			case string, int64, bool:
			case float64:
				if math.IsNaN(v) || math.IsInf(v, 0) {
					errs = append(errs, fmt.Errorf("filter %q: non-finite number", key))
				}
			default:
				errs = append(errs, fmt.Errorf("filter %q: value of type %T; want string, int64, float64 or bool", key, v))
			}
		}
	}
	if t := q.ScoreThreshold; t != nil && (math.IsNaN(float64(*t)) || math.IsInf(float64(*t), 0)) {
		errs = append(errs, errors.New("score_threshold is not finite"))
	}
	return errors.Join(errs...)
}

// ShortQuote quotes a value for an error message, cutting long ones so that
// a message stays one readable line (it travels in a NATS header).
func ShortQuote(s string) string {
	c, more := Cut(s, 64)
	if !more {
		return fmt.Sprintf("%q", s)
	}
	return fmt.Sprintf("%q…(%d bytes)", c, len(s))
}

// Cut shortens s to at most n bytes on a UTF-8 boundary and reports whether
// anything was cut.
func Cut(s string, n int) (string, bool) {
	if len(s) <= n {
		return s, false
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n], true
}
