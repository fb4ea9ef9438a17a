package qdrantstore

import (
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
