package pipeline

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
)

// CheckDoc validates what a store builds the filters of a write or prune
// from. Strings must be valid UTF-8 (protobuf refuses to marshal anything
// else, an error that would otherwise look like a transient one) and the
// version must fit a signed 64-bit payload integer.
func CheckDoc(userID, docID string, version uint64) error {
	switch {
	case userID == "" || !utf8.ValidString(userID):
		return fmt.Errorf("invalid user_id %q", userID)
	case docID == "" || !utf8.ValidString(docID):
		return fmt.Errorf("invalid doc_id %q", docID)
	case version == 0 || version > math.MaxInt64:
		return fmt.Errorf("%s/%s: version %d out of range 1..%d", userID, docID, version, int64(math.MaxInt64))
	}
	return nil
}

// CheckPoint validates p, a point of w, as every store does before writing
// it. The tenant, document and version are those of w, which the conditional
// upsert and the delete are built from; a point that names another one is
// refused.
func CheckPoint(w *DocWrite, p *Point) error {
	switch {
	case p.UserID != "" && p.UserID != w.UserID,
		p.DocID != "" && p.DocID != w.DocID,
		p.Version != 0 && p.Version != w.Version:
		return fmt.Errorf("point %s (%s/%s v%d) does not belong to write %s/%s v%d",
			p.ID, p.UserID, p.DocID, p.Version, w.UserID, w.DocID, w.Version)
	case uuid.Validate(p.ID) != nil:
		return fmt.Errorf("point %d of %s/%s: id %q is not a UUID", p.ChunkIndex, w.UserID, w.DocID, p.ID)
	case len(p.Vector) == 0:
		return fmt.Errorf("point %s has no vector", p.ID)
	case !utf8.ValidString(p.Text):
		return fmt.Errorf("point %s: text is not valid UTF-8", p.ID)
	}
	return nil
}

// CollectionMismatch reports, as a permanent error, how the collection have
// found in store differs from want in dimensions or distance; nil when it
// does not.
func CollectionMismatch(store string, want, have Collection) error {
	if want.Dims != have.Dims {
		return Permanent(fmt.Errorf("collection %q has %d dimensions in %s, configured %d",
			want.Name, have.Dims, store, want.Dims))
	}
	if want.Distance != have.Distance {
		return Permanent(fmt.Errorf("collection %q has distance %s in %s, configured %s",
			want.Name, have.Distance, store, want.Distance))
	}
	return nil
}

// PlainMetadata returns md as stores keep it, every value in plain form:
// string, int64, float64, bool, nil, []any or map[string]any (nested objects
// are accepted leniently). Any Go slice of those and json.Number are
// converted; invalid UTF-8, non-finite numbers, integers beyond int64 and
// other types are errors. nil becomes an empty map.
func PlainMetadata(md map[string]any) (map[string]any, error) {
	out := make(map[string]any, len(md))
	for k, v := range md {
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("key %q is not valid UTF-8", k)
		}
		pv, err := plainValue(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		out[k] = pv
	}
	return out, nil
}

// plainValue converts one metadata value to its plain form.
func plainValue(v any) (any, error) {
	switch v := v.(type) {
	case nil, bool, int64:
		return v, nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("string %q is not valid UTF-8", v)
		}
		return v, nil
	case int:
		return int64(v), nil
	case int8:
		return int64(v), nil
	case int16:
		return int64(v), nil
	case int32:
		return int64(v), nil
	case uint:
		return plainUint(uint64(v))
	case uint8:
		return int64(v), nil
	case uint16:
		return int64(v), nil
	case uint32:
		return int64(v), nil
	case uint64:
		return plainUint(v)
	case float32:
		return plainFloat(float64(v))
	case float64:
		return plainFloat(v)
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %q: %w", v, err)
		}
		return plainFloat(f)
	case map[string]any:
		return PlainMetadata(v)
	case []any:
		return plainList(v)
	case []string:
		return plainList(v)
	case []bool:
		return plainList(v)
	case []int:
		return plainList(v)
	case []int64:
		return plainList(v)
	case []float64:
		return plainList(v)
	case []float32:
		return plainList(v)
	case []json.Number:
		return plainList(v)
	default:
		return nil, fmt.Errorf("unsupported type %T", v)
	}
}

func plainList[T any](vs []T) ([]any, error) {
	out := make([]any, len(vs))
	for i, v := range vs {
		pv, err := plainValue(v)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		out[i] = pv
	}
	return out, nil
}

func plainUint(v uint64) (any, error) {
	if v > math.MaxInt64 {
		return nil, fmt.Errorf("integer %d out of range", v)
	}
	return int64(v), nil
}

func plainFloat(f float64) (any, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("non-finite number %v", f)
	}
	return f, nil
}
