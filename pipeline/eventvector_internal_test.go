package pipeline

import (
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// refDecodeVectorB64 is decodeVectorB64 as it was before fastVectorB64:
// its checks are now vectorB64Size, its decoding explainVectorB64.
func refDecodeVectorB64(s []byte) ([]float32, string) {
	size, problem := vectorB64Size(s)
	if problem != "" {
		return nil, problem
	}
	return explainVectorB64(s, size)
}

// refReadFloats is readFloats as it was before it checked syntax, for a
// valid JSON array, with strconv converting every number.
func refReadFloats(raw []byte) ([]float32, string) {
	i := skipJSONSpace(raw, 1)
	if raw[i] == ']' {
		return nil, "vector is empty"
	}
	vec := make([]float32, 0, strings.Count(string(raw), ",")+1)
	for {
		if c := raw[i]; c != '-' && (c < '0' || c > '9') {
			return nil, fmt.Sprintf("vector[%d] must be a number, not a JSON %s", len(vec), kindName(jsontext.Kind(c)))
		}
		end := i + 1
		for end < len(raw) && strings.IndexByte("0123456789.eE+-", raw[end]) >= 0 {
			end++
		}
		f64, err := strconv.ParseFloat(string(raw[i:end]), 32)
		if err != nil {
			return nil, fmt.Sprintf("vector[%d] = %s is not a finite 32-bit float", len(vec), numberForReason(string(raw[i:end])))
		}
		vec = append(vec, float32(f64))
		i = skipJSONSpace(raw, end)
		if raw[i] == ']' {
			return vec, ""
		}
		i = skipJSONSpace(raw, i+1) // past ','
	}
}

// checkSameVector fails unless got and want hold the same bits and have the
// same capacity.
func checkSameVector(t *testing.T, what string, got, want []float32) {
	t.Helper()
	if (got == nil) != (want == nil) || len(got) != len(want) || cap(got) != cap(want) {
		t.Fatalf("%s: vector of len %d cap %d, want len %d cap %d (nil %v, %v)", what, len(got), cap(got), len(want), cap(want), got == nil, want == nil)
	}
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("%s: vector[%d] = %#x, want %#x", what, i, math.Float32bits(got[i]), math.Float32bits(want[i]))
		}
	}
}

// randomFloat32 returns an embedding-like value, or now and then an extreme,
// a subnormal, a zero or a raw bit pattern (NaN and infinities included).
func randomFloat32(r *rand.Rand) float32 {
	switch r.IntN(16) {
	case 0:
		return math.Float32frombits(r.Uint32())
	case 1:
		return math.Float32frombits(r.Uint32() & 0x807fffff) // zero or subnormal
	case 2:
		return float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(76)-38)))
	case 3:
		return []float32{0, float32(math.Copysign(0, -1)), math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1, -1}[r.IntN(7)]
	}
	return float32(r.NormFloat64() / 32)
}

// randomLiteral writes x as a JSON number in one of the forms encoders use.
func randomLiteral(r *rand.Rand, x float32) string {
	if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
		return "1e39"
	}
	var s string
	switch r.IntN(7) {
	case 0:
		s = strconv.FormatFloat(float64(x), 'g', -1, 64)
	case 1:
		s = strconv.FormatFloat(float64(x), 'e', r.IntN(20), 64)
	case 2:
		s = strconv.FormatFloat(float64(x), 'f', r.IntN(50), 64)
	case 3:
		s = strings.Replace(strconv.FormatFloat(float64(x), 'E', -1, 32), "E-0", "E-", 1)
	default:
		s = strconv.FormatFloat(float64(x), 'g', -1, 32)
	}
	return strings.Replace(s, "e+", []string{"e+", "e", "E+", "E"}[r.IntN(4)], 1)
}

// randomSpace is JSON whitespace, mostly none.
func randomSpace(r *rand.Rand) string {
	if r.IntN(4) != 0 {
		return ""
	}
	return []string{" ", "\n", "\t", "\r\n  ", "  "}[r.IntN(5)]
}

// randomArray is a JSON array of n numbers, now and then with an element of
// another kind.
func randomArray(r *rand.Rand, n int) string {
	var b strings.Builder
	b.WriteString("[" + randomSpace(r))
	for i := range n {
		if i > 0 {
			b.WriteString(randomSpace(r) + "," + randomSpace(r))
		}
		if r.IntN(200) == 0 {
			b.WriteString([]string{"null", "true", `"1"`, `"]"`, "[1]", "{}", "[]"}[r.IntN(7)])
		} else {
			b.WriteString(randomLiteral(r, randomFloat32(r)))
		}
	}
	b.WriteString(randomSpace(r) + "]")
	return b.String()
}

func TestReadFloatsMatchesReference(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(17, 1))
	for range 30_000 {
		raw := randomArray(r, []int{0, 1, 2, 3, r.IntN(50), 1024}[r.IntN(6)])
		if !jsontext.Value(raw).IsValid() {
			t.Fatalf("generated invalid JSON %s", raw)
		}
		vec, end, problem := readFloats([]byte(raw), 0)
		want, wantProblem := refReadFloats([]byte(raw))
		if problem != wantProblem {
			t.Fatalf("readFloats(%.200s): problem %q, want %q", raw, problem, wantProblem)
		}
		checkSameVector(t, raw, vec, want)
		if problem == "" && end != len(raw) {
			t.Fatalf("readFloats(%.200s) ends at %d of %d", raw, end, len(raw))
		}
	}
}

// FuzzReadFloats checks that readFloats accepts only a valid JSON array,
// whose numbers it converts as strconv does, and that it reads a valid one
// as it always has.
func FuzzReadFloats(f *testing.F) {
	for _, s := range []string{"[1,2]", "[ -0.5e3 ,1E+2]", "[01]", "[1.]", "[.5]", "[-]", "[1e]", "[1,]", "[1 2]", "[", `[1,"]"]`,
		"[12345678.12345678]", "[0.0000000012345678901]", "[1e39]", "[]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if s == "" || s[0] != '[' {
			return
		}
		vec, end, problem := readFloats([]byte(s), 0)
		if problem == "" && end >= 0 {
			if !jsontext.Value(s[:end]).IsValid() {
				t.Fatalf("readFloats accepted invalid JSON %q", s[:end])
			}
			want, _ := refReadFloats([]byte(s[:end]))
			checkSameVector(t, s, vec, want)
		}
		if jsontext.Value(s).IsValid() {
			want, wantProblem := refReadFloats([]byte(s))
			if problem != wantProblem || problem == "" && end != len(strings.TrimRight(s, " \t\r\n")) {
				t.Fatalf("readFloats(%q) = %d, %q; want %q", s, end, problem, wantProblem)
			}
			checkSameVector(t, s, vec, want)
		}
	})
}

// mutateB64 damages a base64 string in one of the ways a producer might.
func mutateB64(r *rand.Rand, s string) string {
	if s == "" {
		return s
	}
	i := r.IntN(len(s))
	const chars = "=A/+_-\n\r \\\"é\x00zZ09"
	switch r.IntN(8) {
	case 0:
		return s[:i] + string(chars[r.IntN(len(chars))]) + s[i+1:]
	case 1:
		return s[:i] + s[i+1:]
	case 2:
		return s[:i] + string(chars[r.IntN(len(chars))]) + s[i:]
	case 3:
		return strings.TrimRight(s, "=")
	case 4:
		return s + "="
	case 5: // non-canonical: set the bits that padding leaves unused
		if j := strings.IndexByte(s, '=') - 1; j >= 0 {
			return s[:j] + string(base64Alphabet[strings.IndexByte(base64Alphabet, s[j])|1]) + s[j+1:]
		}
		return s
	case 6:
		return s[:i/4*4]
	}
	return s[:i] + "\r\n" + s[i:]
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

func TestDecodeVectorB64MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(17, 2))
	accepted := 0
	for n := range 30_000 {
		raw := make([]byte, 0, 4096)
		for range []int{0, 1, 2, 3, 4, 5, 6, r.IntN(80), 1024}[r.IntN(9)] {
			raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(randomFloat32(r)))
		}
		if r.IntN(10) == 0 {
			raw = raw[:len(raw)-min(len(raw), 1+r.IntN(3))]
		}
		s := base64.StdEncoding.EncodeToString(raw)
		if n%2 == 1 {
			s = mutateB64(r, s)
		}
		vec, problem := decodeVectorB64([]byte(s))
		want, wantProblem := refDecodeVectorB64([]byte(s))
		if problem != wantProblem {
			t.Fatalf("decodeVectorB64(%.200q): problem %q, want %q", s, problem, wantProblem)
		}
		checkSameVector(t, s, vec, want)
		if problem == "" {
			accepted++
		}
	}
	if accepted < 10_000 {
		t.Errorf("only %d of 30000 strings accepted", accepted)
	}
}

func FuzzDecodeVectorB64(f *testing.F) {
	for _, s := range []string{"AACAPw==", "AACAPx==", "AAAA====", "AACAPwAAgD8AAIA/AACAPwAAgD8AAIA/AACAfwAAgD8=", "AAC/fw==", "AA==AAAA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		vec, problem := decodeVectorB64([]byte(s))
		want, wantProblem := refDecodeVectorB64([]byte(s))
		if problem != wantProblem {
			t.Fatalf("decodeVectorB64(%q): problem %q, want %q", s, problem, wantProblem)
		}
		checkSameVector(t, s, vec, want)
	})
}

// checkSplit fails unless unmarshalSplit either leaves body to the decoder
// (w zero) or parses it exactly as the decoder does.
func checkSplit(t *testing.T, body []byte) (split bool) {
	t.Helper()
	var got, want wireEvent
	split = unmarshalSplit(body, &got)
	err := json.Unmarshal(body, &want, wireOptions)
	if !split {
		if !reflect.DeepEqual(got, wireEvent{}) {
			t.Fatalf("unmarshalSplit(%.300s) declined but filled %+v", body, got)
		}
		return false
	}
	if err != nil {
		t.Fatalf("unmarshalSplit(%.300s) accepted a body the decoder refuses: %v", body, err)
	}
	checkSameVector(t, "vector", got.Vector.vec, want.Vector.vec)
	checkSameVector(t, "vector_b64", got.VectorB64.vec, want.VectorB64.vec)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("unmarshalSplit(%.300s) = %+v\ndecoder gives %+v", body, got, want)
	}
	return true
}

// randomBody is an event body whose members, names, spacing and strings
// vary, with a vector, a base64 vector, both or neither, some of them bad.
func randomBody(r *rand.Rand) []byte {
	str := func() string {
		return `"` + []string{"t", `a \"vector\": [1]`, `\\`, `x\\\"y`, "]}", `\u0041vector_b64`, "é", "vector", ""}[r.IntN(9)] + `"`
	}
	members := []string{
		`"doc_id":` + str(),
		`"text":` + str(),
		`"version":` + []string{"7", "1.5e3", "null"}[r.IntN(3)],
		`"metadata":{"vector":[1,2],"k":` + str() + `,"l":["]","}",[3]]}`,
		`"x":` + []string{`[1,["]"],{"a":"}"}]`, "true", "-1.5e3", `{"vector_b64":"AAAA"}`, str()}[r.IntN(5)],
	}
	for range 1 + r.IntN(2) {
		name := []string{"vector", "VECTOR", "Vector", "vector_b64", "VECTOR_B64", "Vector_b64", `vec\u0074or`, "véctor", "vector-b64", "vectors"}[r.IntN(10)]
		var value string
		switch {
		case r.IntN(20) == 0:
			value = []string{"null", `"x"`, "[]", "{}", "3"}[r.IntN(5)]
		case strings.Contains(strings.ToLower(name), "b64"):
			raw := make([]byte, 0, 64)
			for range 1 + r.IntN(20) {
				raw = binary.LittleEndian.AppendUint32(raw, math.Float32bits(randomFloat32(r)))
			}
			value = `"` + base64.StdEncoding.EncodeToString(raw) + `"`
		default:
			value = randomArray(r, 1+r.IntN(20))
		}
		members = append(members, `"`+name+`"`+randomSpace(r)+":"+randomSpace(r)+value)
	}
	if r.IntN(3) == 0 {
		members = members[:1+r.IntN(len(members)-1)]
	}
	members = append(members, `"pad":"`+strings.Repeat("-", minSplitBody)+`"`) // long enough to split
	r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
	body := []byte(randomSpace(r) + "{" + randomSpace(r) + strings.Join(members, randomSpace(r)+","+randomSpace(r)) + randomSpace(r) + "}" + randomSpace(r))
	if r.IntN(4) == 0 { // damage it
		i := r.IntN(len(body))
		c := `"\[]{},: 0123456789-+.eE=AaZ` + "\n"
		switch r.IntN(3) {
		case 0:
			body[i] = c[r.IntN(len(c))]
		case 1:
			body = append(body[:i], body[i+1:]...)
		default:
			body = append(body[:i], append([]byte{c[r.IntN(len(c))]}, body[i:]...)...)
		}
	}
	return body
}

func TestUnmarshalSplitMatchesDecoder(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(17, 3))
	split := 0
	for range 50_000 {
		if checkSplit(t, randomBody(r)) {
			split++
		}
	}
	if split < 10_000 {
		t.Errorf("only %d of 50000 bodies split", split)
	}
}

func FuzzUnmarshalSplit(f *testing.F) {
	for _, s := range []string{
		`{"doc_id":"d","vector":[1,2]}`,
		`{"doc_id":"d","vector_b64":"AACAPw=="}`,
		`{"text":"\"vector\":[1]","VECTOR":[1e3, -0.5]}`,
		`{"vector":[1],"metadata":{"vector":[2]},"x":[{"a":"]"}]}`,
		`{"vector_b64":"AACAPw==","vector":null}`,
		`{"vector":[1]} x`,
		`{"a":"\\","vector":[1]}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, body string) {
		trimmed := strings.TrimLeft(body, " \t\r\n")
		if trimmed == "" || trimmed[0] != '{' {
			return // unmarshalWire reads only objects this way
		}
		checkSplit(t, []byte(body))
		// Long enough to split, whatever follows.
		checkSplit(t, []byte(`{"pad":"`+strings.Repeat("-", minSplitBody)+`",`+trimmed[1:]))
	})
}
