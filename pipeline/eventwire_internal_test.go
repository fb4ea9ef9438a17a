package pipeline

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// checkParseFloat32 fails unless parseFloat32(lit) is strconv's float32 or
// declines.
func checkParseFloat32(t *testing.T, lit string) {
	t.Helper()
	got, end, ok := parseFloat32([]byte(lit+","), 0)
	if end != len(lit) {
		t.Fatalf("parseFloat32(%s) ends at %d, want %d", lit, end, len(lit))
	}
	for _, next := range []string{",", "e,"} {
		checkFastFloat32(t, lit, []byte(lit+next+strings.Repeat("x", fastFloatWindow)))
	}
	if !ok {
		return
	}
	want, err := strconv.ParseFloat(lit, 32)
	if err != nil || math.Float32bits(got) != math.Float32bits(float32(want)) {
		t.Fatalf("parseFloat32(%s) = %v (%#x), strconv %v (%#x), %v", lit, got, math.Float32bits(got), float32(want),
			math.Float32bits(float32(want)), err)
	}
}

// checkFastFloat32 fails unless fastFloats(padded), padded starting with
// the number lit and a ',', takes lit as strconv's float32 and ends past the
// ',', or takes nothing.
func checkFastFloat32(t *testing.T, lit string, padded []byte) (ok bool) {
	t.Helper()
	vec, end := fastFloats(padded, 0, nil)
	if len(vec) == 0 && end == 0 {
		return false
	}
	want, err := strconv.ParseFloat(lit, 32)
	if len(vec) != 1 || err != nil || end != len(lit)+1 || math.Float32bits(vec[0]) != math.Float32bits(float32(want)) {
		t.Fatalf("fastFloats(%s) = %v, ends at %d; strconv %v (%#x), %v", padded, vec, end, float32(want), math.Float32bits(float32(want)), err)
	}
	return true
}

// TestFastFloat32 compares fastFloats with strconv on numbers of the shapes
// it takes, many of them near the halfway point between two float32s.
func TestFastFloat32(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 7))
	pad := "," + strings.Repeat("x", fastFloatWindow)
	taken := 0
	for range 1_000_000 {
		var lit string
		switch r.IntN(4) {
		case 0: // near halfway
			x := math.Float32frombits(r.Uint32() & 0x7fffffff)
			if math.IsNaN(float64(x)) || math.IsInf(float64(x), 0) {
				continue
			}
			mid := (float64(x) + float64(math.Nextafter32(x, float32(math.Inf(1))))) / 2
			if r.IntN(2) == 0 { // a little off it, inside or outside the margins
				mid = math.Float64frombits(math.Float64bits(mid) + uint64(r.IntN(1<<17)) - 1<<16)
			}
			lit = strconv.FormatFloat(mid, 'e', 5+r.IntN(18), 64)
			if r.IntN(2) == 0 {
				lit = strconv.FormatFloat(mid, 'f', r.IntN(26), 64)
			}
		case 1: // up to 17 digits, a point anywhere in the first eight
			d := 1 + r.IntN(17)
			digits := strconv.FormatUint(r.Uint64N(uint64(math.Pow10(d))), 10)
			k := 1 + r.IntN(min(len(digits), 7))
			lit = digits[:k]
			if k < len(digits) {
				lit += "." + digits[k:]
			}
			if r.IntN(3) == 0 {
				lit += []string{"e", "E", "e+", "e-", "E-"}[r.IntN(5)] + strconv.Itoa(r.IntN(40))
			}
		case 2: // 0.ddd, as embeddings are written
			lit = "0." + strings.Repeat("0", r.IntN(4)) + strconv.FormatUint(r.Uint64N(1e12), 10)
		default: // a float32 printed as a float64, as JavaScript and Python print them
			lit = strconv.FormatFloat(float64(float32(r.NormFloat64()*math.Pow(10, float64(r.IntN(8)-6)))), 'g', -1, 64)
		}
		if r.IntN(2) == 0 {
			lit = "-" + lit
		}
		if checkFastFloat32(t, lit, []byte(lit+pad)) {
			taken++
		}
	}
	if taken < 500_000 {
		t.Errorf("fastFloats took %d of 1000000 numbers", taken)
	}
}

func TestParseFloat32(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 5))
	taken := 0
	for range 200_000 {
		x := float32(r.NormFloat64() * math.Pow(10, float64(r.IntN(16)-8)))
		for _, lit := range []string{
			strconv.FormatFloat(float64(x), 'g', -1, 32),
			strconv.FormatFloat(float64(x), 'g', -1, 64),
			strconv.FormatFloat(float64(x), 'e', r.IntN(20), 64),
			strconv.FormatFloat(float64(x), 'f', r.IntN(25), 64),
		} {
			checkParseFloat32(t, lit)
			if _, _, ok := parseFloat32([]byte(lit), 0); ok {
				taken++
			}
		}
		// Halfway between two float32s, and a hair either side of it.
		next := math.Nextafter32(x, float32(math.Inf(1)))
		mid := (float64(x) + float64(next)) / 2
		for _, lit := range []string{
			strconv.FormatFloat(mid, 'g', -1, 64),
			strconv.FormatFloat(mid, 'e', 16, 64),
			strconv.FormatFloat(math.Nextafter(mid, 0), 'e', 17, 64),
			strconv.FormatFloat(math.Nextafter(mid, 1e300), 'e', 17, 64),
		} {
			checkParseFloat32(t, lit)
		}
	}
	if taken < 400_000 {
		t.Errorf("the fast path took only %d of 800000 literals", taken)
	}
	for _, lit := range []string{"0", "-0", "0.0", "1", "-1", "1e22", "1e23", "1e-22", "1e-23", "123456789012345678901",
		"1234567890123456789", "0.000000000000000000000000000000000000011754944", "3.4028235e38", "3.4028236e38", "1e39",
		"16777217", "16777216.5", "0.1", "-0.30000001", "1E5", "1e+5", "1.5e-45", "100000000000000000000000",
		"0e400", "-0.0e-400", "1e400", "1e-400", "12345678901234567890e-30"} {
		checkParseFloat32(t, lit)
	}
	if f, _, ok := parseFloat32([]byte("-0e99"), 0); !ok || !math.Signbit(float64(f)) {
		t.Errorf("parseFloat32(-0) = %v, %v", f, ok)
	}
}

func FuzzParseFloat32(f *testing.F) {
	for _, s := range []string{"0.5", "-1.25e-3", "16777217", "3.4028235e38", "1e-40"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, lit string) {
		if !validJSONNumber(lit) {
			return
		}
		checkParseFloat32(t, lit)
	})
}

// validJSONNumber reports whether s is a JSON number literal.
func validJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for ; i < len(s) && s[i] >= '0' && s[i] <= '9'; i++ {
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

// TestFastFloat32Takes checks that fastFloats converts the numbers of
// typical embeddings, in the forms encoders write.
func TestFastFloat32Takes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 6))
	taken := 0
	for range 100_000 {
		x := r.Float32() - 0.5
		if r.IntN(2) == 0 {
			x = float32(r.NormFloat64() / 32)
		}
		lit := strconv.FormatFloat(float64(x), []byte{'g', 'f', 'e'}[r.IntN(3)], -1, 32<<r.IntN(2))
		if checkFastFloat32(t, lit, []byte(lit+","+strings.Repeat("x", fastFloatWindow))) {
			taken++
		}
	}
	if taken < 99_000 {
		t.Errorf("fastFloats took %d of 100000 numbers", taken)
	}
}
