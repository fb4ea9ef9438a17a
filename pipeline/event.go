package pipeline

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/go-json-experiment/json"
	"github.com/go-json-experiment/json/jsontext"
	jsonv1 "github.com/go-json-experiment/json/v1"
)

// Limits and defaults of CONTRACT §2.
const (
	// DefaultMaxEventBytes is the default of DecodeConfig.MaxEventBytes
	// (RAGPIPE_MAX_EVENT_BYTES).
	DefaultMaxEventBytes = 1 << 20
	// MaxDocIDBytes is the longest doc_id accepted, in bytes.
	MaxDocIDBytes = 512
	// MaxVersion is the largest version a body or a Ragpipe-Version header
	// may give: 2^53-1, the largest integer that every JSON parser and
	// Qdrant's float64 range comparisons hold exactly.
	MaxVersion = 1<<53 - 1
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

// wireEvent is the body of an ingest event as the JSON decoder
// (github.com/go-json-experiment/json, encoding/json/v2) first parses it.
// No field can fail to decode: the small ones stay raw and the others record
// their problem, so that Decode checks them in its own order and names the
// field in its reason.
type wireEvent struct {
	Op         jsontext.Value `json:"op"`
	DocID      jsontext.Value `json:"doc_id"`
	Text       wireText       `json:"text"`
	Metadata   wireMetadata   `json:"metadata"`
	Version    jsontext.Value `json:"version"`
	Vector     wireVector     `json:"vector"`
	VectorB64  wireVectorB64  `json:"vector_b64"`
	UserID     jsontext.Value `json:"user_id"`
	Collection jsontext.Value `json:"collection"`
}

// wireEvents holds *wireEvent for Decode to reuse. Their raw members keep
// their buffers, into which the decoder copies the next body's, sparing an
// allocation for each member present.
var wireEvents = sync.Pool{New: func() any { return new(wireEvent) }}

// release clears w, keeping the buffers of its raw members up to 1 KiB, and
// puts it back in wireEvents. Nothing Decode returns refers to them.
func (w *wireEvent) release() {
	keep := func(v jsontext.Value) jsontext.Value {
		if cap(v) > 1<<10 {
			return nil
		}
		return v[:0]
	}
	*w = wireEvent{Op: keep(w.Op), DocID: keep(w.DocID), Version: keep(w.Version), UserID: keep(w.UserID), Collection: keep(w.Collection)}
	wireEvents.Put(w)
}

// wireOptions make the decoder take a body by encoding/json's (v1) rules, so
// that it accepts and refuses the same bodies: the last of duplicate
// members wins; names match case-insensitively ("Vector" is vector, so that
// "USER_ID" is checked against the subject too) but not across '_' and '-';
// invalid UTF-8 and lone surrogates in strings become U+FFFD (decodeDocID
// refuses them in a doc_id, where they could merge two documents).
var wireOptions = json.JoinOptions(
	jsontext.AllowDuplicateNames(true),
	json.MatchCaseInsensitiveNames(true),
	jsonv1.MatchCaseSensitiveDelimiter(true),
	jsontext.AllowInvalidUTF8(true),
)

// Decode parses one message. headerVersion is the Ragpipe-Version header ("" when absent); seq is the message's JetStream stream sequence. It returns a *Rejection for bad input.
//
// The rules are those of CONTRACT §2: the tenant and collection come from the
// subject; the body's op (default upsert), doc_id (1-512 bytes of UTF-8),
// text (required for an upsert without a vector), metadata (a flat object),
// version (an integer from 1 to MaxVersion; else the header's, within the
// same bounds; else seq) and vector or vector_b64 (finite float32s, not both)
// are checked, and unknown fields are ignored. A delete's text, metadata and
// vector are ignored. Decode is safe for concurrent use.
func Decode(cfg DecodeConfig, subject string, body []byte, headerVersion string, seq uint64) (Event, error) {
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
	w := wireEvents.Get().(*wireEvent)
	defer w.release()
	if problem := unmarshalWire(body, w); problem != "" {
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
	if e.Text, e.Vector, p = upsertContent(w); p != "" {
		return Event{}, d.reject(p)
	}
	if p = w.Metadata.problem; p != "" {
		return Event{}, d.reject(p)
	}
	e.Metadata = w.Metadata.values
	return e, nil
}

// upsertContent returns an upsert's text and vector, or why they are not
// acceptable.
func upsertContent(w *wireEvent) (text string, vector []float32, problem string) {
	switch {
	case w.Text.kind != 0:
		return "", nil, fmt.Sprintf("text must be a string, not a JSON %s", kindName(w.Text.kind))
	case w.Vector.problem != "":
		return "", nil, w.Vector.problem
	case w.VectorB64.problem != "":
		return "", nil, w.VectorB64.problem
	case w.Vector.vec != nil && w.VectorB64.vec != nil:
		return "", nil, "vector and vector_b64 are both given; send one of them"
	}
	vector = w.Vector.vec
	if vector == nil {
		vector = w.VectorB64.vec
	}
	if vector == nil && strings.TrimSpace(w.Text.s) == "" {
		if w.Text.s == "" {
			return "", nil, "text is required for an upsert without a vector"
		}
		return "", nil, "text is only whitespace and there is no vector"
	}
	return w.Text.s, vector, ""
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
func (d *eventDecoder) bodyVersion(raw jsontext.Value) (problem string) {
	if isJSONNull(raw) {
		return ""
	}
	if raw.Kind() != '0' {
		return fmt.Sprintf("version must be a positive integer, not a JSON %s", kindName(raw.Kind()))
	}
	v, p := parseVersion(string(raw))
	if p != "" {
		return fmt.Sprintf("version %s %s", numberForReason(string(raw)), p)
	}
	d.body = v
	return ""
}

func parseHeaderVersion(h string) (uint64, string) {
	if h == "" {
		return 0, ""
	}
	v, p := parseVersion(strings.TrimSpace(h))
	if p != "" {
		return 0, fmt.Sprintf("Ragpipe-Version header %s %s", quoteForReason(h), p)
	}
	return v, ""
}

// parseVersion parses a version, an integer from 1 to MaxVersion, or says
// what is wrong with it. Besides plain digits it takes a JSON number with a
// fraction or exponent whose value is an exact integer ("42.0", "1e3"), as
// some JSON encoders write integers that way.
func parseVersion(s string) (v uint64, problem string) {
	const (
		notPositive = "is not a positive integer"
		tooLarge    = "is above 2^53-1 (9007199254740991): versions must be exact in Qdrant's float64 comparisons"
	)
	if s == "" {
		return 0, notPositive
	}
	if strings.Trim(s, "0123456789") == "" {
		v, err := strconv.ParseUint(s, 10, 64)
		switch {
		case errors.Is(err, strconv.ErrRange) || err == nil && v > MaxVersion:
			return 0, tooLarge
		case err != nil || v == 0:
			return 0, notPositive
		}
		return v, ""
	}
	if s[0] < '0' || s[0] > '9' { // a sign, "Inf", "NaN" and the like
		return 0, notPositive
	}
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case errors.Is(err, strconv.ErrRange) && f > 1 || err == nil && f > MaxVersion:
		return 0, tooLarge
	case err != nil || f < 1 || f != math.Trunc(f):
		return 0, notPositive
	}
	return uint64(f), ""
}

// unmarshalWire parses body into w and returns why it cannot: body is not a
// JSON object.
func unmarshalWire(body []byte, w *wireEvent) (problem string) {
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	if len(trimmed) == 0 {
		return "body is empty, not a JSON object"
	}
	if trimmed[0] != '{' {
		if v := jsontext.Value(trimmed); v.IsValid(wireOptions) {
			return fmt.Sprintf("body is a JSON %s, not an object", kindName(v.Kind()))
		}
		return "body is not valid JSON"
	}
	if unmarshalSplit(body, w) {
		return ""
	}
	err := json.Unmarshal(body, w, wireOptions)
	if err == nil {
		return ""
	}
	msg, _ := Cut(strings.TrimPrefix(err.Error(), "jsontext: "), 200)
	if _, ok := errors.AsType[*jsontext.SyntacticError](err); ok {
		return "body is not valid JSON: " + msg
	}
	return "body cannot be decoded: " + msg // unreachable: no field fails to decode
}

// decodeOp returns the event's op: upsert when absent, null or empty.
func decodeOp(raw jsontext.Value) (Op, string) {
	switch string(raw) { // compared without converting
	case "", "null", `""`, `"upsert"`:
		return OpUpsert, ""
	case `"delete"`:
		return OpDelete, ""
	}
	op, isString := rawJSONString(raw)
	switch {
	case !isString:
		return "", fmt.Sprintf("op must be a string, not a JSON %s", kindName(raw.Kind()))
	case op == string(OpUpsert):
		return OpUpsert, "" // written with escapes
	case op == string(OpDelete):
		return OpDelete, ""
	}
	return "", fmt.Sprintf("op %s is neither %q nor %q", quoteForReason(op), OpUpsert, OpDelete)
}

// checkBodyToken checks that a body's user_id or collection, if present,
// equals the subject's token.
func checkBodyToken(field string, raw jsontext.Value, want string) (problem string) {
	if isJSONNull(raw) {
		return ""
	}
	got, isString := rawJSONString(raw)
	if !isString {
		return fmt.Sprintf("%s in the body must be a string, not a JSON %s", field, kindName(raw.Kind()))
	}
	if got != want {
		return fmt.Sprintf("%s %s in the body does not match the subject's %q", field, quoteForReason(got), want)
	}
	return ""
}

// decodeDocID checks and returns the doc_id. It is unquoted strictly:
// replacing invalid UTF-8 or a lone surrogate by U+FFFD, as the other
// strings are, could merge two documents. A doc_id without escapes is its
// raw bytes, converted to a string once.
func decodeDocID(raw jsontext.Value) (string, string) {
	if isJSONNull(raw) {
		return "", "doc_id is required"
	}
	if raw.Kind() != '"' {
		return "", fmt.Sprintf("doc_id must be a string, not a JSON %s", kindName(raw.Kind()))
	}
	id, valid := []byte(raw[1:len(raw)-1]), false
	if bytes.IndexByte(id, '\\') >= 0 {
		var err error
		id, err = jsontext.AppendUnquote(nil, raw)
		valid = err == nil
	} else {
		valid = utf8.Valid(id)
	}
	switch {
	case !valid:
		return "", "doc_id is not valid UTF-8"
	case len(id) == 0:
		return "", "doc_id is empty"
	case len(id) > MaxDocIDBytes:
		return "", fmt.Sprintf("doc_id is %d bytes, longer than %d", len(id), MaxDocIDBytes)
	}
	return string(id), ""
}

// rawJSONString returns the string a raw JSON value holds; null and absent
// give "". isString is false for any other JSON type.
func rawJSONString(raw jsontext.Value) (s string, isString bool) {
	if isJSONNull(raw) {
		return "", true
	}
	if raw.Kind() != '"' {
		return "", false
	}
	b, _ := jsontext.AppendUnquote(nil, raw) // invalid UTF-8 becomes U+FFFD
	return string(b), true
}

func isJSONNull(raw jsontext.Value) bool {
	return len(raw) == 0 || string(raw) == "null"
}

// kindName names a JSON kind in a reason.
func kindName(k jsontext.Kind) string {
	switch k {
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
	case '0':
		return "number"
	}
	return "nothing"
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
