package qdrantstore

import (
	"bytes"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"

	"github.com/google/uuid"
	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/encoding"
	grpcproto "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/ragpipe/ragpipe/internal/cputime/cputimetest"
	"github.com/ragpipe/ragpipe/pipeline"
)

// modelHits is Search's conversion of the go-client's points before the
// reply was decoded directly: the model queryReply must match.
func modelHits(collection, userID string, threshold *float32, points []*qdrant.ScoredPoint) ([]pipeline.Hit, error) {
	hits := make([]pipeline.Hit, 0, len(points))
	for _, p := range points {
		pl := p.GetPayload()
		if err := sameTenant(collection, userID, pl); err != nil {
			return nil, err
		}
		if t := threshold; t != nil && p.GetScore() < *t {
			break
		}
		hits = append(hits, pipeline.Hit{
			DocID:      pl[keyDocID].GetStringValue(),
			ChunkIndex: int(pl[keyChunkIndex].GetIntegerValue()),
			Score:      p.GetScore(),
			Text:       pl[keyText].GetStringValue(),
			Metadata:   PayloadMap(pl[keyMetadata].GetStructValue().GetFields()),
			Version:    uint64(pl[keyVersion].GetIntegerValue()),
		})
	}
	return hits, nil
}

// decodedHits decodes reply with queryReply (from a copy: the hits keep
// the bytes) and returns its results.
func decodedHits(reply []byte, userID string, threshold *float32) ([]pipeline.Hit, error) {
	var r queryReply
	if err := r.decode(bytes.Clone(reply)); err != nil {
		return nil, err
	}
	return r.results("c", userID, threshold)
}

// canonical is a hit with its floats as bits, so that NaNs compare equal.
type canonical struct {
	DocID      string
	ChunkIndex int
	Score      uint32
	Text       string
	Metadata   any
	Version    uint64
}

type float64Bits uint64

func canonicalHits(hits []pipeline.Hit) []canonical {
	if hits == nil {
		return nil
	}
	out := make([]canonical, len(hits))
	for i, h := range hits {
		out[i] = canonical{h.DocID, h.ChunkIndex, math.Float32bits(h.Score), h.Text, canonicalValue(h.Metadata), h.Version}
	}
	return out
}

func canonicalValue(v any) any {
	switch v := v.(type) {
	case float64:
		return float64Bits(math.Float64bits(v))
	case map[string]any:
		if v == nil {
			return v
		}
		out := make(map[string]any, len(v))
		for k, e := range v {
			out[k] = canonicalValue(e)
		}
		return out
	case []any:
		if v == nil {
			return v
		}
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = canonicalValue(e)
		}
		return out
	}
	return v
}

// sameResults reports how the results of reply differ between the model
// (proto.Unmarshal and modelHits) and queryReply, "" when they do not.
// Replies proto.Unmarshal rejects are not compared.
func sameResults(t *testing.T, reply []byte, userID string, threshold *float32) string {
	t.Helper()
	var resp qdrant.QueryResponse
	if err := proto.Unmarshal(reply, &resp); err != nil {
		return ""
	}
	want, wantErr := modelHits("c", userID, threshold, resp.GetResult())
	got, err := decodedHits(reply, userID, threshold)
	if fmt.Sprint(err) != fmt.Sprint(wantErr) {
		return fmt.Sprintf("error %v, want %v", err, wantErr)
	}
	if !reflect.DeepEqual(canonicalHits(got), canonicalHits(want)) {
		return fmt.Sprintf("hits\n%#v\nwant\n%#v", got, want)
	}
	return ""
}

// replyGen makes random replies: every Value kind, nested, empty and
// missing fields, unknown fields at every level.
type replyGen struct{ r *rand.Rand }

func (g replyGen) string() string {
	switch g.r.IntN(7) {
	case 0:
		return ""
	case 1:
		return "héllo wörld — 日本語 🚀 \u0000 \"quoted\" \ufffd"
	case 2:
		return strings.Repeat("the consumer's maxAckPending bounds messages in flight. ", 1+g.r.IntN(100))
	case 3:
		rs := make([]rune, g.r.IntN(40))
		for i := range rs {
			rs[i] = rune(g.r.IntN(0x10ffff))
			if rs[i] >= 0xd800 && rs[i] < 0xe000 {
				rs[i] = 'x'
			}
		}
		return string(rs)
	default:
		return fmt.Sprintf("k%d", g.r.IntN(8))
	}
}

func (g replyGen) double() float64 {
	switch g.r.IntN(8) {
	case 0:
		return float64(g.r.IntN(100)) // an integer as a double
	case 1:
		return math.Copysign(0, -1)
	case 2:
		return math.NaN()
	case 3:
		return math.Inf(1 - 2*g.r.IntN(2))
	case 4:
		return math.MaxFloat64
	default:
		return g.r.NormFloat64() * 1e3
	}
}

func (g replyGen) integer() int64 {
	switch g.r.IntN(5) {
	case 0:
		return math.MinInt64
	case 1:
		return math.MaxInt64
	case 2:
		return -g.r.Int64N(1000)
	default:
		return g.r.Int64N(1000)
	}
}

func (g replyGen) value(depth int) *qdrant.Value {
	n := 8
	if depth > 3 {
		n = 6 // no more structs or lists
	}
	var v *qdrant.Value
	switch g.r.IntN(n) {
	case 0:
		v = qdrant.NewValueNull()
	case 1:
		v = qdrant.NewValueDouble(g.double())
	case 2:
		v = qdrant.NewValueInt(g.integer())
	case 3:
		v = qdrant.NewValueString(g.string())
	case 4:
		v = qdrant.NewValueBool(g.r.IntN(2) == 0)
	case 5:
		v = &qdrant.Value{} // no kind
	case 6:
		v = qdrant.NewValueStruct(g.structValue(depth + 1))
	default:
		list := &qdrant.ListValue{}
		for range g.r.IntN(5) {
			list.Values = append(list.Values, g.value(depth+1))
		}
		v = qdrant.NewValueList(list)
	}
	g.unknown(v)
	return v
}

func (g replyGen) structValue(depth int) *qdrant.Struct {
	s := &qdrant.Struct{}
	if g.r.IntN(6) > 0 {
		s.Fields = map[string]*qdrant.Value{}
		for range g.r.IntN(6) {
			s.Fields[g.string()] = g.value(depth)
		}
	}
	g.unknown(s)
	return s
}

// unknown adds, sometimes, fields m does not know: numbers it has with
// other wire types, numbers it has not, groups.
func (g replyGen) unknown(m proto.Message) {
	if g.r.IntN(4) > 0 {
		return
	}
	var raw []byte
	for range 1 + g.r.IntN(3) {
		num := protowire.Number(1 + g.r.IntN(12))
		if g.r.IntN(4) == 0 {
			num = protowire.Number(1000 + g.r.IntN(1<<20))
		}
		switch g.r.IntN(5) {
		case 0:
			raw = protowire.AppendTag(raw, num, protowire.VarintType)
			raw = protowire.AppendVarint(raw, g.r.Uint64())
		case 1:
			raw = protowire.AppendTag(raw, num, protowire.Fixed32Type)
			raw = protowire.AppendFixed32(raw, g.r.Uint32())
		case 2:
			raw = protowire.AppendTag(raw, num, protowire.Fixed64Type)
			raw = protowire.AppendFixed64(raw, g.r.Uint64())
		case 3:
			raw = protowire.AppendTag(raw, num, protowire.BytesType)
			raw = protowire.AppendString(raw, "\xff\x00 not a message")
		default:
			raw = protowire.AppendTag(raw, num, protowire.StartGroupType)
			raw = protowire.AppendTag(raw, 1, protowire.VarintType)
			raw = protowire.AppendVarint(raw, 7)
			raw = protowire.AppendTag(raw, num, protowire.EndGroupType)
		}
	}
	m.ProtoReflect().SetUnknown(protoreflect.RawFields(raw))
}

// point is a ScoredPoint of userID (or, rarely, of another tenant) whose
// payload fields are of their usual kind, of another or missing.
func (g replyGen) point(userID string) *qdrant.ScoredPoint {
	p := &qdrant.ScoredPoint{Score: float32(g.double()), Version: g.r.Uint64N(100)}
	if g.r.IntN(2) == 0 {
		p.Id = qdrant.NewIDNum(g.r.Uint64())
	} else {
		var u uuid.UUID
		for i := range u {
			u[i] = byte(g.r.Uint32())
		}
		p.Id = qdrant.NewIDUUID(u.String())
	}
	if g.r.IntN(5) == 0 {
		p.ShardKey = qdrant.NewShardKey("shard")
		p.OrderValue = &qdrant.OrderValue{Variant: &qdrant.OrderValue_Int{Int: 3}}
		p.Vectors = &qdrant.VectorsOutput{VectorsOptions: &qdrant.VectorsOutput_Vector{
			Vector: &qdrant.VectorOutput{Data: []float32{1, 2}}}}
	}
	usual := []struct {
		key  string
		make func() *qdrant.Value
	}{
		{keyUserID, func() *qdrant.Value { return qdrant.NewValueString(userID) }},
		{keyDocID, func() *qdrant.Value { return qdrant.NewValueString(g.string()) }},
		{keyChunkIndex, func() *qdrant.Value { return qdrant.NewValueInt(g.r.Int64N(50)) }},
		{keyText, func() *qdrant.Value { return qdrant.NewValueString(g.string()) }},
		{keyMetadata, func() *qdrant.Value { return qdrant.NewValueStruct(g.structValue(1)) }},
		{keyVersion, func() *qdrant.Value { return qdrant.NewValueInt(g.integer()) }},
	}
	p.Payload = map[string]*qdrant.Value{}
	for _, u := range usual {
		key := u.key
		switch g.r.IntN(12) {
		case 0: // missing
		case 1:
			p.Payload[key] = g.value(0)
		case 2:
			if key == keyUserID {
				p.Payload[key] = qdrant.NewValueString("mallory")
			} else {
				p.Payload[key] = &qdrant.Value{}
			}
		default:
			p.Payload[key] = u.make()
		}
	}
	if g.r.IntN(4) == 0 {
		p.Payload[g.string()] = g.value(0)
	}
	g.unknown(p)
	return p
}

func (g replyGen) reply(userID string) []byte {
	resp := &qdrant.QueryResponse{Time: g.r.Float64()}
	for range g.r.IntN(12) {
		resp.Result = append(resp.Result, g.point(userID))
	}
	if g.r.IntN(4) == 0 {
		resp.Usage = &qdrant.Usage{Hardware: &qdrant.HardwareUsage{Cpu: 3}}
	}
	g.unknown(resp)
	b, err := proto.Marshal(resp)
	if err != nil {
		panic(err)
	}
	return b
}

// TestQueryReply checks the hits of random replies against the model, for
// a search without threshold and with one, and replies merged (two
// encodings concatenated, as protobuf merges them).
func TestQueryReply(t *testing.T) {
	g := replyGen{rand.New(rand.NewPCG(17, 3))}
	threshold := float32(0.5)
	for i := range 3000 {
		reply := g.reply("alice")
		if g.r.IntN(8) == 0 {
			reply = append(reply, g.reply("alice")...)
		}
		for _, th := range []*float32{nil, &threshold} {
			if diff := sameResults(t, reply, "alice", th); diff != "" {
				t.Fatalf("reply %d (%x), threshold %v: %s", i, reply, th, diff)
			}
		}
	}
}

// valueField appends a field num holding the fields of fs to b.
func valueField(b []byte, num protowire.Number, fs ...[]byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, bytes.Join(fs, nil))
}

func stringField(num protowire.Number, s string) []byte {
	return protowire.AppendString(protowire.AppendTag(nil, num, protowire.BytesType), s)
}

func varintField(num protowire.Number, v uint64) []byte {
	return protowire.AppendVarint(protowire.AppendTag(nil, num, protowire.VarintType), v)
}

// entry is a map entry field num of key and, when given, a Value of fs.
func entry(num protowire.Number, key string, fs ...[]byte) []byte {
	e := stringField(fEntryKey, key)
	if fs != nil {
		e = valueField(e, fEntryValue, fs...)
	}
	return valueField(nil, num, e)
}

// scored is a reply of one point with the payload entries es.
func scored(es ...[]byte) []byte {
	return valueField(nil, fResponseResult, append(es, stringField(fScoredPayload+100, "x"))...)
}

// TestQueryReplyMerges checks protobuf's merge rules the random replies
// rarely produce: fields repeated in one message, entries of one key.
func TestQueryReplyMerges(t *testing.T) {
	user := entry(fScoredPayload, keyUserID, stringField(fValueString, "alice"))
	structOf := func(es ...[]byte) []byte { return valueField(nil, fValueStruct, es...) }
	listOf := func(vs ...[]byte) []byte {
		var l []byte
		for _, v := range vs {
			l = valueField(l, fListValues, v)
		}
		return valueField(nil, fValueList, l)
	}
	for name, reply := range map[string][]byte{
		"struct merged": scored(user, entry(fScoredPayload, keyMetadata,
			structOf(entry(fStructField, "a", varintField(fValueInt, 1)), entry(fStructField, "c", varintField(fValueInt, 3))),
			structOf(entry(fStructField, "b", varintField(fValueInt, 2)), entry(fStructField, "a", varintField(fValueBool, 1))))),
		"struct replaced": scored(user, entry(fScoredPayload, keyMetadata,
			structOf(entry(fStructField, "a", varintField(fValueInt, 1))),
			stringField(fValueString, "s"),
			structOf(entry(fStructField, "b", varintField(fValueInt, 2))))),
		"entry replaced": scored(user,
			entry(fScoredPayload, keyMetadata, structOf(entry(fStructField, "a", varintField(fValueInt, 1)))),
			entry(fScoredPayload, keyMetadata, structOf(entry(fStructField, "b", varintField(fValueInt, 2)))),
			entry(fScoredPayload, keyDocID, stringField(fValueString, "d1")),
			entry(fScoredPayload, keyDocID, varintField(fValueInt, 5))),
		"list merged": scored(user, entry(fScoredPayload, keyMetadata, structOf(entry(fStructField, "l",
			listOf(varintField(fValueInt, 1)), listOf(stringField(fValueString, "x"), nil))))),
		"list replaced": scored(user, entry(fScoredPayload, keyMetadata, structOf(entry(fStructField, "l",
			listOf(varintField(fValueInt, 1)), varintField(fValueNull, 0), listOf())))),
		"value merged": scored(user, entry(fScoredPayload, keyMetadata,
			structOf(entry(fStructField, "v", varintField(fValueInt, 1), stringField(fValueString, "s"))))),
		"missing value": scored(user, entry(fScoredPayload, keyMetadata, structOf(entry(fStructField, "nil"))),
			entry(fScoredPayload, keyText)),
		"missing key": scored(user, entry(fScoredPayload, keyMetadata, structOf(valueField(nil, fStructField,
			valueField(nil, fEntryValue, varintField(fValueInt, 9)))))),
		"wrong wire types": scored(user, entry(fScoredPayload, keyDocID, stringField(fValueString, "d"),
			varintField(fValueString, 3), stringField(fValueInt, "x")),
			varintField(fScoredPayload, 1), stringField(fScoredScore, "s")),
		"no points":    nil,
		"other tenant": scored(entry(fScoredPayload, keyUserID, stringField(fValueString, "bob"))),
	} {
		for _, th := range []*float32{nil, new(float32)} {
			if diff := sameResults(t, reply, "alice", th); diff != "" {
				t.Errorf("%s: %s", name, diff)
			}
		}
	}
}

// TestQueryReplyMalformed: truncated and corrupted replies fail, and so
// do invalid UTF-8 and nesting deeper than protobuf's limit.
func TestQueryReplyMalformed(t *testing.T) {
	g := replyGen{rand.New(rand.NewPCG(1, 2))}
	var reply []byte
	for len(reply) < 200 || len(reply) > 4000 {
		reply = g.reply("alice")
	}
	for n := range len(reply) {
		cut := reply[:n]
		var resp qdrant.QueryResponse
		if proto.Unmarshal(cut, &resp) == nil {
			continue // cut between fields
		}
		var r queryReply
		if err := r.decode(bytes.Clone(cut)); err == nil {
			t.Errorf("reply cut at %d of %d decoded", n, len(reply))
		}
	}
	deep := nestedLists(maxValueDepth+1, varintField(fValueInt, 1))
	for name, reply := range map[string][]byte{
		"invalid utf-8 key":   scored(entry(fScoredPayload, "\xff")),
		"invalid utf-8 value": scored(entry(fScoredPayload, keyText, stringField(fValueString, "a\xc0"))),
		"field 0":             append(scored(), 0, 0),
		"reserved wire type":  append(scored(), 0x0f),
		"stray end group":     append(scored(), 0x0c),
		"varint overflow":     append(scored(), append([]byte{0x08}, bytes.Repeat([]byte{0xff}, 10)...)...),
		"too deep":            scored(entry(fScoredPayload, keyMetadata, deep)),
	} {
		var r queryReply
		if err := r.decode(reply); err == nil {
			t.Errorf("%s: decoded", name)
		}
	}
}

// nestedLists returns the fields of a Value holding a list of one Value
// holding ... n lists deep, the last holding inner.
func nestedLists(n int, inner []byte) []byte {
	sizes := []int{len(inner)}
	for i := range 2 * n {
		sizes = append(sizes, 1+protowire.SizeVarint(uint64(sizes[i]))+sizes[i])
	}
	var b []byte
	for i := 2 * n; i > 0; i-- {
		num := protowire.Number(fValueList)
		if i%2 == 1 {
			num = fListValues
		}
		b = protowire.AppendTag(b, num, protowire.BytesType)
		b = protowire.AppendVarint(b, uint64(sizes[i-1]))
	}
	return append(b, inner...)
}

// FuzzQueryReply: queryReply never panics, and decodes every reply
// proto.Unmarshal accepts to the model's hits.
func FuzzQueryReply(f *testing.F) {
	g := replyGen{rand.New(rand.NewPCG(5, 8))}
	for seeds := 0; seeds < 40; {
		if reply := g.reply("alice"); len(reply) < 2000 { // small, for the fuzzer's mutations
			f.Add(reply)
			seeds++
		}
	}
	f.Fuzz(func(t *testing.T, reply []byte) {
		var r queryReply
		err := r.decode(bytes.Clone(reply))
		var resp qdrant.QueryResponse
		if proto.Unmarshal(reply, &resp) != nil {
			return
		}
		if err != nil {
			t.Fatalf("proto.Unmarshal accepts %x, queryReply: %v", reply, err)
		}
		threshold := float32(0.5)
		for _, th := range []*float32{nil, &threshold} {
			if diff := sameResults(t, reply, "alice", th); diff != "" {
				t.Fatalf("%x: %s", reply, diff)
			}
		}
	})
}

// benchReply is a search's reply as the searcher gets it: ten hits of
// about 900 characters, metadata of a few fields.
func benchReply() []byte {
	resp := &qdrant.QueryResponse{Time: 0.002}
	for i := range 10 {
		text := strings.Repeat(fmt.Sprintf("Chunk %d: the consumer's maxAckPending bounds ünïcödé messages in flight. ", i), 13)[:900]
		resp.Result = append(resp.Result, &qdrant.ScoredPoint{
			Id:      qdrant.NewIDUUID(uuid.NewSHA1(uuid.NameSpaceOID, []byte{byte(i)}).String()),
			Score:   0.9 - float32(i)/100,
			Version: uint64(40 + i),
			Payload: map[string]*qdrant.Value{
				keyUserID: qdrant.NewValueString("alice"), keyDocID: qdrant.NewValueString(fmt.Sprintf("doc-%07d", i)),
				keyChunkIndex: qdrant.NewValueInt(int64(i % 3)), keyText: qdrant.NewValueString(text),
				keyVersion: qdrant.NewValueInt(1),
				keyMetadata: qdrant.NewValueStruct(&qdrant.Struct{Fields: map[string]*qdrant.Value{
					"source": qdrant.NewValueString("wiki"), "lang": qdrant.NewValueString("en"),
					"year": qdrant.NewValueInt(2024), "rank": qdrant.NewValueDouble(0.75),
					"tags": qdrant.NewValueList(&qdrant.ListValue{Values: []*qdrant.Value{
						qdrant.NewValueString("ops"), qdrant.NewValueString("nats")}}),
				}}),
			},
		})
	}
	b, err := proto.Marshal(resp)
	if err != nil {
		panic(err)
	}
	return b
}

// BenchmarkQueryReply decodes a search's reply as gRPC hands it to the
// codec (a mem.BufferSlice) into its hits: with gRPC's proto codec and
// Search's former conversion (proto), and with replyCodec (direct).
//
//	go test -run XXX -bench QueryReply -benchmem -count 5 ./qdrantstore
func BenchmarkQueryReply(b *testing.B) {
	reply := benchReply()
	data := mem.BufferSlice{mem.SliceBuffer(reply)}
	b.Run("proto", func(b *testing.B) {
		codec := encoding.GetCodecV2(grpcproto.Name)
		done := cputimetest.Per(b, 1, "cpu-ns/op")
		for b.Loop() {
			var resp qdrant.QueryResponse
			if err := codec.Unmarshal(data, &resp); err != nil {
				b.Fatal(err)
			}
			if hits, err := modelHits("c", "alice", nil, resp.GetResult()); err != nil || len(hits) != 10 {
				b.Fatal(len(hits), err)
			}
		}
		done()
	})
	b.Run("direct", func(b *testing.B) {
		done := cputimetest.Per(b, 1, "cpu-ns/op")
		for b.Loop() {
			var r queryReply
			if err := (replyCodec{}).Unmarshal(data, &r); err != nil {
				b.Fatal(err)
			}
			if hits, err := r.results("c", "alice", nil); err != nil || len(hits) != 10 {
				b.Fatal(len(hits), err)
			}
		}
		done()
	})
}

// BenchmarkQueryRequest marshals a dense search's request of 1024
// dimensions as query sends it (gRPC's proto codec).
//
//	go test -run XXX -bench QueryRequest -benchmem -count 5 ./qdrantstore
func BenchmarkQueryRequest(b *testing.B) {
	vector := make([]float32, 1024)
	for i := range vector {
		vector[i] = float32(i) / 1024
	}
	req := searchRequest("docs", pipeline.ModeDense, pipeline.Query{UserID: "alice", TopK: 10, Vector: vector})
	codec := replyCodec{encoding.GetCodecV2(grpcproto.Name)}
	for b.Loop() {
		data, err := codec.Marshal(req)
		if err != nil {
			b.Fatal(err)
		}
		data.Free()
	}
}
