package search

import (
	"encoding/json"
	"unicode/utf8"
)

// member is a member of a JSON object: its name, unquoted, and its value.
type member struct {
	name, value []byte
}

// fields returns the member of a request body (searchBody, listBody,
// statusBody) that a name sets, nil for a name the body does not know.
type fields func(name []byte) *json.RawMessage

func (b *searchBody) field(name []byte) *json.RawMessage {
	switch string(name) {
	case "query":
		return &b.Query
	case "vector":
		return &b.Vector
	case "top_k":
		return &b.TopK
	case "filter":
		return &b.Filter
	case "score_threshold":
		return &b.ScoreThreshold
	case "mode":
		return &b.Mode
	case "user_id":
		return &b.UserID
	case "collection":
		return &b.Collection
	}
	return nil
}

func (b *listBody) field(name []byte) *json.RawMessage {
	switch string(name) {
	case "limit":
		return &b.Limit
	case "cursor":
		return &b.Cursor
	case "user_id":
		return &b.UserID
	case "collection":
		return &b.Collection
	}
	return nil
}

func (b *statusBody) field(name []byte) *json.RawMessage {
	switch string(name) {
	case "user_id":
		return &b.UserID
	case "collection":
		return &b.Collection
	case "doc_ids":
		return &b.DocIDs
	}
	return nil
}

// setMembers sets the members of a body as json.Unmarshal does, the values
// pointing into the body's bytes; later members of a name win. It returns
// false when a name matches a field in another case only, which
// encoding/json matches by folding.
func setMembers(ms []member, field fields) bool {
	for _, m := range ms {
		if f := field(m.name); f != nil {
			*f = m.value
		} else if foldsToField(m.name, field) {
			return false
		}
	}
	return true
}

// maxScanDepth is the deepest nesting scanObject reads; deeper values are
// left to encoding/json.
const maxScanDepth = 32

// maxMembers is the most members scanObject reads.
const maxMembers = 16

// scanObject returns the members of the JSON object data, appended to ms,
// without reflection. It reads the common case only and returns false for
// anything else: data that is not valid JSON or not an object, a member name
// with an escape or a byte beyond ASCII, values nested beyond maxScanDepth,
// more than maxMembers members. The caller then leaves data to
// encoding/json.
func scanObject(data []byte, ms []member) ([]member, bool) {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '{' {
		return ms, false
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == '}' {
		return ms, skipSpace(data, i+1) == len(data)
	}
	for len(ms) < maxMembers {
		if i == len(data) || data[i] != '"' {
			return ms, false
		}
		start := i + 1
		for i = start; i < len(data) && data[i] != '"'; i++ {
			if c := data[i]; c < ' ' || c == '\\' || c >= utf8.RuneSelf {
				return ms, false
			}
		}
		if i == len(data) {
			return ms, false
		}
		name := data[start:i]
		i = skipSpace(data, i+1)
		if i == len(data) || data[i] != ':' {
			return ms, false
		}
		i = skipSpace(data, i+1)
		end := skipValue(data, i, 0)
		if end < 0 {
			return ms, false
		}
		ms = append(ms, member{name: name, value: data[i:end]})
		i = skipSpace(data, end)
		if i == len(data) {
			return ms, false
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case '}':
			return ms, skipSpace(data, i+1) == len(data)
		default:
			return ms, false
		}
	}
	return ms, false
}

// foldsToField reports whether the ASCII name matches a field in another
// case.
func foldsToField(name []byte, field fields) bool {
	var buf [16]byte // longer than any field name
	if len(name) > len(buf) {
		return false
	}
	lower := buf[:len(name)]
	for i, c := range name {
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return field(lower) != nil
}

// skipSpace returns the index of the first byte from i on that is not JSON
// whitespace.
func skipSpace(data []byte, i int) int {
	for i < len(data) {
		switch data[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// skipValue returns the end of the valid JSON value that starts at
// data[i], -1 when there is none or it nests deeper than maxScanDepth.
func skipValue(data []byte, i, depth int) int {
	if i == len(data) {
		return -1
	}
	switch c := data[i]; {
	case c == '"':
		return skipString(data, i)
	case c == '{' || c == '[':
		if depth == maxScanDepth {
			return -1
		}
		return skipComposite(data, i, depth)
	case c == '-' || '0' <= c && c <= '9':
		return skipNumber(data, i)
	case c == 't':
		return skipLiteral(data, i, "true")
	case c == 'f':
		return skipLiteral(data, i, "false")
	case c == 'n':
		return skipLiteral(data, i, "null")
	}
	return -1
}

// skipComposite returns the end of the object or array at data[i].
func skipComposite(data []byte, i, depth int) int {
	object := data[i] == '{'
	closing := byte(']')
	if object {
		closing = '}'
	}
	i = skipSpace(data, i+1)
	if i < len(data) && data[i] == closing {
		return i + 1
	}
	for {
		if object {
			if i == len(data) || data[i] != '"' {
				return -1
			}
			if i = skipString(data, i); i < 0 {
				return -1
			}
			i = skipSpace(data, i)
			if i == len(data) || data[i] != ':' {
				return -1
			}
			i = skipSpace(data, i+1)
		}
		if i = skipValue(data, i, depth+1); i < 0 {
			return -1
		}
		i = skipSpace(data, i)
		if i == len(data) {
			return -1
		}
		switch data[i] {
		case ',':
			i = skipSpace(data, i+1)
		case closing:
			return i + 1
		default:
			return -1
		}
	}
}

// skipString returns the end of the string at data[i], checking its
// escapes; like encoding/json, it takes any byte from ' ' on as it is.
func skipString(data []byte, i int) int {
	for i++; i < len(data); i++ {
		switch c := data[i]; {
		case c == '"':
			return i + 1
		case c < ' ':
			return -1
		case c == '\\':
			if i++; i == len(data) {
				return -1
			}
			switch data[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if i+4 >= len(data) {
					return -1
				}
				for _, h := range data[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

// skipNumber returns the end of the number at data[i]:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
func skipNumber(data []byte, i int) int {
	if data[i] == '-' {
		i++
	}
	switch {
	case i == len(data):
		return -1
	case data[i] == '0':
		i++
	case '1' <= data[i] && data[i] <= '9':
		i = skipDigits(data, i)
	default:
		return -1
	}
	if i < len(data) && data[i] == '.' {
		if i++; i == len(data) || !isDigit(data[i]) {
			return -1
		}
		i = skipDigits(data, i)
	}
	if i < len(data) && (data[i] == 'e' || data[i] == 'E') {
		if i++; i < len(data) && (data[i] == '+' || data[i] == '-') {
			i++
		}
		if i == len(data) || !isDigit(data[i]) {
			return -1
		}
		i = skipDigits(data, i)
	}
	return i
}

func skipDigits(data []byte, i int) int {
	for i < len(data) && isDigit(data[i]) {
		i++
	}
	return i
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

// skipLiteral returns the end of lit at data[i].
func skipLiteral(data []byte, i int, lit string) int {
	if len(data)-i < len(lit) || string(data[i:i+len(lit)]) != lit {
		return -1
	}
	return i + len(lit)
}

// unquote decodes a JSON string as json.Unmarshal does into a string: at
// once when it holds no escape and is valid UTF-8, else by encoding/json.
// ok is false when raw is not a string.
func unquote(raw json.RawMessage) (string, bool) {
	if n := len(raw); n >= 2 && raw[0] == '"' && raw[n-1] == '"' {
		inner := raw[1 : n-1]
		plain := utf8.Valid(inner)
		for _, c := range inner {
			if c == '\\' || c == '"' || c < ' ' {
				plain = false
				break
			}
		}
		if plain {
			return string(inner), true
		}
	}
	return unmarshalString(raw)
}

func unmarshalString(raw json.RawMessage) (string, bool) {
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err == nil
}

// splitArray returns the elements of the JSON array data, nil when it is
// not a valid array that skipValue reads (for encoding/json to decide).
func splitArray(data []byte) []json.RawMessage {
	i := skipSpace(data, 0)
	if i == len(data) || data[i] != '[' {
		return nil
	}
	if end := skipValue(data, i, 0); end < 0 || skipSpace(data, end) != len(data) {
		return nil
	}
	es := []json.RawMessage{}
	for i = skipSpace(data, i+1); data[i] != ']'; i = skipSpace(data, i+1) {
		end := skipValue(data, i, 1)
		es = append(es, data[i:end])
		if i = skipSpace(data, end); data[i] == ']' {
			break
		}
	}
	return es
}
