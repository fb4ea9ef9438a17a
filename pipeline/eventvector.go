package pipeline

import (
	"bytes"
	"fmt"
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
// wireVector passes). The numbers are converted into a pooled buffer, in one
// pass over b, and the vector, its only allocation, is a copy of exactly
// their count.
func readFloats(b []byte, i int) (vec []float32, end int, problem string) {
	bp, _ := floatBufs.Get().(*[]float32)
	if bp == nil {
		bp = new([]float32)
	}
	defer floatBufs.Put(bp)
	*bp, end, problem = appendFloats((*bp)[:0], b, i)
	if end < 0 || problem != "" {
		return nil, end, problem
	}
	return append(make([]float32, 0, len(*bp)), *bp...), end, ""
}

// floatBufs holds the buffers of readFloats, *[]float32.
var floatBufs sync.Pool

// appendFloats appends to vec the numbers of the JSON array starting at b[i]
// and returns them and where the array ends, as readFloats does. Runs of
// numbers of the usual shape go through fastFloats, the others through
// parseFloat32, else strconv.
func appendFloats(vec []float32, b []byte, i int) ([]float32, int, string) {
	if i = skipJSONSpace(b, i+1); i == len(b) {
		return vec, -1, ""
	}
	if b[i] == ']' {
		return vec, i + 1, "vector is empty"
	}
	for {
		if vec, i = fastFloats(b, i, vec); i == len(b) {
			return vec, -1, ""
		}
		if c := b[i]; c != '-' && (c < '0' || c > '9') {
			return vec, 0, fmt.Sprintf("vector[%d] must be a number, not a JSON %s", len(vec), kindName(jsontext.Kind(c)))
		}
		f, end, ok := parseFloat32(b, i)
		if end < 0 {
			return vec, -1, ""
		}
		if !ok {
			f64, err := strconv.ParseFloat(string(b[i:end]), 32)
			if err != nil {
				return vec, 0, fmt.Sprintf("vector[%d] = %s is not a finite 32-bit float", len(vec), numberForReason(string(b[i:end])))
			}
			f = float32(f64)
		}
		vec = append(vec, f)
		if i = skipJSONSpace(b, end); i == len(b) {
			return vec, -1, ""
		}
		switch b[i] {
		case ']':
			return vec, i + 1, ""
		case ',':
			if i = skipJSONSpace(b, i+1); i == len(b) {
				return vec, -1, ""
			}
		default:
			return vec, -1, ""
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
