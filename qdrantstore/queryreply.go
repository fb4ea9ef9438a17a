package qdrantstore

import (
	"context"
	"errors"
	"fmt"
	"math"
	"unicode/utf8"
	"unsafe"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"

	"github.com/ragpipe/ragpipe/pipeline"
)

// A search's QueryResponse, and each result of a batch's QueryBatchResponse
// (coalesce.go), is decoded straight from protobuf's wire format into the
// hits Search returns: the go-client's messages (a map and a Value per
// payload field, a Struct per metadata) cost more to unmarshal through
// reflection than the hits themselves. The decoding follows protobuf's rules
// (json_with_int.proto, points.proto): a map entry replaces an earlier one
// of its key, a message field seen twice is merged, the last field of a
// oneof wins, unknown fields are skipped, strings must be valid UTF-8.
// Fields Search does not use (the point's id, version, vectors, shard key
// and order value, the reply's time and usage) are skipped like unknown
// fields, their content unchecked. Tests check the hits against those of
// proto.Unmarshal and the go-client's messages.

// Field numbers of the reply, by message (the Value ones are in encode.go).
const (
	fResponseResult = 1 // QueryResponse.result, QueryBatchResponse.result and BatchResult.result
	fScoredPayload  = 2 // ScoredPoint.payload (map entries)
	fScoredScore    = 3 // ScoredPoint.score
)

// maxValueDepth bounds the nesting of payload values, as protobuf bounds
// that of messages, so that a reply cannot exhaust the stack.
const maxValueDepth = protowire.DefaultRecursionLimit

var errReplyDepth = errors.New("payload values nested too deep")

// queryReply is a decoded QueryResponse: its points' hits and, for each,
// the tenant (user_id) the point belongs to. The hits' strings share one
// copy of the reply's bytes.
type queryReply struct {
	hits   []pipeline.Hit
	owners []string
}

// results returns r's hits for a search of userID, cut at the first one
// scoring below threshold (nil for none), as the points are in score order,
// larger better. A point of another tenant before the cut fails it
// permanently.
func (r *queryReply) results(collection, userID string, threshold *float32) ([]pipeline.Hit, error) {
	for i, owner := range r.owners {
		if err := sameOwner(collection, userID, owner); err != nil {
			return nil, err
		}
		if threshold != nil && r.hits[i].Score < *threshold {
			return r.hits[:i], nil
		}
	}
	return r.hits, nil
}

// query sends req on one of the client's connections, as the go-client's
// Query does (its interceptors, default call options and error text), and
// decodes the reply into a queryReply.
func (q *Store) query(ctx context.Context, req *qdrant.QueryPoints) (*queryReply, error) {
	var reply queryReply
	err := q.client.GetConnection().Invoke(ctx, qdrant.Points_Query_FullMethodName, req, &reply,
		grpc.StaticMethod(), decodeQueryReply)
	if err != nil {
		return nil, fmt.Errorf("Query() failed: %s: %w", req.GetCollectionName(), err)
	}
	return &reply, nil
}

// replyCodec is the gRPC codec of query and queryBatch: it marshals
// requests with gRPC's proto codec and decodes a reply into a *queryReply
// or a *batchReply. Its empty name keeps the content-type of the proto
// codec ("application/grpc"). gRPC reports an Unmarshal error as an
// Internal status, as it does the proto codec's.
type replyCodec struct{ proto encoding.CodecV2 }

var decodeQueryReply = grpc.ForceCodecV2(replyCodec{encoding.GetCodecV2(grpcproto.Name)})

func (c replyCodec) Marshal(v any) (mem.BufferSlice, error) { return c.proto.Marshal(v) }

func (replyCodec) Unmarshal(data mem.BufferSlice, v any) error {
	switch r := v.(type) {
	case *queryReply:
		return r.decode(data.Materialize())
	case *batchReply:
		return r.decode(data.Materialize())
	}
	return fmt.Errorf("qdrantstore: reply codec cannot unmarshal into %T", v)
}

func (replyCodec) Name() string { return "" }

// decode sets r to the QueryResponse in b, which it keeps: the hits'
// strings point into it.
func (r *queryReply) decode(b []byte) error {
	d := newReplyDecoder(b)
	r.read(&d, d.message(0, len(b)))
	return d.err
}

// read sets r to the points of msg, a QueryResponse or a BatchResult
// (both hold their ScoredPoints in field 1).
func (r *queryReply) read(d *replyDecoder, msg span) {
	points := 0
	for m := msg; m.more(); {
		num, typ := m.next()
		if num == fResponseResult && typ == protowire.BytesType {
			m.bytes()
			points++
		} else {
			m.skip(num, typ)
		}
	}
	if d.err != nil {
		return
	}
	r.hits = make([]pipeline.Hit, 0, points)
	r.owners = make([]string, 0, points)
	for m := msg; m.more(); {
		num, typ := m.next()
		if num == fResponseResult && typ == protowire.BytesType {
			r.point(d, m.bytes())
		} else {
			m.skip(num, typ)
		}
	}
}

// batchReply is a decoded QueryBatchResponse: the reply of each query of
// the batch, in the batch's order.
type batchReply []queryReply

// decode sets r to the QueryBatchResponse in b, which it keeps.
func (r *batchReply) decode(b []byte) error {
	d := newReplyDecoder(b)
	for m := d.message(0, len(b)); m.more(); {
		num, typ := m.next()
		if num == fResponseResult && typ == protowire.BytesType {
			var q queryReply
			q.read(&d, m.bytes())
			*r = append(*r, q)
		} else {
			m.skip(num, typ)
		}
	}
	return d.err
}

// point appends the hit of the ScoredPoint in m to r.
func (r *queryReply) point(d *replyDecoder, m span) {
	var (
		score                                    float32
		owner, docID, chunk, text, meta, version value
	)
	for m.more() {
		num, typ := m.next()
		switch {
		case num == fScoredPayload && typ == protowire.BytesType:
			key, v := d.entry(m.bytes(), 0)
			switch key {
			case keyUserID:
				owner = v
			case keyDocID:
				docID = v
			case keyChunkIndex:
				chunk = v
			case keyText:
				text = v
			case keyMetadata:
				meta = v
			case keyVersion:
				version = v
			}
		case num == fScoredScore && typ == protowire.Fixed32Type:
			score = math.Float32frombits(m.fixed32())
		default:
			m.skip(num, typ)
		}
	}
	metadata := meta.fields
	if meta.kind != fValueStruct {
		metadata = map[string]any{}
	}
	r.owners = append(r.owners, owner.stringValue())
	r.hits = append(r.hits, pipeline.Hit{
		DocID:      docID.stringValue(),
		ChunkIndex: int(chunk.integerValue()),
		Score:      score,
		Text:       text.stringValue(),
		Metadata:   metadata,
		Version:    uint64(version.integerValue()),
	})
}

// value is a decoded Value: kind is the field of its oneof last set (0 for
// none), num the integer, the double's bits or the bool of a scalar kind.
type value struct {
	kind   protowire.Number
	num    uint64
	str    string
	fields map[string]any
	list   []any
}

func (v *value) stringValue() string {
	if v.kind == fValueString {
		return v.str
	}
	return ""
}

func (v *value) integerValue() int64 {
	if v.kind == fValueInt {
		return int64(v.num)
	}
	return 0
}

// plain is v as PayloadMap converts it.
func (v *value) plain() any {
	switch v.kind {
	case fValueBool:
		return v.num != 0
	case fValueInt:
		return int64(v.num)
	case fValueDouble:
		return math.Float64frombits(v.num)
	case fValueString:
		return v.str
	case fValueStruct:
		return v.fields
	case fValueList:
		return v.list
	}
	return nil
}

// replyDecoder reads a reply b (s is the same bytes as a string). Its first
// error stops the decoding: every read after it returns zero values.
type replyDecoder struct {
	b   []byte
	s   string
	err error
}

// span is a message of the reply being read: from i to end.
type span struct {
	d      *replyDecoder
	i, end int
}

func newReplyDecoder(b []byte) replyDecoder {
	return replyDecoder{b: b, s: unsafe.String(unsafe.SliceData(b), len(b))}
}

func (d *replyDecoder) message(i, end int) span { return span{d, i, end} }

func (d *replyDecoder) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// more reports whether m has fields left to read and no error occurred.
func (m *span) more() bool { return m.i < m.end && m.d.err == nil }

// next reads a field's tag. Field numbers outside protobuf's range fail.
func (m *span) next() (protowire.Number, protowire.Type) {
	num, typ, n := protowire.ConsumeTag(m.rest())
	if n >= 0 && num > protowire.MaxValidNumber {
		m.d.fail(fmt.Errorf("field number %d out of range", num))
		return 0, 0
	}
	m.advance(n)
	return num, typ
}

// rest is what is left of m.
func (m *span) rest() []byte { return m.d.b[m.i:m.end] }

// advance passes over n bytes of m, a protowire error when negative.
func (m *span) advance(n int) {
	if n < 0 {
		m.d.fail(protowire.ParseError(n))
		return
	}
	m.i += n
}

// skip passes over the value of a field m does not use.
func (m *span) skip(num protowire.Number, typ protowire.Type) {
	if m.d.err == nil {
		m.advance(protowire.ConsumeFieldValue(num, typ, m.rest()))
	}
}

// varint, fixed32 and fixed64 read a field's value; protowire returns 0
// when it fails.
func (m *span) varint() uint64 {
	v, n := protowire.ConsumeVarint(m.rest())
	m.advance(n)
	return v
}

func (m *span) fixed32() uint32 {
	v, n := protowire.ConsumeFixed32(m.rest())
	m.advance(n)
	return v
}

func (m *span) fixed64() uint64 {
	v, n := protowire.ConsumeFixed64(m.rest())
	m.advance(n)
	return v
}

// bytes reads a length-delimited field: the nested message it holds.
func (m *span) bytes() span {
	size, n := protowire.ConsumeVarint(m.rest())
	if n < 0 || size > uint64(m.end-m.i-n) {
		if n >= 0 {
			n = -1
		}
		m.d.fail(protowire.ParseError(n))
		return span{d: m.d}
	}
	start := m.i + n
	m.i = start + int(size)
	return span{m.d, start, m.i}
}

// string reads a length-delimited field as a string of the reply.
func (m *span) string() string {
	b := m.bytes()
	s := m.d.s[b.i:b.end]
	if !utf8.ValidString(s) {
		m.d.fail(errors.New("string field contains invalid UTF-8"))
		return ""
	}
	return s
}

// entry reads a map<string, Value> entry, of a payload or a Struct, at
// nesting depth.
func (d *replyDecoder) entry(m span, depth int) (key string, v value) {
	for m.more() {
		num, typ := m.next()
		switch {
		case num == fEntryKey && typ == protowire.BytesType:
			key = m.string()
		case num == fEntryValue && typ == protowire.BytesType:
			d.value(m.bytes(), &v, depth)
		default:
			m.skip(num, typ)
		}
	}
	return key, v
}

// value merges the Value in m into v.
func (d *replyDecoder) value(m span, v *value, depth int) {
	for m.more() {
		num, typ := m.next()
		switch {
		case num == fValueNull && typ == protowire.VarintType:
			m.varint()
			v.kind = fValueNull
		case num == fValueDouble && typ == protowire.Fixed64Type:
			v.kind, v.num = fValueDouble, m.fixed64()
		case num == fValueInt && typ == protowire.VarintType:
			v.kind, v.num = fValueInt, m.varint()
		case num == fValueString && typ == protowire.BytesType:
			v.kind, v.str = fValueString, m.string()
		case num == fValueBool && typ == protowire.VarintType:
			v.kind, v.num = fValueBool, m.varint()
		case num == fValueStruct && typ == protowire.BytesType:
			if v.kind != fValueStruct {
				v.kind, v.fields = fValueStruct, map[string]any{}
			}
			d.structFields(m.bytes(), v.fields, depth+1)
		case num == fValueList && typ == protowire.BytesType:
			if v.kind != fValueList {
				v.kind, v.list = fValueList, []any{}
			}
			v.list = d.listValues(m.bytes(), v.list, depth+1)
		default:
			m.skip(num, typ)
		}
	}
}

// structFields adds the fields of the Struct in m to fields.
func (d *replyDecoder) structFields(m span, fields map[string]any, depth int) {
	if depth > maxValueDepth {
		d.fail(errReplyDepth)
		return
	}
	for m.more() {
		num, typ := m.next()
		if num == fStructField && typ == protowire.BytesType {
			key, v := d.entry(m.bytes(), depth)
			if d.err == nil {
				fields[key] = v.plain()
			}
		} else {
			m.skip(num, typ)
		}
	}
}

// listValues appends the values of the ListValue in m to list.
func (d *replyDecoder) listValues(m span, list []any, depth int) []any {
	if depth > maxValueDepth {
		d.fail(errReplyDepth)
		return list
	}
	for m.more() {
		num, typ := m.next()
		if num == fListValues && typ == protowire.BytesType {
			var v value
			d.value(m.bytes(), &v, depth)
			list = append(list, v.plain())
		} else {
			m.skip(num, typ)
		}
	}
	return list
}
