package pipeline_test

import (
	"errors"
	"fmt"
	"math"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/ragpipe/ragpipe/pipeline"
)

// TestDecodeVectorEdges pins what Decode makes of unusual vectors and
// base64 strings, accepted or not, with the exact reason: malformed base64,
// wrong lengths, padding, non-canonical encodings, escapes in the string,
// numbers that JSON does not allow, duplicates.
func TestDecodeVectorEdges(t *testing.T) {
	const (
		notB64   = "vector_b64 is not standard base64: "
		notJSON  = "body is not valid JSON: "
		eight    = "AACAPwAAgD8AAIA/AACAPwAAgD8AAIA/AACAPwAAgD8" // 1 eight times, less the last padding
		inf      = "AACAfw"                                      // +Inf, less the padding
		oneTwice = "AACAPw==AACAPw=="
	)
	ones := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = 1
		}
		return v
	}
	for _, tc := range []struct {
		name, member string // the vector's member, spliced into a body with a doc_id
		want         []float32
		reason       string // when rejected
	}{
		{"canonical", `"vector_b64":"AACAPw=="`, []float32{1}, ""},
		{"non-canonical, two padding characters", `"vector_b64":"AACAPx=="`, []float32{1}, ""},
		{"non-canonical, all unused bits set", `"vector_b64":"AACAP/=="`, []float32{1}, ""},
		{"non-canonical, one padding character", `"vector_b64":"AACAPwAAAEF="`, []float32{1, 8}, ""},
		{"eight values, one padding character", `"vector_b64":"` + eight + `="`, ones(8), ""},
		{"nine values, no padding", `"vector_b64":"` + eight + `AAIA/"`, ones(9), ""},
		{"escaped letters", `"vector_b64":"\u0041ACAP\u0077=="`, []float32{1}, ""},
		{"escaped padding", `"vector_b64":"AACAPw\u003d\u003d"`, []float32{1}, ""},
		{"escaped slash", `"vector_b64":"AAC\/Pw=="`, []float32{math.Float32frombits(0x3fbf0000)}, ""},
		{"four padding characters", `"vector_b64":"AAAA===="`, nil, notB64 + "bad character at offset 4"},
		{"padding inside the last group", `"vector_b64":"AACA=w=="`, nil, notB64 + "bad character at offset 4"},
		{"padding before a character", `"vector_b64":"AACAPw=A"`, nil, "vector_b64 decodes to 6 bytes, not a multiple of 4 (the size of a float32)"},
		{"only padding", `"vector_b64":"===="`, nil, "vector_b64 decodes to 1 bytes, not a multiple of 4 (the size of a float32)"},
		{"two padded strings", `"vector_b64":"` + oneTwice + `"`, nil, "vector_b64 decodes to 10 bytes, not a multiple of 4 (the size of a float32)"},
		{"padding in the middle of a long string", `"vector_b64":"` + eight[:40] + "=" + eight[41:] + `AAIA/"`, nil, notB64 + "bad character at offset 40"},
		{"one byte short", `"vector_b64":"AACAPwA="`, nil, "vector_b64 decodes to 5 bytes, not a multiple of 4 (the size of a float32)"},
		{"unpadded", `"vector_b64":"AACAPw"`, nil, notB64 + "its length, 6, is not a multiple of 4"},
		{"a space", `"vector_b64":"AACAPw== "`, nil, notB64 + "its length, 9, is not a multiple of 4"},
		{"a tab", `"vector_b64":"AACAPw\t=="`, nil, notB64 + "its length, 9, is not a multiple of 4"},
		{"CR LF", `"vector_b64":"AACAPw\r\n=="`, nil, notB64 + "its length, 10, is not a multiple of 4"},
		{"non-ASCII", `"vector_b64":"AACAPé=="`, nil, notB64 + "its length, 9, is not a multiple of 4"},
		{"invalid UTF-8", "\"vector_b64\":\"AACAP\xff==\"", nil, notB64 + "bad character at offset 5"},
		{"URL-safe '-'", `"vector_b64":"AACA-w=="`, nil, notB64 + "bad character at offset 4"},
		{"URL-safe '_'", `"vector_b64":"AACA_w=="`, nil, notB64 + "bad character at offset 4"},
		{"+Inf last", `"vector_b64":"` + eight + "AAIA/" + inf + `=="`, nil, "vector_b64[9] = +Inf is not a finite 32-bit float"},
		{"+Inf in a fast group", `"vector_b64":"` + b64Bits(1, 2, 3, 0x7f800000, 4, 5, 6, 7, 8, 9) + `"`, nil, "vector_b64[3] = +Inf is not a finite 32-bit float"},
		{"-Inf in a fast group", `"vector_b64":"` + b64Bits(1, 2, 3, 4, 0xff800000, 5, 6, 7, 8, 9) + `"`, nil, "vector_b64[4] = -Inf is not a finite 32-bit float"},
		{"NaN in a fast group", `"vector_b64":"` + b64Bits(1, 2, 3, 4, 5, 0x7fc00001, 6, 7, 8, 9) + `"`, nil, "vector_b64[5] = NaN is not a finite 32-bit float"},
		{"a bool", `"vector_b64":true`, nil, "vector_b64 must be a base64 string, not a JSON bool"},
		{"an object", `"vector_b64":{}`, nil, "vector_b64 must be a base64 string, not a JSON object"},
		{"duplicates, the last wins", `"vector_b64":"AACAPw==","Vector_B64":"AAAAQA=="`, []float32{2}, ""},
		{"both", `"vector_b64":"AACAPw==","vector":[2]`, nil, "vector and vector_b64 are both given; send one of them"},

		{"numbers with spaces and exponents", "\"vector\":[ 1 , -2.5e+0 ,3E-1\n,\t4e0\r]", []float32{1, -2.5, 0.3, 4}, ""},
		{"long literals", `"vector":[0.30000000000000004,1.0000000000000000001,123456789012345678901234567890,0.000000001234567891234]`,
			[]float32{0.3, 1, 1.2345679e+29, 1.2345679e-09}, ""},
		{"underflow to zero", `"vector":[1e-50,-0]`, []float32{0, float32(math.Copysign(0, -1))}, ""},
		{"leading zero", `"vector":[01]`, nil, notJSON + `invalid character '1' after array element (expecting ',' or ']') within "/vector" after offset 25`},
		{"no fraction digits", `"vector":[1.]`, nil, notJSON + `invalid character ']' in number (expecting digit) within "/vector/0" after offset 26`},
		{"no integer part", `"vector":[.5]`, nil, notJSON + `invalid character '.' at start of value within "/vector/0" after offset 24`},
		{"plus sign", `"vector":[+1]`, nil, notJSON + `invalid character '+' at start of value within "/vector/0" after offset 24`},
		{"no exponent digits", `"vector":[1e]`, nil, notJSON + `invalid character ']' in number (expecting digit) within "/vector/0" after offset 26`},
		{"a lone minus", `"vector":[-]`, nil, notJSON + `invalid character ']' in number (expecting digit) within "/vector/0" after offset 25`},
		{"a trailing comma", `"vector":[1,]`, nil, notJSON + `invalid character ']' after object value (expecting ',' or '}') within "/vector" after offset 26`},
		{"no comma", `"vector":[1 2]`, nil, notJSON + `invalid character '2' after array element (expecting ',' or ']') within "/vector" after offset 26`},
		{"nested", `"vector":[[1]]`, nil, "vector[0] must be a number, not a JSON array"},
		{"a string", `"vector":[1,"]"]`, nil, "vector[1] must be a number, not a JSON string"},
		{"a null", `"vector":[1,null]`, nil, "vector[1] must be a number, not a JSON null"},
		{"overflow", `"vector":[1,-1e39]`, nil, "vector[1] = -1e39 is not a finite 32-bit float"},
		{"just above MaxFloat32", `"vector":[340282356779733661637539395458142568448]`, nil,
			"vector[0] = 340282356779733661637539395458142568448 is not a finite 32-bit float"},
		{"empty", `"vector":[ ]`, nil, "vector is empty"},
		{"duplicates in another case, the last wins", `"vector":[1],"VECTOR":[2]`, []float32{2}, ""},
		{"an escaped name", `"v\u0065ctor":[1,2]`, []float32{1, 2}, ""},
		{"a bracket after it", `"vector":[1], "x":"]"`, []float32{1}, ""},
		{"a vector in metadata", `"vector":[1,2],"metadata":{"vector":[3]}`, []float32{1, 2}, ""},
	} {
		// A large body has its vector decoded apart from the rest: the
		// padding after the vector leaves the reasons' offsets as they are.
		for _, body := range []string{`{"doc_id":"d",` + tc.member + "}", `{"doc_id":"d",` + tc.member + `,"pad":"` + padding + `"}`} {
			t.Run(fmt.Sprintf("%s, %d bytes", tc.name, len(body)), func(t *testing.T) {
				e, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 1)
				if tc.reason != "" {
					r, ok := errors.AsType[*pipeline.Rejection](err)
					if !ok || r.Reason != tc.reason {
						t.Fatalf("Decode(%.200s) = %v, %v; want the reason %q", body, e.Vector, err, tc.reason)
					}
					return
				}
				if err != nil || len(e.Vector) != len(tc.want) {
					t.Fatalf("Decode(%.200s) = %v, %v; want %v", body, e.Vector, err, tc.want)
				}
				for i, x := range tc.want {
					if math.Float32bits(e.Vector[i]) != math.Float32bits(x) {
						t.Fatalf("Decode(%.200s) = %v, want %v", body, e.Vector, tc.want)
					}
				}
			})
		}
	}
}

// padding is a string long enough to make a body's vector decoded apart.
var padding = strings.Repeat("-", 3000)

// TestDecodeVectorTrailing checks that what follows the object still counts
// when the vector is decoded apart from the rest.
func TestDecodeVectorTrailing(t *testing.T) {
	for body, reason := range map[string]string{
		`{"doc_id":"d","vector":[1,2],"text":"t"} x`:   `body is not valid JSON: invalid character 'x' after top-level value after offset 41`,
		`{"doc_id":"d","vector":[1,2]`:                 `body is not valid JSON: unexpected EOF after offset 28`,
		`{"doc_id":"d","vector":[1,2],}`:               `body is not valid JSON: invalid character ',' at start of value after offset 28`,
		`{"doc_id":"d" "vector":[1,2]}`:                `body is not valid JSON: invalid character '"' after object value (expecting ',' or '}') after offset 14`,
		`{"doc_id":"d","vector_b64":"AACAPw==",}`:      `body is not valid JSON: invalid character ',' at start of value after offset 37`,
		`{"doc_id":"d","text":"a\"vector\":[1]"}`:      "",
		`{"doc_id":"d","vector_b64":"AACAPw==" "x":1}`: `body is not valid JSON: invalid character '"' after object value (expecting ',' or '}') after offset 38`,
	} {
		// The padding goes first, so offsets move by its length.
		pad := `"pad":"` + padding + `",`
		body := "{" + pad + body[1:]
		reason := regexp.MustCompile(`offset [0-9]+`).ReplaceAllStringFunc(reason, func(s string) string {
			n, _ := strconv.Atoi(strings.TrimPrefix(s, "offset "))
			return "offset " + strconv.Itoa(n+len(pad))
		})
		_, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 1)
		if reason == "" {
			if err != nil {
				t.Errorf("Decode(%s): %v", body, err)
			}
			continue
		}
		r, ok := errors.AsType[*pipeline.Rejection](err)
		if !ok || r.Reason != reason {
			t.Errorf("Decode(%.200s) = %v, want the reason %q", body, err, reason)
		}
	}
}

// TestDecodeLongVectorB64 decodes base64 vectors of every length up to a
// few groups, so that each split between whole groups and the padded end
// is taken.
func TestDecodeLongVectorB64(t *testing.T) {
	for n := 1; n <= 40; n++ {
		vec := benchVector(n)
		body := `{"doc_id":"d","vector_b64":"` + b64(vec...) + `"}`
		e, err := pipeline.Decode(pipeline.DecodeConfig{}, "rag.ingest.alice.docs", []byte(body), "", 1)
		if err != nil || len(e.Vector) != n || cap(e.Vector) != n {
			t.Fatalf("%d values: %v, %v", n, e.Vector, err)
		}
		for i := range vec {
			if math.Float32bits(e.Vector[i]) != math.Float32bits(vec[i]) {
				t.Fatalf("%d values: vector[%d] = %v, want %v", n, i, e.Vector[i], vec[i])
			}
		}
		if !strings.HasSuffix(body, `="}`) && n%3 != 0 {
			t.Fatalf("%d values without padding", n)
		}
	}
}
