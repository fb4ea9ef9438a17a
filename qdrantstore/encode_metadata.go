package qdrantstore

import (
	"math"
	"unicode/utf8"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ragpipe/ragpipe/pipeline"
)

// appendValue appends the fields of the Qdrant payload Value of v (the
// tests' qdrantValue(v) marshals to the same bytes), when v is in plain
// form (see pipeline.PlainMetadata) and valid: strings and keys valid
// UTF-8, numbers finite. Otherwise it reports false, having appended part
// of it.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return b, false
		}
		b = appendString(b, fValueString, v)
	case bool:
		var x uint64
		if v {
			x = 1
		}
		b = appendVarint(appendTag(b, fValueBool, protowire.VarintType), x)
	case int64:
		b = appendVarint(appendTag(b, fValueInt, protowire.VarintType), uint64(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return b, false
		}
		b = appendDouble(b, fValueDouble, v)
	case nil:
		b = appendVarint(appendTag(b, fValueNull, protowire.VarintType), uint64(qdrant.NullValue_NULL_VALUE))
	case []any:
		var list nested
		b, list = openField(b, fValueList, 0)
		for _, x := range v {
			var item nested
			b, item = openField(b, fListValues, 0)
			var ok bool
			if b, ok = appendValue(b, x); !ok {
				return b, false
			}
			b = closeField(b, item)
		}
		return closeField(b, list), true
	case map[string]any:
		var s nested
		b, s = openField(b, fValueStruct, 0)
		for k, x := range v {
			if !utf8.ValidString(k) {
				return b, false
			}
			var entry, val nested
			b, entry = openField(b, fStructField, 0)
			b = appendString(b, fEntryKey, k)
			b, val = openField(b, fEntryValue, 0)
			var ok bool
			if b, ok = appendValue(b, x); !ok {
				return b, false
			}
			b = closeField(b, val)
			b = closeField(b, entry)
		}
		return closeField(b, s), true
	default:
		return b, false
	}
	return b, true
}

// appendMetadata appends the fields of the payload Value of point
// metadata md (see pipeline.PlainMetadata): md as it is when it is in plain
// form already, as decoded events' metadata is, else its plain form.
func appendMetadata(b []byte, md map[string]any) ([]byte, error) {
	if out, ok := appendValue(b, md); ok {
		return out, nil
	}
	plain, err := pipeline.PlainMetadata(md)
	if err != nil {
		return b, err
	}
	out, _ := appendValue(b, plain)
	return out, nil
}
