package pipeline

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
)

// readFloats converts the JSON array starting at b[i] to float32s and
// returns where it ends, or says why it is not a vector: empty, an element
// that is not a number, or a number that is not a finite float32. It checks
// the array's syntax as it goes: end is -1, with no problem, when b[i:] does
// not start with a valid array (the decoder has checked the arrays that
// wireVector passes). Runs of numbers of the usual shape go through
// fastFloats, the others through parseFloat32, else strconv. The vector is
// its only allocation.
func readFloats(b []byte, i int) (vec []float32, end int, problem string) {
	closing := bytes.IndexByte(b[i:], ']') + i // the array's end, unless it holds strings or arrays
	if closing < i {
		return nil, -1, ""
	}
	i = skipJSONSpace(b, i+1)
	if b[i] == ']' {
		return nil, i + 1, "vector is empty"
	}
	vec = make([]float32, 0, bytes.Count(b[i:closing], []byte{','})+1)
	for {
		if vec, i = fastFloats(b, i, vec); i == len(b) {
			return nil, -1, ""
		}
		if c := b[i]; c != '-' && (c < '0' || c > '9') {
			return nil, 0, fmt.Sprintf("vector[%d] must be a number, not a JSON %s", len(vec), kindName(jsontext.Kind(c)))
		}
		f, end, ok := parseFloat32(b, i)
		if end < 0 {
			return nil, -1, ""
		}
		if !ok {
			f64, err := strconv.ParseFloat(string(b[i:end]), 32)
			if err != nil {
				return nil, 0, fmt.Sprintf("vector[%d] = %s is not a finite 32-bit float", len(vec), numberForReason(string(b[i:end])))
			}
			f = float32(f64)
		}
		vec = append(vec, f)
		if i = skipJSONSpace(b, end); i == len(b) {
			return nil, -1, ""
		}
		switch b[i] {
		case ']':
			return vec, i + 1, ""
		case ',':
			if i = skipJSONSpace(b, i+1); i == len(b) {
				return nil, -1, ""
			}
		default:
			return nil, -1, ""
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\t' || c == '\n' || c == '\r' }

// skipJSONSpace returns the index of the first byte of b at or after i that is
// not JSON whitespace.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// pow10 are the powers of ten that a float64 holds exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// parseFloat32 checks the JSON number starting at b[i], returns its end (-1
// when b[i:] does not start with one) and converts it to the float32 nearest
// to it, as strconv.ParseFloat(b[i:end], 32) does, for the common case: at
// most 19 significant digits forming an integer m < 2^53 and a decimal
// exponent e with |e| <= 22. Then m and 10^|e| are exact float64s and one
// multiplication or division rounds m*10^e correctly to a float64
// (Clinger's fast path). Rounding that float64 to a float32 gives the
// float32 nearest to the decimal unless the float64 falls exactly halfway
// between two float32s, where the decimal may lie on either side: ok is then
// false, as it is outside the common case, for float32 subnormals and for
// overflow, and the caller uses strconv.
func parseFloat32(b []byte, i int) (f float32, end int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	var m uint64
	digits, exp := 0, 0 // significant digits in m; the exponent of its last
	ok = true
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i]-'1' < 9:
		for ; i < len(b) && b[i]-'0' < 10; i++ {
			if digits < 19 {
				m, digits = m*10+uint64(b[i]-'0'), digits+1
			} else {
				exp++
				ok = ok && b[i] == '0'
			}
		}
	default:
		return 0, -1, false
	}
	if i < len(b) && b[i] == '.' {
		i++
		start := i
		if m == 0 { // leading zeros of the fraction are not significant
			for i < len(b) && b[i] == '0' {
				i++
			}
			exp -= i - start
		}
		for digits <= 19-8 && i+8 <= len(b) {
			x := binary.LittleEndian.Uint64(b[i:])
			if !eightDigits(x) {
				break
			}
			m, digits, exp, i = m*1e8+eightDigitsValue(x), digits+8, exp-8, i+8
		}
		for ; i < len(b) && b[i]-'0' < 10; i++ {
			if digits < 19 {
				m, digits, exp = m*10+uint64(b[i]-'0'), digits+1, exp-1
			} else {
				ok = ok && b[i] == '0'
			}
		}
		if i == start {
			return 0, -1, false
		}
	}
	if i < len(b) && b[i]|0x20 == 'e' {
		i++
		eneg := i < len(b) && b[i] == '-'
		if i < len(b) && (b[i] == '-' || b[i] == '+') {
			i++
		}
		start, e := i, 0
		for ; i < len(b) && b[i]-'0' < 10; i++ {
			if e < 1000 {
				e = e*10 + int(b[i]-'0')
			}
		}
		if i == start {
			return 0, -1, false
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	end = i
	switch {
	case !ok:
		return 0, end, false
	case m == 0: // whatever the exponent
		if neg {
			return float32(math.Copysign(0, -1)), end, true
		}
		return 0, end, true
	case m >= 1<<53 || exp < -22 || exp > 22:
		return 0, end, false
	}
	x := float64(m)
	if exp < 0 {
		x /= pow10[-exp]
	} else {
		x *= pow10[exp]
	}
	const halfway, low = 1 << 28, 1<<29 - 1 // of the 29 bits a float32 drops
	if x < 0x1p-126 || x >= math.MaxFloat32 || math.Float64bits(x)&low == halfway {
		return 0, end, false
	}
	if neg {
		x = -x
	}
	return float32(x), end, true
}

// eightDigits reports whether the eight bytes of x, little-endian, are all
// ASCII digits.
func eightDigits(x uint64) bool { return nonDigits(x) == 0 }

// eightDigitsValue is the number that the eight ASCII digits of x,
// little-endian (the first digit in the lowest byte), write: pairs, then
// quadruples, then the whole are combined by multiply-and-shift.
func eightDigitsValue(x uint64) uint64 {
	x = (x & 0x0F0F0F0F0F0F0F0F) * (10<<8 + 1) >> 8
	x = (x & 0x00FF00FF00FF00FF) * (100<<16 + 1) >> 16
	return (x & 0x0000FFFF0000FFFF) * (10000<<32 + 1) >> 32
}

// pow10neg[k] is the float64 nearest to 10^-k.
var pow10neg = [...]float64{1e-0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10,
	1e-11, 1e-12, 1e-13, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22}

// pow10u are the powers of ten up to 10^8, as integers.
var pow10u = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// fastFloatWindow is how many bytes of a number fastFloats reads.
const fastFloatWindow = 40

// fastFloats appends to vec the numbers of a JSON array from b[i] on while
// they have the shape that float encoders write and a ',' after them: at
// most seven integer digits and 23 fraction digits, at most nineteen digits
// up to the sixteenth fraction digit (any after it bound the error), an
// exponent of at most three digits, and a value that a float64 product
// resolves. It returns where it stopped, the start of a value (or b's end): at a
// number of another shape (or invalid, or the last), which it leaves to
// parseFloat32, or fastFloatWindow bytes before b's end. Each number is
// converted to the float32 nearest to it, as strconv.ParseFloat(s, 32) does.
// The digits are found and read eight at a time in 64-bit words, without a
// branch on how many there are, which varies from one number to the next;
// one loop spares a call per number.
func fastFloats(b []byte, i int, vec []float32) ([]float32, int) {
	for i <= len(b)-fastFloatWindow {
		w := b[i : i+fastFloatWindow : i+fastFloatWindow]
		p := 0
		if w[0] == '-' {
			p = 1
		}
		sign := uint32(p) << 31 // set as a bit, not by a branch: signs vary
		var m uint64
		digits, exp := 1, 0
		if w[p] == '0' { // what a number below 1 starts with; a digit after it is invalid, and ends it
			p++
		} else {
			x := binary.LittleEndian.Uint64(w[p:])
			k := digitCount(x)
			if k == 0 || k == 8 {
				return vec, i
			}
			m, digits, p = digitsValue(x, k), k, p+k
		}
		long := false // more than sixteen fraction digits, the first sixteen in m
		if w[p] == '.' {
			p++
			x1 := binary.LittleEndian.Uint64(w[p:])
			x2 := binary.LittleEndian.Uint64(w[p+8:])
			n1 := digitCount(x1)
			n2 := digitCount(x2) & -(n1 >> 3) // counts only after eight
			if n1 == 0 {
				return vec, i
			}
			m = (m*pow10u[n1]+digitsValue(x1, n1))*pow10u[n2] + digitsValue(x2, n2)
			digits, exp, p = digits+n1+n2, -(n1 + n2), p+n1+n2
			if n2 == 8 { // as float64s print: seventeen digits
				n3 := digitCount(binary.LittleEndian.Uint64(w[p:]))
				if n3 == 8 {
					return vec, i
				}
				long, p = n3 > 0, p+n3
			}
		}
		if w[p]|0x20 == 'e' {
			p++
			eneg := w[p] == '-'
			if eneg || w[p] == '+' {
				p++
			}
			start, e := p, 0
			for ; p < start+4 && w[p]-'0' < 10; p++ {
				e = e*10 + int(w[p]-'0')
			}
			if p == start || p == start+4 {
				return vec, i
			}
			if eneg {
				e = -e
			}
			exp += e
		}
		if digits > 19 || w[p] != ',' {
			return vec, i
		}
		// The number is x = m*10^exp, or with more digits, in (m, m+1)*10^exp.
		// y below is x within two units in its last place if m < 2^53 (m
		// and 10^exp exact, 10^-exp rounded, the product rounded); else,
		// or with more digits, if m >= 2^40, within 2^-40 of x plus three
		// roundings: some 8200 units.
		// y rounds to the same float32 as x unless y is within that margin
		// of the halfway point between two float32s, which is all the
		// float32 near y have in common; or unless y is near a float32
		// subnormal or beyond the largest float32.
		margin := uint64(4)
		if long || m >= 1<<53 {
			if m < 1<<40 {
				return vec, i
			}
			margin = 1 << 15
		}
		f := math.Float32frombits(sign) // ±0, whatever the exponent
		if m != 0 {
			if exp < -22 || exp > 22 {
				return vec, i
			}
			y := float64(m)
			if exp < 0 {
				y *= pow10neg[-exp]
			} else {
				y *= pow10[exp]
			}
			const halfway, low = 1 << 28, 1<<29 - 1 // of the 29 bits a float32 drops
			if y < 0x1p-126 || y >= math.MaxFloat32 || math.Float64bits(y)&low-(halfway-margin) <= 2*margin {
				return vec, i
			}
			f = math.Float32frombits(math.Float32bits(float32(y)) | sign)
		}
		vec = append(vec, f)
		i = skipJSONSpace(b, i+p+1)
	}
	return vec, i
}

// digitCount is the number of ASCII digits that x, eight bytes read
// little-endian, starts with.
func digitCount(x uint64) int { return bits.TrailingZeros64(nonDigits(x)) >> 3 }

// nonDigits has bits set in the bytes of x, eight bytes read little-endian,
// that are not ASCII digits, and possibly in bytes after one (a carry
// reaches only those), none in the digits before the first non-digit.
func nonDigits(x uint64) uint64 {
	const high, six, threes = 0xF0F0F0F0F0F0F0F0, 0x0606060606060606, 0x3030303030303030
	return (x&high ^ threes) | ((x+six)&high ^ threes)
}

// digitsValue is the number that the first n digits of x, eight bytes read
// little-endian, write; 0 when n is 0.
func digitsValue(x uint64, n int) uint64 {
	return eightDigitsValue(x << (64 - 8*uint(n)))
}

// unmarshalSplit takes bodies of minSplitBody bytes or more, where a vector
// is worth decoding apart, and copies at most maxSplitRest bytes of one.
const (
	minSplitBody = 2 << 10
	maxSplitRest = 64 << 10
)

// splitBufs holds the copies of unmarshalSplit, *[]byte.
var splitBufs sync.Pool

// unmarshalSplit parses a body with a vector faster, or reports that it did
// not and leaves w zero. The JSON decoder would scan a vector's
// thousands of bytes once to check them and readFloats or
// decodeVectorB64 would scan them again to convert them. Instead
// vectorMember finds the vector and converts it, checking its syntax, and
// the decoder parses a copy of the rest of the body, with null in its place.
// That copy is valid JSON exactly when the body is, and parses to the same
// fields: the vector is one valid value at the place of one (the scan, too
// loose to tell bad JSON, is exact on good JSON, which the decoder then
// confirms). A body that is not valid, or that this does not cover (no
// vector, a bad one, two of them, a member name with escapes or non-ASCII
// characters that matching would fold), is left to the decoder, whose
// reasons name the problem; so is a small body, whose vector, if any, is too
// short to be worth the scan and the copy.
func unmarshalSplit(body []byte, w *wireEvent) bool {
	if len(body) < minSplitBody {
		return false
	}
	start, end, vec, b64 := vectorMember(body)
	rest := len(body) - (end - start) + len("null")
	if vec == nil || rest > maxSplitRest {
		return false
	}
	bp, _ := splitBufs.Get().(*[]byte)
	if bp == nil {
		bp = new([]byte)
	}
	defer splitBufs.Put(bp)
	b := append(append(append((*bp)[:0], body[:start]...), "null"...), body[end:]...)
	*bp = b
	if json.Unmarshal(b, w, wireOptions) != nil {
		*w = wireEvent{}
		return false
	}
	if b64 {
		w.VectorB64.vec = vec
	} else {
		w.Vector.vec = vec
	}
	return true
}

// vectorMember finds the one top-level member of body, an object, named
// vector or vector_b64 in any case, whose value spans body[start:end], and
// decodes that value. vec is nil when there is none or more than one, when it
// is not a valid vector, and when a member name has escapes or non-ASCII
// characters (which name matching could fold to vector's).
func vectorMember(body []byte) (start, end int, vec []float32, b64 bool) {
	found, i := 0, skipJSONSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return 0, 0, nil, false
	}
	for i = skipJSONSpace(body, i+1); i < len(body) && body[i] == '"'; {
		n := bytes.IndexByte(body[i+1:], '"')
		if n < 0 {
			return 0, 0, nil, false
		}
		name := body[i+1 : i+1+n]
		for _, c := range name {
			if c == '\\' || c >= utf8.RuneSelf {
				return 0, 0, nil, false
			}
		}
		if i = skipJSONSpace(body, i+n+2); i == len(body) || body[i] != ':' {
			return 0, 0, nil, false
		}
		i = skipJSONSpace(body, i+1)
		j := -1
		isVector := len(name) == len("vector") && strings.EqualFold(string(name), "vector")
		isB64 := len(name) == len("vector_b64") && strings.EqualFold(string(name), "vector_b64")
		switch {
		case (isVector || isB64) && found > 0:
			return 0, 0, nil, false
		case isVector && i < len(body) && body[i] == '[':
			var problem string
			if vec, j, problem = readFloats(body, i); problem != "" {
				j = -1
			}
			found, start, end, b64 = found+1, i, j, false
		case isB64 && i < len(body) && body[i] == '"':
			if n := bytes.IndexByte(body[i+1:], '"'); n >= 0 {
				s := body[i+1 : i+1+n]
				if size, problem := vectorB64Size(s); problem == "" {
					var ok bool
					if vec, ok = fastVectorB64(s, size); ok {
						j = i + n + 2
					}
				}
			}
			found, start, end, b64 = found+1, i, j, true
		case isVector || isB64:
			return 0, 0, nil, false // null, or a value of the wrong kind
		default:
			j = skipValue(body, i)
		}
		if j < 0 {
			return 0, 0, nil, false
		}
		if i = skipJSONSpace(body, j); i < len(body) && body[i] == ',' {
			i = skipJSONSpace(body, i+1)
		}
	}
	if found != 1 {
		return 0, 0, nil, false
	}
	return start, end, vec, b64
}

// skipValue returns the end of the JSON value starting at b[i], -1 if it
// finds none. It is exact for valid JSON only.
func skipValue(b []byte, i int) int {
	if i == len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; i < len(b); i++ {
			switch b[i] {
			case '"':
				if i = skipString(b, i) - 1; i < 0 {
					return -1
				}
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && !isSpace(b[j]) && b[j] != ',' && b[j] != '}' && b[j] != ']' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}

// skipString returns the end of the JSON string starting at b[i], -1 if it
// has none: past the first quote that an even number of backslashes
// precedes.
func skipString(b []byte, i int) int {
	for j := i + 1; ; {
		n := bytes.IndexByte(b[j:], '"')
		if n < 0 {
			return -1
		}
		j += n
		escaped := false
		for k := j - 1; b[k] == '\\'; k-- {
			escaped = !escaped
		}
		if !escaped {
			return j + 1
		}
		j++
	}
}
