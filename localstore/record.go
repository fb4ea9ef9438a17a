package localstore

import (
	"encoding/binary"
	"hash/crc32"
	"math"

	"github.com/ragpipe/ragpipe/pipeline"
)

// Record kinds; the first byte of a record's body. Points of opApply and
// opUpsert records carry no keyword vector: those kinds are only read, from
// data written before keyword vectors, and their points get keyword vectors
// computed from their text as they are loaded.
const (
	opConfig   byte = 1 + iota // snapshot header: name, dims, distance, then flags (flagKeywords)
	opApply                    // Apply, points without keyword vectors
	opPrune                    // Prune: documents and version bounds
	opUpsert                   // Upsert and snapshot contents, points without keyword vectors
	opEnd                      // snapshot trailer: number of points
	opApplyKw                  // Apply: writes with their points
	opUpsertKw                 // Upsert and snapshot contents: points with their tenant, document and version
)

// flagKeywords, in the flags of a snapshot header, marks a collection with
// keyword vectors. A header without flags is one written before keyword
// vectors: its collection gets them.
const flagKeywords = 1

// recHeader frames every record: a uint32 length, then a uint32 CRC-32C of
// the length and the body.
const recHeader = 8

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// record is a log or snapshot record being encoded.
type record struct{ b []byte }

// newRecord starts a record of about size bytes.
func newRecord(op byte, size int) *record {
	b := make([]byte, recHeader, recHeader+1+size)
	return &record{b: append(b, op)}
}

// pointSize estimates the encoded size of a point.
func pointSize(p *pointIn) int {
	n := 64 + len(p.user) + len(p.doc) + len(p.text) + len(p.hash) + 32*len(p.meta) + 4*len(p.vec)
	if p.kw != nil {
		n += 8 * len(p.kw.Indices)
	}
	return n
}

// finish fills in the header and returns the framed record.
func (r *record) finish() []byte {
	binary.LittleEndian.PutUint32(r.b[0:4], uint32(len(r.b)-recHeader))
	crc := crc32.Update(crc32.Checksum(r.b[0:4], castagnoli), castagnoli, r.b[recHeader:])
	binary.LittleEndian.PutUint32(r.b[4:8], crc)
	return r.b
}

func (r *record) uvarint(v uint64) { r.b = binary.AppendUvarint(r.b, v) }
func (r *record) varint(v int64)   { r.b = binary.AppendVarint(r.b, v) }

func (r *record) str(s string) {
	r.uvarint(uint64(len(s)))
	r.b = append(r.b, s...)
}

// pointBody encodes what every point record carries after its tenant,
// document and version.
func (r *record) pointBody(p *pointIn) {
	r.b = append(r.b, p.id[:]...)
	r.varint(int64(p.chunk))
	r.varint(int64(p.count))
	r.str(p.text)
	r.str(p.hash)
	r.value(p.meta)
	r.b = binary.LittleEndian.AppendUint32(r.b, uint32(len(p.vec)))
	for _, x := range p.vec {
		r.b = binary.LittleEndian.AppendUint32(r.b, math.Float32bits(x))
	}
	r.keywords(p.kw)
}

// keywords encodes a keyword vector (nil as empty): its length, its indices
// as ascending deltas, its values.
func (r *record) keywords(kw *pipeline.SparseVector) {
	if kw == nil {
		r.uvarint(0)
		return
	}
	r.uvarint(uint64(len(kw.Indices)))
	prev := uint32(0)
	for _, x := range kw.Indices {
		r.uvarint(uint64(x - prev))
		prev = x
	}
	for _, v := range kw.Values {
		r.b = binary.LittleEndian.AppendUint32(r.b, math.Float32bits(v))
	}
}

// Value tags.
const (
	tagNull byte = iota
	tagFalse
	tagTrue
	tagInt
	tagFloat
	tagString
	tagList
	tagObject
)

// value encodes a plain metadata value (see pipeline.PlainMetadata).
func (r *record) value(v any) {
	switch v := v.(type) {
	case bool:
		if v {
			r.b = append(r.b, tagTrue)
		} else {
			r.b = append(r.b, tagFalse)
		}
	case int64:
		r.b = append(r.b, tagInt)
		r.varint(v)
	case float64:
		r.b = append(r.b, tagFloat)
		r.b = binary.LittleEndian.AppendUint64(r.b, math.Float64bits(v))
	case string:
		r.b = append(r.b, tagString)
		r.str(v)
	case []any:
		r.b = append(r.b, tagList)
		r.uvarint(uint64(len(v)))
		for _, x := range v {
			r.value(x)
		}
	case map[string]any:
		r.b = append(r.b, tagObject)
		r.uvarint(uint64(len(v)))
		for k, x := range v {
			r.str(k)
			r.value(x)
		}
	default: // nil; PlainMetadata produces nothing else
		r.b = append(r.b, tagNull)
	}
}

func encodeApply(ws []writeIn) []byte {
	size := 0
	for i := range ws {
		size += 32 + len(ws[i].user) + len(ws[i].doc)
		for j := range ws[i].points {
			size += pointSize(&ws[i].points[j])
		}
	}
	r := newRecord(opApplyKw, size)
	r.uvarint(uint64(len(ws)))
	for i := range ws {
		w := &ws[i]
		r.str(w.user)
		r.str(w.doc)
		r.uvarint(w.version)
		r.uvarint(uint64(len(w.points)))
		for j := range w.points {
			r.pointBody(&w.points[j])
		}
	}
	return r.finish()
}

func encodePrune(ps []pruneIn) []byte {
	size := 0
	for _, p := range ps {
		size += 32 + len(p.user) + len(p.doc)
	}
	r := newRecord(opPrune, size)
	r.uvarint(uint64(len(ps)))
	for _, p := range ps {
		r.str(p.user)
		r.str(p.doc)
		r.uvarint(p.version)
	}
	return r.finish()
}

func encodeUpsert(ps []pointIn) []byte {
	size := 0
	for i := range ps {
		size += pointSize(&ps[i])
	}
	r := newRecord(opUpsertKw, size)
	r.uvarint(uint64(len(ps)))
	for i := range ps {
		p := &ps[i]
		r.str(p.user)
		r.str(p.doc)
		r.uvarint(p.version)
		r.pointBody(p)
	}
	return r.finish()
}
