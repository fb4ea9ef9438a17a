package pipeline

import (
	"encoding/binary"
	"math"
	"math/bits"
)

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
			t := binary.LittleEndian.Uint64(b[i:]) ^ zeros
			if leadingDigits(t) < 8 {
				break
			}
			m, digits, exp, i = m*1e8+digitValues(t), digits+8, exp-8, i+8
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
	if x < 0x1p-126 || x >= math.MaxFloat32 || nearHalfway(x, 0) {
		return 0, end, false
	}
	if neg {
		x = -x
	}
	return float32(x), end, true
}

// pow10neg[k] is the float64 nearest to 10^-k.
var pow10neg = [...]float64{1e-0, 1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 1e-8, 1e-9, 1e-10,
	1e-11, 1e-12, 1e-13, 1e-14, 1e-15, 1e-16, 1e-17, 1e-18, 1e-19, 1e-20, 1e-21, 1e-22}

// pow10u are the powers of ten up to 10^8, as integers.
var pow10u = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// lowBytes[n] keeps the first n bytes of a 64-bit word read little-endian.
var lowBytes = [...]uint64{0, 1<<8 - 1, 1<<16 - 1, 1<<24 - 1, 1<<32 - 1, 1<<40 - 1, 1<<48 - 1, 1<<56 - 1, 1<<64 - 1}

// fastFloatWindow is how many bytes of a number fastFloats reads.
const fastFloatWindow = 40

// fastFloats appends to vec the numbers of a JSON array from b[i] on while
// fastFloat converts them. It returns where it stopped, the start of a value
// (or b's end): at a number of another shape (or invalid, or the last), which
// it leaves to parseFloat32, or fastFloatWindow bytes before b's end.
func fastFloats(b []byte, i int, vec []float32) ([]float32, int) {
	for i <= len(b)-fastFloatWindow {
		f, end := fastFloat((*[fastFloatWindow]byte)(b[i:]))
		if end == 0 {
			return vec, i
		}
		vec = append(vec, f)
		i = skipJSONSpace(b, i+end+1)
	}
	return vec, i
}

// fastFloat converts the number that w starts with, if it has a ',' after
// it and the shape that float encoders write, to the float32 nearest to it,
// as strconv.ParseFloat(s, 32) does, and returns where the ',' is; else it
// returns end 0. The commonest shape, one integer digit and a fraction (an
// embedding's -0.0123456 or 0.30726838111877441), it converts itself with
// few instructions and no branch that varies with the digits: the first
// sixteen fraction digits are read as two 64-bit words, zeros in place of
// the bytes after the last, which makes them, with the integer digit, an
// integer m that is the number times 10^16 (any further digit bounds the
// error). The other shapes go to otherFloat.
func fastFloat(w *[fastFloatWindow]byte) (f float32, end int) {
	s := 0
	if w[0] == '-' {
		s = 1
	}
	sign := uint32(s) << 31 // set as a bit, not by a branch: signs vary
	if d := uint64(binary.LittleEndian.Uint16(w[s:])) - ('0' | '.'<<8); d < 10 {
		t1 := binary.LittleEndian.Uint64(w[s+2:]) ^ zeros
		t2 := binary.LittleEndian.Uint64(w[s+10:]) ^ zeros
		n1 := leadingDigits(t1)
		n2 := leadingDigits(t2) & -(n1 >> 3) // counts only after eight
		m := d*1e16 + digitValues(t1&lowBytes[n1])*1e8 + digitValues(t2&lowBytes[n2])
		p := s + 2 + n1 + n2
		// y below is m*10^-16 within three units in its last place (m
		// rounded if at least 2^53, 10^-16 rounded, the product rounded);
		// with more digits the number is in (m, m+1)*10^-16, and if m >=
		// 2^40 y is within 2^-40 of it plus those: some 8200 units. y
		// rounds to the same float32 as the number unless y is within that
		// margin of the halfway point between two float32s, which is all
		// the float32 near y have in common. The number is below 10: no
		// float32 subnormal (unless 0), no overflow.
		margin := uint64(4)
		if n2 == 8 { // as float64s print: seventeen digits and more
			n3 := leadingDigits(binary.LittleEndian.Uint64(w[p:]) ^ zeros)
			if p += n3; n3 > 0 && m >= 1<<40 {
				margin = 1 << 15
			} else if n3 > 0 {
				n1 = 0 // left to otherFloat
			}
		}
		y := float64(int64(m)) * 1e-16
		if n1 > 0 && w[p] == ',' && !nearHalfway(y, margin) {
			return math.Float32frombits(math.Float32bits(float32(y)) | sign), p
		}
	}
	return otherFloat(w)
}

// otherFloat converts the number that w starts with as fastFloat does, for
// the shapes that float encoders write: at most seven integer digits and 23
// fraction digits, at most nineteen digits up to the sixteenth fraction
// digit (any after it bound the error), an exponent of at most three digits,
// and a value that a float64 product resolves. The digits are found and
// read eight at a time in 64-bit words, without a branch on how many there
// are.
func otherFloat(w *[fastFloatWindow]byte) (f float32, end int) {
	p := 0
	if w[0] == '-' {
		p = 1
	}
	sign := uint32(p) << 31
	var m uint64
	digits, exp := 1, 0
	if w[p] == '0' { // what a number below 1 starts with; a digit after it is invalid, and ends it
		p++
	} else {
		t := binary.LittleEndian.Uint64(w[p:]) ^ zeros
		k := leadingDigits(t)
		if k == 0 || k == 8 {
			return 0, 0
		}
		m, digits, p = digitsValue(t, k), k, p+k
	}
	long := false // more than sixteen fraction digits, the first sixteen in m
	if w[p] == '.' {
		p++
		t1 := binary.LittleEndian.Uint64(w[p:]) ^ zeros
		t2 := binary.LittleEndian.Uint64(w[p+8:]) ^ zeros
		n1 := leadingDigits(t1)
		n2 := leadingDigits(t2) & -(n1 >> 3) // counts only after eight
		if n1 == 0 {
			return 0, 0
		}
		m = (m*pow10u[n1]+digitsValue(t1, n1))*pow10u[n2] + digitsValue(t2, n2)
		digits, exp, p = digits+n1+n2, -(n1 + n2), p+n1+n2
		if n2 == 8 { // as float64s print: seventeen digits
			n3 := leadingDigits(binary.LittleEndian.Uint64(w[p:]) ^ zeros)
			if n3 == 8 {
				return 0, 0
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
			return 0, 0
		}
		if eneg {
			e = -e
		}
		exp += e
	}
	if digits > 19 || w[p] != ',' {
		return 0, 0
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
			return 0, 0
		}
		margin = 1 << 15
	}
	f = math.Float32frombits(sign) // ±0, whatever the exponent
	if m != 0 {
		if exp < -22 || exp > 22 {
			return 0, 0
		}
		y := float64(m)
		if exp < 0 {
			y *= pow10neg[-exp]
		} else {
			y *= pow10[exp]
		}
		if y < 0x1p-126 || y >= math.MaxFloat32 || nearHalfway(y, margin) {
			return 0, 0
		}
		f = math.Float32frombits(math.Float32bits(float32(y)) | sign)
	}
	return f, p
}

// nearHalfway reports whether x is within margin units in its last place of
// a halfway point between two float32s, where the number that x
// approximates may round to a float32 other than x's; with margin 0,
// whether x is one.
func nearHalfway(x float64, margin uint64) bool {
	const halfway, low = 1 << 28, 1<<29 - 1 // of the 29 bits a float32 drops
	return math.Float64bits(x)&low-(halfway-margin) <= 2*margin
}

// zeros is eight ASCII '0's: eight digits xor zeros are their values.
const zeros = 0x3030303030303030

// leadingDigits is how many of the bytes of t, eight bytes read
// little-endian xor zeros, were ASCII digits (are now below 10) before the
// first that was not. Such a byte has its high bit set, or gets it by adding
// 0x76; only bytes after it can take its carry.
func leadingDigits(t uint64) int {
	const sevens, highs = 0x7676767676767676, 0x8080808080808080
	return bits.TrailingZeros64((t+sevens|t)&highs) >> 3
}

// digitValues is the number that the eight digit values of t, bytes
// little-endian, the first digit in the lowest byte, write: pairs, then
// quadruples, then the whole are combined by multiply-and-shift.
func digitValues(t uint64) uint64 {
	t = t * (10<<8 + 1) >> 8
	t = (t & 0x00FF00FF00FF00FF) * (100<<16 + 1) >> 16
	return (t & 0x0000FFFF0000FFFF) * (10000<<32 + 1) >> 32
}

// digitsValue is the number that the first n digit values of t, bytes
// little-endian, write; 0 when n is 0.
func digitsValue(t uint64, n int) uint64 {
	return digitValues(t << (64 - 8*uint(n)))
}
