package qdrantstore

import (
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"unsafe"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/protobuf/encoding/protowire"
)

// The UpdateBatch request of a set of units is written straight in
// protobuf's wire format: the go-client's messages (a map and a Value per
// payload field, a PointId per id) cost more to build and to marshal through
// reflection than the points themselves. The messages written are those the
// go-client would send; field numbers are Qdrant's (points.proto,
// json_with_int.proto). Tests check that the bytes decode to the request
// the go-client's messages make.

// Field numbers, by message, of the UpdateBatchPoints request and of
// nothingStored's ScrollPoints request.
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
	fMatchKeywords  = 5 // Match.keywords
	fRepeatedString = 1 // RepeatedStrings.strings

	// ScrollPoints, the read of nothingStored (encodeStoredQuery).
	fScrollCollection  = 1 // ScrollPoints.collection_name
	fScrollFilter      = 2 // ScrollPoints.filter
	fScrollLimit       = 4 // ScrollPoints.limit
	fScrollWithPayload = 6 // ScrollPoints.with_payload
	fScrollWithVectors = 7 // ScrollPoints.with_vectors
	fSelectorEnable    = 1 // WithPayloadSelector.enable, WithVectorsSelector.enable
)

// encoder appends protobuf fields to b. Its methods store e.b once per
// call; the hot paths (a point, a filter condition) work on a local slice
// with the append functions below, which keep b in registers and out of
// the garbage collector's write barrier.
type encoder struct{ b []byte }

// nested is a length-delimited field being written: where its content
// starts and how many bytes were left for its length.
type nested struct{ start, room int }

// open starts field num of a nested message or bytes, leaving room for a
// length of about hint bytes; close finishes it. A wrong hint costs a move
// of the content, never a wrong encoding.
func (e *encoder) open(num protowire.Number, hint int) nested {
	var n nested
	e.b, n = openField(e.b, num, hint)
	return n
}

func (e *encoder) close(n nested) { e.b = closeField(e.b, n) }

func (e *encoder) string(num protowire.Number, s string) { e.b = appendString(e.b, num, s) }

func (e *encoder) varint(num protowire.Number, v uint64) {
	e.b = appendVarint(appendTag(e.b, num, protowire.VarintType), v)
}

// openField is encoder.open on b.
func openField(b []byte, num protowire.Number, hint int) ([]byte, nested) {
	b = appendTag(b, num, protowire.BytesType)
	room := protowire.SizeVarint(uint64(max(hint, 0)))
	for range room {
		b = append(b, 0)
	}
	return b, nested{len(b), room}
}

// closeField is encoder.close on b.
func closeField(b []byte, n nested) []byte {
	size := len(b) - n.start
	if size < 0x80 && n.room == 1 {
		b[n.start-1] = byte(size)
		return b
	}
	need := protowire.SizeVarint(uint64(size))
	if need != n.room {
		at := n.start - n.room + need
		if need > n.room {
			b = append(b, make([]byte, need-n.room)...)
		}
		copy(b[at:], b[n.start:n.start+size])
		b = b[:at+size]
	}
	// Overwrites the room left, within b.
	appendVarint(b[:n.start-n.room], uint64(size))
	return b
}

// appendVarint is protowire.AppendVarint, small enough to be inlined.
func appendVarint(b []byte, v uint64) []byte {
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func appendTag(b []byte, num protowire.Number, typ protowire.Type) []byte {
	return appendVarint(b, uint64(num)<<3|uint64(typ))
}

// appendLen appends the tag of length-delimited field num and its length n,
// the n bytes of content to follow.
func appendLen(b []byte, num protowire.Number, n int) []byte {
	return appendVarint(appendTag(b, num, protowire.BytesType), uint64(n))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	return append(appendLen(b, num, len(s)), s...)
}

// fieldSize is the size of a length-delimited field of n bytes whose
// number is below 16 (a one-byte tag).
func fieldSize(n int) int { return 1 + protowire.SizeVarint(uint64(n)) + n }

// vectorSize is the size of a Vector holding a dense or sparse vector of n
// bytes (field 101 or 102: a two-byte tag).
func vectorSize(n int) int { return 2 + protowire.SizeVarint(uint64(n)) + n }

// appendFloats writes v as packed field num: little-endian IEEE 754
// floats, on a little-endian machine the bytes of v as they are in memory.
func appendFloats(b []byte, num protowire.Number, v []float32) []byte {
	b = appendLen(b, num, 4*len(v))
	if littleEndian {
		return append(b, unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(v))), 4*len(v))...)
	}
	n := len(b)
	b = slices.Grow(b, 4*len(v))[:n+4*len(v)]
	d := b[n:]
	for _, f := range v {
		binary.LittleEndian.PutUint32(d, math.Float32bits(f))
		d = d[4:]
	}
	return b
}

// littleEndian reports whether the machine stores numbers little-endian.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// varintsSize is the size of v as packed varints.
func varintsSize(v []uint32) int {
	size := 0
	for _, x := range v {
		size += protowire.SizeVarint(uint64(x))
	}
	return size
}

// appendUint32s writes v as packed varint field num of size bytes
// (varintsSize). Each varint is spread into a word, its seven-bit groups
// one a byte with the continuation bit on all but the last, and the word
// stored whole: no branch per byte. Term ids are hashes, most of them of
// five bytes, whose size needs no computing.
func appendUint32s(b []byte, num protowire.Number, v []uint32, size int) []byte {
	b = appendLen(b, num, size)
	n := len(b)
	b = slices.Grow(b, size+8)
	d := b[n : n+size+8]
	i := 0
	for _, x := range v {
		y := uint64(x&0x7f) | uint64(x>>7&0x7f)<<8 | uint64(x>>14&0x7f)<<16 | uint64(x>>21&0x7f)<<24 | uint64(x>>28)<<32
		w, more := 5, uint64(0x80808080)
		if x < 1<<28 {
			w = protowire.SizeVarint(uint64(x))
			more &= 1<<(8*(w-1)) - 1
		}
		binary.LittleEndian.PutUint64(d[i:], y|more)
		i += w
	}
	return b[:n+i]
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
	n := 4*len(p.Vector) + len(p.Text) + len(p.TextHash) + len(u.metadataOf(i)) + 256
	if kw := p.Keywords; u.keywords && kw != nil {
		n += 9 * len(kw.Indices)
	}
	return n
}

// point writes the i-th point of u as a PointStruct of a PointStructList.
func (e *encoder) point(u *unit, i int) { e.b = appendPoint(e.b, u, i) }

// appendPoint is encoder.point on b. Every length is computed before the
// content is written, so the point is written in one pass.
func appendPoint(b []byte, u *unit, i int) []byte {
	w, p, md := u.write, &u.write.Points[i], u.metadataOf(i)
	kw := p.Keywords
	if !u.keywords || kw == nil || len(kw.Indices) == 0 {
		kw = nil
	}
	id := fieldSize(len(p.ID))
	denseData := fieldSize(4 * len(p.Vector))
	dense := vectorSize(denseData) // Vector
	var indices, sparseData, sparse, named, vectors int
	if kw != nil {
		indices = varintsSize(kw.Indices)
		sparseData = fieldSize(4*len(kw.Values)) + fieldSize(indices)
		sparse = vectorSize(sparseData) // Vector
		named = fieldSize(fieldSize(0)+fieldSize(dense)) + fieldSize(fieldSize(len(keywordsVector))+fieldSize(sparse))
		vectors = fieldSize(named)
	} else {
		vectors = fieldSize(dense)
	}
	metadata := fieldSize(len(keyMetadata)) + fieldSize(len(md))
	size := fieldSize(id) +
		fieldSize(stringEntrySize(keyUserID, w.UserID)) + fieldSize(stringEntrySize(keyDocID, w.DocID)) +
		fieldSize(intEntrySize(keyChunkIndex, int64(p.ChunkIndex))) + fieldSize(intEntrySize(keyChunkCount, int64(p.ChunkCount))) +
		fieldSize(stringEntrySize(keyText, p.Text)) + fieldSize(metadata) +
		fieldSize(intEntrySize(keyVersion, int64(w.Version))) + // w.Version <= MaxInt64, checked by CheckDoc
		fieldSize(vectors)
	if p.TextHash != "" {
		size += fieldSize(stringEntrySize(keyTextHash, p.TextHash))
	}

	b = slices.Grow(b, fieldSize(size))
	b = appendLen(b, fListPoints, size)
	b = appendLen(b, fPointID, id)
	b = appendString(b, fIDUUID, p.ID)
	b = appendStringEntry(b, keyUserID, w.UserID)
	b = appendStringEntry(b, keyDocID, w.DocID)
	b = appendIntEntry(b, keyChunkIndex, int64(p.ChunkIndex))
	b = appendIntEntry(b, keyChunkCount, int64(p.ChunkCount))
	b = appendStringEntry(b, keyText, p.Text)
	b = appendLen(b, fPointPayload, metadata)
	b = appendString(b, fEntryKey, keyMetadata)
	b = appendLen(b, fEntryValue, len(md))
	b = append(b, md...)
	b = appendIntEntry(b, keyVersion, int64(w.Version))
	if p.TextHash != "" {
		b = appendStringEntry(b, keyTextHash, p.TextHash)
	}

	b = appendLen(b, fPointVectors, vectors)
	if kw == nil {
		b = appendLen(b, fVectorsVector, dense)
		b = appendLen(b, fVectorDense, denseData)
		return appendFloats(b, fDenseData, p.Vector)
	}
	b = appendLen(b, fVectorsNamed, named)
	b = appendLen(b, fNamedVectors, fieldSize(0)+fieldSize(dense))
	b = appendString(b, fEntryKey, "")
	b = appendLen(b, fEntryValue, dense)
	b = appendLen(b, fVectorDense, denseData)
	b = appendFloats(b, fDenseData, p.Vector)
	b = appendLen(b, fNamedVectors, fieldSize(len(keywordsVector))+fieldSize(sparse))
	b = appendString(b, fEntryKey, keywordsVector)
	b = appendLen(b, fEntryValue, sparse)
	b = appendLen(b, fVectorSparse, sparseData)
	b = appendFloats(b, fSparseValues, kw.Values)
	return appendUint32s(b, fSparseIndices, kw.Indices, indices)
}

// stringEntrySize is the size of the payload map entry of key and string s.
func stringEntrySize(key, s string) int {
	return fieldSize(len(key)) + fieldSize(fieldSize(len(s)))
}

func appendStringEntry(b []byte, key, s string) []byte {
	b = appendLen(b, fPointPayload, stringEntrySize(key, s))
	b = appendString(b, fEntryKey, key)
	b = appendLen(b, fEntryValue, fieldSize(len(s)))
	return appendString(b, fValueString, s)
}

// intEntrySize is the size of the payload map entry of key and integer i.
func intEntrySize(key string, i int64) int {
	return fieldSize(len(key)) + fieldSize(1+protowire.SizeVarint(uint64(i)))
}

func appendIntEntry(b []byte, key string, i int64) []byte {
	b = appendLen(b, fPointPayload, intEntrySize(key, i))
	b = appendString(b, fEntryKey, key)
	b = appendLen(b, fEntryValue, 1+protowire.SizeVarint(uint64(i)))
	return appendVarint(appendTag(b, fValueInt, protowire.VarintType), uint64(i))
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
	groups := 1 // runs of order of one version
	for k := 1; k < len(order); k++ {
		if units[order[k]].version != units[order[k-1]].version {
			groups++
		}
	}
	rest := order // the groups not written yet, anyOf writing them in turn
	e.anyOf(fListFilter, groups, func(int) {
		end := 1
		for end < len(rest) && units[rest[end]].version == units[rest[0]].version {
			end++
		}
		group := rest[:end]
		rest = rest[end:]
		has := 0
		for _, i := range group {
			for _, p := range units[i].writePoints() {
				has += fieldSize(fieldSize(len(p.ID)))
			}
		}
		b := appendLen(e.b, fFilterMust, fieldSize(has))
		b = appendLen(b, fConditionHasID, has)
		for _, i := range group {
			for _, p := range units[i].writePoints() {
				b = appendLen(b, fHasIDs, fieldSize(len(p.ID)))
				b = appendString(b, fIDUUID, p.ID)
			}
		}
		e.b = appendVersionRange(b, fRangeLte, units[group[0]].version)
	})
}

// anyOf writes, as field num, the filter matching what any of n filters
// matches; conditions(i) writes the must conditions of the i-th, called for
// each i in ascending order. One filter is written as it is.
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
func (e *encoder) matchKeyword(key, keyword string) { e.b = appendMatchKeyword(e.b, key, keyword) }

func appendMatchKeyword(b []byte, key, keyword string) []byte {
	match := fieldSize(len(keyword))
	field := fieldSize(len(key)) + fieldSize(match)
	b = appendLen(b, fFilterMust, fieldSize(field))
	b = appendLen(b, fConditionField, field)
	b = appendString(b, fFieldKey, key)
	b = appendLen(b, fFieldMatch, match)
	return appendString(b, fMatchKeyword, keyword)
}

// versionRange writes a must condition: version < v (bound fRangeLt) or
// version <= v (fRangeLte), compared as float64.
func (e *encoder) versionRange(bound protowire.Number, v uint64) {
	e.b = appendVersionRange(e.b, bound, v)
}

func appendVersionRange(b []byte, bound protowire.Number, v uint64) []byte {
	const bounds = 1 + 8 // one bound, a double
	field := fieldSize(len(keyVersion)) + fieldSize(bounds)
	b = appendLen(b, fFilterMust, fieldSize(field))
	b = appendLen(b, fConditionField, field)
	b = appendString(b, fFieldKey, keyVersion)
	b = appendLen(b, fFieldRange, bounds)
	return appendDouble(b, bound, float64(v))
}

func appendDouble(b []byte, num protowire.Number, f float64) []byte {
	return binary.LittleEndian.AppendUint64(appendTag(b, num, protowire.Fixed64Type), math.Float64bits(f))
}
