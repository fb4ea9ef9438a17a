package qdrantstore

import (
	"fmt"

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

// pointStruct converts p, a point of w, to its Qdrant form, after
// pipeline.CheckPoint; with keywords (the collection has keyword vectors),
// its keyword vector goes with it, named keywordsVector beside the unnamed
// dense vector. A point without one is stored with the dense vector alone
// and is found by dense searches only.
func pointStruct(w *pipeline.DocWrite, p *pipeline.Point, keywords bool) (*qdrant.PointStruct, error) {
	if err := pipeline.CheckPoint(w, p); err != nil {
		return nil, err
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
		keyVersion:    qdrant.NewValueInt(int64(w.Version)), // w.Version <= MaxInt64, checked by CheckDoc
	}
	if p.TextHash != "" {
		payload[keyTextHash] = qdrant.NewValueString(p.TextHash)
	}
	vectors := qdrant.NewVectorsDense(p.Vector)
	if kw := p.Keywords; keywords && kw != nil && len(kw.Indices) > 0 {
		if err := kw.Check(); err != nil {
			return nil, fmt.Errorf("point %s: keyword vector: %w", p.ID, err)
		}
		vectors = qdrant.NewVectorsMap(map[string]*qdrant.Vector{
			"":             qdrant.NewVectorDense(p.Vector),
			keywordsVector: qdrant.NewVectorSparse(kw.Indices, kw.Values),
		})
	}
	return &qdrant.PointStruct{
		Id:      qdrant.NewIDUUID(p.ID),
		Vectors: vectors,
		Payload: payload,
	}, nil
}

// denseOf returns the dense vector of a point read back, whether Qdrant
// returned it alone or named "" beside the keyword vector.
func denseOf(v *qdrant.VectorsOutput) []float32 {
	if named := v.GetVectors(); named != nil {
		return named.GetVectors()[""].GetDenseVector().GetData()
	}
	return v.GetVector().GetDenseVector().GetData()
}

// keywordsOf returns the keyword vector of a point read back, nil when it
// has none.
func keywordsOf(v *qdrant.VectorsOutput) *pipeline.SparseVector {
	sv := v.GetVectors().GetVectors()[keywordsVector].GetSparseVector()
	if len(sv.GetIndices()) == 0 {
		return nil
	}
	return &pipeline.SparseVector{Indices: sv.GetIndices(), Values: sv.GetValues()}
}

// metadataValue converts event metadata (see pipeline.PlainMetadata) to a
// payload object; nil becomes {}.
func metadataValue(md map[string]any) (*qdrant.Value, error) {
	plain, err := pipeline.PlainMetadata(md)
	if err != nil {
		return nil, err
	}
	return qdrantValue(plain), nil
}

// qdrantValue converts a plain value (see pipeline.PlainMetadata) to a
// Qdrant payload value.
func qdrantValue(v any) *qdrant.Value {
	switch v := v.(type) {
	case string:
		return qdrant.NewValueString(v)
	case bool:
		return qdrant.NewValueBool(v)
	case int64:
		return qdrant.NewValueInt(v)
	case float64:
		return qdrant.NewValueDouble(v)
	case []any:
		list := make([]*qdrant.Value, len(v))
		for i, e := range v {
			list[i] = qdrantValue(e)
		}
		return qdrant.NewValueList(&qdrant.ListValue{Values: list})
	case map[string]any:
		fields := make(map[string]*qdrant.Value, len(v))
		for k, e := range v {
			fields[k] = qdrantValue(e)
		}
		return qdrant.NewValueFromFields(fields)
	default: // nil
		return qdrant.NewValueNull()
	}
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
