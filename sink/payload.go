package sink

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Payload keys of a stored point (CONTRACT §3).
const (
	keyUserID     = "user_id"
	keyDocID      = "doc_id"
	keyChunkIndex = "chunk_index"
	keyChunkCount = "chunk_count"
	keyText       = "text"
	keyMetadata   = "metadata"
	keyVersion    = "version"
	// keyTextHash is an extension of CONTRACT §3: pipeline.TextHash of the
	// chunk, present when its vector may be reused.
	keyTextHash = "text_hash"
)

// pointStruct converts p, a point of w, to its Qdrant form. The tenant,
// document and version are taken from w, the write the conditional upsert and
// the delete are built from; a point that names another one is refused.
func pointStruct(w *pipeline.DocWrite, p *pipeline.Point) (*qdrant.PointStruct, error) {
	switch {
	case p.UserID != "" && p.UserID != w.UserID,
		p.DocID != "" && p.DocID != w.DocID,
		p.Version != 0 && p.Version != w.Version:
		return nil, fmt.Errorf("point %s (%s/%s v%d) does not belong to write %s/%s v%d",
			p.ID, p.UserID, p.DocID, p.Version, w.UserID, w.DocID, w.Version)
	case uuid.Validate(p.ID) != nil:
		return nil, fmt.Errorf("point %d of %s/%s: id %q is not a UUID", p.ChunkIndex, w.UserID, w.DocID, p.ID)
	case len(p.Vector) == 0:
		return nil, fmt.Errorf("point %s has no vector", p.ID)
	case !utf8.ValidString(p.Text):
		return nil, fmt.Errorf("point %s: text is not valid UTF-8", p.ID)
	}
	md, err := metadataValue(p.Metadata)
	if err != nil {
		return nil, fmt.Errorf("point %s: metadata: %w", p.ID, err)
	}
	payload := map[string]*qdrant.Value{
		keyUserID:     qdrant.NewValueString(w.UserID),
		keyDocID:      qdrant.NewValueString(w.DocID),
		keyChunkIndex: qdrant.NewValueInt(int64(p.ChunkIndex)),
		keyChunkCount: qdrant.NewValueInt(int64(p.ChunkCount)),
		keyText:       qdrant.NewValueString(p.Text),
		keyMetadata:   md,
		keyVersion:    qdrant.NewValueInt(int64(w.Version)), // w.Version <= MaxInt64, checked by checkDoc
	}
	if p.TextHash != "" {
		payload[keyTextHash] = qdrant.NewValueString(p.TextHash)
	}
	return &qdrant.PointStruct{
		Id:      qdrant.NewIDUUID(p.ID),
		Vectors: qdrant.NewVectorsDense(p.Vector),
		Payload: payload,
	}, nil
}

// checkDoc validates what the filters of a write or prune are built from.
// Strings must be valid UTF-8 because protobuf refuses to marshal anything
// else, an error that would otherwise look like a transient one.
func checkDoc(userID, docID string, version uint64) error {
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

// metadataValue converts event metadata to a payload object; nil becomes {}.
func metadataValue(md map[string]any) (*qdrant.Value, error) {
	fields := make(map[string]*qdrant.Value, len(md))
	for k, v := range md {
		if !utf8.ValidString(k) {
			return nil, fmt.Errorf("key %q is not valid UTF-8", k)
		}
		val, err := payloadValue(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %w", k, err)
		}
		fields[k] = val
	}
	return qdrant.NewValueFromFields(fields), nil
}

// payloadValue converts one metadata value: strings, integers, finite
// floats, booleans, null, arrays of them (any slice type) and, leniently,
// nested objects.
func payloadValue(v any) (*qdrant.Value, error) {
	switch v := v.(type) {
	case nil:
		return qdrant.NewValueNull(), nil
	case string:
		if !utf8.ValidString(v) {
			return nil, fmt.Errorf("string %q is not valid UTF-8", v)
		}
		return qdrant.NewValueString(v), nil
	case bool:
		return qdrant.NewValueBool(v), nil
	case int:
		return qdrant.NewValueInt(int64(v)), nil
	case int8:
		return qdrant.NewValueInt(int64(v)), nil
	case int16:
		return qdrant.NewValueInt(int64(v)), nil
	case int32:
		return qdrant.NewValueInt(int64(v)), nil
	case int64:
		return qdrant.NewValueInt(v), nil
	case uint:
		return uintValue(uint64(v))
	case uint8:
		return qdrant.NewValueInt(int64(v)), nil
	case uint16:
		return qdrant.NewValueInt(int64(v)), nil
	case uint32:
		return qdrant.NewValueInt(int64(v)), nil
	case uint64:
		return uintValue(v)
	case float32:
		return floatValue(float64(v))
	case float64:
		return floatValue(v)
	case json.Number:
		if i, err := strconv.ParseInt(string(v), 10, 64); err == nil {
			return qdrant.NewValueInt(i), nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, fmt.Errorf("number %q: %w", v, err)
		}
		return floatValue(f)
	case map[string]any:
		return metadataValue(v)
	case []any:
		return listValue(v)
	case []string:
		return listValue(v)
	case []bool:
		return listValue(v)
	case []int:
		return listValue(v)
	case []int64:
		return listValue(v)
	case []float64:
		return listValue(v)
	case []float32:
		return listValue(v)
	case []json.Number:
		return listValue(v)
	default:
		return nil, fmt.Errorf("unsupported type %T", v)
	}
}

func listValue[T any](vs []T) (*qdrant.Value, error) {
	list := make([]*qdrant.Value, len(vs))
	for i, v := range vs {
		val, err := payloadValue(v)
		if err != nil {
			return nil, fmt.Errorf("[%d]: %w", i, err)
		}
		list[i] = val
	}
	return qdrant.NewValueList(&qdrant.ListValue{Values: list}), nil
}

func uintValue(v uint64) (*qdrant.Value, error) {
	if v > math.MaxInt64 {
		return nil, fmt.Errorf("integer %d out of range", v)
	}
	return qdrant.NewValueInt(int64(v)), nil
}

func floatValue(f float64) (*qdrant.Value, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil, fmt.Errorf("non-finite number %v", f)
	}
	return qdrant.NewValueDouble(f), nil
}

// PayloadMap converts a stored Qdrant payload back to plain Go values:
// string, int64, float64, bool, nil, []any and map[string]any.
func PayloadMap(m map[string]*qdrant.Value) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = plainValue(v)
	}
	return out
}

func plainValue(v *qdrant.Value) any {
	switch k := v.GetKind().(type) {
	case *qdrant.Value_BoolValue:
		return k.BoolValue
	case *qdrant.Value_IntegerValue:
		return k.IntegerValue
	case *qdrant.Value_DoubleValue:
		return k.DoubleValue
	case *qdrant.Value_StringValue:
		return k.StringValue
	case *qdrant.Value_StructValue:
		return PayloadMap(k.StructValue.GetFields())
	case *qdrant.Value_ListValue:
		out := make([]any, 0, len(k.ListValue.GetValues()))
		for _, e := range k.ListValue.GetValues() {
			out = append(out, plainValue(e))
		}
		return out
	default: // null
		return nil
	}
}
