package pipeline

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
)

// The body fields below decode themselves from encoding/json/v2's token
// stream. None returns an error for a value of the wrong shape: each records
// its problem and reads past the value, so that a syntax error later in the
// body still wins, and Decode decides whether the problem matters (a
// delete's text, metadata and vector do not).

// wireText is the body's text: the string, or the kind of the JSON value that
// is there instead (0 for a string, null or absence).
type wireText struct {
	s    string
	kind jsontext.Kind
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (t *wireText) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*t = wireText{}
	switch k := dec.PeekKind(); k {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return err
		}
		t.s = tok.String()
		return nil
	case 'n':
		_, err := dec.ReadToken()
		return err
	default:
		t.kind = k
		return dec.SkipValue()
	}
}

// wireVector is the body's vector: a JSON array of finite float32s. vec is
// nil when it is absent or null.
type wireVector struct {
	vec     []float32
	problem string
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom. The decoder reads and
// checks the whole array as one value, in place in its buffer; the numbers
// are then converted from those bytes (see readFloats), which spares a
// token per element.
func (v *wireVector) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*v = wireVector{}
	if open, err := openValue(dec, '[', "vector must be an array of numbers", &v.problem); !open {
		return err
	}
	raw, err := dec.ReadValue()
	if err != nil {
		return err
	}
	v.vec, _, v.problem = readFloats(raw, 0)
	return nil
}

// finishValue reads the rest of the array or object opened at stack depth
// depth, token by token, which checks its syntax: a problem may have stopped
// its reading part-way. It returns err if there is one.
func finishValue(dec *jsontext.Decoder, depth int, err error) error {
	for err == nil && dec.StackDepth() > depth {
		_, err = dec.ReadToken()
	}
	return err
}

// wireVectorB64 is the body's vector_b64: standard base64 of little-endian
// float32s. vec is nil when it is absent or null.
type wireVectorB64 struct {
	vec     []float32
	problem string
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom. The string is read in
// place from the decoder's buffer; only a string with escapes (an encoder
// that writes '/' as "\/") is unquoted into a copy first.
func (v *wireVectorB64) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*v = wireVectorB64{}
	raw, err := dec.ReadValue()
	switch {
	case err != nil:
		return err
	case raw.Kind() == 'n':
		return nil
	case raw.Kind() != '"':
		v.problem = fmt.Sprintf("vector_b64 must be a base64 string, not a JSON %s", kindName(raw.Kind()))
		return nil
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') >= 0 {
		s, _ = jsontext.AppendUnquote(nil, raw)
	}
	v.vec, v.problem = decodeVectorB64(s)
	return nil
}

// decodeVectorB64 decodes standard base64 of little-endian float32s. A valid
// vector is decoded by fastVectorB64; explainVectorB64 finds what is wrong
// with one it refuses.
func decodeVectorB64(s []byte) ([]float32, string) {
	size, problem := vectorB64Size(s)
	if problem != "" {
		return nil, problem
	}
	if vec, ok := fastVectorB64(s, size); ok {
		return vec, ""
	}
	return explainVectorB64(s, size)
}

// vectorB64Size returns the number of bytes that s, standard base64, decodes
// to, or why they cannot be float32s: none, or a length of s or a number of
// bytes that is not a multiple of 4.
func vectorB64Size(s []byte) (size int, problem string) {
	if len(s) == 0 {
		return 0, "vector_b64 is empty"
	}
	if len(s)%4 != 0 {
		return 0, fmt.Sprintf("vector_b64 is not standard base64: its length, %d, is not a multiple of 4", len(s))
	}
	size = len(s) / 4 * 3
	if s[len(s)-1] == '=' {
		size--
		if s[len(s)-2] == '=' {
			size--
		}
	}
	if size%4 != 0 {
		return 0, fmt.Sprintf("vector_b64 decodes to %d bytes, not a multiple of 4 (the size of a float32)", size)
	}
	return size, ""
}

// explainVectorB64 decodes s, of size bytes, through a small buffer on the
// stack, block by block, and says what is wrong with it: a bad character, a
// line break or a float32 that is not finite.
func explainVectorB64(s []byte, size int) ([]float32, string) {
	const block = 256 // base64 characters, decoding to a whole number of float32s
	var buf [block / 4 * 3]byte
	vec := make([]float32, size/4)
	for off := 0; off < len(s); off += block {
		n, err := base64.StdEncoding.Decode(buf[:], s[off:min(off+block, len(s))])
		if corrupt, ok := errors.AsType[base64.CorruptInputError](err); ok {
			return nil, fmt.Sprintf("vector_b64 is not standard base64: bad character at offset %d", off+int(corrupt))
		}
		if err != nil || n != min(len(buf), size-off/4*3) { // line breaks, which the decoder skips
			return nil, "vector_b64 is not standard base64: it has line breaks"
		}
		for i := 0; i < n; i += 4 {
			x := math.Float32frombits(binary.LittleEndian.Uint32(buf[i:]))
			k := (off/4*3 + i) / 4
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				return nil, fmt.Sprintf("vector_b64[%d] = %v is not a finite 32-bit float", k, x)
			}
			vec[k] = x
		}
	}
	return vec, ""
}

// b64Quad[k][c] is the base64 character c, in position k of a group of
// four, placed where its six bits go in the group's three bytes read as a
// little-endian integer; a character outside the standard alphabet (the
// padding '=' included) sets the top byte instead.
var b64Quad = func() (t [4][256]uint32) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for k := range t {
		for c := range t[k] {
			t[k][c] = 0xff << 24
		}
	}
	for v, c := range []byte(alphabet) {
		x := uint32(v)
		t[0][c] = x << 2              // byte 0, bits 7-2
		t[1][c] = x>>4 | (x&0xf)<<12  // byte 0, bits 1-0; byte 1, bits 7-4
		t[2][c] = x>>2<<8 | (x&3)<<22 // byte 1, bits 3-0; byte 2, bits 7-6
		t[3][c] = x << 16             // byte 2, bits 5-0
	}
	return t
}()

// fastVectorB64 decodes s, standard base64 of size bytes of little-endian
// float32s (see vectorB64Size), or reports that it is not a valid vector
// (ok false) without saying why. It decodes sixteen characters to three
// float32s at a time with b64Quad, checking the characters and the floats'
// exponents once per vector, and leaves the last group of four characters
// and fewer than sixteen before it to encoding/base64, which knows padding.
// The vector is its only allocation.
func fastVectorB64(s []byte, size int) (vec []float32, ok bool) {
	vec = make([]float32, size/4)
	var bad, exps uint32 // characters outside the alphabet; exponents plus one, ORed
	off, k := 0, 0
	for ; off+16 <= len(s)-4; off, k = off+16, k+3 {
		g := s[off : off+16 : off+16]
		q0 := b64Quad[0][g[0]] | b64Quad[1][g[1]] | b64Quad[2][g[2]] | b64Quad[3][g[3]]
		q1 := b64Quad[0][g[4]] | b64Quad[1][g[5]] | b64Quad[2][g[6]] | b64Quad[3][g[7]]
		q2 := b64Quad[0][g[8]] | b64Quad[1][g[9]] | b64Quad[2][g[10]] | b64Quad[3][g[11]]
		q3 := b64Quad[0][g[12]] | b64Quad[1][g[13]] | b64Quad[2][g[14]] | b64Quad[3][g[15]]
		bad |= q0 | q1 | q2 | q3
		w0, w1, w2 := q0|q1<<24, q1>>8|q2<<16, q2>>16|q3<<8
		exps |= (w0>>23&0xff + 1) | (w1>>23&0xff + 1) | (w2>>23&0xff + 1)
		v := vec[k : k+3 : k+3]
		v[0], v[1], v[2] = math.Float32frombits(w0), math.Float32frombits(w1), math.Float32frombits(w2)
	}
	if bad>>24 != 0 || exps&0x100 != 0 { // a bad character, or an exponent of all ones: NaN or infinite
		return nil, false
	}
	var buf [12]byte
	n, err := base64.StdEncoding.Decode(buf[:], s[off:])
	if err != nil || n != size-off/4*3 {
		return nil, false
	}
	for i := 0; i < n; i, k = i+4, k+1 {
		x := math.Float32frombits(binary.LittleEndian.Uint32(buf[i:]))
		if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
			return nil, false
		}
		vec[k] = x
	}
	return vec, true
}

// wireMetadata is the body's metadata: a flat object whose values are
// strings, numbers, bools or arrays of them. values is nil when it is absent,
// null or empty. The problem names the first bad key.
type wireMetadata struct {
	values  map[string]any
	problem string
}

// UnmarshalJSONFrom implements json.UnmarshalerFrom.
func (m *wireMetadata) UnmarshalJSONFrom(dec *jsontext.Decoder) error {
	*m = wireMetadata{}
	if open, err := openValue(dec, '{', "metadata must be a JSON object", &m.problem); !open {
		return err
	}
	depth := dec.StackDepth()
	return finishValue(dec, depth, m.readObject(dec))
}

// readObject reads the object's members into m.values, or up to the first
// bad value.
func (m *wireMetadata) readObject(dec *jsontext.Decoder) error {
	if _, err := dec.ReadToken(); err != nil { // '{'
		return err
	}
	for dec.PeekKind() != '}' {
		name, err := dec.ReadToken()
		if err != nil {
			return err
		}
		key := name.String()
		v, problem, err := readMetadataValue(dec, -1)
		if err != nil {
			return err
		}
		if problem != "" {
			m.values, m.problem = nil, fmt.Sprintf("metadata key %s: %s", quoteForReason(key), problem)
			return nil
		}
		if m.values == nil {
			m.values = make(map[string]any, 8)
		}
		m.values[key] = v
	}
	_, err := dec.ReadToken() // '}'
	return err
}

// readMetadataValue reads a metadata value: a member's value when elem < 0,
// else element elem of an array. Integers that fit an int64 become int64,
// other numbers float64. When the value is not allowed it says why, and the
// value may be left unread.
func readMetadataValue(dec *jsontext.Decoder, elem int) (v any, problem string, err error) {
	inArray := func(kind string) string {
		return fmt.Sprintf("element %d is %s; arrays may hold strings, numbers and bools", elem, kind)
	}
	switch dec.PeekKind() {
	case '"':
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, "", err
		}
		return tok.String(), "", nil
	case 't', 'f':
		tok, err := dec.ReadToken()
		if err != nil {
			return nil, "", err
		}
		return tok.Bool(), "", nil
	case '0':
		raw, err := dec.ReadValue()
		if err != nil {
			return nil, "", err
		}
		if n, ok := metadataNumber(string(raw)); ok {
			return n, "", nil
		}
		if elem < 0 {
			return nil, fmt.Sprintf("number %s is out of range", numberForReason(string(raw))), nil
		}
		return nil, fmt.Sprintf("element %d: number %s is out of range", elem, numberForReason(string(raw))), nil
	case 'n':
		if elem < 0 {
			return nil, "null is not a valid value", nil
		}
		return nil, inArray("null"), nil
	case '{':
		if elem < 0 {
			return nil, "nested objects are not allowed", nil
		}
		return nil, inArray("an object"), nil
	case '[':
		if elem >= 0 {
			return nil, fmt.Sprintf("element %d is an array; arrays of arrays are not allowed", elem), nil
		}
		return readMetadataList(dec)
	}
	_, err = dec.ReadToken() // the error that PeekKind met
	return nil, "", err
}

// readMetadataList reads an array of metadata values, or up to its first bad
// element.
func readMetadataList(dec *jsontext.Decoder) (list []any, problem string, err error) {
	if _, err := dec.ReadToken(); err != nil { // '['
		return nil, "", err
	}
	list = []any{}
	for dec.PeekKind() != ']' {
		v, problem, err := readMetadataValue(dec, len(list))
		if err != nil || problem != "" {
			return nil, problem, err
		}
		list = append(list, v)
	}
	_, err = dec.ReadToken() // ']'
	return list, "", err
}

// metadataNumber converts a JSON number: int64 when it is an integer that
// fits, else float64; ok is false when it overflows a float64. A literal
// with a fraction or exponent goes straight to ParseFloat, sparing the error
// ParseInt would allocate.
func metadataNumber(lit string) (n any, ok bool) {
	if !strings.ContainsAny(lit, ".eE") {
		if v, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return v, true
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	return f, err == nil
}

// openValue starts reading a value that must be of kind want or null. It
// reports whether the caller reads the value: a null is consumed, a value of
// another kind is skipped and noted in problem as "<what>, not a JSON <kind>".
func openValue(dec *jsontext.Decoder, want jsontext.Kind, what string, problem *string) (bool, error) {
	switch k := dec.PeekKind(); k {
	case want:
		return true, nil
	case 'n':
		_, err := dec.ReadToken()
		return false, err
	default:
		if k != 0 {
			*problem = fmt.Sprintf("%s, not a JSON %s", what, kindName(k))
		}
		return false, dec.SkipValue()
	}
}
