package pipeline

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestFastFloatOneDigit compares fastFloats with strconv on the shape that
// fastFloat converts itself, one integer digit and a fraction, with up to
// 25 fraction digits, many of them at or near the halfway point between two
// float32s, and checks that it takes the usual ones.
func TestFastFloatOneDigit(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 8))
	pad := "," + strings.Repeat("x", fastFloatWindow)
	taken, usual := 0, 0
	for range 1_000_000 {
		// A float32 in [2^-56, 8), below 1 three times in four.
		x := math.Float32frombits(uint32(127-56+r.IntN(59))<<23 | r.Uint32N(1<<23))
		var lit string
		switch r.IntN(4) {
		case 0: // shortest, as encoders of float32s and of float64s print it
			lit = strconv.FormatFloat(float64(x), 'f', -1, 32<<r.IntN(2))
			usual++
		case 1: // at halfway, or a few units of a float64 off it, inside or outside the margins
			mid := (float64(x) + float64(math.Nextafter32(x, 10))) / 2
			if r.IntN(2) == 0 {
				mid = math.Float64frombits(math.Float64bits(mid) + uint64(r.IntN(11)) - 5)
			}
			lit = strconv.FormatFloat(mid, 'f', -1, 64)
		case 2: // near halfway, up to 2^16 units of a float64 off it, cut after 16 to 25 digits
			mid := (float64(x) + float64(math.Nextafter32(x, 10))) / 2
			mid = math.Float64frombits(math.Float64bits(mid) + uint64(r.IntN(1<<17)) - 1<<16)
			lit = strconv.FormatFloat(mid, 'f', 16+r.IntN(10), 64)
		default: // 1 to 25 digits
			lit = strconv.FormatFloat(float64(x), 'f', 1+r.IntN(25), 64)
		}
		if r.IntN(2) == 0 {
			lit = "-" + lit
		}
		if checkFastFloat32(t, lit, []byte(lit+pad)) {
			taken++
		}
	}
	if taken < usual {
		t.Errorf("fastFloats took %d of 1000000 numbers, fewer than the %d in the usual form", taken, usual)
	}
}

// TestFastFloatOneDigitEdges checks fastFloats on literals at the edges of
// the shape that fastFloat converts itself.
func TestFastFloatOneDigitEdges(t *testing.T) {
	for _, lit := range []string{"0.0", "-0.0", "0.0000000000000000", "-0.00000000000000000000001", "9.9999999999999999999999",
		"0.1", "1.5", "9.5", "0.0000000000000001", "0.00000000000000001", "0.0000000000000000000001", "0.00000001",
		"0.12345678", "0.123456789", "0.1234567890123456", "0.12345678901234567", "0.123456789012345678901234",
		"8.0000000000000000000001", "0.000000000000001234", "0.0000123456789012345678", "1.0000000596046448",
		"1.00000005960464477539062", "1.00000005960464477539063", "1.000000059604644775390625", "0.30726838",
		"-0.30726838111877441", "3.4", "0.0e1", "1.", "1.e5", "01.5", "0.5e", "0.5e+", "1.5E-3", "2.0000001"} {
		for _, next := range []string{",", "e,", "x,", ".5,", " ,", "]"} {
			checkFastFloat32(t, lit, []byte(lit+next+strings.Repeat("x", fastFloatWindow)))
		}
	}
}

// TestReadFloatsCopies checks that the vectors readFloats returns do not
// share its buffer and have exactly their length as capacity.
func TestReadFloatsCopies(t *testing.T) {
	a, _, _ := readFloats([]byte("[0.5,1.5,2.5]"), 0)
	b, _, _ := readFloats([]byte("[3,4]"), 0)
	if len(a) != 3 || cap(a) != 3 || a[0] != 0.5 || a[2] != 2.5 || len(b) != 2 || cap(b) != 2 || b[0] != 3 {
		t.Errorf("readFloats gave %v (cap %d) and %v (cap %d)", a, cap(a), b, cap(b))
	}
}
