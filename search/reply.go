package search

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strconv"
	"sync"
	"unicode/utf8"

	"github.com/ragpipe/ragpipe/pipeline"
)

// replyBuffers holds the buffers replies are encoded into: a reply's bytes
// are copied into the connection's buffer when it is published, so its
// buffer serves the next reply.
var replyBuffers = sync.Pool{New: func() any { return new([]byte) }}

// maxPooledReply is the largest buffer kept for reuse; a larger one is left
// to the garbage collector, so that one huge reply does not pin its memory.
const maxPooledReply = 1 << 20

// appendSearchReply appends the JSON encoding of r, byte for byte as
// encoding/json encodes it, without reflection. ok is false when r holds
// what it does not encode itself: a metadata value of another type than the
// stores return (bool, int64, float64, string, nil, []any, map[string]any)
// or a number JSON cannot hold (NaN, ±Inf), for encoding/json to encode or
// refuse.
func appendSearchReply(b []byte, r *SearchReply) ([]byte, bool) {
	if r.Hits == nil {
		b = append(b, `{"hits":null`...)
	} else {
		b = append(b, `{"hits":[`...)
		for i := range r.Hits {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendHit(b, &r.Hits[i]); !ok {
				return b, false
			}
		}
		b = append(b, ']')
	}
	b = append(b, `,"took_ms":`...)
	b, ok := appendFloat(b, r.TookMS, 64)
	return append(b, '}'), ok
}

func appendHit(b []byte, h *pipeline.Hit) ([]byte, bool) {
	b = append(b, `{"doc_id":`...)
	b = appendString(b, h.DocID)
	b = append(b, `,"chunk_index":`...)
	b = strconv.AppendInt(b, int64(h.ChunkIndex), 10)
	b = append(b, `,"score":`...)
	b, ok := appendFloat(b, float64(h.Score), 32)
	if !ok {
		return b, false
	}
	b = append(b, `,"text":`...)
	b = appendString(b, h.Text)
	b = append(b, `,"metadata":`...)
	if h.Metadata == nil {
		b = append(b, "null"...)
	} else if b, ok = appendValue(b, h.Metadata); !ok {
		return b, false
	}
	b = append(b, `,"version":`...)
	b = strconv.AppendUint(b, h.Version, 10)
	return append(b, '}'), true
}

// appendValue appends a metadata value as encoding/json does: map keys
// sorted, nil as null.
func appendValue(b []byte, v any) ([]byte, bool) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), true
	case string:
		return appendString(b, v), true
	case bool:
		return strconv.AppendBool(b, v), true
	case int64:
		return strconv.AppendInt(b, v, 10), true
	case float64:
		return appendFloat(b, v, 64)
	case []any:
		if v == nil {
			return append(b, "null"...), true
		}
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var ok bool
			if b, ok = appendValue(b, e); !ok {
				return b, false
			}
		}
		return append(b, ']'), true
	case map[string]any:
		if v == nil {
			return append(b, "null"...), true
		}
		var small [8]string
		keys := small[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k)
			b = append(b, ':')
			var ok bool
			if b, ok = appendValue(b, v[k]); !ok {
				return b, false
			}
		}
		return append(b, '}'), true
	}
	return b, false
}

// appendFloat appends f as encoding/json encodes a float of bits bits:
// the shortest representation, in exponent form only below 1e-6 or from
// 1e21 on, with a one-digit negative exponent left unpadded.
func appendFloat(b []byte, f float64, bits int) ([]byte, bool) {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return b, false
	}
	format := byte('f')
	if a := math.Abs(f); a != 0 {
		if bits == 64 && (a < 1e-6 || a >= 1e21) || bits == 32 && (float32(a) < 1e-6 || float32(a) >= 1e21) {
			format = 'e'
		}
	}
	b = strconv.AppendFloat(b, f, format, -1, bits)
	if format == 'e' {
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b, true
}

const hexDigits = "0123456789abcdef"

// plainByte marks the ASCII bytes a JSON string holds as they are.
var plainByte = func() (t [utf8.RuneSelf]bool) {
	for c := ' '; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\' && c != '<' && c != '>' && c != '&'
	}
	return t
}()

// plain8 reports whether the eight bytes of x are all plain ASCII
// (plainByte), testing them at once: no byte from 0x80 on, none below ' ',
// none equal to '"' or '&' (0x22 and 0x26, equal but for bit 2), to '<' or
// '>' (0x3c and 0x3e, equal but for bit 1), or to '\\'. (v-ones)&^v has
// the high bit set in some byte exactly when v has a zero byte.
func plain8(x uint64) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	quoteAmp := (x ^ '"'*ones) &^ (4 * ones)
	angles := (x ^ '<'*ones) &^ (2 * ones)
	backslash := x ^ '\\'*ones
	special := x | (x-' '*ones)&^x | (quoteAmp-ones)&^quoteAmp | (angles-ones)&^angles | (backslash-ones)&^backslash
	return special&highs == 0
}

// appendString appends s quoted as encoding/json quotes it by default:
// <, > and & escaped for HTML, U+2028 and U+2029 escaped for JavaScript,
// invalid UTF-8 replaced by U+FFFD.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plain8(binary.LittleEndian.Uint64([]byte(s[i:i+8]))) {
			i += 8
			continue
		}
		if c := s[i]; c < utf8.RuneSelf {
			if plainByte[c] {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// encodeReply returns the JSON of a successful reply: a search reply
// appended to buf, any other encoded by encoding/json.
func encodeReply(buf []byte, reply any) ([]byte, error) {
	if r, ok := reply.(*SearchReply); ok {
		if data, ok := appendSearchReply(buf[:0], r); ok {
			return data, nil
		}
	}
	return json.Marshal(reply)
}
