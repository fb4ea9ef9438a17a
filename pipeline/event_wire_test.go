package pipeline_test

import (
	"encoding/base64"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// b64 is standard base64 of the little-endian bytes of vec.
func b64(vec ...float32) string {
	raw := make([]byte, 0, 4*len(vec))
	for _, x := range vec {
		raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(raw)
}

// b64Bits is b64 of raw float32 bit patterns, for NaN and infinities.
func b64Bits(bits ...uint32) string {
	vec := make([]float32, len(bits))
	for i, b := range bits {
		vec[i] = math.Float32frombits(b)
	}
	return b64(vec...)
}

func TestDecodeAcceptsWire(t *testing.T) {
	const subject = "rag.ingest.alice.docs"
	event := func(docID, text string, vec []float32) pipeline.Event {
		return pipeline.Event{Op: pipeline.OpUpsert, UserID: "alice", Collection: "docs", DocID: docID, Text: text, Version: 1, Vector: vec}
	}
	tiny := math.Float32frombits(1) // the smallest subnormal
	for _, tc := range []struct {
		name, body string
		want       pipeline.Event
	}{
		{"vector_b64", `{"doc_id":"d","vector_b64":"` + b64(0.5, -1, 3.25) + `"}`, event("d", "", []float32{0.5, -1, 3.25})},
		{"vector_b64 of one value, two padding characters", `{"doc_id":"d","vector_b64":"` + b64(2) + `"}`, event("d", "", []float32{2})},
		{"vector_b64 of two values, one padding character", `{"doc_id":"d","vector_b64":"` + b64(1, 2) + `"}`, event("d", "", []float32{1, 2})},
		{"vector_b64 of three values, no padding", `{"doc_id":"d","vector_b64":"` + b64(1, 2, 3) + `"}`, event("d", "", []float32{1, 2, 3})},
		{"vector_b64 with extremes", `{"doc_id":"d","vector_b64":"` + b64(math.MaxFloat32, -math.MaxFloat32, tiny, 0) + `"}`,
			event("d", "", []float32{math.MaxFloat32, -math.MaxFloat32, tiny, 0})},
		{"vector_b64 with escaped slashes", `{"doc_id":"d","vector_b64":"` + strings.ReplaceAll(b64(-1e-30, 7e30), "/", `\/`) + `"}`,
			event("d", "", []float32{-1e-30, 7e30})},
		{"vector_b64 and text", `{"doc_id":"d","text":"t","vector_b64":"` + b64(1) + `"}`, event("d", "t", []float32{1})},
		{"vector_b64 with a null vector", `{"doc_id":"d","vector":null,"vector_b64":"` + b64(1) + `"}`, event("d", "", []float32{1})},
		{"vector with a null vector_b64", `{"doc_id":"d","vector":[1],"vector_b64":null}`, event("d", "", []float32{1})},
		{"null vector_b64 means absent", `{"doc_id":"d","text":"t","vector_b64":null}`, event("d", "t", nil)},
		{"names match case-insensitively", `{"DOC_ID":"d","Text":"t","VECTOR":[1],"User_Id":"alice"}`, event("d", "t", []float32{1})},
		{"the last of duplicate members wins", `{"doc_id":"a","doc_id":"d","text":"x","Text":"t"}`, event("d", "t", nil)},
		{"invalid UTF-8 in text becomes U+FFFD", "{\"doc_id\":\"d\",\"text\":\"a\xffb\\udc00c\"}", event("d", "a\ufffdb\ufffdc", nil)},
	} {
		got, err := pipeline.Decode(pipeline.DecodeConfig{}, subject, []byte(tc.body), "", 1)
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: Decode = %#v, %v\nwant %#v", tc.name, got, err, tc.want)
		}
	}
}

func TestDecodeRejectsWire(t *testing.T) {
	const subject = "rag.ingest.alice.docs"
	long := b64(benchVector(300)...)
	for _, tc := range []struct{ name, body, reason string }{
		{"vector and vector_b64", `{"doc_id":"d","vector":[1],"vector_b64":"` + b64(1) + `"}`, "vector and vector_b64 are both given"},
		{"vector_b64 of 3 bytes", `{"doc_id":"d","vector_b64":"AAAA"}`, "vector_b64 decodes to 3 bytes, not a multiple of 4"},
		{"vector_b64 of 5 bytes", `{"doc_id":"d","vector_b64":"AAAAAAA="}`, "decodes to 5 bytes"},
		{"vector_b64 of a length not a multiple of 4", `{"doc_id":"d","vector_b64":"AAAAAA"}`, "its length, 6, is not a multiple of 4"},
		{"vector_b64 without padding", `{"doc_id":"d","vector_b64":"AACAPw"}`, "is not a multiple of 4"},
		{"empty vector_b64", `{"doc_id":"d","text":"t","vector_b64":""}`, "vector_b64 is empty"},
		{"URL-safe base64", `{"doc_id":"d","vector_b64":"` + strings.ReplaceAll(b64Bits(0x3f_ff_ff_ff), "/", "_") + `"}`, "vector_b64 is not standard base64: bad character at offset 0"},
		{"bad character late", `{"doc_id":"d","vector_b64":"` + long[:900] + "*" + long[901:] + `"}`, "bad character at offset 900"},
		{"padding in the middle", `{"doc_id":"d","vector_b64":"AA==AAAAAAAAAAAA"}`, "not standard base64: bad character at offset 4"},
		{"line breaks", `{"doc_id":"d","vector_b64":"` + long[:76] + `\n` + long[76:len(long)-1] + `"}`, "not standard base64"},
		{"NaN in vector_b64", `{"doc_id":"d","vector_b64":"` + b64Bits(0, 0x7fc00000) + `"}`, "vector_b64[1] = NaN is not a finite 32-bit float"},
		{"+Inf in vector_b64", `{"doc_id":"d","vector_b64":"` + b64Bits(0x7f800000) + `"}`, "vector_b64[0] = +Inf is not a finite"},
		{"-Inf late in vector_b64", `{"doc_id":"d","vector_b64":"` + b64(append(benchVector(299), float32(math.Inf(-1)))...) + `"}`,
			"vector_b64[299] = -Inf is not a finite"},
		{"numeric vector_b64", `{"doc_id":"d","vector_b64":[1]}`, "vector_b64 must be a base64 string, not a JSON array"},
		{"wrong type of a member named in another case", `{"doc_id":"d","text":"t","Vector":"x"}`, "vector must be an array of numbers, not a JSON string"},
		{"user_id in capitals", `{"doc_id":"d","text":"t","USER_ID":"bob"}`, `user_id "bob" in the body does not match`},
		{"delimiters matter", `{"docid":"d","text":"t"}`, "doc_id is required"},
		{"syntax error inside metadata", `{"doc_id":"d","text":"t","metadata":{"a":[1,}}`, "not valid JSON"},
		{"syntax error after bad metadata", `{"doc_id":"d","text":"t","metadata":{"a":null,"b":{"c":tru}}}`, "not valid JSON"},
		{"syntax error inside a vector", `{"doc_id":"d","vector":[1,2,]}`, "not valid JSON"},
		{"syntax error after a bad vector", `{"doc_id":"d","vector":["x"],"text":}`, "not valid JSON"},
		{"syntax error inside text", `{"doc_id":"d","text":"a\x"}`, "not valid JSON"},
		{"syntax error inside vector_b64", `{"doc_id":"d","vector_b64":"AAAA`, "not valid JSON"},
		{"syntax error on a delete", `{"op":"delete","doc_id":"d","metadata":{"a":[}}`, "not valid JSON"},
		{"long name in a syntax error", `{"` + strings.Repeat("k", 5000) + `":tru}`, "not valid JSON"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, err := pipeline.Decode(pipeline.DecodeConfig{}, subject, []byte(tc.body), "", 7)
			r, ok := errors.AsType[*pipeline.Rejection](err)
			if !ok {
				t.Fatalf("Decode = %#v, %v; want a *Rejection", e, err)
			}
			if !strings.Contains(r.Reason, tc.reason) || len(r.Reason) > 300 {
				t.Errorf("Reason = %q, want it to contain %q", r.Reason, tc.reason)
			}
			if r.UserID != "alice" || r.Collection != "docs" || r.Version != 7 {
				t.Errorf("Rejection = %+v", r)
			}
		})
	}
}

// TestDecodeDeleteIgnoresVectorB64: as with vector, a delete's vector_b64
// does not matter, however bad.
func TestDecodeDeleteIgnoresVectorB64(t *testing.T) {
	body := `{"op":"delete","doc_id":"d","vector":[1],"vector_b64":"!"}`
	e, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 3)
	want := pipeline.Event{Op: pipeline.OpDelete, UserID: "alice", Collection: "docs", DocID: "d", Version: 3}
	if err != nil || !reflect.DeepEqual(e, want) {
		t.Fatalf("Decode = %#v, %v", e, err)
	}
}

// TestDecodeVectorCapacity: a vector's capacity is sized by its own
// elements, not by the commas of the whole body (a memory attack), and a
// base64 vector is exactly as long as its values.
func TestDecodeVectorCapacity(t *testing.T) {
	for _, body := range []string{
		`{"vector":[1],"doc_id":"d","text":"` + strings.Repeat(",", pipeline.DefaultMaxEventBytes-64) + `"}`,
		`{"vector_b64":"` + b64(1) + `","doc_id":"d","text":"` + strings.Repeat(",", pipeline.DefaultMaxEventBytes-64) + `"}`,
	} {
		e, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 1)
		if err != nil || len(e.Vector) != 1 || cap(e.Vector) > 1 {
			t.Fatalf("len %d cap %d, %v", len(e.Vector), cap(e.Vector), err)
		}
	}
}

// TestDecodeVectorB64Allocations checks that a base64 vector is decoded with
// no allocation but the vector's own: the same count as the same event
// without one, plus one.
func TestDecodeVectorB64Allocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector allocates on its own")
	}
	vec := benchVector(1024)
	without, with := benchEvent(""), benchEvent(b64VectorMember(vec))
	decode := func(body []byte) func() {
		return func() {
			if _, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", body, "", 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	base, got := testing.AllocsPerRun(50, decode(without)), testing.AllocsPerRun(50, decode(with))
	if got != base+1 {
		t.Errorf("%v allocations with vector_b64, %v without; want one more", got, base)
	}
	e, _ := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", with, "", 1)
	if !reflect.DeepEqual(e.Vector, vec) {
		t.Error("vector_b64 decodes to another vector")
	}
}
