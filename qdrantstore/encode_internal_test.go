package qdrantstore

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/qdrant/go-client/qdrant"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/encoding/prototext"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	"github.com/ragpipe/ragpipe/pipeline"
)

// richMetadata holds every JSON type, in every form PlainMetadata accepts.
func richMetadata() map[string]any {
	return map[string]any{
		"s": "héllo wörld — 日本語 🚀 \u0000 \"quoted\"", "empty": "", "ünïcödé ключ": "v",
		"t": true, "f": false,
		"i": int64(-42), "zero": int64(0), "max": int64(math.MaxInt64), "min": int64(math.MinInt64),
		"int": 7, "i8": int8(-8), "u8": uint8(200), "u32": uint32(math.MaxUint32), "u64": uint64(1 << 62),
		"pi": 3.14159, "negzero": math.Copysign(0, -1), "tiny": 5e-324, "huge": -1.7976931348623157e308,
		"f32": float32(0.1), "n": json.Number("12"), "nf": json.Number("1.5e3"),
		"null": nil,
		"list": []any{"a", int64(1), 2.5, nil, true, []any{}, []any{[]any{"deep"}}, map[string]any{"x": "y"}},
		"strs": []string{"x", "y", ""}, "ints": []int{1, -2}, "bools": []bool{true}, "floats": []float64{0.5},
		"f32s": []float32{1.5}, "i64s": []int64{math.MinInt64}, "nums": []json.Number{"3", "3.5"},
		"obj":   map[string]any{"nested": map[string]any{"deep": []any{int64(1), map[string]any{}}}, "k": "v", "nil": nil},
		"eobj":  map[string]any{},
		"elist": []any{},
	}
}

// plainMetadata holds every JSON type, in the plain form of decoded events'
// metadata (and nested objects).
func plainMetadata() map[string]any {
	return map[string]any{
		"s": "héllo wörld — 日本語 🚀 \u0000 \"quoted\"", "empty": "", "ünïcödé ключ": "v",
		"t": true, "f": false, "null": nil,
		"i": int64(-42), "zero": int64(0), "max": int64(math.MaxInt64), "min": int64(math.MinInt64),
		"pi": 3.14159, "negzero": math.Copysign(0, -1), "tiny": 5e-324, "huge": -1.7976931348623157e308,
		"list": []any{"a", int64(1), 2.5, nil, true, []any{}, []any{[]any{"deep"}}, map[string]any{"x": "y"}},
		"obj":  map[string]any{"nested": map[string]any{"deep": []any{int64(1), map[string]any{}}}, "k": "v", "nil": nil},
		"eobj": map[string]any{}, "elist": []any{},
	}
}

// point returns the i-th point of a write of user/doc at version v: its
// text of about n characters, its keyword vector, hash and metadata as given.
func testPoint(user, doc string, v uint64, i, count, n int, md map[string]any) pipeline.Point {
	text := strings.Repeat(fmt.Sprintf("Chunk %d of %s: the consumer's maxAckPending bounds ünïcödé 日本語 messages. ", i, doc), n/80+1)[:n]
	vec := make([]float32, 8)
	for j := range vec {
		vec[j] = float32(i*8+j)/7 - 3
	}
	return pipeline.Point{ID: pipeline.PointID(user, doc, i), Vector: vec, ChunkIndex: i, ChunkCount: count,
		Text: text, Metadata: md, Version: v, TextHash: pipeline.TextHash("model", text), Keywords: pipeline.Keywords(text)}
}

func testWrite(user, doc string, v uint64, points int, md map[string]any) pipeline.DocWrite {
	w := pipeline.DocWrite{UserID: user, DocID: doc, Version: v}
	for i := range points {
		w.Points = append(w.Points, testPoint(user, doc, v, i, points, 900, md))
	}
	return w
}

// firsts returns writes, each with First as given.
func firsts(writes []pipeline.DocWrite, first ...bool) []pipeline.DocWrite {
	for i := range writes {
		writes[i].First = first[i]
	}
	return writes
}

func TestEncodeRequest(t *testing.T) {
	rich, plain := richMetadata(), plainMetadata()
	shared := map[string]any{"source": "wiki", "tags": []any{"a", "b"}}

	mixed := testWrite("alice", "mixed", 7, 5, shared)
	mixed.Points[1].Metadata = rich                          // a map of its own
	mixed.Points[2].Metadata = map[string]any{"a": "b"}      // another
	mixed.Points[3].Metadata = shared                        // the first again
	mixed.Points[4].Metadata = nil                           // none: {}
	mixed.Points[0].TextHash = ""                            // no hash
	mixed.Points[1].Keywords = nil                           // no keyword vector
	mixed.Points[2].Keywords = &pipeline.SparseVector{}      // an empty one
	mixed.Points[3].Text, mixed.Points[3].Keywords = "", nil // no text

	sealed := testWrite("bob", "sealed", 1<<53+1, 2, nil)
	for i := range sealed.Points {
		p := &sealed.Points[i]
		p.Text = "rp1:" + strings.Repeat("q83vEjRWeJq83vEjRWeJ+/==", 50)
		// Keyed term ids, as with encryption at rest: large, 5-byte varints.
		p.Keywords = pipeline.KeywordsWith("the consumer's maxAckPending bounds messages", func(term []byte) uint32 {
			return math.MaxUint32 - uint32(len(term))*7919 - uint32(term[0])
		})
	}

	big := testWrite("carol", "big", math.MaxInt64, 1, rich)
	big.Points[0].Vector = make([]float32, 600_000) // a point beyond 2 MiB
	big.Points[0].Vector[599_999] = -1

	long := testWrite("carol", "long", 3, 1, nil)
	long.Points[0].Text = strings.Repeat("long text ", 3000)

	prune := func(user, doc string, v uint64) unit {
		return unit{doc: docKey{user, doc}, version: v, weight: 1}
	}
	type testCase struct {
		name        string
		keywords    bool
		writes      []pipeline.DocWrite
		prunes      []unit
		deleteOlder bool
		ordering    *qdrant.WriteOrdering
	}
	medium := &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Medium}
	var cases []testCase
	for _, keywords := range []bool{false, true} {
		for _, deleteOlder := range []bool{false, true} {
			name := fmt.Sprintf("keywords=%v/deleteOlder=%v/", keywords, deleteOlder)
			cases = append(cases,
				testCase{name + "one", keywords, []pipeline.DocWrite{testWrite("alice", "d", 1, 1, shared)}, nil, deleteOlder, medium},
				testCase{name + "mixed", keywords, []pipeline.DocWrite{mixed}, nil, deleteOlder, medium},
				testCase{name + "versions", keywords, []pipeline.DocWrite{
					testWrite("alice", "a", 5, 2, rich), testWrite("bob", "b", 3, 1, plain), {UserID: "alice", DocID: "gone", Version: 4},
					testWrite("alice", "c", 5, 3, shared), testWrite("bob", "d", 1, 1, shared), sealed, {UserID: "bob", DocID: "gone", Version: 9},
				}, nil, deleteOlder, medium},
				testCase{name + "sealed", keywords, []pipeline.DocWrite{sealed}, nil, deleteOlder, &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Strong}},
				testCase{name + "deletes", keywords, []pipeline.DocWrite{{UserID: "u", DocID: "x", Version: 2}, {UserID: "u", DocID: "y", Version: 3}}, nil, deleteOlder, medium},
				testCase{name + "prunes", keywords, nil, []unit{prune("u", "p", 4), prune("ü", "日本", 0)}, deleteOlder, medium},
				testCase{name + "weak", keywords, []pipeline.DocWrite{testWrite("u", "w", 2, 2, nil)}, nil, deleteOlder, &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Weak}},
				testCase{name + "no-ordering", keywords, []pipeline.DocWrite{testWrite("u", "w", 2, 1, nil)}, []unit{prune("u", "p", 1)}, deleteOlder, nil},
				testCase{name + "long", keywords, []pipeline.DocWrite{long, big}, nil, deleteOlder, medium},
				// First versions: all, some (of a version another write shares), none.
				testCase{name + "first/all", keywords, firsts([]pipeline.DocWrite{
					testWrite("alice", "a", 5, 2, rich), testWrite("bob", "b", 3, 1, plain), {UserID: "alice", DocID: "gone", Version: 4},
				}, true, true, true), nil, deleteOlder, medium},
				testCase{name + "first/some", keywords, firsts([]pipeline.DocWrite{
					testWrite("alice", "a", 5, 2, rich), testWrite("bob", "b", 3, 1, plain), testWrite("alice", "c", 5, 3, shared),
					testWrite("bob", "d", 1, 1, shared), sealed,
				}, true, false, false, true, true), nil, deleteOlder, medium},
				testCase{name + "first/none", keywords, firsts([]pipeline.DocWrite{
					testWrite("alice", "a", 5, 2, rich), testWrite("bob", "b", 3, 1, plain),
				}, false, false), nil, deleteOlder, medium},
				testCase{name + "first/prunes", keywords, firsts([]pipeline.DocWrite{testWrite("u", "w", 2, 1, nil)}, true),
					[]unit{prune("u", "p", 1)}, deleteOlder, nil},
			)
		}
	}
	q := &Store{}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := pipeline.Collection{Name: "c", Keywords: tc.keywords}
			var got []unit
			var want []modelUnit
			metadata := []byte("junk")
			for i := range tc.writes {
				u, err := q.newUnit(&tc.writes[i], c, &metadata)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, u)
				m, err := q.writeUnit(&tc.writes[i], c)
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, m)
			}
			got = append(got, tc.prunes...)
			for _, p := range tc.prunes {
				want = append(want, modelPrune(p))
			}
			checkEncoding(t, "coll_1", tc.ordering, got, want, tc.deleteOlder)
		})
	}
}

// checkEncoding checks that encodeRequest's bytes for units decode to the
// request the go-client's messages for model (units built by writeUnit)
// make, and are no longer than proto.Marshal's.
func checkEncoding(t *testing.T, collection string, ordering *qdrant.WriteOrdering, units []unit, model []modelUnit, deleteOlder bool) {
	t.Helper()
	prefix := []byte("junk")
	b, ok := encodeRequest(prefix, collection, ordering, units, deleteOlder)
	ops := operations(model, deleteOlder)
	if ok != (len(ops) > 0) {
		t.Fatalf("encodeRequest reports %v for %d operations", ok, len(ops))
	}
	if !ok {
		if !bytes.Equal(b, prefix) {
			t.Fatalf("no operations, but %q written", b)
		}
		return
	}
	if !bytes.HasPrefix(b, prefix) {
		t.Fatalf("encodeRequest overwrote what b held")
	}
	want := &qdrant.UpdateBatchPoints{CollectionName: collection, Wait: qdrant.PtrOf(true), Operations: ops, Ordering: ordering}
	var got qdrant.UpdateBatchPoints
	if err := proto.Unmarshal(b[len(prefix):], &got); err != nil {
		t.Fatalf("unmarshal: %v", err)
	}
	if !proto.Equal(&got, want) {
		g, w := prototext.Format(&got), prototext.Format(want)
		if len(g) > 20000 {
			g, w = g[:20000], w[:20000]
		}
		t.Fatalf("encoded request differs\ngot:\n%s\nwant:\n%s", g, w)
	}
	if n, m := len(b)-len(prefix), proto.Size(want); n != m {
		t.Errorf("encoded %d bytes, proto.Marshal %d", n, m)
	}
}

// TestNewUnitErrors checks that newUnit refuses what the go-client's
// messages refused, with the same errors.
func TestNewUnitErrors(t *testing.T) {
	bad := []struct {
		name string
		edit func(w *pipeline.DocWrite)
	}{
		{"user", func(w *pipeline.DocWrite) { w.UserID = "" }},
		{"version", func(w *pipeline.DocWrite) { w.Version = math.MaxUint64 }},
		{"dims", func(w *pipeline.DocWrite) { w.Points[1].Vector = w.Points[1].Vector[:3] }},
		{"no vector", func(w *pipeline.DocWrite) { w.Points[1].Vector = nil }},
		{"id", func(w *pipeline.DocWrite) { w.Points[1].ID = "not-a-uuid" }},
		{"owner", func(w *pipeline.DocWrite) { w.Points[1].DocID = "other" }},
		{"text", func(w *pipeline.DocWrite) { w.Points[1].Text = "bad \xff" }},
		{"metadata NaN", func(w *pipeline.DocWrite) { w.Points[1].Metadata = map[string]any{"x": math.NaN()} }},
		{"metadata type", func(w *pipeline.DocWrite) { w.Points[1].Metadata = map[string]any{"x": struct{}{}} }},
		{"metadata key", func(w *pipeline.DocWrite) { w.Points[1].Metadata = map[string]any{"\xff": 1} }},
		{"metadata string", func(w *pipeline.DocWrite) { w.Points[1].Metadata = map[string]any{"x": []any{"ok", "\xff"}} }},
		{"metadata nested key", func(w *pipeline.DocWrite) {
			w.Points[1].Metadata = map[string]any{"x": map[string]any{"ok": int64(1), "\xfe": "v"}}
		}},
		{"metadata nested", func(w *pipeline.DocWrite) {
			w.Points[1].Metadata = map[string]any{"x": []any{map[string]any{"y": uint64(math.MaxUint64)}}}
		}},
		{"shared metadata bad", func(w *pipeline.DocWrite) {
			md := map[string]any{"x": math.Inf(1)}
			w.Points[0].Metadata, w.Points[1].Metadata = md, md
		}},
		{"keywords order", func(w *pipeline.DocWrite) {
			w.Points[1].Keywords = &pipeline.SparseVector{Indices: []uint32{2, 1}, Values: []float32{1, 1}}
		}},
		{"keywords lengths", func(w *pipeline.DocWrite) {
			w.Points[1].Keywords = &pipeline.SparseVector{Indices: []uint32{1, 2}, Values: []float32{1}}
		}},
		{"keywords value", func(w *pipeline.DocWrite) {
			w.Points[1].Keywords = &pipeline.SparseVector{Indices: []uint32{1}, Values: []float32{float32(math.Inf(-1))}}
		}},
		{"metadata before keywords", func(w *pipeline.DocWrite) {
			w.Points[1].Metadata = map[string]any{"x": math.NaN()}
			w.Points[1].Keywords = &pipeline.SparseVector{Indices: []uint32{2, 1}, Values: []float32{1, 1}}
		}},
	}
	q := &Store{}
	for _, tc := range bad {
		for _, keywords := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/keywords=%v", tc.name, keywords), func(t *testing.T) {
				w := testWrite("u", "d", 3, 3, map[string]any{"ok": true})
				tc.edit(&w)
				c := pipeline.Collection{Dims: 8, Keywords: keywords}
				_, got := q.newUnit(&w, c, new([]byte))
				_, want := q.writeUnit(&w, c)
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Fatalf("newUnit: %v\nwriteUnit: %v", got, want)
				}
				if want == nil && keywords && strings.HasPrefix(tc.name, "keywords") {
					t.Fatalf("%s accepted", tc.name)
				}
			})
		}
	}
}

// TestEncoderLengths checks nested lengths whatever room the hint left.
func TestEncoderLengths(t *testing.T) {
	sizes := []int{0, 1, 127, 128, 16383, 16384, 2097151, 2097152}
	for _, size := range sizes {
		for _, hint := range append(sizes, 1<<28) {
			e := encoder{b: []byte("x")}
			n := e.open(5, hint)
			content := bytes.Repeat([]byte{byte(size)}, size)
			e.b = append(e.b, content...)
			e.close(n)
			e.varint(6, 1)
			b := e.b[1:]
			num, typ, v, m := consumeField(b)
			if num != 5 || typ != protowire.BytesType || !bytes.Equal(v, content) {
				t.Fatalf("size %d, hint %d: field %d type %d of %d bytes", size, hint, num, typ, len(v))
			}
			if want := protowire.SizeTag(5) + protowire.SizeBytes(size) + 2; len(b) != want || m != want-2 {
				t.Fatalf("size %d, hint %d: %d bytes, want %d", size, hint, len(b), want)
			}
		}
	}
}

func consumeField(b []byte) (protowire.Number, protowire.Type, []byte, int) {
	num, typ, n := protowire.ConsumeTag(b)
	if n < 0 {
		return 0, 0, nil, n
	}
	v, m := protowire.ConsumeBytes(b[n:])
	return num, typ, v, n + m
}

// TestRequestReferences checks that a request's buffer is released only
// once its sender and every gRPC reference are done with it, and never when
// gRPC does not count its references.
func TestRequestReferences(t *testing.T) {
	for _, size := range []int{100, 1 << 20} {
		r := newRequest()
		r.buf = append(r.buf, make([]byte, size)...)
		first, err := requestCodec{}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		second, _ := requestCodec{}.Marshal(r) // a retry
		if got := first.Materialize(); len(got) != size {
			t.Fatalf("%d bytes marshalled, want %d", len(got), size)
		}
		r.release()
		first.Free()
		counted := !mem.IsBelowBufferPoolingThreshold(cap(r.buf))
		if n := r.refs.Load(); counted && n != 1 {
			t.Fatalf("size %d: %d references left with one retry in flight, want 1", size, n)
		}
		second.Free()
		if n := r.refs.Load(); counted && n != 0 || !counted && n == 0 {
			t.Fatalf("size %d (references counted by gRPC: %v): %d references left", size, counted, n)
		}
	}
	if _, err := (requestCodec{}).Marshal(&qdrant.UpdateBatchPoints{}); err == nil {
		t.Fatal("requestCodec marshalled a message")
	}
}

// TestEncodeUpsert checks that encodeUpsert's bytes decode to the
// go-client's upsert of the model's points, with no update_filter.
func TestEncodeUpsert(t *testing.T) {
	q := &Store{}
	c := pipeline.Collection{Name: "c", Keywords: true}
	writes := []pipeline.DocWrite{testWrite("u", "a", 3, 2, map[string]any{"k": []any{"v", int64(1)}}), testWrite("v", "b", 1, 1, nil)}
	var units []unit
	var model []modelUnit
	var metadata []byte
	for i := range writes {
		u, err := q.newUnit(&writes[i], c, &metadata)
		if err != nil {
			t.Fatal(err)
		}
		m, err := q.writeUnit(&writes[i], c)
		if err != nil {
			t.Fatal(err)
		}
		units, model = append(units, u), append(model, m)
	}
	o := &qdrant.WriteOrdering{Type: qdrant.WriteOrderingType_Medium}
	b, ok := encodeUpsert(nil, c.Name, o, units)
	if !ok {
		t.Fatal("no request")
	}
	ops := operations(model, false)
	ops[0].GetUpsert().UpdateFilter = nil
	want := &qdrant.UpdateBatchPoints{CollectionName: c.Name, Wait: qdrant.PtrOf(true), Operations: ops, Ordering: o}
	var got qdrant.UpdateBatchPoints
	if err := proto.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if !proto.Equal(&got, want) {
		t.Fatalf("encoded upsert differs\ngot:\n%s\nwant:\n%s", prototext.Format(&got), prototext.Format(want))
	}
	if _, ok := encodeUpsert(nil, c.Name, o, nil); ok {
		t.Fatal("a request of no point")
	}
}

// TestAppendUint32s checks appendUint32s against protowire's packed
// varints, for values of every size and its boundaries.
func TestAppendUint32s(t *testing.T) {
	v := []uint32{0, 1, 127, 128, 1<<14 - 1, 1 << 14, 1<<21 - 1, 1 << 21, 1<<28 - 1, 1 << 28, math.MaxUint32}
	r := rand.New(rand.NewPCG(3, 4))
	for range 1000 {
		v = append(v, r.Uint32()>>r.IntN(32))
	}
	var want []byte
	for _, x := range v {
		want = protowire.AppendVarint(want, uint64(x))
	}
	want = append(protowire.AppendVarint(protowire.AppendTag([]byte("prefix"), 2, protowire.BytesType), uint64(len(want))), want...)
	if got := appendUint32s([]byte("prefix"), 2, v, varintsSize(v)); !bytes.Equal(got, want) {
		t.Fatalf("appendUint32s wrote\n%x\nwant\n%x", got, want)
	}
}
