package pipeline

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Limits and defaults of CONTRACT §2.
const (
	// DefaultMaxEventBytes is the default of DecodeConfig.MaxEventBytes
	// (RAGPIPE_MAX_EVENT_BYTES).
	DefaultMaxEventBytes = 1 << 20
	// MaxDocIDBytes is the longest doc_id accepted, in bytes.
	MaxDocIDBytes = 512
	// maxVersion is the largest version: versions are stored as Qdrant
	// integers, which are int64.
	maxVersion = math.MaxInt64
)

// DecodeConfig bounds what Decode accepts.
type DecodeConfig struct {
	Prefix        string // subject prefix; default "rag"
	MaxEventBytes int    // largest accepted body; default 1 MiB
}

// Rejection is an event that can never succeed. It wraps ErrPermanent (errors.Is(r, ErrPermanent) true).
type Rejection struct {
	Reason             string // human readable, e.g. `doc_id is 600 bytes, longer than 512`
	UserID, Collection string // the subject's tokens, empty when the subject is invalid
	Version            uint64 // the event's effective version when it could be determined (body, header, else seq), 0 otherwise
}

// Error returns the reason, prefixed so that it reads well in a log line.
func (r *Rejection) Error() string { return "invalid ingest event: " + r.Reason }

// Unwrap returns ErrPermanent: a rejected event is dead-lettered, not retried.
func (r *Rejection) Unwrap() error { return ErrPermanent }

// wireEvent is the body of an ingest event as it is first parsed. Only text is
// decoded straight into a string: it is the one large field, and a fast
// path for it matters. The other fields stay raw so that Decode can tell
// absent, null and mistyped values apart and name the field in its reason.
type wireEvent struct {
	Op         json.RawMessage `json:"op"`
	DocID      json.RawMessage `json:"doc_id"`
	Text       string          `json:"text"`
	Metadata   json.RawMessage `json:"metadata"`
	Version    json.RawMessage `json:"version"`
	Vector     json.RawMessage `json:"vector"`
	UserID     json.RawMessage `json:"user_id"`
	Collection json.RawMessage `json:"collection"`
}

// Decode parses one message. headerVersion is the Ragpipe-Version header ("" when absent); seq is the message's JetStream stream sequence. It returns a *Rejection for bad input.
//
// The rules are those of CONTRACT §2: the tenant and collection come from the
// subject; the body's op (default upsert), doc_id (1-512 bytes of UTF-8),
// text (required for an upsert without a vector), metadata (a flat object),
// version (a positive integer below 2^63; else the header's; else seq) and
// vector (finite float32s) are checked, and unknown fields are ignored. A
// delete's text, metadata and vector are ignored. Decode is safe for
// concurrent use.
func Decode(cfg DecodeConfig, subject string, body []byte, headerVersion string, seq uint64) (Event, error) {
	return decode(cfg, subject, body, headerVersion, seq, true)
}

// decode is Decode; with fast, a well-formed vector is parsed once, by
// splitVector, instead of being scanned by encoding/json first. Both ways
// give the same results (checked by the tests).
func decode(cfg DecodeConfig, subject string, body []byte, headerVersion string, seq uint64, fast bool) (Event, error) {
	if cfg.Prefix == "" {
		cfg.Prefix = "rag"
	}
	if cfg.MaxEventBytes <= 0 {
		cfg.MaxEventBytes = DefaultMaxEventBytes
	}
	d := eventDecoder{seq: seq}
	d.header, d.headerProblem = parseHeaderVersion(headerVersion)

	userID, collection, subjectProblem := parseSubject(cfg.Prefix, "ingest", subject)
	d.userID, d.collection = userID, collection
	if len(body) > cfg.MaxEventBytes {
		return Event{}, d.reject(firstOf(subjectProblem,
			fmt.Sprintf("body is %d bytes, larger than the limit of %d (RAGPIPE_MAX_EVENT_BYTES)", len(body), cfg.MaxEventBytes)))
	}
	var w wireEvent
	var vector []float32
	var textErr *json.UnmarshalTypeError
	problem := "not decoded"
	if fast {
		if vec, rest, ok := splitVector(body); ok {
			if textErr, problem = unmarshalWire(rest, &w); problem == "" {
				vector = vec
			}
		}
	}
	if problem != "" { // no fast path, or the body has a problem: let encoding/json name it
		w = wireEvent{}
		textErr, problem = unmarshalWire(body, &w)
	}
	if problem != "" {
		return Event{}, d.reject(firstOf(subjectProblem, problem))
	}
	bodyVersionProblem := d.bodyVersion(w.Version)
	if subjectProblem != "" {
		return Event{}, d.reject(subjectProblem)
	}
	if bodyVersionProblem != "" {
		return Event{}, d.reject(bodyVersionProblem)
	}
	e := Event{UserID: userID, Collection: collection}
	switch {
	case d.body != 0:
		e.Version = d.body
	case d.headerProblem != "":
		return Event{}, d.reject(d.headerProblem)
	case d.header != 0:
		e.Version = d.header
	case seq != 0:
		e.Version = seq
	default:
		return Event{}, d.reject("the event has no version: none in the body, no Ragpipe-Version header and no stream sequence")
	}
	p := checkBodyToken("user_id", w.UserID, userID)
	if p == "" {
		p = checkBodyToken("collection", w.Collection, collection)
	}
	if p != "" {
		return Event{}, d.reject(p)
	}

	if e.Op, p = decodeOp(w.Op); p != "" {
		return Event{}, d.reject(p)
	}

	if e.DocID, p = decodeDocID(w.DocID); p != "" {
		return Event{}, d.reject(p)
	}
	if e.Op == OpDelete {
		return e, nil // text, metadata and vector do not matter
	}

	if textErr != nil {
		return Event{}, d.reject(fmt.Sprintf("text must be a string, not a JSON %s", textErr.Value))
	}
	if e.Vector = vector; vector == nil {
		if e.Vector, p = decodeVector(w.Vector); p != "" {
			return Event{}, d.reject(p)
		}
	}
	if e.Vector == nil && isBlank(w.Text) {
		if len(w.Text) == 0 {
			return Event{}, d.reject("text is required for an upsert without a vector")
		}
		return Event{}, d.reject("text is only whitespace and there is no vector")
	}
	e.Text = w.Text
	if e.Metadata, p = decodeMetadata(w.Metadata); p != "" {
		return Event{}, d.reject(p)
	}
	return e, nil
}

// eventDecoder holds what Decode has learnt so far, so that a rejection can
// carry the subject's tokens and the best version known.
type eventDecoder struct {
	userID, collection string
	seq                uint64
	body               uint64 // the body's valid version, 0 if none
	header             uint64 // the header's valid version, 0 if none
	headerProblem      string // why the header version is invalid
}

// reject builds the Rejection for reason, with the event's effective version:
// the body's if valid, else the header's if valid, else the stream sequence.
func (d *eventDecoder) reject(reason string) *Rejection {
	r := &Rejection{Reason: reason, UserID: d.userID, Collection: d.collection, Version: d.seq}
	switch {
	case d.body != 0:
		r.Version = d.body
	case d.header != 0:
		r.Version = d.header
	}
	return r
}

// bodyVersion records the body's version and returns why it is invalid, if it is.
func (d *eventDecoder) bodyVersion(raw json.RawMessage) (problem string) {
	if isJSONNull(raw) {
		return ""
	}
	if c := raw[0]; c != '-' && (c < '0' || c > '9') {
		return fmt.Sprintf("version must be a positive integer, not a JSON %s", jsonKind(raw))
	}
	v, ok := parseVersion(string(raw))
	if !ok {
		return fmt.Sprintf("version %s is not a positive integer up to %d", numberForReason(string(raw)), uint64(maxVersion))
	}
	d.body = v
	return ""
}

func parseHeaderVersion(h string) (uint64, string) {
	if h == "" {
		return 0, ""
	}
	if v, ok := parseVersion(strings.TrimSpace(h)); ok {
		return v, ""
	}
	return 0, fmt.Sprintf("Ragpipe-Version header %s is not a positive integer up to %d", quoteForReason(h), uint64(maxVersion))
}

// parseVersion parses a positive integer version up to 2^63-1. Besides plain
// digits it takes a JSON number with a fraction or exponent whose value is an
// exact integer up to 2^53 ("42.0", "1e3"), as some JSON encoders write
// integers that way.
func parseVersion(s string) (uint64, bool) {
	if s == "" {
		return 0, false
	}
	digits := true
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			digits = false
			break
		}
	}
	if digits {
		v, err := strconv.ParseUint(s, 10, 64)
		return v, err == nil && v >= 1 && v <= maxVersion
	}
	if s[0] < '0' || s[0] > '9' { // a sign, "Inf", "NaN", "0x..." and the like
		return 0, false
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f < 1 || f > 1<<53 || f != math.Trunc(f) {
		return 0, false
	}
	return uint64(f), true
}

// unmarshalWire parses body into w. problem is set when the body is not a JSON
// object; textErr when only text has the wrong type, which matters for upserts
// only.
func unmarshalWire(body []byte, w *wireEvent) (textErr *json.UnmarshalTypeError, problem string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return nil, "body is empty, not a JSON object"
	}
	if trimmed[0] != '{' {
		if json.Valid(trimmed) {
			return nil, fmt.Sprintf("body is a JSON %s, not an object", jsonKind(trimmed))
		}
		return nil, "body is not valid JSON"
	}
	err := json.Unmarshal(body, w)
	if err == nil {
		return nil, ""
	}
	if syntaxErr, ok := errors.AsType[*json.SyntaxError](err); ok {
		return nil, fmt.Sprintf("body is not valid JSON: %v", syntaxErr)
	}
	// Every field but text is raw, so a type error can only be about text.
	// encoding/json has decoded everything else all the same.
	if typeErr, ok := errors.AsType[*json.UnmarshalTypeError](err); ok && typeErr.Field == "text" {
		return typeErr, ""
	}
	return nil, fmt.Sprintf("body cannot be decoded: %v", err)
}

// decodeOp returns the event's op: upsert when absent, null or empty.
func decodeOp(raw json.RawMessage) (Op, string) {
	switch string(raw) { // compared without converting
	case "", "null", `""`, `"upsert"`:
		return OpUpsert, ""
	case `"delete"`:
		return OpDelete, ""
	}
	op, isString := rawJSONString(raw)
	switch {
	case !isString:
		return "", fmt.Sprintf("op must be a string, not a JSON %s", jsonKind(raw))
	case op == string(OpUpsert):
		return OpUpsert, "" // written with escapes
	case op == string(OpDelete):
		return OpDelete, ""
	}
	return "", fmt.Sprintf("op %s is neither %q nor %q", quoteForReason(op), OpUpsert, OpDelete)
}

// checkBodyToken checks that a body's user_id or collection, if present,
// equals the subject's token.
func checkBodyToken(field string, raw json.RawMessage, want string) (problem string) {
	if isJSONNull(raw) {
		return ""
	}
	got, isString := rawJSONString(raw)
	if !isString {
		return fmt.Sprintf("%s in the body must be a string, not a JSON %s", field, jsonKind(raw))
	}
	if got != want {
		return fmt.Sprintf("%s %s in the body does not match the subject's %q", field, quoteForReason(got), want)
	}
	return ""
}

// decodeDocID checks and returns the doc_id. encoding/json would silently
// replace invalid UTF-8 by U+FFFD, which could merge two documents, so the raw
// bytes are checked first.
func decodeDocID(raw json.RawMessage) (string, string) {
	if isJSONNull(raw) {
		return "", "doc_id is required"
	}
	if raw[0] != '"' {
		return "", fmt.Sprintf("doc_id must be a string, not a JSON %s", jsonKind(raw))
	}
	if !utf8.Valid(raw) || hasLoneSurrogate(raw) {
		return "", "doc_id is not valid UTF-8"
	}
	id, _ := rawJSONString(raw)
	switch {
	case id == "":
		return "", "doc_id is empty"
	case len(id) > MaxDocIDBytes:
		return "", fmt.Sprintf("doc_id is %d bytes, longer than %d", len(id), MaxDocIDBytes)
	}
	return id, ""
}

// hasLoneSurrogate reports whether the JSON string raw has a \uXXXX escape of
// a UTF-16 surrogate that is not part of a pair: it has no UTF-8 encoding.
func hasLoneSurrogate(raw []byte) bool {
	if bytes.IndexByte(raw, '\\') < 0 {
		return false
	}
	pendingHigh := false
	for i := 0; i < len(raw); i++ {
		if raw[i] != '\\' {
			if pendingHigh {
				return true
			}
			continue
		}
		i++ // raw is valid JSON, so an escape is complete
		if raw[i] != 'u' {
			if pendingHigh {
				return true
			}
			continue
		}
		u, _ := strconv.ParseUint(string(raw[i+1:i+5]), 16, 16)
		i += 4
		switch {
		case u >= 0xD800 && u < 0xDC00:
			if pendingHigh {
				return true
			}
			pendingHigh = true
		case u >= 0xDC00 && u < 0xE000:
			if !pendingHigh {
				return true
			}
			pendingHigh = false
		default:
			if pendingHigh {
				return true
			}
		}
	}
	return pendingHigh
}

// decodeVector parses an optional vector of finite float32s. A nil result
// with no problem means there is none.
func decodeVector(raw json.RawMessage) ([]float32, string) {
	if isJSONNull(raw) {
		return nil, ""
	}
	if raw[0] != '[' {
		return nil, fmt.Sprintf("vector must be an array of numbers, not a JSON %s", jsonKind(raw))
	}
	vec, _, problem := scanVector(raw, 0)
	return vec, problem
}

// scanVector parses the JSON array of numbers at b[i] ('[') into float32s
// and returns them and the index after the array, or why it cannot. It
// checks the JSON grammar itself, and avoids decoding through reflection
// and interfaces.
func scanVector(b []byte, i int) (vec []float32, end int, problem string) {
	end = bytes.IndexByte(b[i:], ']') // no ']' can come earlier in an array of numbers
	if end < 0 {
		end = len(b) - i
	}
	vec = make([]float32, 0, bytes.Count(b[i:i+end], []byte{','})+1) // an upper bound on the length
	i++
	for {
		i = skipJSONSpace(b, i)
		if i < len(b) && b[i] == ']' && len(vec) == 0 {
			return nil, i + 1, "vector is empty"
		}
		j, ok := jsonNumberEnd(b, i)
		if !ok {
			if i < len(b) && (b[i] == '"' || b[i] == '[' || b[i] == '{' || b[i] == 't' || b[i] == 'f' || b[i] == 'n') {
				return nil, 0, fmt.Sprintf("vector[%d] must be a number, not a JSON %s", len(vec), jsonKind(b[i:i+1]))
			}
			return nil, 0, "vector is not a JSON array of numbers"
		}
		f, err := strconv.ParseFloat(string(b[i:j]), 32)
		if err != nil {
			return nil, 0, fmt.Sprintf("vector[%d] = %s is not a finite 32-bit float", len(vec), numberForReason(string(b[i:j])))
		}
		vec = append(vec, float32(f))
		i = skipJSONSpace(b, j)
		switch {
		case i < len(b) && b[i] == ']':
			return vec, i + 1, ""
		case i < len(b) && b[i] == ',':
			i++
		default:
			return nil, 0, "vector is not a JSON array of numbers"
		}
	}
}

// jsonNumberEnd returns the index after the JSON number at b[i], and false
// when there is none: -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func jsonNumberEnd(b []byte, i int) (int, bool) {
	digits := func(i int) int {
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		i = digits(i)
	default:
		return i, false
	}
	if i < len(b) && b[i] == '.' {
		j := digits(i + 1)
		if j == i+1 {
			return j, false
		}
		i = j
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		j := digits(i)
		if j == i {
			return j, false
		}
		i = j
	}
	return i, true
}

func isJSONNumberByte(c byte) bool {
	return '0' <= c && c <= '9' || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

func skipJSONSpace[T string | []byte](b T, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// splitVector finds the body's top-level "vector" member and, when it is a
// well-formed, non-empty array of finite float32s and the body's only member
// named so (encoding/json matches names case-insensitively), returns it
// parsed and a copy of body with the array replaced by null, for
// encoding/json to decode the small rest. ok is false in every other case,
// including invalid JSON, and the caller then decodes the body as a whole.
// Vectors are most of the bytes of an event that has one: this way they are
// scanned once, not three times.
func splitVector(body []byte) (vec []float32, rest []byte, ok bool) {
	start, end := -1, -1
	i := skipJSONSpace(body, 0)
	if i >= len(body) || body[i] != '{' {
		return nil, nil, false
	}
	i = skipJSONSpace(body, i+1)
	if i < len(body) && body[i] == '}' {
		return nil, nil, false
	}
	for {
		// A member: "key" : value
		if i >= len(body) || body[i] != '"' {
			return nil, nil, false
		}
		j, escaped := jsonStringEnd(body, i)
		if j < 0 {
			return nil, nil, false
		}
		key := body[i+1 : j-1]
		named := escaped || bytes.EqualFold(key, []byte("vector"))
		i = skipJSONSpace(body, j)
		if i >= len(body) || body[i] != ':' {
			return nil, nil, false
		}
		i = skipJSONSpace(body, i+1)
		switch {
		case named && (escaped || string(key) != "vector" || start >= 0):
			return nil, nil, false // a name encoding/json might also take for "vector"
		case named:
			if i >= len(body) || body[i] != '[' {
				return nil, nil, false
			}
			var problem string
			if vec, j, problem = scanVector(body, i); problem != "" {
				return nil, nil, false
			}
			start, end = i, j
		default:
			if j = jsonValueEnd(body, i); j < 0 {
				return nil, nil, false
			}
		}
		i = skipJSONSpace(body, j)
		if i < len(body) && body[i] == ',' {
			i = skipJSONSpace(body, i+1)
			continue
		}
		if i >= len(body) || body[i] != '}' || start < 0 {
			return nil, nil, false
		}
		rest = make([]byte, 0, len(body)-(end-start)+4)
		rest = append(append(append(rest, body[:start]...), "null"...), body[end:]...)
		return vec, rest, true
	}
}

// jsonStringEnd returns the index after the JSON string starting at b[i]
// ('"') and whether it has escapes; -1 when it does not end.
func jsonStringEnd(b []byte, i int) (int, bool) {
	escaped := false
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			escaped = true
			i++
		case '"':
			return i + 1, escaped
		}
	}
	return -1, escaped
}

// jsonValueEnd returns the index after the JSON value starting at b[i],
// tracking strings and nesting only (encoding/json checks the rest); -1 when
// it does not end.
func jsonValueEnd(b []byte, i int) int {
	depth := 0
	for ; i < len(b); i++ {
		switch b[i] {
		case '"':
			j, _ := jsonStringEnd(b, i)
			if j < 0 {
				return -1
			}
			if depth == 0 {
				return j
			}
			i = j - 1
		case '[', '{':
			depth++
		case ']', '}':
			if depth == 0 {
				return i // the end of a scalar before the enclosing object's end
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case ',', ' ', '\t', '\n', '\r':
			if depth == 0 {
				return i
			}
		}
	}
	return -1
}

// decodeMetadata parses optional metadata: a flat object whose values are
// strings, numbers, bools or arrays of them. Integers that fit an int64 become
// int64, other numbers float64. Absent, null and {} give a nil map. The reason
// for a bad value names the first bad key.
//
// raw is valid JSON (the whole body was checked), so a small scanner is enough;
// it avoids encoding/json's reflection and its intermediate json.Numbers, and
// its keys and strings share one copy of raw.
func decodeMetadata(raw json.RawMessage) (map[string]any, string) {
	if isJSONNull(raw) {
		return nil, ""
	}
	if raw[0] != '{' {
		return nil, fmt.Sprintf("metadata must be a JSON object, not a JSON %s", jsonKind(raw))
	}
	s := string(raw)
	i := skipJSONSpace(s, 1)
	if s[i] == '}' {
		return nil, ""
	}
	m := make(map[string]any, 8)
	for {
		key, end := scanJSONString(s, i)
		i = skipJSONSpace(s, skipJSONSpace(s, end)+1) // past the colon
		v, end, problem := scanMetadataValue(s, i, -1)
		if problem != "" {
			return nil, fmt.Sprintf("metadata key %s: %s", quoteForReason(key), problem)
		}
		m[key] = v
		i = skipJSONSpace(s, end)
		if s[i] == '}' {
			return m, ""
		}
		i = skipJSONSpace(s, i+1) // past the comma
	}
}

// scanMetadataValue parses the metadata value that starts at s[i]: a top-level
// value when elem < 0, else element elem of an array. It returns the value
// and where it ends, or why it is not allowed.
func scanMetadataValue(s string, i, elem int) (v any, end int, problem string) {
	inArray := func(kind string) string {
		return fmt.Sprintf("element %d is %s; arrays may hold strings, numbers and bools", elem, kind)
	}
	switch s[i] {
	case '"':
		return scanJSONStringAny(s, i)
	case 't':
		return true, i + len("true"), ""
	case 'f':
		return false, i + len("false"), ""
	case 'n':
		if elem < 0 {
			return nil, 0, "null is not a valid value"
		}
		return nil, 0, inArray("null")
	case '{':
		if elem < 0 {
			return nil, 0, "nested objects are not allowed"
		}
		return nil, 0, inArray("an object")
	case '[':
		if elem >= 0 {
			return nil, 0, fmt.Sprintf("element %d is an array; arrays of arrays are not allowed", elem)
		}
		list := []any{}
		i = skipJSONSpace(s, i+1)
		if s[i] == ']' {
			return list, i + 1, ""
		}
		for {
			v, end, problem := scanMetadataValue(s, i, len(list))
			if problem != "" {
				return nil, 0, problem
			}
			list = append(list, v)
			i = skipJSONSpace(s, end)
			if s[i] == ']' {
				return list, i + 1, ""
			}
			i = skipJSONSpace(s, i+1)
		}
	}
	j := i
	for j < len(s) && isJSONNumberByte(s[j]) {
		j++
	}
	n, ok := metadataNumber(s[i:j])
	if !ok {
		if elem < 0 {
			return nil, 0, fmt.Sprintf("number %s is out of range", numberForReason(s[i:j]))
		}
		return nil, 0, fmt.Sprintf("element %d: number %s is out of range", elem, numberForReason(s[i:j]))
	}
	return n, j, ""
}

// metadataNumber converts a JSON number: int64 when it is an integer that
// fits, else float64; ok is false when it overflows a float64.
func metadataNumber(lit string) (n any, ok bool) {
	integer := true
	for k := 0; k < len(lit); k++ {
		if c := lit[k]; (c < '0' || c > '9') && (k > 0 || c != '-') {
			integer = false
			break
		}
	}
	if integer {
		if v, err := strconv.ParseInt(lit, 10, 64); err == nil {
			return v, true
		}
	}
	f, err := strconv.ParseFloat(lit, 64)
	return f, err == nil
}

// scanJSONString returns the JSON string that starts at s[i] and the offset
// after it. Without escapes the result shares s's memory. Invalid UTF-8 is
// replaced by U+FFFD, as encoding/json does, so that what is stored is
// valid UTF-8.
func scanJSONString(s string, i int) (string, int) {
	escaped := false
	j := i + 1
	for s[j] != '"' {
		if s[j] == '\\' {
			escaped = true
			j++
		}
		j++
	}
	if str := s[i+1 : j]; !escaped && utf8.ValidString(str) {
		return str, j + 1
	}
	var str string
	_ = json.Unmarshal([]byte(s[i:j+1]), &str) // cannot fail: s is valid JSON
	return str, j + 1
}

func scanJSONStringAny(s string, i int) (any, int, string) {
	str, end := scanJSONString(s, i)
	return str, end, ""
}

// rawJSONString returns the string a raw JSON value holds; null and absent
// give "". isString is false for any other JSON type.
func rawJSONString(raw json.RawMessage) (s string, isString bool) {
	if isJSONNull(raw) {
		return "", true
	}
	if raw[0] != '"' {
		return "", false
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1]), true // no escapes: the bytes are the string
	}
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false // unreachable: raw is a valid JSON string
	}
	return s, true
}

func isJSONNull(raw json.RawMessage) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// jsonKind names the JSON type of a valid JSON value.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

func isBlank(s string) bool { return strings.TrimSpace(s) == "" }

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
