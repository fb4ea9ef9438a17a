package search

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// TestAppendSearchReply checks that a search reply is encoded byte for
// byte as encoding/json encodes it, and left to encoding/json where it
// cannot be.
func TestAppendSearchReply(t *testing.T) {
	strs := []string{"", "plain", `quote " and \ back`, "<b>&amp;</b>", "tab\tnl\ncr\rbs\bff\f", "\x00\x01\x1f\x7f",
		"é ü 日本 🙂", "\u2028 and \u2029", "bad \xff\xfe utf8 \xc3", "x\xe2\x80"}
	floats := []float64{0, math.Copysign(0, -1), 1, -1, 0.5, 0.123456789, 1e-6, 9.99e-7, 1e-7, 1.5e-300, 1e20, 1e21, 3.4e38, -2.5e-9, 123456.789}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		b := make([]byte, rng.IntN(40))
		for i := range b {
			b[i] = byte(rng.IntN(256))
		}
		strs = append(strs, string(b))
	}
	var replies []*SearchReply
	replies = append(replies, &SearchReply{}, &SearchReply{Hits: []pipeline.Hit{}, TookMS: 1.25})
	for i, s := range strs {
		f := floats[i%len(floats)]
		replies = append(replies, &SearchReply{TookMS: f, Hits: []pipeline.Hit{
			{DocID: s, ChunkIndex: i, Score: float32(f), Text: s, Metadata: map[string]any{}, Version: uint64(i) << 40},
			{DocID: "d", ChunkIndex: -i, Score: float32(-f), Text: "t", Version: math.MaxUint64, Metadata: map[string]any{
				s: s, "n": int64(-i), "f": f, "b": i%2 == 0, "null": nil, "list": []any{s, int64(i), f, true, nil, []any{}, map[string]any{}},
				"nested": map[string]any{"z": int64(1), "a": map[string]any{s: []any(nil)}, "m": map[string]any(nil)},
			}},
		}})
	}
	for _, r := range replies {
		want, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		got, ok := appendSearchReply([]byte("garbage"), r)
		if !ok || !bytes.Equal(got[len("garbage"):], want) {
			t.Fatalf("appendSearchReply: ok %v\n got %s\nwant %s", ok, got[len("garbage"):], want)
		}
		if got, err := encodeReply(make([]byte, 3), r); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("encodeReply: %v\n got %s\nwant %s", err, got, want)
		}
	}

	// What only encoding/json encodes, or refuses.
	for _, r := range []*SearchReply{
		{Hits: []pipeline.Hit{{Metadata: map[string]any{"n": 3}}}},                   // an int, not int64
		{Hits: []pipeline.Hit{{Metadata: map[string]any{"n": json.Number("1.50")}}}}, // kept as written
		{Hits: []pipeline.Hit{{Metadata: map[string]any{"l": []string{"a"}}}}},
	} {
		if _, ok := appendSearchReply(nil, r); ok {
			t.Errorf("%v: encoded, want it left to encoding/json", r.Hits[0].Metadata)
		}
		want, _ := json.Marshal(r)
		if got, err := encodeReply(nil, r); err != nil || !bytes.Equal(got, want) {
			t.Errorf("encodeReply: %v\n got %s\nwant %s", err, got, want)
		}
	}
	for _, r := range []*SearchReply{
		{TookMS: math.NaN()},
		{Hits: []pipeline.Hit{{Score: float32(math.Inf(1))}}},
		{Hits: []pipeline.Hit{{Metadata: map[string]any{"f": math.Inf(-1)}}}},
	} {
		if _, ok := appendSearchReply(nil, r); ok {
			t.Errorf("%+v: encoded", r)
		}
		if _, err := encodeReply(nil, r); err == nil {
			t.Errorf("%+v: no error", r)
		}
	}
	if got, err := encodeReply(nil, &ListReply{Docs: []pipeline.Doc{}}); err != nil || string(got) != `{"docs":[],"next_cursor":""}` {
		t.Errorf("list reply: %s, %v", got, err)
	}
}

// BenchmarkEncodeSearchReply encodes a reply of ten hits of 900
// characters, without and with metadata, by appendSearchReply into a
// reused buffer and by encoding/json.
//
//	go test -run XXX -bench EncodeSearchReply -benchmem ./search
func BenchmarkEncodeSearchReply(b *testing.B) {
	text := string(bytes.Repeat([]byte("deploy the cluster's replica to zone b, then fail over. "), 17))
	for _, meta := range []map[string]any{{}, {"env": "prod", "team": "payments", "tier": int64(2), "tags": []any{"a", "b"}}} {
		r := &SearchReply{TookMS: 2.345}
		for i := range 10 {
			r.Hits = append(r.Hits, pipeline.Hit{DocID: "doc-0000123", ChunkIndex: i, Score: 0.8123 - float32(i)/100, Text: text, Metadata: meta, Version: 7})
		}
		name := "bare"
		if len(meta) > 0 {
			name = "metadata"
		}
		b.Run(name+"/append", func(b *testing.B) {
			b.ReportAllocs()
			var buf []byte
			for b.Loop() {
				buf, _ = appendSearchReply(buf[:0], r)
			}
		})
		b.Run(name+"/json", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := json.Marshal(r); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
