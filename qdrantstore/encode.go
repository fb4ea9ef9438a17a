package qdrantstore

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"unicode/utf8"
	"unsafe"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ragpipe/ragpipe/pipeline"
)

// The UpdateBatch request of a set of units is written straight in
// protobuf's wire format: the go-client's messages (a map and a Value per
// payload field, a PointId per id) cost more to build and to marshal through
// reflection than the points themselves. The messages written are those the
// go-client would send; field numbers are Qdrant's (points.proto,
// json_with_int.proto). Tests check that the bytes decode to the request
// the go-client's messages make.

// Field numbers, by message.
const (
	fUpdateBatchCollection = 1 // UpdateBatchPoints.collection_name
	fUpdateBatchWait       = 2 // UpdateBatchPoints.wait
	fUpdateBatchOperations = 3 // UpdateBatchPoints.operations
	fUpdateBatchOrdering   = 4 // UpdateBatchPoints.ordering
	fOrderingType          = 1 // WriteOrdering.type

	fOperationUpsert = 1 // PointsUpdateOperation.upsert
	fOperationDelete = 9 // PointsUpdateOperation.delete_points
	fListPoints      = 1 // PointsUpdateOperation.PointStructList.points
	fListFilter      = 3 // PointsUpdateOperation.PointStructList.update_filter
	fDeleteSelector  = 1 // PointsUpdateOperation.DeletePoints.points
	fSelectorFilter  = 2 // PointsSelector.filter

	fPointID      = 1 // PointStruct.id
	fPointPayload = 3 // PointStruct.payload (map entries)
	fPointVectors = 4 // PointStruct.vectors
	fIDUUID       = 2 // PointId.uuid
	fEntryKey     = 1 // map entry key
	fEntryValue   = 2 // map entry value

	fVectorsVector = 1   // Vectors.vector
	fVectorsNamed  = 2   // Vectors.vectors (NamedVectors)
	fNamedVectors  = 1   // NamedVectors.vectors (map entries)
	fVectorDense   = 101 // Vector.dense
	fVectorSparse  = 102 // Vector.sparse
	fDenseData     = 1   // DenseVector.data
	fSparseValues  = 1   // SparseVector.values
	fSparseIndices = 2   // SparseVector.indices

	fValueNull   = 1 // Value.null_value
	fValueDouble = 2 // Value.double_value
	fValueInt    = 3 // Value.integer_value
	fValueString = 4 // Value.string_value
	fValueBool   = 5 // Value.bool_value
	fValueStruct = 6 // Value.struct_value
	fValueList   = 7 // Value.list_value
	fStructField = 1 // Struct.fields (map entries)
	fListValues  = 1 // ListValue.values

	fFilterShould   = 1 // Filter.should
	fFilterMust     = 2 // Filter.must
	fConditionField = 1 // Condition.field
	fConditionHasID = 3 // Condition.has_id
	fConditionNest  = 4 // Condition.filter
	fHasIDs         = 1 // HasIdCondition.has_id
	fFieldKey       = 1 // FieldCondition.key
	fFieldMatch     = 2 // FieldCondition.match
	fFieldRange     = 3 // FieldCondition.range
	fMatchKeyword   = 1 // Match.keyword
	fRangeLt        = 1 // Range.lt
	fRangeLte       = 4 // Range.lte
)

// encoder appends protobuf fields to b.
type encoder struct{ b []byte }

// nested is a length-delimited field being written: where its content
// starts and how many bytes were left for its length.
type nested struct{ start, room int }

// open starts field num of a nested message or bytes, leaving room for a
// length of about hint bytes; close finishes it. A wrong hint costs a move
// of the content, never a wrong encoding.
func (e *encoder) open(num protowire.Number, hint int) nested {
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	room := protowire.SizeVarint(uint64(max(hint, 0)))
	e.b = append(e.b, make([]byte, room)...)
	return nested{len(e.b), room}
}

func (e *encoder) close(n nested) {
	size := len(e.b) - n.start
	need := protowire.SizeVarint(uint64(size))
	if need != n.room {
		at := n.start - n.room + need
		if need > n.room {
			e.b = append(e.b, make([]byte, need-n.room)...)
		}
		copy(e.b[at:], e.b[n.start:n.start+size])
		e.b = e.b[:at+size]
	}
	// Overwrites the room left, within e.b.
	protowire.AppendVarint(e.b[:n.start-n.room], uint64(size))
}

func (e *encoder) string(num protowire.Number, s string) {
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendString(e.b, s)
}

func (e *encoder) varint(num protowire.Number, v uint64) {
	e.b = protowire.AppendTag(e.b, num, protowire.VarintType)
	e.b = protowire.AppendVarint(e.b, v)
}

func (e *encoder) double(num protowire.Number, f float64) {
	e.b = protowire.AppendTag(e.b, num, protowire.Fixed64Type)
	e.b = protowire.AppendFixed64(e.b, math.Float64bits(f))
}

// floats writes v as packed field num: little-endian IEEE 754 floats, on
// a little-endian machine the bytes of v as they are in memory.
func (e *encoder) floats(num protowire.Number, v []float32) {
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendVarint(e.b, uint64(4*len(v)))
	if littleEndian {
		e.b = append(e.b, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))...)
		return
	}
	n := len(e.b)
	e.b = slices.Grow(e.b, 4*len(v))[:n+4*len(v)]
	d := e.b[n:]
	for _, f := range v {
		binary.LittleEndian.PutUint32(d, math.Float32bits(f))
		d = d[4:]
	}
}

// littleEndian reports whether the machine stores numbers little-endian.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// uint32s writes v as packed varint field num.
func (e *encoder) uint32s(num protowire.Number, v []uint32) {
	size := 0
	for _, x := range v {
		size += protowire.SizeVarint(uint64(x))
	}
	e.b = protowire.AppendTag(e.b, num, protowire.BytesType)
	e.b = protowire.AppendVarint(e.b, uint64(size))
	for _, x := range v {
		e.b = protowire.AppendVarint(e.b, uint64(x))
	}
}

// encodeRequest appends to b the UpdateBatchPoints request carrying units
// (see Apply and the package documentation): one upsert of
// all their points, whose update_filter lets each point overwrite only a
// stored point of its own write's version or older, then, with
// deleteOlder, one delete of each document's points below its unit's
// version. Without deleteOlder (a read found none of the units' documents
// stored), the points of first versions (unit.first) are left out of the
// update_filter: inserted where missing, never overwriting. It reports
// false, with b unchanged, when the request would have no operation.
func encodeRequest(b []byte, collection string, ordering *qdrant.WriteOrdering, units []unit, deleteOlder bool) ([]byte, bool) {
	return encodeBatch(b, collection, ordering, units, true, deleteOlder)
}

// encodeUpsert appends to b the UpdateBatchPoints request of one upsert of
// the units' points over whatever is stored with their ids: no
// update_filter, no delete (see Upsert). It reports false, with b
// unchanged, when there is no point.
func encodeUpsert(b []byte, collection string, ordering *qdrant.WriteOrdering, units []unit) ([]byte, bool) {
	return encodeBatch(b, collection, ordering, units, false, false)
}

// encodeBatch is encodeRequest, with the upsert's update_filter only when
// filtered.
func encodeBatch(b []byte, collection string, ordering *qdrant.WriteOrdering, units []unit, filtered, deleteOlder bool) ([]byte, bool) {
	size, points := 0, 0
	for k := range units {
		for i := range units[k].writePoints() {
			size += pointHint(&units[k], i)
			points++
		}
	}
	if points == 0 && (!deleteOlder || len(units) == 0) {
		return b, false
	}
	e := encoder{b: slices.Grow(b, len(collection)+size+len(units)*200)}
	if collection != "" {
		e.string(fUpdateBatchCollection, collection)
	}
	e.varint(fUpdateBatchWait, 1)
	if points > 0 {
		op := e.open(fUpdateBatchOperations, size)
		upsert := e.open(fOperationUpsert, size)
		for k := range units {
			for i := range units[k].writePoints() {
				e.point(&units[k], i)
			}
		}
		if filtered {
			e.overwritable(units, !deleteOlder)
		}
		e.close(upsert)
		e.close(op)
	}
	if deleteOlder && len(units) > 0 {
		op := e.open(fUpdateBatchOperations, len(units)*128)
		del := e.open(fOperationDelete, len(units)*128)
		sel := e.open(fDeleteSelector, len(units)*128)
		e.anyOf(fSelectorFilter, len(units), func(i int) {
			u := &units[i]
			e.matchKeyword(keyUserID, u.doc.userID)
			e.matchKeyword(keyDocID, u.doc.docID)
			e.versionRange(fRangeLt, u.version)
		})
		e.close(sel)
		e.close(del)
		e.close(op)
	}
	e.ordering(ordering)
	return e.b, true
}

// ordering writes the request's write ordering, when it has one.
func (e *encoder) ordering(o *qdrant.WriteOrdering) {
	if o == nil {
		return
	}
	at := e.open(fUpdateBatchOrdering, 2)
	if o.Type != 0 {
		e.varint(fOrderingType, uint64(o.Type))
	}
	e.close(at)
}

// pointHint is about the encoded size of the i-th point of u.
func pointHint(u *unit, i int) int {
	p := &u.write.Points[i]
	n := 4*len(p.Vector) + len(p.Text) + len(p.TextHash) + len(u.metadata[i]) + 256
	if kw := p.Keywords; u.keywords && kw != nil {
		n += 9 * len(kw.Indices)
	}
	return n
}

// point writes the i-th point of u as a PointStruct of a PointStructList.
func (e *encoder) point(u *unit, i int) {
	w, p := u.write, &u.write.Points[i]
	ps := e.open(fListPoints, pointHint(u, i))
	id := e.open(fPointID, len(p.ID)+2)
	e.string(fIDUUID, p.ID)
	e.close(id)

	e.payloadString(keyUserID, w.UserID)
	e.payloadString(keyDocID, w.DocID)
	e.payloadInt(keyChunkIndex, int64(p.ChunkIndex))
	e.payloadInt(keyChunkCount, int64(p.ChunkCount))
	e.payloadString(keyText, p.Text)
	entry := e.open(fPointPayload, len(u.metadata[i])+16)
	e.string(fEntryKey, keyMetadata)
	value := e.open(fEntryValue, len(u.metadata[i]))
	e.b = append(e.b, u.metadata[i]...)
	e.close(value)
	e.close(entry)
	e.payloadInt(keyVersion, int64(w.Version)) // w.Version <= MaxInt64, checked by CheckDoc
	if p.TextHash != "" {
		e.payloadString(keyTextHash, p.TextHash)
	}

	dense := 4*len(p.Vector) + 16
	if kw := p.Keywords; u.keywords && kw != nil && len(kw.Indices) > 0 {
		sparse := 9*len(kw.Indices) + 16
		vs := e.open(fPointVectors, dense+sparse+32)
		named := e.open(fVectorsNamed, dense+sparse+24)
		entry := e.open(fNamedVectors, dense+8)
		e.string(fEntryKey, "")
		e.denseVector(fEntryValue, p.Vector)
		e.close(entry)
		entry = e.open(fNamedVectors, sparse+16)
		e.string(fEntryKey, keywordsVector)
		v := e.open(fEntryValue, sparse)
		s := e.open(fVectorSparse, sparse)
		e.floats(fSparseValues, kw.Values)
		e.uint32s(fSparseIndices, kw.Indices)
		e.close(s)
		e.close(v)
		e.close(entry)
		e.close(named)
		e.close(vs)
	} else {
		vs := e.open(fPointVectors, dense+8)
		e.denseVector(fVectorsVector, p.Vector)
		e.close(vs)
	}
	e.close(ps)
}

// denseVector writes v as field num, a Vector holding a DenseVector.
func (e *encoder) denseVector(num protowire.Number, v []float32) {
	vec := e.open(num, 4*len(v)+8)
	d := e.open(fVectorDense, 4*len(v)+4)
	e.floats(fDenseData, v)
	e.close(d)
	e.close(vec)
}

func (e *encoder) payloadString(key, s string) {
	entry := e.open(fPointPayload, len(key)+len(s)+8)
	e.string(fEntryKey, key)
	v := e.open(fEntryValue, len(s)+4)
	e.string(fValueString, s)
	e.close(v)
	e.close(entry)
}

func (e *encoder) payloadInt(key string, i int64) {
	entry := e.open(fPointPayload, len(key)+16)
	e.string(fEntryKey, key)
	v := e.open(fEntryValue, 11)
	e.varint(fValueInt, uint64(i))
	e.close(v)
	e.close(entry)
}

// overwritable writes the update_filter of the upsert: per version of the
// units' writes, ascending, has_id of their points (in the units' order)
// and version <= that version. With insertFirst, units of first versions
// are left out; when no unit remains, the filter is version < 1, which no
// point matches (versions are >= 1, pipeline.CheckDoc): an insert-only
// upsert.
func (e *encoder) overwritable(units []unit, insertFirst bool) {
	order := make([]int, 0, len(units))
	for i, u := range units {
		if len(u.writePoints()) > 0 && !(insertFirst && u.first) {
			order = append(order, i)
		}
	}
	if len(order) == 0 {
		f := e.open(fListFilter, 32)
		e.versionRange(fRangeLt, 1)
		e.close(f)
		return
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(units[a].version, units[b].version) })
	var groups [][]int // of order, by version
	for start := 0; start < len(order); {
		end := start + 1
		for end < len(order) && units[order[end]].version == units[order[start]].version {
			end++
		}
		groups = append(groups, order[start:end])
		start = end
	}
	e.anyOf(fListFilter, len(groups), func(g int) {
		cond := e.open(fFilterMust, len(units)*48)
		has := e.open(fConditionHasID, len(units)*48)
		for _, i := range groups[g] {
			for _, p := range units[i].writePoints() {
				id := e.open(fHasIDs, len(p.ID)+2)
				e.string(fIDUUID, p.ID)
				e.close(id)
			}
		}
		e.close(has)
		e.close(cond)
		e.versionRange(fRangeLte, units[groups[g][0]].version)
	})
}

// anyOf writes, as field num, the filter matching what any of n filters
// matches; conditions(i) writes the must conditions of the i-th. One filter
// is written as it is.
func (e *encoder) anyOf(num protowire.Number, n int, conditions func(i int)) {
	f := e.open(num, n*128)
	if n == 1 {
		conditions(0)
	} else {
		for i := range n {
			cond := e.open(fFilterShould, 128)
			nest := e.open(fConditionNest, 128)
			conditions(i)
			e.close(nest)
			e.close(cond)
		}
	}
	e.close(f)
}

// matchKeyword writes a must condition: key matches keyword.
func (e *encoder) matchKeyword(key, keyword string) {
	cond := e.open(fFilterMust, len(key)+len(keyword)+8)
	field := e.open(fConditionField, len(key)+len(keyword)+6)
	e.string(fFieldKey, key)
	m := e.open(fFieldMatch, len(keyword)+2)
	e.string(fMatchKeyword, keyword)
	e.close(m)
	e.close(field)
	e.close(cond)
}

// versionRange writes a must condition: version < v (bound fRangeLt) or
// version <= v (fRangeLte), compared as float64.
func (e *encoder) versionRange(bound protowire.Number, v uint64) {
	cond := e.open(fFilterMust, 24)
	field := e.open(fConditionField, 22)
	e.string(fFieldKey, keyVersion)
	r := e.open(fFieldRange, 9)
	e.double(bound, float64(v))
	e.close(r)
	e.close(field)
	e.close(cond)
}

// value appends the fields of the Qdrant payload Value of v (the tests'
// qdrantValue(v) marshals to the same bytes), when v is in plain form (see
// pipeline.PlainMetadata) and valid: strings and keys valid UTF-8, numbers
// finite. Otherwise it reports false, having appended part of it.
func (e *encoder) value(v any) bool {
	switch v := v.(type) {
	case string:
		if !utf8.ValidString(v) {
			return false
		}
		e.string(fValueString, v)
	case bool:
		var x uint64
		if v {
			x = 1
		}
		e.varint(fValueBool, x)
	case int64:
		e.varint(fValueInt, uint64(v))
	case float64:
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return false
		}
		e.double(fValueDouble, v)
	case nil:
		e.varint(fValueNull, uint64(qdrant.NullValue_NULL_VALUE))
	case []any:
		list := e.open(fValueList, 0)
		for _, x := range v {
			item := e.open(fListValues, 0)
			if !e.value(x) {
				return false
			}
			e.close(item)
		}
		e.close(list)
	case map[string]any:
		s := e.open(fValueStruct, 0)
		for k, x := range v {
			if !utf8.ValidString(k) {
				return false
			}
			entry := e.open(fStructField, 0)
			e.string(fEntryKey, k)
			val := e.open(fEntryValue, 0)
			if !e.value(x) {
				return false
			}
			e.close(val)
			e.close(entry)
		}
		e.close(s)
	default:
		return false
	}
	return true
}

// appendMetadata appends the fields of the payload Value of point
// metadata md (see pipeline.PlainMetadata): md as it is when it is in plain
// form already, as decoded events' metadata is, else its plain form.
func appendMetadata(b []byte, md map[string]any) ([]byte, error) {
	e := encoder{b: b}
	if e.value(md) {
		return e.b, nil
	}
	plain, err := pipeline.PlainMetadata(md)
	if err != nil {
		return b, err
	}
	e.b = e.b[:len(b)]
	e.value(plain)
	return e.b, nil
}
